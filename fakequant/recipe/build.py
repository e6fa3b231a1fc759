"""The mixed-precision model: a real GGUF in which each chosen tensor is stored in its own native ggml type.

Each tensor goes through the candidate writer (:func:`fakequant.quant.candidate.write_model`) with its own
``store = "native"`` recipe: dequantized with ggml, quantized with ``ggml_quantize_chunk`` and no importance matrix,
the call llama-quantize makes, so the bytes are those of :mod:`fakequant.recipe.command`'s command. The write is
atomic and verified against the original, which is only ever read; the provenance keys name the recipe, its
assignment and the source's sha256.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fakequant import __version__
from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.quant import formats as formats_mod
from fakequant.quant.candidate import ENGINE_VERSION, Recipe, check_destination, write_model
from fakequant.quant.select import Selection
from fakequant.quant.stats import TensorStats
from fakequant.quant.storage import NATIVE_TYPES
from fakequant.recipe.groups import quantizable
from fakequant.store.cache import file_sha256

MIX_KEY = "fakequant.mix"  # {"recipe": name, "assignment": {group: format or "keep"}}


def provenance(recipe: str, assignment: Mapping[str, str], sha: str) -> dict[str, str]:
    return {MIX_KEY: json.dumps({"recipe": recipe, "assignment": dict(assignment)}, sort_keys=True),
            "fakequant.source_sha256": sha, "fakequant.version": f"{__version__}+engine{ENGINE_VERSION}"}


@dataclass
class MixedModel:
    output: Path
    source: Path
    source_sha256: str
    types: dict[str, str]  # changed tensor -> its ggml type, in file order
    tensors: list[TensorStats]  # numbers of each changed tensor: before vs stored
    output_bytes: int
    same_size: bool  # every tensor kept its size, so the data section was copied as it is


def build_mixed(source: Path, formats: Mapping[str, str], dest: Path, *, recipe: str,
                assignment: Mapping[str, str]) -> MixedModel:
    """Write ``source`` to ``dest`` with each tensor ``formats`` names (tensor -> format, e.g. ``"q4_k"``) stored in
    that format's ggml type; ``recipe`` and ``assignment`` (group -> option) go into the provenance."""
    source = Path(source)
    info = read_layout(source)
    dest = check_destination(dest, source)
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
        problem = formats_mod.row_problem(fmt, t.n_per_row)
        if problem:
            raise RecipeError(f"{source}: tensor {name}: {problem}")
    sha = file_sha256(source)
    recipes = {t.name: Recipe(Selection(names=(t.name,)), formats[t.name], store="native")
               for t in info.tensors if t.name in formats}
    written = write_model(info, recipes, dest, provenance(recipe, assignment, sha))
    return MixedModel(output=dest, source=source, source_sha256=sha,
                      types={s.name: s.stored_type for s in written.tensors}, tensors=written.tensors,
                      output_bytes=written.output_bytes, same_size=written.same_size)
