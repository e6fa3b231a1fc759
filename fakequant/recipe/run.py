"""``fakequant recipe NAME``: from measured cells to a real mixed model, checked against its prediction and set beside
llama.cpp's stock mixes.

1. every (group, format) cell's excess mean KLD over its placebo (:mod:`fakequant.recipe.measure`, cached);
2. the assignment of least predicted loss within the recipe's budget, and within each stock mix's file size
   (:func:`fakequant.recipe.plan.choose`, an exact integer program);
3. each assignment built as a real GGUF in native ggml types (:func:`fakequant.recipe.build.build_mixed`);
4. the stock mixes written by ``llama-quantize`` (:mod:`fakequant.recipe.stock`);
5. every model scored against the original in one process, on the same tokens (one base reference), with 95%
   intervals over chunks;
6. the additivity check: each recipe model's measured KLD against its prediction;
7. the decision: the model chosen within the recipe's own budget goes through the suite like any experiment
   (``pytest --recipe NAME -k recipe_NAME``: must-pass, perplexity, conversations, speed;
   :mod:`fakequant.recipe.decision`).

The prediction is the largest placebo floor among the changed groups plus the sum of the chosen cells' excess: the
floor is what any change at that position costs (activation re-quantization flips, shared, not additive), the excess
is each format's own part. Its interval combines the cells' half-widths in quadrature, an approximation: the cells
were measured on the same chunks, so their errors are correlated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fakequant.errors import FakequantError, RecipeError
from fakequant.quant.candidate import ENGINE_VERSION, Recipe
from fakequant.recipe.build import build_mixed
from fakequant.recipe.command import quantize_command
from fakequant.recipe.decision import Runner, suite_decision
from fakequant.recipe.experiment import mix_recipe
from fakequant.recipe.groups import KEEP
from fakequant.recipe.measure import CellCost, measure_cells
from fakequant.recipe.plan import MIB, Choice, Plan, cell_key, choose, plan_recipe
from fakequant.recipe.size import bits_per_weight
from fakequant.recipe.stock import STOCK_MIXES, StockMix, stock_mix
from fakequant.runtime.chunkstats import chunk_interval
from fakequant.runtime.llama import load_model
from fakequant.runtime.paired import BaseReference, compare
from fakequant.store.cache import atomic_output, cache_dir, file_sha256, locked, stable_hash
from fakequant.store.tools import llama_cpp_version
from fakequant.suite import rules
from fakequant.suite.criteria.types import MixRecipe

TYPES_FILE = "tensor_types.txt"


def predict(choice: Choice, cells: dict[tuple[str, str], CellCost]) -> dict[str, Any]:
    """The predicted mean KLD of an assignment: the largest floor of its changed groups plus its cells' excess."""
    chosen = [cells[(g, o)] for g, o in choice.assignment.items() if o != KEEP]
    if not chosen:
        return {"kld_mean": 0.0, "kld_mean_ci": [0.0, 0.0], "floor": 0.0, "excess_sum": 0.0, "cells": 0}
    floor = max(c.placebo_kld_mean for c in chosen)
    excess = sum(c.cost for c in chosen)
    half = math.sqrt(sum(((c.excess_kld_mean_ci[1] - c.excess_kld_mean_ci[0]) / 2) ** 2
                         for c in chosen if c.excess_kld_mean_ci))
    total = floor + excess
    return {"kld_mean": total, "kld_mean_ci": [max(0.0, total - half), total + half], "floor": floor,
            "excess_sum": excess, "cells": len(chosen)}


def additivity(predicted: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """Whether the measured KLD agrees with the prediction (their intervals overlap), and by how much it misses."""
    p_lo, p_hi = predicted["kld_mean_ci"]
    m_ci = measured.get("kld_mean_ci")
    m = measured["kld_mean"]
    ratio = m / predicted["kld_mean"] if predicted["kld_mean"] > 0 else None
    overlap = m_ci is not None and m_ci[0] <= p_hi and p_lo <= m_ci[1]
    return {"agrees": overlap, "ratio": ratio, "miss": 0.0 if overlap else m - predicted["kld_mean"]}


def _mixed(plan: Plan, choice: Choice) -> tuple[Path, int]:
    """The mixed model of ``choice`` (cached: keyed by source, assignment, engine and llama.cpp version)."""
    model = plan.info.path
    key = stable_hash({"source": file_sha256(model), "types": choice.types, "recipe": plan.recipe.name,
                       "assignment": choice.assignment, "engine": ENGINE_VERSION, "llama_cpp": llama_cpp_version()})
    out = cache_dir("mixes") / f"{plan.recipe.name}-{key}.gguf"
    with locked(out):
        if not out.exists():
            build_mixed(model, choice.formats, out, recipe=plan.recipe.name, assignment=choice.assignment)
    return out, out.stat().st_size


def _score(ref: BaseReference, path: Path, recipe: MixRecipe) -> dict[str, Any]:
    with load_model(path, recipe.settings) as model:
        result = compare(ref, model)
    comparison = result.to_json()
    kld = chunk_interval(result.per_chunk["kld_mean"])
    ln = rules.ln_ppl_interval(comparison)
    return {"kld_mean": float(result.kld_mean), "kld_mean_ci": kld.ci(), "ln_ppl_ratio": float(result.ln_ppl_ratio),
            "ln_ppl_ratio_ci": None if ln.low is None else [ln.low, ln.high],
            "same_top_p": float(result.same_top_p), "nonfinite": result.nonfinite, "comparison": comparison}


def run_recipe(recipe: MixRecipe, out_dir: Path, *, stock: Sequence[str] = STOCK_MIXES,
               log: Callable[[str], None] = print, run_suite: bool = True, criteria_path: Path | None = None,
               report_dir: Path | None = None, runner: Runner | None = None) -> dict[str, Any]:
    """Measure, solve, build, score and report ``recipe``; with ``run_suite``, the chosen mixed model then goes
    through the suite (``criteria_path``: the file ``recipe`` was read from; ``report_dir``: where the suite writes
    experiments' reports) and its decision goes into the results. Returns the results :mod:`fakequant.report.recipe`
    writes (also into ``out_dir``)."""
    from fakequant.report.recipe import write_recipe_report

    if run_suite and (criteria_path is None or report_dir is None):
        raise ValueError("run_recipe: running the suite needs criteria_path and report_dir")
    start = time.perf_counter()
    plan = plan_recipe(recipe)
    with load_model(recipe.model, recipe.settings) as base:
        refs: list[BaseReference] = []

        def ref() -> BaseReference:
            if not refs:
                refs.append(BaseReference.build(base, recipe.corpus, chunks=recipe.chunks))
            return refs[0]

        measured = measure_cells(recipe, plan.groups, ref, log=log)
        costs = {cell_key(g, f): c.cost for (g, f), c in measured.cells.items()}
        scoring = time.perf_counter()
        models: list[dict[str, Any]] = []
        mixes: list[StockMix] = []
        for mix in stock:
            try:
                mixes.append(stock_mix(recipe.model, mix, threads=recipe.settings.threads))
            except FakequantError as err:
                models.append({"name": mix, "kind": "stock", "note": str(err)})
        targets: list[tuple[str, str | None, Plan]] = [(f"recipe ({plan.budget})", None, plan)]
        for m in mixes:
            size = m.path.stat().st_size
            targets.append((f"recipe @ {m.name} size", m.name,
                            Plan(replace(recipe, budget_mib=size / MIB, budget_bpw=None), plan.info, plan.groups)))
        chosen_types: dict[str, str] = {}
        scores: dict[Path, tuple[str, dict[str, Any]]] = {}  # budgets that choose the same model score it once
        expected: Recipe | None = None  # the mix the suite should test: the choice within the recipe's own budget
        for m in mixes:
            log(f"scoring {m.name} (llama-quantize)")
            models.append({"name": m.name, "kind": "stock", "file_bytes": m.path.stat().st_size,
                           "bpw": _bpw(m.path), "command": m.command, **_public(_score(ref(), m.path, recipe))})
        for name, vs, target in targets:
            row: dict[str, Any] = {"name": name, "kind": "recipe", "vs": vs, "budget_bytes": target.limit}
            try:
                choice = choose(target, costs)
            except RecipeError as err:
                models.append({**row, "note": f"infeasible: {err}"})
                continue
            path, size = _mixed(target, choice)
            if path in scores:
                row["note"] = f"the same model as {scores[path][0]}"
            else:
                log(f"scoring {name}: {size / MIB:.2f} MiB")
                scores[path] = (name, _score(ref(), path, recipe))
            scored = scores[path][1]
            predicted = predict(choice, measured.cells)
            row |= {"file_bytes": size, "bpw": choice.bpw, "assignment": choice.assignment, "predicted": predicted,
                    "additivity": additivity(predicted, scored), "path": str(path),
                    "command": _command_text(target, choice), **_public(scored)}
            if vs is None:
                chosen_types = choice.types
                expected = mix_recipe(choice) if choice.formats else None
            models.append(row)
    scoring_s = time.perf_counter() - scoring
    decision: dict[str, Any] = {"decision": None, "reasons": ["the suite was not run (run_suite=False)"]}
    if run_suite:
        assert criteria_path is not None and report_dir is not None
        suite_start = time.perf_counter()
        decision = suite_decision(recipe.name, criteria_path=criteria_path, report_dir=report_dir, out_dir=out_dir,
                                  expected=expected, runner=runner, log=log)
        decision["wall_s"] = round(time.perf_counter() - suite_start, 1)
    command = quantize_command(plan.info, chosen_types)
    results = {
        "recipe": recipe.name, "description": recipe.description, "model": str(recipe.model),
        "model_bytes": plan.info.path.stat().st_size, "corpus": str(recipe.corpus), "chunks": recipe.chunks,
        "n_ctx": recipe.settings.n_ctx, "budget": plan.budget,
        "cells": [c.to_json() | {"bytes": _group(plan, g).nbytes(f)} for (g, f), c in measured.cells.items()],
        "models": models, "chosen": targets[0][0],
        "command": _command_text(plan, None, command), "tensor_types": command.tensor_types(),
        "decision": decision,
        "timing": {"cells_measured": measured.measured, "cells_cached": measured.cached,
                   "cells_wall_s": round(measured.seconds, 1),
                   "scoring_wall_s": round(scoring_s, 1),
                   "wall_s": round(time.perf_counter() - start, 1)},
    }
    write_recipe_report(results, out_dir)
    with atomic_output(out_dir / TYPES_FILE, "w") as fh:
        fh.write(command.tensor_types())
    return results


def _group(plan: Plan, name: str) -> Any:
    return next(g for g in plan.groups if g.name == name)


def _public(scored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scored.items() if k not in ("comparison", "nonfinite")}


def _bpw(path: Path) -> float:
    from fakequant.gguf.check import read_layout

    return bits_per_weight(read_layout(path), {})


def _command_text(plan: Plan, choice: Choice | None, command: Any = None) -> str:
    command = command or quantize_command(plan.info, choice.types if choice else {})
    argv = command.argv(Path(plan.info.path.name), Path(f"{plan.recipe.name}.gguf"), Path(TYPES_FILE))
    return " ".join(argv)
