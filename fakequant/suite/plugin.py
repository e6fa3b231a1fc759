"""The pytest side of fakequant: criteria.toml becomes parametrized acceptance tests.

- Options ``--criteria --model --corpus --report-dir --threads --report-lang`` override the file for one run.
- One marker per experiment (``-m layer0``) and per sweep (``-m sweep_<name>``), registered from criteria.toml.
- Tests in ``tests/acceptance`` that take ``experiment`` are parametrized by experiment name (``-k layer0``);
  ``conversation_case`` by (experiment, prompt). Items are ordered experiment by experiment and grouped per
  experiment for ``pytest -n N --dist loadgroup``, so one worker builds and loads each candidate once.
- :class:`Suite` (one per process) keeps candidates, loaded models, base references and the sha256 of the originals.
- :func:`enact` turns a :class:`~fakequant.suite.outcomes.CheckOutcome` into pytest's vocabulary: fail → failed test,
  limitation → xfail, inconclusive → skip, caution → pass + warning; checks of a negative control (``expect =
  "STOP"``) that fail are strict xfails, and ``test_expected_decision`` proves the control reached its decision.
- The controller (never an xdist worker) writes the reports in ``pytest_sessionfinish`` and prints one line per
  experiment at the end.

This is the only module of the library that imports pytest.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fakequant.errors import FakequantError
from fakequant.store.cache import file_sha256, locked, sha256_file
from fakequant.suite.criteria import Criteria, Experiment, load_criteria
from fakequant.suite.outcomes import CheckOutcome, clear_experiment, data_dir, record_outcome, save_artifact
from fakequant.suite.vocab import TEST_ORDER, Status

_SUITE_KEY = pytest.StashKey["Suite"]()


class FakequantCaution(UserWarning):
    """A check landed between the ideal and the acceptable bound: the test passes, the report says CAUTION."""


# ---------------------------------------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fakequant", "fakequant acceptance suite")
    group.addoption("--criteria", default=None, help="criteria file (default: criteria.toml in the rootdir)")
    group.addoption("--model", default=None, help="model GGUF for every experiment (overrides criteria.toml)")
    group.addoption("--corpus", default=None, help="perplexity corpus (overrides criteria.toml)")
    group.addoption("--report-dir", default=None, help="where reports go (default: criteria.toml's, 'reports')")
    group.addoption("--threads", type=int, default=None, help="llama.cpp threads (overrides criteria.toml)")
    group.addoption("--report-lang", default=None, choices=("en", "zh-TW"), help="language of the Markdown reports")
    group.addoption("--sweep", action="append", default=[], metavar="NAME",
                    help="also collect the cells of [sweeps.NAME] (repeatable; `fakequant sweep NAME` passes it): "
                         "a plain run leaves sweep cells out")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller → worker: the run id."""
    node.workerinput["fq_run_id"] = suite_of(node.config).run_id
    node.workerinput["fq_dist"] = node.config.option.dist


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)  # before junitxml and pytest-html read their paths
def pytest_configure(config: pytest.Config) -> None:
    opt = config.option
    path = Path(opt.criteria) if opt.criteria else Path(config.rootpath) / "criteria.toml"
    suite = Suite(config=config, criteria_path=path)
    # one id per run, shared with xdist workers: the first process to touch an experiment in this run clears its
    # old results, whichever worker that is (a worker must never wipe what another worker recorded in this run)
    suite.run_id = config.workerinput["fq_run_id"] if _is_worker(config) else uuid.uuid4().hex
    if not _is_worker(config) and getattr(config.option, "numprocesses", None) and config.option.dist == "load" \
            and not any(a.startswith(("--dist", "-d")) for a in config.invocation_params.args):
        config.option.dist = "loadgroup"  # `pytest -n N` alone: one worker per experiment (built and loaded once)
    if _is_worker(config) and config.workerinput.get("fq_dist") == "loadgroup":
        # workers parse the command line themselves: tell them, so that they tag node ids with the group
        config.option.loadgroup = True
    try:
        suite.criteria = load_criteria(path, model=opt.model, corpus=opt.corpus, threads=opt.threads,
                                       report_dir=opt.report_dir, report_lang=opt.report_lang)
    except FakequantError as err:
        # kept: the acceptance suite refuses to start (at collection), while unit tests still run
        suite.error = str(err)
    config.stash[_SUITE_KEY] = suite
    if suite.criteria is not None:
        _move_run_reports(config, Path(suite.criteria.report_dir))
        config.pluginmanager.register(_Tracker(suite), "fakequant-tracker")
        markers = {n: f"experiment {n} from {path.name}" for n in suite.criteria.names}
        markers.update({f"sweep_{s}": f"every cell of sweep {s} from {path.name}" for s in suite.criteria.sweeps})
        for name, text in markers.items():
            config.addinivalue_line("markers", f"{name}: {text}")


# pytest.ini's fixed paths of the per-run reports; --report-dir (or [report] dir) moves them along with the rest
_INI_RUN_REPORTS = {"xmlpath": "reports/junit.xml", "htmlpath": "reports/report.html"}


def _move_run_reports(config: pytest.Config, report_dir: Path) -> None:
    if report_dir.resolve() == (Path(config.rootpath) / "reports").resolve():
        return
    for option, ini_path in _INI_RUN_REPORTS.items():
        value = getattr(config.option, option, None)
        if value is not None and Path(value) == Path(ini_path):  # not given on the command line
            setattr(config.option, option, str(report_dir / Path(ini_path).name))


def suite_of(config: pytest.Config) -> Suite:
    return config.stash[_SUITE_KEY]


# ------------------------------------------------------------------------------------------------------- collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``experiment`` (indirect: the fixture gets the name) by experiment; with ``prompt_id``, by (experiment,
    prompt). The ids carry the experiment's name so that ``-k <name>`` selects exactly its tests."""
    if "experiment" not in metafunc.fixturenames:
        return
    suite = suite_of(metafunc.config)
    if suite.criteria is None:
        raise pytest.UsageError(f"fakequant: {suite.error}")
    crit = suite.criteria
    names = crit.names
    only = getattr(metafunc.function, "fakequant_only", None)  # e.g. experiments with an expected decision
    if only:
        names = [n for n in names if only(crit, n)]
    names = [n for n in names if _collected(crit, n, metafunc.config.option.sweep)]
    if "prompt_id" in metafunc.fixturenames:
        params = []
        for n in names:
            exp = crit.experiments.get(n)
            if exp is not None and "conversation" not in exp.checks:
                continue
            pids = [p.id for p in exp.prompts] if exp is not None else ["config"]
            params += [pytest.param(n, pid, id=f"{n}-{pid}", marks=_marks(crit, n)) for pid in pids]
        metafunc.parametrize(("experiment", "prompt_id"), params, indirect=["experiment"])
    else:
        metafunc.parametrize("experiment", [pytest.param(n, id=n, marks=_marks(crit, n)) for n in names],
                             indirect=True)


def _collected(crit: Criteria, name: str, sweeps: list[str]) -> bool:
    """Sweep cells only when their sweep is asked for (``--sweep NAME``): a plain run must not pay for them."""
    unknown = [s for s in sweeps if s not in crit.sweeps and f"sweep_{s}" not in crit.errors]
    if unknown:
        raise pytest.UsageError(f"--sweep {unknown[0]}: no [sweeps.{unknown[0]}] in {crit.path} "
                                f"(defined: {', '.join(crit.sweeps) or 'none'})")
    owner = next((s for s, cells in crit.sweeps.items() if name in cells), None)
    return owner is None or owner in sweeps


def _marks(crit: Criteria, name: str) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, name), pytest.mark.xdist_group(name), pytest.mark.acceptance]
    exp = crit.experiments.get(name)
    if exp is not None and exp.sweep:
        marks.append(getattr(pytest.mark, f"sweep_{exp.sweep}"))
    return marks


def _experiment_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("experiment") if callspec is not None else None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run experiment by experiment (each candidate built and loaded once), in criteria.toml's order."""
    suite = suite_of(config)
    if suite.criteria is None:
        return
    rank = {n: i for i, n in enumerate(suite.criteria.names)}
    position = {id(item): i for i, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[int, int, int, int]:
        exp = _experiment_of(item)
        if exp is None:
            return (0, 0, 0, position[id(item)])  # unit tests first, in their own order
        name = getattr(item, "originalname", item.name)
        order = TEST_ORDER.index(name) if name in TEST_ORDER else len(TEST_ORDER) - 2
        return (1, rank.get(exp, len(rank)), order, position[id(item)])

    items.sort(key=key)
    if _is_worker(config) and config.getvalue("loadgroup"):
        _tag_groups(items)


def _tag_groups(items: list[pytest.Item]) -> None:
    """What ``--dist loadgroup`` needs on each worker: node ids ending in ``@<group>``. pytest-xdist 3.8 sets
    ``item._nodeid``, which pytest 9 no longer reads (the id lives in ``item._id``), so the groups silently vanish
    and an experiment's tests spread over workers; set the id the way this pytest keeps it."""
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # an older pytest, where xdist's own tagging works
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            item._id = coerce_node_id(item.nodeid + suffix)


# ------------------------------------------------------------------------------------------------------ the suite


@dataclass
class ExperimentState:
    exp: Experiment
    started: bool = False
    build: Any = None  # engine.BuildResult
    build_error: str | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suite:
    config: pytest.Config
    criteria_path: Path
    criteria: Criteria | None = None
    error: str | None = None
    run_id: str = ""
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
        """The run's index: ``summary.md``; a sweep run's goes beside its map and leaves the main one alone."""
        sweeps = self.config.option.sweep
        return self.report_dir / ("sweeps/" + "+".join(sorted(set(sweeps))) if sweeps else "") / "summary.md"

    # --- experiments

    def experiment(self, name: str) -> ExperimentState:
        assert self.criteria is not None
        if name in self.criteria.errors:
            raise _ConfigError(str(self.criteria.errors[name]))
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
        save_artifact(self.report_dir, exp.name, "experiment", exp.to_json())
        save_artifact(self.report_dir, exp.name, "provenance", self.provenance(exp))

    def provenance(self, exp: Experiment) -> dict[str, Any]:
        from fakequant.runtime import llama as runtime

        packages = {}
        for pkg in ("fakequant", "llama-cpp-python", "gguf", "numpy", "scipy", "ml_dtypes", "pytest",
                    "pytest-benchmark", "pytest-xdist"):
            try:
                packages[pkg] = importlib.metadata.version(pkg)
            except importlib.metadata.PackageNotFoundError:
                packages[pkg] = None
        return {
            "model_path": str(exp.model), "model_sha256": self.original_sha[str(exp.model)],
            "corpus_path": str(exp.corpus), "corpus_sha256": file_sha256(exp.corpus),
            "criteria_path": str(self.criteria_path.resolve()), "packages": packages,
            "llama_build": runtime.build_info(), "settings": exp.settings.to_json(),
            "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "os": platform.platform(),
                        "python": platform.python_version()},
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }

    def build(self, name: str) -> Any:
        """The experiment's candidate (engine cache: built once across processes and runs)."""
        from fakequant.quant.candidate import build_candidate

        state = self.experiment(name)
        if state.build_error is not None:
            raise _BuildError(state.build_error)
        if state.build is None:
            try:
                state.build = build_candidate(state.exp.model, state.exp.recipe)
            except FakequantError as err:
                state.build_error = f"{self.criteria_path}: {state.exp.source}: {err}"
                raise _BuildError(state.build_error) from None
            save_artifact(self.report_dir, name, "numerical_analysis", state.build.to_json())
        return state.build

    # --- models

    def model(self, path: Path, settings: Any) -> Any:
        """A loaded model, shared by every test in this process; at most the baseline and one candidate stay
        loaded (tests run experiment by experiment)."""
        from fakequant.runtime import llama as runtime

        key = (str(path), settings)
        if key not in self.models:
            originals = {str(e.model) for e in self.criteria.experiments.values()} if self.criteria else set()
            for old in [k for k in self.models if k[0] not in originals]:
                self.models.pop(old).close()
            self.models[key] = runtime.load_model(Path(path), settings)
        return self.models[key]

    def base_reference(self, exp: Experiment) -> Any:
        """The base model's side of the paired perplexity comparison, computed once per process and corpus."""
        from fakequant.runtime.paired import BaseReference

        key = (str(exp.model), str(exp.corpus), exp.chunks, exp.settings)
        if key not in self.refs:
            if len(self.refs) >= 2:  # each holds ~50 MB of logits per chunk
                self.refs.pop(next(iter(self.refs)))
            self.refs[key] = BaseReference.build(self.model(exp.model, exp.settings), exp.corpus, chunks=exp.chunks)
        return self.refs[key]

    def close(self) -> None:
        for m in self.models.values():
            m.close()
        self.models.clear()
        self.refs.clear()


class _ConfigError(Exception):
    pass


class _BuildError(Exception):
    pass


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def fq_suite(request: pytest.FixtureRequest) -> Any:
    suite = suite_of(request.config)
    yield suite
    suite.close()


@pytest.fixture
def experiment(fq_suite: Suite, request: pytest.FixtureRequest) -> Experiment:
    """The experiment of this test; a bad configuration errors here with its one-line message."""
    name = request.param
    try:
        return fq_suite.experiment(name).exp
    except _ConfigError as err:
        message = str(err)
    # recorded so that the report names the reason; the test errors (at setup) with the one line, others still run
    record_outcome(fq_suite.report_dir, CheckOutcome(name, "config", "must_pass", Status.ERROR, message))
    pytest.fail(message, pytrace=False)


@pytest.fixture
def candidate(fq_suite: Suite, experiment: Experiment) -> Any:
    """The experiment's BuildResult; a recipe the model cannot take errors here with its one-line message."""
    try:
        return fq_suite.build(experiment.name)
    except _BuildError as err:
        message = str(err)
    # the same outcome test_must_pass_build records for this failure (whichever test meets it first)
    record_outcome(fq_suite.report_dir, CheckOutcome(experiment.name, "build", "must_pass", Status.FAIL, message))
    pytest.fail(message, pytrace=False)


@pytest.fixture
def outcome(fq_suite: Suite, experiment: Experiment, request: pytest.FixtureRequest, record_property: Any) -> Any:
    """``outcome(check, category, status, reason, values)``: record it (report + JUnit) and act it out in pytest."""

    def act(check: str, category: str, status: Status | str, reason: str, values: dict[str, Any] | None = None):
        result = CheckOutcome(experiment.name, check, category, Status(status), reason, dict(values or {}))
        record_outcome(fq_suite.report_dir, result)
        record_property("status", str(result.status))
        record_property("reason", reason)
        for key, value in _flat(result.values).items():
            record_property(key, value)
        enact(result, experiment, request.node)
        return result

    return act


def quality_gate(candidate: Any, exp: Experiment, category: str, what: str) -> None:
    """Skip a check the experiment does not ask for; and when no value changed there is nothing to measure: the
    quality test skips as INCONCLUSIVE (a skip is not a pass)."""
    if category not in exp.checks:
        pytest.skip(f"{category} is not among {exp.name}'s checks ({', '.join(exp.checks)})")
    if candidate.noop:
        total = sum(t.n for t in candidate.tensors)
        pytest.skip(f"INCONCLUSIVE: the fake quantization changed 0 of {total} values "
                    f"(already representable in {candidate.recipe.format}); {what} would compare a model with itself")


def enact(result: CheckOutcome, exp: Experiment, item: pytest.Item) -> None:
    status, reason = result.status, f"{result.check}: {result.reason}"
    if status is Status.PASS:
        return
    if status is Status.CAUTION:
        warnings.warn(FakequantCaution(f"{exp.name}: CAUTION {reason}"), stacklevel=2)
        return
    if status is Status.LIMITATION:
        pytest.xfail(f"model limitation (the baseline fails it too): {reason}")
    if status is Status.INCONCLUSIVE:
        pytest.skip(f"INCONCLUSIVE: {reason}")
    if exp.expect == "STOP":
        # a negative control is meant to fail: strict xfail keeps `make test` green, and test_expected_decision
        # turns the run red if the control does not reach STOP
        item.add_marker(pytest.mark.xfail(strict=True, reason=f"negative control (expect STOP): {reason}"))
    pytest.fail(reason, pytrace=False)


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        elif isinstance(v, list | tuple):
            out[key] = ", ".join(str(x) for x in v)
        else:
            out[key] = v
    return out


# -------------------------------------------------------------------------------------------------------- reporting


class _Tracker:
    """Registered on every process: remembers which experiments had a test report (under xdist the controller
    receives every worker's reports), so that exactly those get a report."""

    def __init__(self, suite: Suite):
        self.suite = suite

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        assert self.suite.criteria is not None
        for name in self.suite.criteria.names:
            if name in report.keywords:
                self.suite.ran.add(name)
                return


def pytest_sessionstart(session: pytest.Session) -> None:
    suite = session.config.stash.get(_SUITE_KEY, None)
    if suite is None or suite.criteria is None or _is_worker(session.config):
        return
    models = {str(e.model) for e in suite.criteria.experiments.values()}
    suite.start_sha = {m: file_sha256(Path(m)) for m in models if Path(m).is_file()}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    suite = config.stash.get(_SUITE_KEY, None)
    if suite is None or suite.criteria is None or _is_worker(config):
        return
    names = [n for n in suite.criteria.names if n in suite.ran]
    if not names:
        return
    changed = [m for m, sha in suite.start_sha.items() if sha256_file(Path(m)) != sha]
    if changed:  # never expected: the engine opens originals read-only; but the user's model is what matters most
        suite.error = f"the original model changed during the run (sha256 differs): {', '.join(changed)}"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    try:
        from fakequant import report
    except ImportError as err:  # the report package is optional for the suite itself
        suite.error = f"reports not written: {err}"
        return
    suite.verdicts = report.finish_run(suite.report_dir, names, lang=suite.criteria.report_lang,
                                       index=suite.index_path)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    suite = config.stash.get(_SUITE_KEY, None)
    if suite is None or _is_worker(config):
        return
    if suite.verdicts:
        from fakequant import report

        terminalreporter.section("fakequant decisions")
        for line in report.terminal_lines(suite.verdicts):
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"reports: {suite.report_dir}/<experiment>/summary.md, {suite.index_path}")
    if suite.error and suite.criteria is not None:
        terminalreporter.write_line(f"fakequant: {suite.error}", red=True)


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list, summary: list, postfix: list, session: pytest.Session) -> None:
    suite = session.config.stash.get(_SUITE_KEY, None)
    if suite is None or suite.criteria is None:
        return
    names = [n for n in suite.criteria.names if n in suite.ran]
    if names:
        from fakequant import report

        prefix.append(report.html_summary(suite.report_dir, names))
