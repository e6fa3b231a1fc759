"""The placebo twin of a candidate: the same tensors, each nudged by the smallest change its own encoding allows.

Why a placebo: in a quantized model any change to an early tensor moves the output, whatever the change. The
quantized matmuls downstream re-quantize their activations; a tiny nudge flips some of those roundings and the
flips propagate. The excess of a candidate over its placebo is the format's own effect.

Why this nudge: one ulp of each value *in the tensor's own storage type*, so the placebo runs exactly the kernels
the original runs (:mod:`fakequant.quant.nudge` has the rules):

- F32 / F16 / BF16 (norms, biases, float matrices): ±1 ulp of every finite non-zero value (zeros, NaN and ±inf
  are kept: the step next to zero is an infinite relative change, and the others have no neighbour).
- ggml block types (Q4_0 ... Q8_0, Q2_K ... Q6_K): ±1 fp16 ulp of every block's scale ``d``, the smallest change
  a block can hold; nothing else in the block changes. That ulp is coarser than an F32 ulp: it moves each value
  of the block by about 0.05-0.1 %. Measured on SmolLM2-135M Q4_1 (default corpus, n_ctx 512, 3 chunks):

  nudge                                                    mean KLD     top-1
  ±1 ulp of every block's fp16 d, ``blk.0.attn_q`` (Q4_1)  0.00343      97.1 %
  the same, ``blk.29.attn_q``                              0.00054      98.4 %
  1e-7 relative, ``blk.0.ffn_norm`` (F32)                  0.00326      96.6 %
  1e-7 relative, ``blk.29.ffn_norm`` (F32)                 0.00000008   100 %

  (An F32 ulp is 0.6e-7 to 1.2e-7 of a value: the last two rows are the size of an F32 placebo.)
  So at the last layers a block-scale placebo is already a measurable effect of its own, where an F32 one is
  not: the report must show the placebo's own size beside its effect. Each placebo tensor's numbers carry it in
  ``extra``: ``nudge_rel_mean`` (mean |Δ|/|x| over the nudged values or block scales) and ``nudged`` (how many).
  Prefer it to the values' ``mean_rel``, which a type with a minimum (Q4_1, Q4_K ...) inflates: a value
  ``d·q + m`` near zero changes by a large fraction of itself when ``d`` moves by 0.1 %.

A placebo is a :class:`~fakequant.quant.candidate.Recipe` with the pseudo-format ``"placebo"`` and a ``seed``
(which picks the random directions; same seed, same bytes), built by the candidate engine: cached, written
atomically, verified against the original and described by the same per-tensor numbers
(:func:`~fakequant.quant.stats.compare_tensors` on the dequantized values before and after).
"""

from __future__ import annotations

from pathlib import Path

from fakequant.quant.candidate import BuildResult, Recipe, build_candidate
from fakequant.quant.nudge import PLACEBO
from fakequant.quant.select import Selection

__all__ = ["PLACEBO", "build_placebo", "placebo_recipe", "twin_of"]


def placebo_recipe(selection: Selection, seed: int = 0, epsilon: float = 1e-8) -> Recipe:
    """The recipe of the placebo of the tensors ``selection`` picks."""
    return Recipe(selection, PLACEBO, epsilon=epsilon, seed=seed).validate()


def twin_of(recipe: Recipe, seed: int = 0) -> Recipe:
    """The placebo recipe for a candidate recipe: same tensors, same ε for the relative differences."""
    return placebo_recipe(recipe.selection, seed=seed, epsilon=recipe.epsilon)


def build_placebo(source: Path, selection: Selection, seed: int = 0, dest: Path | None = None) -> BuildResult:
    """Build (or reuse from the candidate cache when ``dest`` is None) the placebo twin of ``source``."""
    return build_candidate(Path(source), placebo_recipe(selection, seed), dest)

