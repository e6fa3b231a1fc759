"""Sweeps: run the cells of a ``[sweeps.<name>]`` table through pytest, cache each cell, draw the sensitivity map.

A sweep cell is an ordinary experiment (named ``sweep_<name>_L05_ffn_norm_fp8_e4m3`` by :mod:`fakequant.suite.criteria`)
with its own tests and report. Cells are collected only when asked for (``pytest --sweep NAME``), so a plain
``pytest`` run never pays for them. ``fakequant sweep NAME -j N``:

1. reads criteria.toml and looks every cell up in the cell cache (``$FAKEQUANT_HOME/cells/<key>.json``), keyed by
   model sha256, corpus sha256, runtime settings, recipe, chunks, thresholds, checks and llama.cpp version;
2. runs only the uncached cells as ``python -m pytest --sweep NAME -k '<cells>' -n N --dist loadgroup`` (same
   Python), each worker with ``cores // N`` threads, so that the cores are not oversubscribed;
3. reads each new cell's recorded outcomes back (:func:`fakequant.suite.outcomes.load_experiment`), decides it
   (:func:`fakequant.suite.verdict.decide`), caches it, and writes ``reports/sweeps/NAME/sensitivity.{json,md,png}``.

The thread count is left out of the cache key on purpose: llama.cpp's CPU kernels split work by rows, and logits with
1 and 2 threads were measured bitwise identical on the default model, so the map is the same whatever N.

:func:`listing` is what ``fakequant list [--json]`` prints: every experiment and every sweep's cells, and a CI
job matrix.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fakequant.errors import CriteriaError
from fakequant.i18n import msg
from fakequant.report.sensitivity import DECISIONS, ERROR, CellResult, SensitivityMap, write
from fakequant.runtime.backend import backend
from fakequant.store.cache import cache_dir, file_sha256, locked, stable_hash, write_json
from fakequant.store.tools import llama_cpp_build
from fakequant.suite.criteria import Criteria, Experiment, load_criteria
from fakequant.suite.session import experiment_record

# bump when what a cell records changes (2: only cells with every declared check measured; 3: the placebo's floor
# and the excess over it, which earlier entries lack; 4: only cells with an outcome for every expected check id, where
# earlier entries needed one per category and may hold a cell whose check crashed)
CELL_CACHE_VERSION = 4


def threads_per_worker(jobs: int, cores: int | None = None) -> int:
    """Threads for each of ``jobs`` workers so that together they use the cores without oversubscribing them."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


# ------------------------------------------------------------------------------------------------------ cell cache

def cell_key(exp: Experiment) -> str:
    """The cache key of one cell: everything its numbers and decision depend on, and nothing else."""
    settings = exp.settings.to_json()
    settings.pop("n_threads", None)  # measured not to change results (module docstring)
    return stable_hash({
        "v": CELL_CACHE_VERSION,
        "model": file_sha256(exp.model),
        "corpus": file_sha256(exp.corpus),
        "settings": settings,
        "recipe": exp.recipe.to_json(),
        "chunks": exp.chunks,
        "thresholds": exp.thresholds.to_json(),
        "checks": list(exp.checks),
        "llama_cpp": llama_cpp_build(),
        "backend": backend(),  # a GPU build computes other numbers, even with n_gpu_layers = 0
    })


def cell_path(key: str) -> Path:
    return cache_dir("cells") / f"{key}.json"


def load_cached(key: str) -> CellResult | None:
    path = cell_path(key)
    if not path.exists():
        return None
    try:
        return CellResult.from_json({**json.loads(path.read_text()), "cached": True})
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError):
        return None  # a damaged entry is measured again and overwritten


def store_cached(key: str, result: CellResult) -> None:
    path = cell_path(key)
    with locked(path):
        write_json(path, {**result.to_json(), "cached": False})


# ------------------------------------------------------------------------------------------------ reading results


def cell_coordinates(exp: Experiment) -> tuple[int, str, str]:
    """(layer, kind, format) of a sweep cell, from its recipe (never parsed out of its name)."""
    sel = exp.recipe.selection
    return int(sel.layers), sel.kinds[0], exp.recipe.format


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def result_from_data(exp: Experiment, data: Any) -> CellResult:
    """One cell's result from what its tests recorded (an :class:`~fakequant.suite.outcomes.ExperimentData`)."""
    from fakequant.suite.verdict import decide

    layer, kind, fmt = cell_coordinates(exp)
    if not data.outcomes:
        return CellResult(exp.name, layer, kind, fmt, ERROR, msg("sweep.no_outcome"))
    verdict = decide(data)
    ppl = _dict(data.artifacts.get("perplexity_comparison"))
    placebo, excess = _dict(ppl.get("placebo")), _dict(ppl.get("excess"))
    return CellResult(
        name=exp.name, layer=layer, kind=kind, format=fmt, decision=str(verdict.decision),
        headline=verdict.headline,
        ln_ppl_ratio=_float(ppl.get("ln_ppl_ratio")), ln_ppl_ratio_se=_float(ppl.get("ln_ppl_ratio_se")),
        kld_mean=_float(ppl.get("kld_mean")), same_top_p=_float(ppl.get("same_top_p")),
        chunks=int(ppl["chunks"]) if isinstance(ppl.get("chunks"), int) else exp.chunks,
        placebo_kld_mean=_float(placebo.get("kld_mean")), excess_kld_mean=_float(excess.get("kld_mean")),
        excess_kld_mean_ci=_interval(excess.get("kld_mean_ci")),
        excess_resolved=excess["kld_mean_resolved"] if isinstance(excess.get("kld_mean_resolved"), bool) else None,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _interval(value: Any) -> tuple[float, float] | None:
    """A [low, high] pair of numbers, else None (one chunk gives no interval)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    low, high = _float(value[0]), _float(value[1])
    return None if low is None or high is None else (low, high)


def cacheable(result: CellResult, data: Any) -> bool:
    """Only complete measurements are cached: a decision reached, no check that could not run, and an outcome for
    every check id the cell expects (:func:`~fakequant.suite.verdict.missing_checks`, the rule the decision uses: a
    no-op candidate skips the quality checks, and that is complete too). ``data`` was recorded for this very cell
    (the callers check it with :func:`_matches`), so its "experiment" artifact says which checks it expects."""
    from fakequant.suite.verdict import missing_checks
    from fakequant.suite.vocab import Status

    return (result.decision in DECISIONS and not any(o.status == Status.ERROR for o in data.outcomes)
            and missing_checks(data) == [])


# ------------------------------------------------------------------------------------------------------ the sweep


@dataclass
class SweepRun:
    smap: SensitivityMap
    paths: dict[str, Path]
    pytest_rc: int | None  # None: every cell came from the cache, pytest was not started
    command: list[str]

    @property
    def complete(self) -> bool:
        return all(c.decision in DECISIONS for c in self.smap.cells)


def sweep_cells(criteria: Criteria, name: str) -> tuple[list[Experiment], dict[str, CriteriaError]]:
    """The valid cells of sweep ``name`` and the errors of the invalid ones; CriteriaError for an unknown sweep."""
    if f"sweep_{name}" in criteria.errors and name not in criteria.sweeps:
        raise criteria.errors[f"sweep_{name}"]
    if name not in criteria.sweeps:
        known = list(criteria.sweeps)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; defined: {', '.join(known) or 'none'}"
        raise CriteriaError(f"{criteria.path}: sweeps.{name}: no such sweep{hint}")
    cells = criteria.sweeps[name]
    return ([criteria.experiments[c] for c in cells if c in criteria.experiments],
            {c: criteria.errors[c] for c in cells if c in criteria.errors})


def project_root(criteria_path: Path) -> Path:
    """Where pytest runs: the folder of criteria.toml when it holds the suite, else the current one."""
    folder = Path(criteria_path).resolve().parent
    return folder if (folder / "tests" / "acceptance").is_dir() else Path.cwd()


def pytest_command(name: str, cells: Sequence[str], *, criteria_path: Path, report_dir: Path, jobs: int,
                   threads: int, root: Path) -> list[str]:
    out_dir = Path(report_dir) / "sweeps" / name
    cmd = [sys.executable, "-m", "pytest", "--sweep", name, "-k", " or ".join(cells),
           # `--opt=PATH`, one word: pytest chooses its root folder from the path-like words of the command line
           # before it knows these options, and a separate path outside the project would make it miss pytest.ini
           f"--criteria={Path(criteria_path).resolve()}", f"--report-dir={Path(report_dir).resolve()}",
           f"--threads={threads}", "-p", "no:cacheprovider",
           # keep the main run's JUnit/HTML reports: the sweep writes its own beside its map
           f"--junitxml={(out_dir / 'junit.xml').resolve()}", f"--html={(out_dir / 'report.html').resolve()}"]
    if jobs > 1:
        cmd += ["-n", str(jobs), "--dist", "loadgroup"]
    if (root / "tests" / "acceptance").is_dir():
        cmd.append("tests/acceptance")
    return cmd


def _run(cmd: list[str], cwd: Path) -> int:
    return subprocess.run(cmd, cwd=cwd).returncode


def run_sweep(criteria_path: str | Path, name: str, *, jobs: int = 1, report_dir: str | Path | None = None,
              runner: Callable[[list[str], Path], int] | None = None, gather: Sequence[str] = (),
              log: Callable[[str], None] = print) -> SweepRun:
    """Run sweep ``name``'s cells that neither the cell cache nor ``report_dir`` holds, then draw the map. With
    ``gather`` (report directories of other hosts, :mod:`fakequant.suite.gather`) their cells are copied in first and
    nothing is measured: a cell no host recorded is an error in the map."""
    criteria_path = Path(criteria_path)
    if jobs < 1:
        raise CriteriaError(f"--jobs: must be >= 1, got {jobs}")
    threads = threads_per_worker(jobs)
    criteria = load_criteria(criteria_path, report_dir=report_dir, threads=threads)
    report_dir = Path(criteria.report_dir)
    cells, invalid = sweep_cells(criteria, name)

    if gather:
        from fakequant.suite.gather import gather_cells

        gather_cells(report_dir, gather, cells, recorded_result, log)
    keys = {exp.name: cell_key(exp) for exp in cells}
    results: dict[str, CellResult] = {}
    adopted = 0
    for exp in cells:
        hit = load_cached(keys[exp.name])
        if hit is not None:
            results[exp.name] = _renamed(hit, exp)
        elif (recorded := recorded_result(report_dir, exp)) is not None:
            # measured by a pytest run of its own (another host, CI): take it, and cache it
            store_cached(keys[exp.name], recorded)
            results[exp.name] = replace(recorded, cached=True)
            adopted += 1
    todo = [exp for exp in cells if exp.name not in results]
    workers = max(1, min(jobs, len(todo)))
    log(f"sweep {name}: {len(cells) + len(invalid)} cells, {len(results) - adopted} cached, {adopted} taken from "
        f"{report_dir}, " + (f"{len(todo)} missing (assembling only, nothing is measured)" if gather else
                             f"{len(todo)} to run ({workers} worker(s) × {threads_per_worker(workers)} thread(s))"))

    start = time.perf_counter()
    rc: int | None = None
    cmd: list[str] = []
    if todo and gather:
        for exp in todo:  # assembling only: measuring here would hide a cell the hosts lost
            layer, kind, fmt = cell_coordinates(exp)
            results[exp.name] = CellResult(exp.name, layer, kind, fmt, ERROR,
                                           msg("sweep.not_gathered", hosts=[str(g) for g in gather]))
    elif todo:
        root = project_root(criteria_path)
        cmd = pytest_command(name, [e.name for e in todo], criteria_path=criteria_path, report_dir=report_dir,
                             jobs=workers, threads=threads_per_worker(workers), root=root)
        log("$ " + shlex.join(cmd))
        rc = (runner or _run)(cmd, root)
        from fakequant.suite.outcomes import load_experiment

        for exp in todo:
            data = load_experiment(report_dir, exp.name)
            if data.outcomes and not _matches(data, exp):
                # pytest did not get to this cell, and what lies there was recorded for another definition
                layer, kind, fmt = cell_coordinates(exp)
                results[exp.name] = CellResult(exp.name, layer, kind, fmt, ERROR, msg("sweep.stale"))
                continue
            result = result_from_data(exp, data)
            if cacheable(result, data):
                store_cached(keys[exp.name], result)
            results[exp.name] = result
    wall = time.perf_counter() - start

    for cname, err in invalid.items():
        results[cname] = _invalid_result(cname, err)
    order = [*(e.name for e in cells), *invalid]
    first = cells[0] if cells else None
    meta: dict[str, Any] = {
        "criteria": str(criteria_path),
        "timing": {"wall_s": round(wall, 2), "cells_run": 0 if gather else len(todo),
                   "cells_cached": len(cells) - len(todo) - adopted,
                   "cells_from_reports": adopted,
                   "jobs": workers, "threads": threads_per_worker(workers)},
    }
    if first is not None:
        settings = first.settings.to_json()
        settings.pop("n_threads", None)
        meta |= {"model": str(first.model), "corpus": str(first.corpus), "chunks": first.chunks,
                 "settings": json.dumps(settings, sort_keys=True)}
    smap = SensitivityMap(sweep=name, cells=[results[n] for n in order if n in results], meta=meta)
    paths = write(smap, report_dir / "sweeps" / name, criteria.report_lang)
    return SweepRun(smap=smap, paths=paths, pytest_rc=rc, command=cmd)


def _renamed(hit: CellResult, exp: Experiment) -> CellResult:
    """A cached result under this sweep's cell name (another sweep may have measured the same recipe)."""
    return replace(hit, name=exp.name, cached=True)


# what a recorded result was measured on, by content: another host keeps the model elsewhere, and a file of the same
# name may hold another model
_MEASURED_ON = ("model_sha256", "corpus_sha256", "llama_cpp_python", "backend")


def _comparable(experiment: dict[str, Any]) -> dict[str, Any]:
    """What of an "experiment" artifact must match for its recorded results to stand for this cell: not the paths
    nor the thread count (it does not change results)."""
    settings = dict(experiment.get("settings") or {})
    settings.pop("n_threads", None)
    return {"recipe": experiment.get("recipe"), "settings": settings, "chunks": experiment.get("chunks"),
            "thresholds": experiment.get("thresholds"), "checks": list(experiment.get("checks") or []),
            **{key: experiment.get(key) for key in _MEASURED_ON}}


def _matches(data: Any, exp: Experiment) -> bool:
    """The recorded "experiment" artifact is this cell's, measured on the same model, corpus and llama.cpp; one
    without those (an older run's) matches nothing."""
    recorded = data.artifacts.get("experiment")
    return (isinstance(recorded, dict) and all(isinstance(recorded.get(k), str) and recorded[k] for k in _MEASURED_ON)
            and _comparable(recorded) == _comparable(experiment_record(exp)))


def recorded_result(report_dir: Path, exp: Experiment) -> CellResult | None:
    """The complete result a pytest run already recorded for this very cell under ``report_dir``, else None."""
    from fakequant.suite.outcomes import load_experiment

    if not (Path(report_dir) / exp.name / ".data").is_dir():
        return None
    data = load_experiment(report_dir, exp.name)
    if not data.outcomes or not _matches(data, exp):
        return None
    result = result_from_data(exp, data)
    return result if cacheable(result, data) else None


def _invalid_result(cname: str, err: CriteriaError) -> CellResult:
    # criteria names cells sweep_<name>_L<layer>_<kind>_<format>; an invalid one has no recipe to read them from
    parts = cname.split("_L", 1)[-1].split("_", 1)
    layer = int(parts[0]) if parts[0].isdigit() else -1
    rest = parts[1] if len(parts) > 1 else "?"
    return CellResult(cname, layer, rest, "?", ERROR, str(err))


# -------------------------------------------------------------------------------------------------------- listing


def listing(criteria: Criteria) -> dict[str, Any]:
    """Every experiment and sweep cell, and a job matrix of the experiments (sweep cells are run per sweep)."""
    experiments = []
    for name in criteria.names:
        exp = criteria.experiments.get(name)
        err = criteria.errors.get(name)
        sweep = exp.sweep if exp is not None else next((s for s, cells in criteria.sweeps.items() if name in cells),
                                                         None)
        experiments.append({
            "name": name,
            "sweep": sweep,
            "source": exp.source if exp is not None else None,
            "description": exp.description if exp is not None else None,
            "error": str(err) if err is not None else None,
            "pytest": (["--sweep", sweep, "-k", name] if sweep else ["-m", name]),
        })
    plain = [e["name"] for e in experiments if e["sweep"] is None]
    return {
        "criteria": str(criteria.path),
        "experiments": experiments,
        "sweeps": {s: {"cells": list(cells), "pytest": ["--sweep", s, "-m", f"sweep_{s}"]}
                   for s, cells in criteria.sweeps.items()},
        # GitHub Actions: strategy.matrix: ${{ fromJSON(needs.list.outputs.matrix) }}
        "matrix": {"experiment": plain},
    }
