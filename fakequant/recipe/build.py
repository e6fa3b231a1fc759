"""The recipe's model: a real GGUF in which each chosen tensor is stored in its own native ggml type, written once, by
the candidate builder.

An assignment becomes the mixed form of :class:`~fakequant.quant.candidate.Recipe` (format ``"mix"``: each tensor
with its ggml format, quantized with ``ggml_quantize_chunk``, with the recipe's importance matrix when it has one, the
call llama-quantize makes), and :func:`~fakequant.quant.candidate.build_candidate` writes it: atomic, verified
against the original (only ever read), cached in ``candidates/`` under the recipe's content. The suite tests the same
recipe, so it opens the very file the recipe built, and the plan predicts that file's size from the same provenance
(:func:`mix_provenance`), to the byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.quant import candidate
from fakequant.quant import formats as formats_mod
from fakequant.quant.candidate import MIX, BuildResult, Recipe, build_candidate
from fakequant.quant.importance import importance_rows
from fakequant.quant.select import Selection
from fakequant.quant.storage import NATIVE_TYPES
from fakequant.recipe.groups import quantizable
from fakequant.recipe.imatrix import Imatrix

SHA_PLACEHOLDER = "0" * 64  # a sha256 in hex: the header's length does not depend on the source's actual hash


def imatrix_path(imatrix: Imatrix | None) -> str | None:
    """The importance matrix as a candidate recipe names it: its file's path."""
    return None if imatrix is None else str(imatrix.path)


def mix_recipe(formats: Mapping[str, str], imatrix: Imatrix | None = None) -> Recipe:
    """The candidate recipe of an assignment: each tensor ``formats`` names (in file order) in its format, quantized
    with ``imatrix`` where it has an entry for the tensor."""
    names = tuple(formats)
    return Recipe(Selection(names=names), MIX, mix=tuple(formats.items()), imatrix=imatrix_path(imatrix)).validate()


def mix_provenance(recipe: Recipe, sha: str = SHA_PLACEHOLDER) -> dict[str, str]:
    """The provenance keys the candidate builder writes for ``recipe`` (``sha``: the source's sha256)."""
    return candidate.provenance(recipe, sha)


def build_mix(source: Path, formats: Mapping[str, str], dest: Path | None = None, *,
              imatrix: Imatrix | None = None) -> BuildResult:
    """``source`` with each tensor ``formats`` names (tensor -> format, e.g. ``"q4_k"``) stored in that format's
    ggml type: into the candidate cache, or to ``dest``. RecipeError (one line) for a tensor that is not there, one
    llama-quantize would not quantize, a format without a ggml type or rows the format cannot cut."""
    source = Path(source)
    info = read_layout(source)
    present = {t.name for t in info.tensors}
    for name, fmt in formats.items():
        if name not in present:
            raise RecipeError(f"{source}: no tensor {name!r}")
        t = info.tensor(name)
        if not quantizable(t):
            raise RecipeError(f"{source}: tensor {name} ({t.type_name}{list(t.shape)}) is not a matrix llama.cpp "
                              "quantizes; it keeps its type")
        if fmt not in NATIVE_TYPES:
            raise RecipeError(f"{source}: tensor {name}: format {fmt!r} has no ggml type ({', '.join(NATIVE_TYPES)})")
        problem = formats_mod.row_problem(fmt, t.n_per_row, tensor=name,
                                          importance=tensor_has_importance(imatrix, name, t.shape))
        if problem:
            raise RecipeError(f"{source}: tensor {name}: {problem}")
    return build_candidate(source, mix_recipe(formats, imatrix), dest)


def tensor_has_importance(imatrix: Imatrix | None, name: str, shape: tuple[int, ...]) -> bool:
    return importance_rows(imatrix_path(imatrix), name, shape) is not None
