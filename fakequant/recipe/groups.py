"""A recipe's selection on a model: the groups of weight matrices that each get one format, and the formats each
group's rows allow.

Only matrices that llama-quantize quantizes can change (its ``tensor_allows_quantization``: two or more
dimensions, a name ending in ``weight``, no norms, no MoE router); anything else keeps its type in its output
whatever the command says, so a recipe must not change it either. A group's options are ``keep`` (every tensor in
its source type: cost 0) and each of the recipe's formats, read as a ceiling: the format stores each tensor of the
group it makes smaller and leaves the others as they are. The loss is measured against the original, so a tensor
moved to a type no smaller than its own only adds loss and bytes (in a Q4_K_M source, ``q5_k`` for ffn_down moves
the Q6_K layers down and keeps the Q4_K ones byte for byte). A format is an option when it changes at least one
tensor and every tensor it changes allows it (row lengths of whole blocks: 32 for the legacy types, mxfp4 and
iq4_nl, 256 for the K-quants and the other i-quants; an i-quant that llama-quantize refuses without an importance
matrix only where each such tensor has an entry in ``imatrix``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from fakequant.errors import RecipeError
from fakequant.gguf.codec import FLOAT_TYPES, GGML_QUANT_TYPES
from fakequant.gguf.layout import ModelInfo, TensorInfo, align
from fakequant.quant import formats as formats_mod
from fakequant.quant.importance import importance_rows
from fakequant.quant.select import Selection, kind_of, layer_of, select_tensors
from fakequant.quant.storage import NATIVE_TYPES
from fakequant.recipe.size import is_matrix, type_nbytes

KEEP = "keep"  # the option of leaving a group's tensors in their source types


@dataclass(frozen=True)
class Group:
    name: str  # "blk.5.attn_q" (cell), "attn_q" (kind), "blk.5" (layer); a tensor outside the blocks: its kind
    tensors: tuple[TensorInfo, ...]
    formats: tuple[str, ...]  # the recipe's formats this group may take, in the recipe's order (``keep`` aside)

    @property
    def options(self) -> tuple[str, ...]:
        return (KEEP, *self.formats)

    def types(self, option: str) -> dict[str, str]:
        """Tensor name -> the ggml type ``option`` stores it in, for the tensors it changes; ``keep`` changes
        nothing."""
        if option == KEEP:
            return {}
        if option not in self.formats:
            raise RecipeError(f"group {self.name}: {option!r} is not one of its options ({', '.join(self.options)})")
        return {t.name: NATIVE_TYPES[option] for t in changed(self.tensors, option)}

    def nbytes(self, option: str, alignment: int = 1) -> int:
        """Bytes of the group's tensors under ``option``, each rounded up to ``alignment`` (a file's padding)."""
        new = self.types(option)
        return sum(align(type_nbytes(new[t.name], t.shape) if t.name in new else t.nbytes, alignment)
                   for t in self.tensors)


def quantizable(t: TensorInfo) -> bool:
    """Whether llama-quantize would quantize this tensor (the rule in llama.cpp's src/llama-quant.cpp, without its
    architecture-specific exceptions, which no recipe on a llama-style model meets)."""
    return (is_matrix(t) and t.name.endswith("weight") and "_norm.weight" not in t.name
            and "ffn_gate_inp.weight" not in t.name
            and (t.type_name in FLOAT_TYPES or t.type_name in GGML_QUANT_TYPES))


def group_name(tensor: str, grouping: str) -> str:
    layer, kind = layer_of(tensor), kind_of(tensor)
    if layer is None:
        return kind
    return {"cell": f"blk.{layer}.{kind}", "kind": kind, "layer": f"blk.{layer}"}[grouping]


def plan_groups(info: ModelInfo, selection: Selection, candidates: Sequence[str], grouping: str, *,
                source: str, imatrix: str | PathLike[str] | None = None) -> list[Group]:
    """The groups ``selection`` makes on ``info`` (in file order of their first tensor), each with the formats its
    rows allow (quantized with the importance matrix file ``imatrix`` when given); RecipeError, starting with
    ``source``, when it selects nothing that can change."""
    names = select_tensors([t.name for t in info.tensors], selection, source=source)
    chosen = [info.tensor(n) for n in names if quantizable(info.tensor(n))]
    for kind in selection.kinds:
        if not any(kind_of(t.name) == kind for t in chosen):
            raise RecipeError(f"{source}: kind {kind!r} has no weight matrix that llama.cpp quantizes (norms and "
                              "other 1-D tensors keep their type)")
    if not chosen:
        raise RecipeError(f"{source}: the selection holds no weight matrix that llama.cpp quantizes")
    members: dict[str, list[TensorInfo]] = {}
    for t in chosen:
        members.setdefault(group_name(t.name, grouping), []).append(t)
    path = None if imatrix is None else str(imatrix)
    return [Group(name, tuple(ts), tuple(f for f in candidates if _allows(changed(ts, f), f, path)))
            for name, ts in members.items()]


def changed(tensors: Sequence[TensorInfo], fmt: str) -> tuple[TensorInfo, ...]:
    """The tensors ``fmt`` makes smaller: those it changes (compared by bytes per value, so that a tensor whose rows
    the format cannot cut is among them and rules the format out)."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[NATIVE_TYPES[fmt]]]
    return tuple(t for t in tensors if size * t.n_elements < block * t.nbytes)


def _allows(tensors: Sequence[TensorInfo], fmt: str, imatrix: str | None) -> bool:
    return bool(tensors) and all(
        formats_mod.row_problem(fmt, t.n_per_row, tensor=t.name,
                                importance=importance_rows(imatrix, t.name, t.shape) is not None) is None
        for t in tensors)


def cells(groups: Sequence[Group]) -> list[tuple[str, str]]:
    """Every (group, format) a measurement has to score: each group's formats (``keep`` costs nothing)."""
    return [(g.name, f) for g in groups for f in g.formats]
