"""Mixed-precision recipes: one native ggml type per group of tensors, chosen under a size budget.

Modules, in the order a recipe goes through them:

- ``size``: bytes of a tensor in a ggml type, the predicted file size of a model under an assignment of types, and
  bits per weight over the weight matrices;
- ``groups``: a recipe's selection on a model, as groups of matrices with the formats their rows allow;
- ``solve``: the multiple-choice knapsack (an integer program, scipy's milp) that picks one option per group;
- ``plan``: a recipe against a model: its groups, its budget in bytes, and the solved assignment for given costs;
- ``build``: the mixed GGUF, each chosen tensor in its ggml type (ggml's own quantizer, as llama-quantize);
- ``command``: the llama-quantize command that writes the same tensors.
"""
