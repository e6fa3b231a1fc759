"""``fakequant recipe NAME``: from measured cells to a real mixed model that passes its own suite, set beside
llama.cpp's stock mixes made with and without an importance matrix.

1. the three slices of text (:mod:`fakequant.recipe.slices`): calibration, selection, evaluation;
2. the importance matrix of the model on the calibration slice (``imatrix = true``, :mod:`fakequant.recipe.imatrix`),
   used by every cell, every recipe model and one variant of each stock mix;
3. every (group, format) cell's excess mean KLD over its placebo on the selection slice (:mod:`.measure`, cached);
4. the assignment of least predicted loss within the recipe's budget, and within each stock mix's file size
   (:func:`fakequant.recipe.plan.choose`, an exact integer program), each built once by the candidate builder
   (:mod:`fakequant.recipe.build`);
5. the stock mixes written by ``llama-quantize``, plain and with the same importance matrix (:mod:`.stock`);
6. every model scored against the original in one process on the evaluation slice (one base reference, the same
   tokens for all), with 95% intervals over chunks; the recipe's models, and the plain stock mixes as the control,
   also on the selection slice: the selection bias (:mod:`.bias`) and the additivity check (each recipe model's
   measured KLD on the selection chunks against its prediction from the cells measured there);
7. the decision: the assignment chosen within the recipe's own budget goes through the suite like any experiment
   (``pytest --recipe NAME -k recipe_NAME``: must-pass, perplexity, conversations, speed; :mod:`.decision`); after a
   STOP or INCONCLUSIVE that assignment is excluded (a no-good cut) and the next best goes, up to ``max_tries``.

The prediction is the largest placebo floor among the changed groups plus the sum of the chosen cells' excess: the
floor is what any change at that position costs (activation re-quantization flips, shared, not additive), the excess
is each format's own part. Its interval combines the cells' half-widths in quadrature, an approximation: the cells
were measured on the same chunks, so their errors are correlated.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fakequant.errors import FakequantError, RecipeError
from fakequant.i18n import msg
from fakequant.recipe.bias import selection_bias
from fakequant.recipe.build import build_mix, mix_recipe
from fakequant.recipe.command import quantize_command
from fakequant.recipe.decision import Runner, said, suite_decision
from fakequant.recipe.experiment import experiment_name, record_pick
from fakequant.recipe.groups import KEEP
from fakequant.recipe.imatrix import Imatrix
from fakequant.recipe.measure import CellCost, measure_cells
from fakequant.recipe.mixes import IMATRIX_MIXES, STOCK_MIXES
from fakequant.recipe.plan import MIB, Choice, Plan, cell_key, choose, plan_recipe
from fakequant.recipe.size import bits_per_weight
from fakequant.recipe.slices import Slices, recipe_slices, reference
from fakequant.recipe.stock import stock_mix
from fakequant.runtime.chunkstats import chunk_interval
from fakequant.runtime.llama import Model, load_model
from fakequant.runtime.paired import BaseReference, compare
from fakequant.store.cache import atomic_output
from fakequant.suite import rules
from fakequant.suite.criteria.types import MixRecipe
from fakequant.suite.vocab import Decision

TYPES_FILE = "tensor_types.txt"
IMATRIX_FILE = "imatrix.gguf"  # the importance matrix, beside the report: the emitted command reads it
PASSING = (str(Decision.GO), str(Decision.CAUTION))


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


def _score(ref: BaseReference, path: Path, recipe: MixRecipe) -> dict[str, Any]:
    with load_model(path, recipe.settings) as model:
        result = compare(ref, model)
    comparison = result.to_json()
    kld = chunk_interval(result.per_chunk["kld_mean"])
    ln = rules.ln_ppl_interval(comparison)
    return {"kld_mean": float(result.kld_mean), "kld_mean_ci": kld.ci(), "ln_ppl_ratio": float(result.ln_ppl_ratio),
            "ln_ppl_ratio_ci": None if ln.low is None else [ln.low, ln.high],
            "same_top_p": float(result.same_top_p), "per_chunk_kld": list(result.per_chunk["kld_mean"])}


class _Scorer:
    """Scores models on the evaluation slice and, where the selection bias is asked for, the selection slice; a
    model several budgets choose is built and scored once."""

    def __init__(self, recipe: MixRecipe, base: Model, slices: Slices, selection: Callable[[], BaseReference],
                 log: Callable[[str], None]):
        self.recipe, self.slices, self.selection, self.log = recipe, slices, selection, log
        self.evaluation = reference(base, slices.evaluation, slices, log=log)
        self.seen: dict[tuple[Path, bool], tuple[str, dict[str, Any]]] = {}

    def __call__(self, name: str, path: Path, *, bias: bool) -> tuple[dict[str, Any], str | None]:
        """The scores of the model at ``path`` and the name it was first scored under (None: this call's)."""
        if (path, bias) in self.seen:
            first, scores = self.seen[(path, bias)]
            return scores, first
        self.log(f"scoring {name}")
        scores = _score(self.evaluation, path, self.recipe)
        if bias:
            on_selection = _score(self.selection(), path, self.recipe)
            scores["selection"] = {k: on_selection[k] for k in ("kld_mean", "kld_mean_ci", "ln_ppl_ratio")}
            scores["bias"] = selection_bias(on_selection["per_chunk_kld"], scores["per_chunk_kld"])
        self.seen[(path, bias)] = (name, scores)
        return scores, None


def run_recipe(recipe: MixRecipe, out_dir: Path, *, stock: Sequence[str] = STOCK_MIXES,
               log: Callable[[str], None] = print, run_suite: bool = True, criteria_path: Path | None = None,
               report_dir: Path | None = None, runner: Runner | None = None) -> dict[str, Any]:
    """Slice, calibrate, measure, solve, build, score and report ``recipe``; with ``run_suite``, the chosen mixed
    model then goes through the suite (``criteria_path``: the file ``recipe`` was read from; ``report_dir``: where
    the suite writes experiments' reports), the next best after each STOP or INCONCLUSIVE, and the decisions go into
    the results. Returns the results :mod:`fakequant.report.recipe` writes (also into ``out_dir``)."""
    from fakequant.report.recipe import write_recipe_report

    if run_suite and (criteria_path is None or report_dir is None):
        raise ValueError("run_recipe: running the suite needs criteria_path and report_dir")
    start = time.perf_counter()
    slices = recipe_slices(recipe)
    imatrix, imatrix_s = None, 0.0
    if recipe.imatrix:
        from fakequant.recipe.imatrix import compute_imatrix

        assert slices.calibration is not None
        imatrix = compute_imatrix(recipe.model, recipe.corpus, chunks=slices.calibration.chunks,
                                  settings=recipe.settings, log=log)
        imatrix_s = time.perf_counter() - start
    plan = plan_recipe(recipe, imatrix=imatrix)
    with load_model(recipe.model, recipe.settings) as base:
        refs: list[BaseReference] = []

        def selection_ref() -> BaseReference:
            if not refs:
                refs.append(reference(base, slices.selection, slices, log=log))
            return refs[0]

        measured = measure_cells(recipe, plan.groups, selection_ref, slices.selection, imatrix=imatrix, log=log)
        costs = {cell_key(g, f): c.cost for (g, f), c in measured.cells.items()}
        scoring = time.perf_counter()
        score = _Scorer(recipe, base, slices, selection_ref, log)
        models, sizes = _stock_models(recipe, stock, imatrix, score, log)

        def recipe_row(name: str, vs: str | None, target: Plan, choice: Choice) -> dict[str, Any]:
            row: dict[str, Any] = {"name": name, "kind": "recipe", "vs": vs, "budget_bytes": target.limit}
            if not choice.formats:  # every group kept: the model is the original
                return {**row, "file_bytes": choice.file_bytes, "bpw": choice.bpw, "assignment": choice.assignment,
                        "note": "every group keeps its type: the original model", "kld_mean": 0.0,
                        "kld_mean_ci": [0.0, 0.0], "ln_ppl_ratio": 0.0, "same_top_p": 1.0}
            built = build_mix(recipe.model, choice.formats, imatrix=imatrix)
            if built.output_bytes != choice.file_bytes:  # the plan's accounting and the builder disagree
                raise RecipeError(f"{built.output}: {built.output_bytes} bytes, the plan predicted "
                                  f"{choice.file_bytes}")
            scored, first = score(name, built.output, bias=True)
            predicted = predict(choice, measured.cells)
            return {**row, **({"note": f"the same model as {first}"} if first else {}),
                    "file_bytes": built.output_bytes, "bpw": choice.bpw, "assignment": choice.assignment,
                    "predicted": predicted, "additivity": additivity(predicted, scored["selection"]),
                    "path": str(built.output), "command": _command_text(target, choice), **scored}

        own = f"recipe ({plan.budget})"
        tries, chosen = _tries(recipe, plan, costs, recipe_row, own, imatrix, run_suite=run_suite,
                               criteria_path=criteria_path, report_dir=report_dir, out_dir=out_dir, runner=runner,
                               log=log)
        models += [t.pop("model") for t in tries if "model" in t]
        for mix, size in sizes.items():
            target = Plan(replace(recipe, budget_mib=size / MIB, budget_bpw=None), plan.info, plan.groups, imatrix)
            name = f"recipe @ {mix} size"
            try:
                models.append(recipe_row(name, mix, target, choose(target, costs)))
            except RecipeError as err:
                models.append({"name": name, "kind": "recipe", "vs": mix, "budget_bytes": target.limit,
                               "note": f"infeasible: {err}"})
    scoring_s = time.perf_counter() - scoring - sum(t.get("wall_s", 0.0) for t in tries)
    _paired_with_stock(models)
    chosen_row = next((m for m in models if m["name"] == chosen), None)
    chosen_types = {} if chosen_row is None else _types(plan, chosen_row.get("assignment", {}))
    command = quantize_command(plan.info, chosen_types, imatrix=None if imatrix is None else Path(IMATRIX_FILE))
    passed = next((t["attempt"] for t in tries if t.get("decision") in PASSING), None)
    results = {
        "recipe": recipe.name, "description": recipe.description, "model": str(recipe.model),
        "model_bytes": plan.info.path.stat().st_size, "corpus": str(recipe.corpus),
        "n_ctx": recipe.settings.n_ctx, "budget": plan.budget, "slices": slices.to_json(),
        "imatrix": None if imatrix is None else _imatrix_json(imatrix),
        "cells": [c.to_json() | {"bytes": _group(plan, g).nbytes(f)} for (g, f), c in measured.cells.items()],
        "models": models, "chosen": chosen, "passed": passed, "max_tries": recipe.max_tries, "tries": tries,
        "command": _command_text(plan, None, command), "tensor_types": command.tensor_types(),
        # the try that passed, else the first one decided (the model the tables lead with)
        "decision": next((t for t in tries if t.get("attempt") == passed), None)
        or next((t for t in tries if t.get("decision")), tries[0] if tries else {"decision": None, "reasons": []}),
        "suite_chunks": recipe.chunks,
        "timing": {"imatrix_wall_s": round(imatrix_s, 1), "cells_measured": measured.measured,
                   "cells_cached": measured.cached, "cells_wall_s": round(measured.seconds, 1),
                   "scoring_wall_s": round(scoring_s, 1),
                   "suite_wall_s": round(sum(t.get("wall_s", 0.0) for t in tries), 1),
                   "wall_s": round(time.perf_counter() - start, 1)},
    }
    write_recipe_report(results, out_dir)
    with atomic_output(out_dir / TYPES_FILE, "w") as fh:
        fh.write(command.tensor_types())
    if imatrix is not None:
        with atomic_output(out_dir / IMATRIX_FILE, "wb") as fh:
            fh.write(imatrix.path.read_bytes())
    return results


def _stock_models(recipe: MixRecipe, stock: Sequence[str], imatrix: Imatrix | None, score: _Scorer,
                  log: Callable[[str], None]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each stock mix, plain and (with an importance matrix) with it, scored on the evaluation slice (the plain
    ones also on the selection slice: the control of the selection bias); with the default list and an importance
    matrix, also the i-quant mixes that are published only with one. Returns the rows and, per mix, the smaller
    file size of its variants: the budget of the recipe set beside it."""
    models: list[dict[str, Any]] = []
    sizes: dict[str, int] = {}
    with_imatrix = [] if imatrix is None else [
        *stock, *(m for m in IMATRIX_MIXES if m not in STOCK_MIXES and tuple(stock) == STOCK_MIXES)]
    order = [*dict.fromkeys([*stock, *with_imatrix])]
    variants = [(mix, None) for mix in stock] + [(mix, imatrix) for mix in with_imatrix]
    for mix, im in sorted(variants, key=lambda v: (order.index(v[0]), v[1] is not None)):
        variant = "plain" if im is None else "imatrix"
        row: dict[str, Any] = {"name": mix if im is None else f"{mix}+imatrix", "kind": "stock", "mix": mix,
                               "variant": variant}
        try:
            m = stock_mix(recipe.model, mix, threads=recipe.settings.threads,
                          imatrix=None if im is None else im.path)
        except FakequantError as err:
            models.append({**row, "note": str(err)})
            continue
        size = m.path.stat().st_size
        sizes[mix] = min(size, sizes.get(mix, size))
        scored, _ = score(m.label, m.path, bias=im is None)
        models.append({**row, "name": m.label, "file_bytes": size, "bpw": _bpw(m.path), "command": m.command,
                       **scored})
    log(f"stock mixes: {sum('note' not in m for m in models)} built and scored")
    return models, sizes


def _tries(recipe: MixRecipe, plan: Plan, costs: dict[str, float], recipe_row: Callable[..., dict[str, Any]],
           own: str, imatrix: Any, *, run_suite: bool, criteria_path: Path | None, report_dir: Path | None,
           out_dir: Path, runner: Runner | None, log: Callable[[str], None]) -> tuple[list[dict[str, Any]], str]:
    """The assignments within the recipe's own budget, best first, each through the suite until one passes (GO or
    CAUTION) or ``max_tries`` are spent; returns the tries (each with its model row under ``"model"``) and the name
    of the model the report leads with: the one that passed, else the first."""
    tries: list[dict[str, Any]] = []
    tried: list[dict[str, str]] = []
    names: list[str] = []
    for attempt in range(1, recipe.max_tries + 1):
        name = own if attempt == 1 else f"{own}, try {attempt}"
        try:
            choice = choose(plan, costs, exclude=tried)
        except RecipeError as err:
            tries.append({"attempt": attempt, "name": None, "decision": None,
                          **said([msg("recipe.no_choice", error=str(err))])})
            break
        row = recipe_row(name, None, plan, choice)
        names.append(name)
        entry: dict[str, Any] = {"attempt": attempt, "name": name, "assignment": choice.assignment, "model": row}
        tries.append(entry)
        if not choice.formats or not run_suite:
            entry |= {"decision": None, **said([msg("recipe.nothing_to_test") if not choice.formats
                                                else msg("recipe.suite_not_run")])}
            break
        assert criteria_path is not None and report_dir is not None
        candidate = mix_recipe(choice.formats, imatrix)
        record_pick(recipe, choice, candidate, attempt)
        log(f"try {attempt} of {recipe.max_tries}: {name} through the suite")
        suite_start = time.perf_counter()
        decision = suite_decision(recipe.name, criteria_path=criteria_path, report_dir=report_dir,
                                  out_dir=out_dir, expected=candidate, runner=runner, log=log)
        entry |= decision | {"wall_s": round(time.perf_counter() - suite_start, 1)}
        kept = Path(report_dir) / experiment_name(recipe.name)
        if kept.is_dir():  # the next try overwrites the suite's report: each try keeps its own copy
            shutil.copytree(kept, out_dir / f"try-{attempt}", dirs_exist_ok=True)
            if (out_dir / f"try-{attempt}" / "summary.md").is_file():
                entry["report"] = str(out_dir / f"try-{attempt}" / "summary.md")
        log(f"try {attempt}: {decision['decision']}")
        if decision["decision"] in PASSING:
            return tries, name
        tried.append(choice.assignment)
    return tries, names[0] if names else own


def _imatrix_json(imatrix: Imatrix) -> dict[str, Any]:
    return {"path": str(imatrix.path), "sha256": imatrix.sha256, "chunks": imatrix.chunks,
            "tokens": list(imatrix.tokens), "command": imatrix.command}


def _paired_with_stock(models: list[dict[str, Any]]) -> None:
    """Each recipe row at a stock mix's size gets ``vs_stock``: per variant of that mix, the recipe's mean KLD minus
    the mix's, paired per chunk (the same evaluation chunks), with its 95% interval."""
    for row in models:
        if row.get("kind") != "recipe" or not row.get("vs") or "per_chunk_kld" not in row:
            continue
        row["vs_stock"] = []
        for other in models:
            if other.get("kind") == "stock" and other.get("mix") == row["vs"] and "per_chunk_kld" in other:
                diff = chunk_interval([a - b for a, b in zip(row["per_chunk_kld"], other["per_chunk_kld"],
                                                              strict=True)])
                row["vs_stock"].append({"name": other["name"], "kld_mean": other["kld_mean"],
                                        "difference": diff.mean, "difference_ci": diff.ci()})


def _types(plan: Plan, assignment: dict[str, str]) -> dict[str, str]:
    types = {n: t for g in plan.groups for n, t in g.types(assignment.get(g.name, KEEP)).items()}
    return {t.name: types[t.name] for t in plan.info.tensors if t.name in types}


def _group(plan: Plan, name: str) -> Any:
    return next(g for g in plan.groups if g.name == name)


def _bpw(path: Path) -> float:
    from fakequant.gguf.check import read_layout

    return bits_per_weight(read_layout(path), {})


def _command_text(plan: Plan, choice: Choice | None, command: Any = None) -> str:
    command = command or quantize_command(plan.info, choice.types if choice else {},
                                          imatrix=None if plan.imatrix is None else Path(IMATRIX_FILE))
    argv = command.argv(Path(plan.info.path.name), Path(f"{plan.recipe.name}.gguf"), Path(TYPES_FILE))
    return " ".join(argv)
