"""The pytest side of fakequant: criteria.toml becomes parametrized acceptance tests. Options, hooks and fixtures
only: the run's state is :class:`~fakequant.suite.session.Suite`, each check's rule is in :mod:`~.rules`.

- Options ``--criteria --model --corpus --report-dir --threads --report-lang`` override the file for one run;
  ``--sweep NAME`` adds a sweep's cells, ``--recipe NAME`` the experiment ``recipe_NAME`` (the recipe's chosen mix).
- One marker per experiment (``-m layer0``) and per sweep (``-m sweep_<name>``), registered from criteria.toml.
- Tests in ``tests/acceptance`` that take ``experiment`` are parametrized by experiment name (``-k layer0``);
  with ``prompt_id`` by (experiment, prompt). Items are ordered experiment by experiment and grouped per
  experiment for ``pytest -n N --dist loadgroup``, so one worker builds and loads each candidate once.
- A check test that raises before recording its outcome (a crash, a fixture that fails) gets an ERROR outcome for
  its check from :func:`pytest_runtest_makereport`, so the decision names it instead of missing it.
- :func:`enact` turns a :class:`~fakequant.suite.outcomes.CheckOutcome` into pytest's vocabulary: fail → failed test,
  limitation → xfail, inconclusive → skip, caution → pass + warning. A positive control's checks that ``expect``
  names (``expect = {finite = "fail"}``) are strict xfails when they fail, any other failure of it is a failure,
  and ``test_expected_decision`` fails unless every named check failed.
- The controller (never an xdist worker) writes the reports in ``pytest_sessionfinish`` and prints one line per
  experiment at the end.

This is the only module of the library that imports pytest.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakequant.errors import FakequantError
from fakequant.i18n import msg
from fakequant.suite import expectation, rules
from fakequant.suite.criteria import Criteria, Experiment, load_criteria
from fakequant.suite.outcomes import CheckOutcome, flat_values, record_outcome
from fakequant.suite.session import BadExperiment, BuildFailed, Suite
from fakequant.suite.vocab import CHECK_OF_TEST, LANGS, MUST_PASS, Status

_SUITE_KEY = pytest.StashKey[Suite]()
_RECORDED = pytest.StashKey[bool]()  # on a test item: it recorded an outcome through the `outcome` fixture


class FakequantCaution(UserWarning):
    """A check landed between the ideal and the acceptable bound: the test passes, the report says CAUTION."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fakequant", "fakequant acceptance suite")
    group.addoption("--criteria", default=None, help="criteria file (default: criteria.toml in the rootdir)")
    group.addoption("--model", default=None, help="model GGUF for every experiment (overrides criteria.toml)")
    group.addoption("--corpus", default=None, help="perplexity corpus (overrides criteria.toml)")
    group.addoption("--report-dir", default=None, help="where reports go (default: criteria.toml's, 'reports')")
    group.addoption("--threads", type=int, default=None, help="llama.cpp threads (overrides criteria.toml)")
    group.addoption("--report-lang", default=None, choices=LANGS, help="language of the Markdown reports")
    group.addoption("--sweep", action="append", default=[], metavar="NAME",
                    help="also collect the cells of [sweeps.NAME] (repeatable; `fakequant sweep NAME` passes it): "
                         "a plain run leaves sweep cells out")
    group.addoption("--recipe", action="append", default=[], metavar="NAME",
                    help="also collect recipe_NAME, the mixed model [recipes.NAME] chooses within its budget, from "
                         "cells `fakequant recipe NAME` measured (repeatable; `fakequant recipe NAME` passes it)")


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
    suite = Suite(criteria_path=path, sweeps=list(opt.sweep), recipes=list(opt.recipe))
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
        suite.add_recipes()  # before the markers: recipe_<name> is an experiment like the others
    except (FakequantError, ValueError) as err:
        # kept: the acceptance suite refuses to start (at collection), while unit tests still run
        suite.criteria, suite.error = None, str(err)
    config.stash[_SUITE_KEY] = suite
    if suite.criteria is not None:
        _move_run_reports(config, Path(suite.criteria.report_dir))
        config.pluginmanager.register(_Tracker(suite), "fakequant-tracker")
        for name, text in suite.markers().items():
            config.addinivalue_line("markers", f"{name}: {text}")


def _move_run_reports(config: pytest.Config, report_dir: Path) -> None:
    """pytest.ini's fixed paths of the per-run reports move along with --report-dir (or [report] dir)."""
    if report_dir.resolve() == (Path(config.rootpath) / "reports").resolve():
        return
    for option, ini_path in (("xmlpath", "reports/junit.xml"), ("htmlpath", "reports/report.html")):
        value = getattr(config.option, option, None)
        if value is not None and Path(value) == Path(ini_path):  # not given on the command line
            setattr(config.option, option, str(report_dir / Path(ini_path).name))


def suite_of(config: pytest.Config) -> Suite:
    return config.stash[_SUITE_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``experiment`` (indirect: the fixture gets the name) by experiment; with ``prompt_id``, by (experiment,
    prompt). The ids carry the experiment's name so that ``-k <name>`` selects exactly its tests."""
    if "experiment" not in metafunc.fixturenames:
        return
    suite = suite_of(metafunc.config)
    if suite.criteria is None:
        raise pytest.UsageError(f"fakequant: {suite.error}")
    crit = suite.criteria
    try:  # fakequant_only: e.g. experiments with an expected decision
        names = suite.collected(getattr(metafunc.function, "fakequant_only", None))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    if "prompt_id" in metafunc.fixturenames:
        params = [pytest.param(n, pid, id=f"{n}-{pid}", marks=_marks(crit, n)) for n, pid in suite.prompt_cells(names)]
        metafunc.parametrize(("experiment", "prompt_id"), params, indirect=["experiment"])
    else:
        metafunc.parametrize("experiment", [pytest.param(n, id=n, marks=_marks(crit, n)) for n in names],
                             indirect=True)


def _marks(crit: Criteria, name: str) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, name), pytest.mark.xdist_group(name), pytest.mark.acceptance]
    exp = crit.experiments.get(name)
    if exp is not None and exp.sweep:
        marks.append(getattr(pytest.mark, f"sweep_{exp.sweep}"))
    return marks


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Unit tests first, in their own order; then the acceptance tests in :meth:`Suite.order`."""
    suite = suite_of(config)
    if suite.criteria is None:
        return
    position = {id(item): i for i, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[int, int, int, int]:
        exp = item.callspec.params.get("experiment") if hasattr(item, "callspec") else None
        if exp is None:
            return (0, 0, 0, position[id(item)])
        return (1, *suite.order(exp, getattr(item, "originalname", item.name)), position[id(item)])

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


@pytest.fixture(scope="session")
def fq_suite(request: pytest.FixtureRequest) -> Iterator[Suite]:
    suite = suite_of(request.config)
    yield suite
    suite.close()


@pytest.fixture
def experiment(fq_suite: Suite, request: pytest.FixtureRequest) -> Experiment:
    """The experiment of this test; a bad configuration errors here with its one-line message."""
    name = request.param
    try:
        return fq_suite.experiment(name).exp
    except BadExperiment as err:
        message = str(err)
    # recorded so that the report names the reason; the test errors (at setup) with the one line, others still run
    record_outcome(fq_suite.report_dir, CheckOutcome(name, "config", MUST_PASS, Status.ERROR,
                                                     msg("config.invalid", error=message)))
    pytest.fail(message, pytrace=False)


@pytest.fixture
def candidate(fq_suite: Suite, experiment: Experiment) -> Any:
    """The experiment's BuildResult; a recipe the model cannot take errors here with its one-line message."""
    try:
        return fq_suite.build(experiment.name)
    except BuildFailed as err:
        message = str(err)
    # the same outcome test_must_pass_build records for this failure (whichever test meets it first)
    record_outcome(fq_suite.report_dir, CheckOutcome(experiment.name, "build", MUST_PASS,
                                                     *rules.build_failed(message)))
    pytest.fail(message, pytrace=False)


@pytest.fixture
def outcome(fq_suite: Suite, experiment: Experiment, request: pytest.FixtureRequest, record_property: Any) -> Any:
    """``outcome(check, category, status, reason, values)``: record it (report + JUnit) and act it out in pytest."""

    def act(check: str, category: str, status: Status | str, reason: str, values: dict[str, Any] | None = None):
        result = CheckOutcome(experiment.name, check, category, Status(status), reason, dict(values or {}))
        record_outcome(fq_suite.report_dir, result)
        request.node.stash[_RECORDED] = True
        for key, value in [("status", str(result.status)), ("reason", reason), *flat_values(result.values).items()]:
            record_property(key, value)
        enact(result, experiment, request.node)
        return result

    return act


@pytest.fixture
def quality_gate(candidate: Any, experiment: Experiment) -> Callable[[str, str], None]:
    """``quality_gate(category, what)``: skip a check the experiment does not ask for; and when no value changed
    there is nothing to measure: the quality test skips as INCONCLUSIVE (a skip is not a pass)."""

    def gate(category: str, what: str) -> None:
        if category not in experiment.checks:
            pytest.skip(f"{category} is not among {experiment.name}'s checks ({', '.join(experiment.checks)})")
        noop = rules.no_op(candidate.to_json())
        if noop:
            pytest.skip(f"INCONCLUSIVE: the fake quantization changed {noop.changed} of {noop.total} values "
                        f"(already representable in {noop.format}); {what} would compare a model with itself")

    return gate


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
    if expectation.names(exp.expect, result.check, result.category):
        # a positive control's named check is meant to fail: a strict xfail keeps `make test` green, and
        # test_expected_decision turns the run red if it does not fail; any other check's failure stays a failure
        item.add_marker(pytest.mark.xfail(strict=True, reason=f"positive control, expected to fail: {reason}"))
    pytest.fail(reason, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A check test that raised (setup or call) before recording its outcome records an ERROR outcome for its check:
    otherwise its check would just be absent, and a crash must never read as something other than a crash."""
    report = yield
    excinfo = call.excinfo
    if call.when in ("setup", "call") and excinfo is not None and not excinfo.errisinstance(pytest.skip.Exception) \
            and not item.stash.get(_RECORDED, False):
        _record_crash(item, call.when, excinfo)
    _plain_strings(report)
    return report


def _plain_strings(report: pytest.TestReport) -> None:
    """Reasons are :class:`~fakequant.i18n.Message` objects (str subclasses); xdist's execnet serializes only the
    exact built-in types, so what a report carries to the controller is turned into plain strings."""
    def plain(value: Any) -> Any:
        return str.__str__(value) if isinstance(value, str) else value

    report.user_properties = [(key, plain(value)) for key, value in report.user_properties]
    if isinstance(report.longrepr, tuple):
        report.longrepr = tuple(plain(part) for part in report.longrepr)
    elif isinstance(report.longrepr, str):
        report.longrepr = plain(report.longrepr)
    if isinstance(getattr(report, "wasxfail", None), str):
        report.wasxfail = plain(report.wasxfail)


def _record_crash(item: pytest.Item, when: str, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    check = CHECK_OF_TEST.get(getattr(item, "originalname", item.name))
    suite = item.config.stash.get(_SUITE_KEY, None)
    if check is None or "experiment" not in params or suite is None or suite.criteria is None \
            or params["experiment"] in suite.criteria.errors:  # an invalid experiment has its "config" outcome
        return
    check_id, category = check[0].format(prompt=params.get("prompt_id")), check[1]
    lines = str(excinfo.value).strip().splitlines()
    message = f"{excinfo.typename}: {lines[0][:300]}" if lines else excinfo.typename
    record_outcome(suite.report_dir, CheckOutcome(
        str(params["experiment"]), check_id, category, Status.ERROR,
        msg("check.crashed", test=item.name, when=when, error=message),
        {"test": item.nodeid, "when": when, "exception": excinfo.typename}))


class _Tracker:
    """Registered on every process: remembers which experiments had a test report (under xdist the controller
    receives every worker's reports), so that exactly those get a report."""

    def __init__(self, suite: Suite):
        self.suite = suite

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        assert self.suite.criteria is not None
        name = next((n for n in self.suite.criteria.names if n in report.keywords), None)
        if name is not None:
            self.suite.ran.add(name)


def pytest_sessionstart(session: pytest.Session) -> None:
    suite = session.config.stash.get(_SUITE_KEY, None)
    if suite is not None and suite.criteria is not None and not _is_worker(session.config):
        suite.hash_originals()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    suite = session.config.stash.get(_SUITE_KEY, None)
    if suite is not None and suite.criteria is not None and not _is_worker(session.config) and not suite.finish():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    suite = config.stash.get(_SUITE_KEY, None)
    if suite is None or _is_worker(config):
        return
    if suite.verdicts:
        from fakequant import report

        terminalreporter.section("fakequant decisions")
        lang = suite.criteria.report_lang if suite.criteria is not None else "en"
        for line in report.terminal_lines(suite.verdicts, lang):
            terminalreporter.write_line(line)
        where = f"{suite.report_dir}/<experiment>/summary.md, {suite.index_path}"
        terminalreporter.write_line(report.translator(lang)("term_reports", where=where))
    if suite.error and suite.criteria is not None:
        terminalreporter.write_line(f"fakequant: {suite.error}", red=True)


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list, summary: list, postfix: list, session: pytest.Session) -> None:
    suite = session.config.stash.get(_SUITE_KEY, None)
    if suite is not None and suite.ran_names:
        from fakequant import report

        lang = suite.criteria.report_lang if suite.criteria is not None else "en"
        prefix.append(report.html_summary(suite.report_dir, suite.ran_names, lang))
