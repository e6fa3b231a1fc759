"""One process's state of an acceptance run, without pytest: the criteria, each experiment's candidate, the loaded
models, the base model's perplexity references and the sha256 of the originals. :mod:`fakequant.suite.plugin` keeps
one :class:`Suite` per process and hands it to the tests as the ``fq_suite`` fixture.
"""

from __future__ import annotations

import datetime
import difflib
import importlib.metadata
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakequant.errors import CriteriaError, FakequantError
from fakequant.runtime.backend import backend
from fakequant.store.cache import file_sha256, locked, sha256_file
from fakequant.store.tools import llama_cpp_build
from fakequant.suite.criteria import Criteria, Experiment
from fakequant.suite.outcomes import clear_experiment, data_dir, save_artifact
from fakequant.suite.vocab import CONVERSATION, TEST_ORDER, Artifact

PACKAGES = ("fakequant", "llama-cpp-python", "gguf", "numpy", "scipy", "ml_dtypes", "pytest", "pytest-benchmark",
            "pytest-xdist")  # the versions provenance records


class BadExperiment(Exception):
    """The experiment's table in criteria.toml is invalid: its tests error with the one-line message."""


class BuildFailed(Exception):
    """The recipe cannot be applied to the model: the experiment's tests fail with the one-line message."""


@dataclass
class ExperimentState:
    exp: Experiment
    started: bool = False
    build: Any = None  # quant.candidate.BuildResult
    build_error: str | None = None
    placebos: dict[int, Any] = field(default_factory=dict)  # seed → quant.candidate.BuildResult of a placebo twin


@dataclass
class Suite:
    criteria_path: Path
    criteria: Criteria | None = None
    error: str | None = None
    run_id: str = ""
    sweeps: list[str] = field(default_factory=list)  # --sweep NAME: a sweep run writes its index beside its map
    recipes: list[str] = field(default_factory=list)  # --recipe NAME: adds the experiment recipe_NAME
    states: dict[str, ExperimentState] = field(default_factory=dict)
    models: dict[tuple[str, Any], Any] = field(default_factory=dict)  # (path, settings) → runtime.Model
    refs: dict[tuple, Any] = field(default_factory=dict)  # (model, corpus, chunks, settings) → BaseReference
    original_sha: dict[str, str] = field(default_factory=dict)  # model path → sha256 at first use in this process
    start_sha: dict[str, str] = field(default_factory=dict)  # controller: model → sha256 at session start
    ran: set[str] = field(default_factory=set)  # experiments with a test report in this session (controller)
    verdicts: list[Any] = field(default_factory=list)

    @property
    def report_dir(self) -> Path:
        assert self.criteria is not None
        return Path(self.criteria.report_dir)

    @property
    def index_path(self) -> Path:
        """The run's index: ``summary.md``; a sweep run's goes beside its map, a recipe run's beside the recipe's
        report, and both leave the main one alone."""
        if self.sweeps:
            return self.report_dir / ("sweeps/" + "+".join(sorted(set(self.sweeps)))) / "summary.md"
        if self.recipes:
            return self.report_dir / ("recipes/" + "+".join(sorted(set(self.recipes)))) / "summary.md"
        return self.report_dir / "summary.md"

    @property
    def ran_names(self) -> list[str]:
        """The experiments with a test report in this session, in criteria.toml's order."""
        return [n for n in self.criteria.names if n in self.ran] if self.criteria else []

    def markers(self) -> dict[str, str]:
        """One marker per experiment (``-m layer0``) and per sweep (``-m sweep_<name>``)."""
        assert self.criteria is not None
        source = self.criteria_path.name
        markers = {n: f"experiment {n} from {source}" for n in self.criteria.names}
        markers.update({f"sweep_{s}": f"every cell of sweep {s} from {source}" for s in self.criteria.sweeps})
        return markers

    def add_recipes(self) -> None:
        """``--recipe NAME``: the experiment ``recipe_NAME`` (:mod:`fakequant.recipe.experiment`), or, when the recipe
        is invalid or its choice cannot be made (a cell not measured yet, an unmet budget), that experiment's
        configuration error, as an invalid experiment has. ValueError for an unknown recipe or a name already taken."""
        crit = self.criteria
        assert crit is not None
        if not self.recipes:
            return
        from fakequant.recipe.experiment import experiment_name, recipe_experiment

        for rname in dict.fromkeys(self.recipes):
            if rname not in crit.recipes and rname not in crit.recipe_errors:
                close = difflib.get_close_matches(rname, [*crit.recipes, *crit.recipe_errors], n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(f"--recipe {rname}: no [recipes.{rname}] in {crit.path} ({hint}defined: "
                                 f"{', '.join([*crit.recipes, *crit.recipe_errors]) or 'none'})")
            name = experiment_name(rname)
            # `-k recipe_NAME` must select this experiment's tests and nothing else
            taken = [n for n in crit.names if name.lower() in n.lower()]
            if taken:
                raise ValueError(f"--recipe {rname}: experiment {taken[0]!r} in {crit.path} contains {name!r}, so "
                                 f"`pytest -k {name}` would run both; rename it")
            if rname in crit.recipe_errors:
                crit.errors[name] = crit.recipe_errors[rname]
                continue
            recipe = crit.recipes[rname]
            try:
                crit.experiments[name] = recipe_experiment(recipe)
            except FakequantError as err:
                message = str(err) if str(err).startswith(recipe.source) else f"{recipe.source}: {err}"
                crit.errors[name] = CriteriaError(f"{crit.path}: {message}")

    def collected(self, only: Callable[[Criteria, str], bool] | None = None) -> list[str]:
        """The experiments a test is parametrized by: those ``only`` admits; sweep cells only when their sweep is
        asked for (``--sweep NAME``), since a plain run must not pay for them. An unknown sweep: ValueError."""
        crit = self.criteria
        assert crit is not None
        unknown = [s for s in self.sweeps if s not in crit.sweeps and f"sweep_{s}" not in crit.errors]
        if unknown:
            raise ValueError(f"--sweep {unknown[0]}: no [sweeps.{unknown[0]}] in {crit.path} "
                             f"(defined: {', '.join(crit.sweeps) or 'none'})")

        def wanted(name: str) -> bool:
            owner = next((s for s, cells in crit.sweeps.items() if name in cells), None)
            return (only is None or only(crit, name)) and (owner is None or owner in self.sweeps)

        return [n for n in crit.names if wanted(n)]

    def prompt_cells(self, names: list[str]) -> list[tuple[str, str]]:
        """(experiment, prompt id) for the conversation test: every prompt of the experiments that check
        conversations; an experiment with a configuration error gets one cell, where its error shows."""
        assert self.criteria is not None
        cells: list[tuple[str, str]] = []
        for name in names:
            exp = self.criteria.experiments.get(name)
            if exp is None:
                cells.append((name, "config"))
            elif CONVERSATION in exp.checks:
                cells += [(name, p.id) for p in exp.prompts]
        return cells

    def order(self, experiment: str, test: str) -> tuple[int, int]:
        """Where a test runs: experiment by experiment in criteria.toml's order (each candidate built and loaded
        once), and within one experiment in TEST_ORDER."""
        assert self.criteria is not None
        names = self.criteria.names
        rank = names.index(experiment) if experiment in names else len(names)
        return rank, TEST_ORDER.index(test) if test in TEST_ORDER else len(TEST_ORDER) - 2

    # --- experiments

    def experiment(self, name: str) -> ExperimentState:
        assert self.criteria is not None
        if name in self.criteria.errors:
            raise BadExperiment(str(self.criteria.errors[name]))
        state = self.states.get(name)
        if state is None:
            state = self.states[name] = ExperimentState(self.criteria.experiments[name])
        if not state.started:
            state.started = True
            self._start(state)
        return state

    def _start(self, state: ExperimentState) -> None:
        """Once per experiment and process: forget old results, record the experiment and its provenance."""
        exp = state.exp
        marker = data_dir(self.report_dir, exp.name) / "run_id"
        with locked(marker):
            if not marker.exists() or marker.read_text() != self.run_id:
                clear_experiment(self.report_dir, exp.name)
                marker.write_text(self.run_id)
        key = str(exp.model)
        if key not in self.original_sha:  # hash once per process; the controller hashed it at session start
            self.original_sha[key] = self.start_sha.get(key) or sha256_file(exp.model)
        save_artifact(self.report_dir, exp.name, Artifact.EXPERIMENT, experiment_record(exp, self.original_sha[key]))
        save_artifact(self.report_dir, exp.name, Artifact.PROVENANCE, self.provenance(exp))

    def provenance(self, exp: Experiment) -> dict[str, Any]:
        from fakequant.runtime import llama as runtime

        packages = {}
        for pkg in PACKAGES:
            try:
                packages[pkg] = importlib.metadata.version(pkg)
            except importlib.metadata.PackageNotFoundError:
                packages[pkg] = None
        return {
            "model_path": str(exp.model), "model_sha256": self.original_sha[str(exp.model)],
            "corpus_path": str(exp.corpus), "corpus_sha256": file_sha256(exp.corpus),
            "criteria_path": str(self.criteria_path.resolve()), "packages": packages,
            "llama_build": runtime.build_info(), "settings": exp.settings.to_json(),
            "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "os": platform.platform(),
                        "python": platform.python_version()},
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }

    def build(self, name: str) -> Any:
        """The experiment's candidate (engine cache: built once across processes and runs)."""
        from fakequant.quant.candidate import build_candidate

        state = self.experiment(name)
        if state.build_error is not None:
            raise BuildFailed(state.build_error)
        if state.build is None:
            try:
                state.build = build_candidate(state.exp.model, state.exp.recipe)
            except FakequantError as err:
                state.build_error = f"{self.criteria_path}: {state.exp.source}: {err}"
                raise BuildFailed(state.build_error) from None
            save_artifact(self.report_dir, name, Artifact.NUMERICAL, state.build.to_json())
        return state.build

    def placebo(self, name: str, seed: int = 0) -> Any:
        """A placebo twin of the experiment's candidate: the same tensors nudged by one ulp in their own encoding,
        in directions ``seed`` picks (candidate cache: one per model, tensor selection and seed, shared by every
        format of that selection). The perplexity pass scores seed 0; the conversation battery seeds 0 … K-1."""
        from fakequant.quant.candidate import build_candidate
        from fakequant.quant.placebo import twin_of

        state = self.experiment(name)
        if seed not in state.placebos:
            try:
                state.placebos[seed] = build_candidate(state.exp.model, twin_of(state.exp.recipe, seed=seed))
            except FakequantError as err:
                raise BuildFailed(f"{self.criteria_path}: {state.exp.source}: placebo {seed}: {err}") from None
        return state.placebos[seed]

    # --- the originals

    def hash_originals(self) -> None:
        """At session start (controller): the sha256 of every original, to prove at the end that none changed."""
        assert self.criteria is not None
        models = {str(e.model) for e in self.criteria.experiments.values()}
        self.start_sha = {m: file_sha256(Path(m)) for m in models if Path(m).is_file()}

    def changed_originals(self) -> list[str]:
        return [m for m, sha in self.start_sha.items() if sha256_file(Path(m)) != sha]

    def finish(self) -> bool:
        """At the end of the run (controller): prove the originals unchanged and write the reports of the
        experiments that ran. False when an original changed during the run."""
        names = self.ran_names
        if not names:
            return True
        changed = self.changed_originals()
        if changed:  # never expected: the engine opens originals read-only; but the user's model matters most
            self.error = f"the original model changed during the run (sha256 differs): {', '.join(changed)}"
        try:
            from fakequant import report
        except ImportError as err:  # the report package is optional for the suite itself
            self.error = f"reports not written: {err}"
            return not changed
        assert self.criteria is not None
        self.verdicts = report.finish_run(self.report_dir, names, lang=self.criteria.report_lang,
                                          index=self.index_path)
        return not changed

    # --- models

    def model(self, path: Path, settings: Any) -> Any:
        """A loaded model, shared by every test in this process; at most the baseline and two others (a candidate
        and its placebo) stay loaded (tests run experiment by experiment)."""
        from fakequant.runtime import llama as runtime

        key = (str(path), settings)
        if key not in self.models:
            originals = {str(e.model) for e in self.criteria.experiments.values()} if self.criteria else set()
            # a candidate and its placebo are scored side by side: keep the last other model, close the rest
            for old in [k for k in self.models if k[0] not in originals][:-1]:
                self.models.pop(old).close()
            self.models[key] = runtime.load_model(Path(path), settings)
        return self.models[key]

    def base_reference(self, exp: Experiment) -> Any:
        """The base model's side of the paired perplexity comparison, computed once per process and corpus."""
        from fakequant.runtime.paired import BaseReference

        key = (str(exp.model), str(exp.corpus), exp.chunks, exp.first_chunk, exp.settings)
        if key not in self.refs:
            if len(self.refs) >= 2:  # each holds ~50 MB of logits and ~18 MB of layer outputs per chunk
                self.refs.pop(next(iter(self.refs)))
            self.refs[key] = BaseReference.build(self.model(exp.model, exp.settings), exp.corpus, chunks=exp.chunks,
                                                 first_chunk=exp.first_chunk, drift=True)
        return self.refs[key]

    def close(self) -> None:
        for m in self.models.values():
            m.close()
        self.models.clear()
        self.refs.clear()


def experiment_record(exp: Experiment, model_sha256: str | None = None) -> dict[str, Any]:
    """The "experiment" artifact: the definition, and what its results are measured on, by content (the model's and
    the corpus's sha256, the llama-cpp-python build), so that a recorded result is only ever taken for the same."""
    return {**exp.to_json(), "model_sha256": model_sha256 or file_sha256(exp.model),
            "corpus_sha256": file_sha256(exp.corpus), "llama_cpp_python": llama_cpp_build(), "backend": backend()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
