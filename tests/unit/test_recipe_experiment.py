"""A recipe's pick as the suite experiment recipe_<name>: the assignment `fakequant recipe NAME` recorded last (never
measured or solved here), collected only with `pytest --recipe NAME`, and its decision read back by `fakequant recipe
NAME`. Picks are recorded under a temporary FAKEQUANT_HOME, on a tiny GGUF, from costs given here.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from fakequant.errors import RecipeError
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.quant.placebo import twin_of
from fakequant.recipe.build import mix_recipe
from fakequant.recipe.decision import suite_command, suite_decision
from fakequant.recipe.experiment import recipe_experiment, record_pick
from fakequant.recipe.plan import Choice, cell_key, choose, plan_recipe
from fakequant.suite.criteria import MixRecipe, load_criteria
from fakequant.suite.outcomes import CheckOutcome, load_experiment, record_outcome, save_artifact
from fakequant.suite.session import Suite, experiment_record
from fakequant.suite.vocab import MUST_PASS_CHECKS

pytest_plugins = ["pytester"]

LAYERS = range(3)
# attn_q is Q8_0 (q4_0 is its only smaller option), ffn_gate F16 (q4_0 or q8_0): with these costs and a budget that
# fits attn_q→q4_0 + ffn_gate→q8_0 exactly, that pair (0.011) beats ffn_gate→q4_0 alone (0.05), the only other fit
COSTS = {("attn_q", "q4_0"): 0.01, ("ffn_gate", "q4_0"): 0.05, ("ffn_gate", "q8_0"): 0.001}
CRITERIA = """
[defaults]
model = "tiny.gguf"
corpus = "corpus.txt"
[prompts.hi]
prompt = "Hello"
[experiments.plain]
tensors = ["blk.0.ffn_norm.weight"]
format = "bf16"
[recipes.k]
description = "two kinds"
kinds = ["attn_q", "ffn_gate"]
group = "kind"
formats = ["q4_0", "q8_0"]
budget_bpw = BUDGET
chunks = 3
thresholds = {ppl_increase_ideal = 0.02}
settings = {n_ctx = 128}
"""


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


def project(folder: Path) -> Path:
    """tiny.gguf, corpus.txt and criteria.toml in ``folder``, the budget fitting attn_q→q4_0 + ffn_gate→q8_0."""
    write_tiny_gguf(folder / "tiny.gguf", n_layers=len(LAYERS), dim=64)
    (folder / "corpus.txt").write_text("some text\n")
    path = folder / "criteria.toml"
    path.write_text(CRITERIA.replace("BUDGET", "4.0"))
    plan = plan_recipe(load_criteria(path).recipes["k"])
    groups = {g.name: g for g in plan.groups}
    target = plan.fixed + plan.size(groups["attn_q"], "q4_0") + plan.size(groups["ffn_gate"], "q8_0")
    path.write_text(CRITERIA.replace("BUDGET", repr(8 * (target + 0.5) / plan.values)))
    return path


def recipe_of(path: Path) -> MixRecipe:
    return load_criteria(path).recipes["k"]


def write_pick(recipe: MixRecipe, costs: dict[tuple[str, str], float] = COSTS,
               exclude: tuple[dict[str, str], ...] = (), attempt: int = 1) -> Choice:
    """What `fakequant recipe` records before each try: the best assignment for ``costs`` not in ``exclude``."""
    choice = choose(plan_recipe(recipe), {cell_key(g, f): c for (g, f), c in costs.items()}, exclude=exclude)
    record_pick(recipe, choice, mix_recipe(choice.formats), attempt)
    return choice


def test_the_experiment_is_the_pick_recorded_last(tmp_path: Path) -> None:
    recipe = recipe_of(project(tmp_path))
    first = write_pick(recipe)
    exp = recipe_experiment(recipe)
    assert exp.name == "recipe_k" and exp.source == "recipes.k" and exp.markers == ("recipe_k",)
    assert exp.checks == ("must_pass", "perplexity", "conversation", "speed")  # not numerical
    assert exp.recipe.format == "mix" and exp.recipe == mix_recipe(first.formats)
    want = {**{f"blk.{i}.attn_q.weight": "q4_0" for i in LAYERS},
            **{f"blk.{i}.ffn_gate.weight": "q8_0" for i in LAYERS}}
    assert dict(exp.recipe.mix) == want
    assert set(exp.recipe.selection.names) == set(want)
    assert twin_of(exp.recipe).selection == exp.recipe.selection  # the placebo of the same tensors
    assert (exp.thresholds, exp.settings, exp.chunks, exp.prompts, exp.model, exp.corpus) == \
        (recipe.thresholds, recipe.settings, recipe.chunks, recipe.prompts, recipe.model, recipe.corpus)
    # the perplexity check starts after the calibration (8 chunks) and selection (4) slices: text neither saw
    assert exp.first_chunk == 12 and exp.to_json()["first_chunk"] == 12
    assert exp.thresholds.ppl_increase_ideal == 0.02 and exp.settings.n_ctx == 128 and exp.chunks == 3
    assert [p.id for p in exp.prompts] == ["hi"]
    assert exp.description.startswith("two kinds (try 1, the best assignment within its budget not tried before: "
                                      "2 group(s) changed, 0 kept")
    # the second try excludes the first: ffn_gate→q4_0 alone, the only other fit, is what the suite tests next
    write_pick(recipe, exclude=(first.assignment,), attempt=2)
    second = recipe_experiment(recipe)
    assert dict(second.recipe.mix) == {f"blk.{i}.ffn_gate.weight": "q4_0" for i in LAYERS}
    assert second.description.startswith("two kinds (try 2,")


@pytest.mark.parametrize(("extra", "first_chunk", "corpus"), [
    ("calibration_chunks = 2\nselection_chunks = 3", 5, "corpus.txt"),
    ("imatrix = false\nselection_chunks = 3", 3, "corpus.txt"),
    ('evaluation_corpus = "other.txt"', 0, "other.txt"),
])
def test_a_try_is_scored_on_the_evaluation_slice(tmp_path: Path, extra: str, first_chunk: int, corpus: str) -> None:
    path = project(tmp_path)
    (tmp_path / "other.txt").write_text("other text\n")
    path.write_text(path.read_text().replace("chunks = 3\n", f"chunks = 3\n{extra}\n"))
    recipe = recipe_of(path)
    write_pick(recipe)
    exp = recipe_experiment(recipe)
    assert (exp.first_chunk, exp.corpus.name) == (first_chunk, corpus)


def test_without_a_pick_for_this_very_recipe_it_says_to_run_fakequant_recipe_first(tmp_path: Path) -> None:
    recipe = recipe_of(project(tmp_path))
    with pytest.raises(RecipeError) as err:
        recipe_experiment(recipe)
    assert str(err.value) == ("recipes.k: no assignment picked for this recipe and model yet; run "
                              "`fakequant recipe k` first")
    write_pick(recipe)
    with pytest.raises(RecipeError, match="no assignment picked"):  # another budget: the pick is not its own
        recipe_experiment(dataclasses.replace(recipe, budget_bpw=recipe.budget_bpw * 0.99))


def test_a_budget_that_keeps_everything_has_nothing_to_test(tmp_path: Path) -> None:
    recipe = recipe_of(project(tmp_path))
    some = write_pick(recipe)
    roomy = dataclasses.replace(recipe, budget_bpw=32.0)
    keep_all = choose(plan_recipe(roomy), {cell_key(g, f): 1.0 for g, f in COSTS})
    assert set(keep_all.assignment.values()) == {"keep"} and keep_all.formats == {}
    with pytest.raises(RecipeError, match=r"^recipes\.k: within its budget every group keeps its type"):
        record_pick(roomy, keep_all, mix_recipe(some.formats), 1)


# --- pytest --recipe NAME

PLUGIN_TESTS = """
def test_must_pass_build(experiment):
    assert experiment.recipe.format in ("bf16", "mix")

def test_conversation(experiment, prompt_id):
    assert prompt_id == "hi"
"""


def _plugin_project(pytester: pytest.Pytester) -> Path:
    path = project(pytester.path)
    pytester.makeconftest('pytest_plugins = ["fakequant.suite.plugin"]')
    pytester.mkdir("tests")
    pytester.mkdir("tests/acceptance")
    (pytester.path / "tests" / "acceptance" / "test_acceptance_x.py").write_text(PLUGIN_TESTS)
    return path


def _collect(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--report-dir=out", "--collect-only", "-q", *args)


def test_recipe_option_collects_recipe_name_and_a_plain_run_does_not(pytester: pytest.Pytester) -> None:
    path = _plugin_project(pytester)
    write_pick(recipe_of(path))
    plain = _collect(pytester)
    assert plain.ret == 0 and "recipe_k" not in plain.stdout.str()
    plain.stdout.fnmatch_lines(["*test_must_pass_build?plain?", "2 tests collected*"])
    asked = _collect(pytester, "--recipe", "k", "-k", "recipe_k", "--strict-markers")
    asked.stdout.fnmatch_lines(["*test_must_pass_build?recipe_k?", "*test_conversation?recipe_k-hi?",
                                "2/4 tests collected (2 deselected)*"])
    ran = pytester.runpytest("-p", "no:cacheprovider", "--report-dir=out", "--recipe", "k", "-m", "recipe_k")
    ran.assert_outcomes(passed=2)
    assert (pytester.path / "out" / "recipes" / "k" / "summary.md").is_file()  # the run's index: not the main one
    assert not (pytester.path / "out" / "summary.md").exists()
    unknown = _collect(pytester, "--recipe", "kk")
    assert unknown.ret != 0
    assert "--recipe kk: no [recipes.kk] in" in unknown.stdout.str() + unknown.stderr.str()


def test_a_recipe_without_a_pick_is_the_experiments_config_error(pytester: pytest.Pytester) -> None:
    _plugin_project(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--report-dir=out", "--recipe", "k", "-k", "recipe_k")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*criteria.toml: recipes.k: no assignment picked for this recipe and model yet; "
                                 "run `fakequant recipe k` first*"])
    data = load_experiment(pytester.path / "out", "recipe_k")
    assert [(o.check, str(o.status)) for o in data.outcomes] == [("config", "error")]


def test_an_invalid_recipe_table_is_the_experiments_config_error(tmp_path: Path) -> None:
    path = project(tmp_path)
    path.write_text(path.read_text().replace('group = "kind"', 'group = "kinds"'))
    suite = Suite(criteria_path=path, recipes=["k"])
    suite.criteria = load_criteria(path)
    suite.add_recipes()
    assert "recipe_k" not in suite.criteria.experiments
    assert "recipes.k.group: must be one of cell, kind, layer" in str(suite.criteria.errors["recipe_k"])
    assert "recipe_k" in suite.collected()


def test_an_experiment_whose_name_contains_recipe_name_is_refused(tmp_path: Path) -> None:
    path = project(tmp_path)
    path.write_text(path.read_text() + '[experiments.recipe_kx]\ntensors = ["blk.1.ffn_norm.weight"]\n'
                    'format = "bf16"\n')
    suite = Suite(criteria_path=path, recipes=["k"])
    suite.criteria = load_criteria(path)
    with pytest.raises(ValueError, match=r"^--recipe k: experiment 'recipe_kx' .* contains 'recipe_k'"):
        suite.add_recipes()


# --- fakequant recipe NAME: the suite's decision read back


DRIFT = {"growth_of": "excess", "first_resolved": "l_out-2", "largest_growth": {"layer": "l_out-2", "by": 0.01},
         "problems": [], "chunks": 2, "layers": [{"name": "l_out-2"}]}


class FakeSuite:
    """Stands in for `python -m pytest --recipe k -k recipe_k`: records what the acceptance tests would."""

    def __init__(self, criteria_path: Path, perplexity: str = "pass", record: bool = True):
        self.criteria_path, self.perplexity, self.record = criteria_path, perplexity, record
        self.calls: list[tuple[list[str], Path]] = []

    def __call__(self, cmd: list[str], cwd: Path) -> int:
        self.calls.append((cmd, cwd))
        if not self.record:
            return 4
        report_dir = Path(next(a for a in cmd if a.startswith("--report-dir=")).split("=", 1)[1])
        exp = recipe_experiment(load_criteria(self.criteria_path).recipes["k"])
        save_artifact(report_dir, exp.name, "experiment", experiment_record(exp))
        save_artifact(report_dir, exp.name, "perplexity_comparison", {"drift": DRIFT})
        for check, category, status in [*((c, "must_pass", "pass") for c in MUST_PASS_CHECKS),
                                        ("perplexity", "perplexity", self.perplexity),
                                        ("conversation[hi]", "conversation", "pass"),
                                        ("conversation[battery]", "conversation", "pass"), ("speed", "speed", "pass")]:
            record_outcome(report_dir, CheckOutcome(exp.name, check, category, status, f"{check} measured"))
        return 0


def test_the_suite_command_runs_recipe_name_alone_from_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "tests" / "acceptance").mkdir(parents=True)
    cmd = suite_command("k", criteria_path=tmp_path / "criteria.toml", report_dir=tmp_path / "reports",
                        out_dir=tmp_path / "reports" / "recipes" / "k", root=tmp_path)
    assert cmd[:7] == [sys.executable, "-m", "pytest", "--recipe", "k", "-k", "recipe_k"]
    out = (tmp_path / "reports" / "recipes" / "k").resolve()
    for word in (f"--criteria={(tmp_path / 'criteria.toml').resolve()}",
                 f"--report-dir={(tmp_path / 'reports').resolve()}", f"--junitxml={out / 'junit.xml'}",
                 f"--html={out / 'report.html'}"):
        assert word in cmd
    assert cmd[-1] == "tests/acceptance"


def test_the_decision_is_read_back_from_what_the_suite_recorded(tmp_path: Path) -> None:
    path = project(tmp_path)
    (tmp_path / "tests" / "acceptance").mkdir(parents=True)
    recipe = recipe_of(path)
    write_pick(recipe)
    expected = recipe_experiment(recipe).recipe
    reports, out = tmp_path / "reports", tmp_path / "reports" / "recipes" / "k"
    fake = FakeSuite(path)
    go = suite_decision("k", criteria_path=path, report_dir=reports, out_dir=out, expected=expected, runner=fake,
                        log=lambda _: None)
    assert go["decision"] == "GO" and go["reasons"][0].startswith("all 9 checks pass")
    assert go["report"] == str(reports / "recipe_k" / "summary.md")
    # where the error enters comes with the decision: the statements, not the per-layer table
    assert go["drift"] == {k: v for k, v in DRIFT.items() if k != "layers"}
    assert fake.calls[0][1] == tmp_path  # pytest runs where criteria.toml and tests/acceptance are
    fake.perplexity = "fail"
    stop = suite_decision("k", criteria_path=path, report_dir=reports, out_dir=out, expected=expected, runner=fake,
                          log=lambda _: None)
    assert stop["decision"] == "STOP" and stop["reasons"] == ["perplexity: perplexity measured"]
    # a run that records nothing is not read as the earlier run's decision
    silent = suite_decision("k", criteria_path=path, report_dir=reports, out_dir=out, expected=expected,
                            runner=FakeSuite(path, record=False), log=lambda _: None)
    assert silent["decision"] == "INCONCLUSIVE" and "recorded no outcome for recipe_k (pytest exit status 4)" in \
        silent["reasons"][0]
    # the suite tested another mix than this process chose: no decision taken from it
    other = dataclasses.replace(expected, mix=expected.mix[:-1], selection=dataclasses.replace(
        expected.selection, names=expected.selection.names[:-1]))
    stale = suite_decision("k", criteria_path=path, report_dir=reports, out_dir=out, expected=other, runner=fake,
                           log=lambda _: None)
    assert stale["decision"] == "INCONCLUSIVE" and "tested another mix" in stale["reasons"][0]
