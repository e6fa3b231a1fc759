"""The llama-quantize command that writes the same tensors as :func:`fakequant.recipe.build.build_mix`.

``llama-quantize --allow-requantize [--imatrix FILE] --pure --tensor-type-file TYPES SRC DST BASE``, where TYPES pins
tensors to types, one ``^name$=type`` per line (a regex each: anchored, so that ``output.weight`` does not also pin
``blk.0.attn_output.weight``; the first pattern that matches a tensor wins). What llama-quantize does, and why each
part is there (llama.cpp src/llama-quant.cpp):

- it applies the patterns only when the base file type is a quantized one, so BASE is one (the type most matrices
  end up in, else Q8_0);
- without ``--pure`` it applies its own mix rules to every tensor no pattern names (token_embd or output to Q6_K,
  attn_v and ffn_down bumps in the K mixes); ``--pure`` gives every such tensor BASE instead;
- a tensor whose target type is its current type is copied byte for byte; any other is dequantized to F32 and
  quantized with ggml, with its entry of the ``--imatrix`` file when there is one, which is what fakequant's
  builder does with the same file;
- a pinned type the tensor's rows do not allow is replaced by a fallback (256-block i-quants by iq4_nl, q2_k and
  q3_k by q4_0, q4_k by q5_0, q5_k by q5_1, q6_k by q8_0, then F16): a recipe never pins such a type
  (:mod:`fakequant.recipe.groups`);
- so every matrix whose final type is not BASE is pinned (kept tensors to their own type, which copies them), and
  the others are left to ``--pure``: those already in BASE are copied, those changed to BASE are quantized to it.
  1-D tensors are never quantized.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fakequant.errors import RecipeError
from fakequant.gguf.layout import ModelInfo
from fakequant.recipe.size import is_matrix

# ggml types that are also a file type llama-quantize takes by that name (Q3_K, Q4_K, Q5_K are aliases of the _M
# mixes, which --pure makes irrelevant); MXFP4's file type is a MoE mix, and F16/BF16 are not quantized
FILE_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
FALLBACK_BASE = "Q8_0"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")  # tensor names this module can write as a regex by escaping dots only


@dataclass(frozen=True)
class QuantizeCommand:
    base: str  # the file type argument, e.g. "Q4_1"
    pins: tuple[tuple[str, str], ...]  # (tensor name, ggml type), in file order
    imatrix: Path | None = None  # the importance matrix file the tensors are quantized with

    def tensor_types(self) -> str:
        """The text of the --tensor-type-file."""
        return "".join(f"{pattern(name)}={type_name.lower()}\n" for name, type_name in self.pins)

    def argv(self, src: Path, dst: Path, types_file: Path, *, tool: str | Path = "llama-quantize",
             threads: int | None = None) -> list[str]:
        imatrix = ["--imatrix", str(self.imatrix)] if self.imatrix is not None else []
        return [str(tool), "--allow-requantize", *imatrix, "--pure", "--tensor-type-file", str(types_file), str(src),
                str(dst), self.base, *([str(threads)] if threads else [])]


def pattern(name: str) -> str:
    """A regex that matches the tensor ``name`` and nothing else."""
    return "^" + name.replace(".", r"\.") + "$"


def quantize_command(info: ModelInfo, types: Mapping[str, str], imatrix: Path | None = None) -> QuantizeCommand:
    """The command that turns ``info``'s model into one whose tensors ``types`` names (tensor -> ggml type) have
    those types (quantized with the importance matrix file ``imatrix`` when given), and every other tensor its
    bytes."""
    final = {t.name: types.get(t.name, t.type_name) for t in info.tensors if is_matrix(t)}
    unknown = sorted(set(types) - set(final))
    if unknown:
        raise RecipeError(f"{info.path}: {unknown[0]!r} is not a weight matrix of this model")
    counts = Counter(v for v in final.values() if v in FILE_TYPES)
    base = counts.most_common(1)[0][0] if counts else FALLBACK_BASE
    pins = tuple((name, type_name) for name, type_name in final.items() if type_name != base)
    for name, _ in pins:
        if not _NAME.fullmatch(name):
            raise RecipeError(f"{info.path}: tensor name {name!r} has characters a --tensor-type pattern would read "
                              "as a regex")
    return QuantizeCommand(base, pins, None if imatrix is None else Path(imatrix))
