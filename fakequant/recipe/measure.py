"""The cost of each (group, format) cell of a recipe: its excess mean KLD over the group's placebo, with the interval.

A cell is measured like a sweep cell's perplexity check, without the rest of the suite: the tensors of the group
the format changes stored natively in it (the kernels a real quantization runs, with the recipe's importance matrix
when it has one; the group's other tensors keep their bytes, :mod:`fakequant.recipe.groups`) and their placebo (one
ulp of the same tensors in their own encoding) are scored against the base over the same chunks, the recipe's
selection slice (:mod:`fakequant.recipe.slices`); the excess is the candidate's per-chunk KLD minus the placebo's,
with a t interval over chunks. One placebo serves every format that changes the same tensors, scored once.

Each result is cached under ``$FAKEQUANT_HOME/recipe-cells/`` keyed by everything it depends on: model and corpus
sha256, runtime settings (not the thread count, which does not change logits), the selection slice, the importance
matrix's sha256, the group's tensors, the format, the engine and the llama-cpp-python version. A recipe cell is not
a sweep cell: a sweep cell also runs the numerical and must-pass checks with the suite's thresholds, so the two
caches do not share entries.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fakequant.quant.candidate import ENGINE_VERSION, Recipe, build_candidate
from fakequant.quant.placebo import build_placebo
from fakequant.quant.select import Selection
from fakequant.recipe.build import imatrix_path
from fakequant.recipe.groups import Group
from fakequant.recipe.imatrix import Imatrix
from fakequant.recipe.slices import Slice
from fakequant.runtime.chunkstats import excess
from fakequant.runtime.llama import load_model
from fakequant.runtime.paired import BaseReference, PairedComparison, compare
from fakequant.store.cache import cache_dir, file_sha256, locked, stable_hash, write_json
from fakequant.store.tools import llama_cpp_build
from fakequant.suite.criteria.types import MixRecipe

CELL_VERSION = 3  # bump when what a cell records changes


@dataclass(frozen=True)
class CellCost:
    group: str
    format: str
    tensors: int
    kld_mean: float  # the candidate against the base: the total a user gets
    placebo_kld_mean: float  # the floor: a one-ulp change of the same tensors
    excess_kld_mean: float  # the format's own part, paired per chunk
    excess_kld_mean_ci: tuple[float, float] | None  # None from one chunk
    ln_ppl_ratio: float
    chunks: int
    cached: bool = False

    @property
    def cost(self) -> float:
        """What the solver minimizes: the excess, never below zero (a cell the placebo cannot tell from the floor
        costs nothing; a negative estimate is noise, not a gain)."""
        return max(0.0, self.excess_kld_mean)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["excess_kld_mean_ci"] = list(self.excess_kld_mean_ci) if self.excess_kld_mean_ci else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellCost:
        ci = data.get("excess_kld_mean_ci")
        return cls(**{**data, "excess_kld_mean_ci": tuple(ci) if ci else None})


def cell_cache_key(recipe: MixRecipe, group: Group, fmt: str, model_sha: str, corpus_sha: str, where: Slice,
                   imatrix_sha: str | None) -> str:
    settings = recipe.settings.to_json()
    settings.pop("n_threads", None)  # logits were measured bitwise identical across thread counts
    return stable_hash({"v": CELL_VERSION, "model": model_sha, "corpus": corpus_sha, "settings": settings,
                        "first_chunk": where.first_chunk, "chunks": where.chunks, "imatrix": imatrix_sha,
                        "tensors": sorted(group.types(fmt)), "format": fmt,
                        "engine": ENGINE_VERSION, "llama_cpp": llama_cpp_build()})


def imatrix_sha(imatrix: Imatrix | None) -> str | None:
    return None if imatrix is None else str(imatrix.sha256)


def _load(key: str) -> CellCost | None:
    path = cache_dir("recipe-cells") / f"{key}.json"
    try:
        return CellCost.from_json({**json.loads(path.read_text()), "cached": True})
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent or damaged: measured again and overwritten


def _store(key: str, cell: CellCost) -> None:
    path = cache_dir("recipe-cells") / f"{key}.json"
    with locked(path):
        write_json(path, {**cell.to_json(), "cached": False})


def _lookup(recipe: MixRecipe, groups: Sequence[Group], where: Slice,
            imatrix: Imatrix | None) -> tuple[dict[tuple[str, str], CellCost], dict[str, list[tuple[str, str]]]]:
    """The cached cells, and per group the (format, cache key) of each cell not cached yet."""
    model_sha, corpus_sha = file_sha256(recipe.model), file_sha256(where.corpus)
    out: dict[tuple[str, str], CellCost] = {}
    todo: dict[str, list[tuple[str, str]]] = {}
    for g in groups:
        for fmt in g.formats:
            key = cell_cache_key(recipe, g, fmt, model_sha, corpus_sha, where, imatrix_sha(imatrix))
            hit = _load(key)
            if hit is not None:
                out[(g.name, fmt)] = hit
            else:
                todo.setdefault(g.name, []).append((fmt, key))
    return out, todo


@dataclass
class Measured:
    cells: dict[tuple[str, str], CellCost]
    measured: int
    cached: int
    seconds: float


def measure_cells(recipe: MixRecipe, groups: Sequence[Group], ref: Callable[[], BaseReference], where: Slice, *,
                  imatrix: Imatrix | None = None, log: Callable[[str], None] = print) -> Measured:
    """Every (group, format) cell of ``groups`` on the slice ``where``: from the cache, else measured against the
    base reference ``ref()`` returns (built on ``where``; asked for only when a cell has to be measured), each
    candidate quantized with ``imatrix`` when given."""
    start = time.perf_counter()
    out, todo = _lookup(recipe, groups, where, imatrix)
    total = sum(len(v) for v in todo.values())
    log(f"recipe {recipe.name}: {len(out) + total} cells, {len(out)} cached, {total} to measure")
    done = 0
    floors: dict[tuple[str, ...], PairedComparison] = {}
    for g in groups:
        if g.name not in todo:
            continue
        for fmt, key in todo[g.name]:
            names = tuple(g.types(fmt))  # the tensors the format changes: the rest of the group keeps its bytes
            if names not in floors:
                # one placebo for every format that changes the same tensors: its logits are the same in every
                # pass, so the excess paired per chunk is that of a pass scoring both together
                placebo = build_placebo(recipe.model, Selection(names=names))
                with load_model(placebo.output, recipe.settings) as plac:
                    floors[names] = compare(ref(), plac)
            floor = floors[names]
            cand = build_candidate(recipe.model, Recipe(Selection(names=names), fmt, store="native",
                                                        imatrix=imatrix_path(imatrix)))
            with load_model(cand.output, recipe.settings) as model:
                result = compare(ref(), model)
            more = excess(result.per_chunk, floor.per_chunk, same_top_p=math.nan)
            ci = more["kld_mean_ci"]
            cell = CellCost(group=g.name, format=fmt, tensors=len(names), kld_mean=float(result.kld_mean),
                            placebo_kld_mean=float(floor.kld_mean), excess_kld_mean=float(more["kld_mean"]),
                            excess_kld_mean_ci=(float(ci[0]), float(ci[1])) if ci else None,
                            ln_ppl_ratio=float(result.ln_ppl_ratio), chunks=int(more["chunks"]))
            _store(key, cell)
            out[(g.name, fmt)] = cell
            done += 1
            log(f"  [{done}/{total}] {g.name} → {fmt}: excess KLD {cell.excess_kld_mean:+.3g} "
                f"(floor {cell.placebo_kld_mean:.3g}, total {cell.kld_mean:.3g})")
    return Measured(out, measured=done, cached=len(out) - done, seconds=time.perf_counter() - start)
