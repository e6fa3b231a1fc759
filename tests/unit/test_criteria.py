"""criteria.toml parsing and validation: every mistake is one CriteriaError naming the file and the key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from fakequant.errors import CriteriaError
from fakequant.store import assets
from fakequant.suite.criteria import expand_layers, load_criteria, sweep_cell_name

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "c.txt").write_text("text")
    head = '[defaults]\nmodel = "m.gguf"\ncorpus = "c.txt"\n'
    path = tmp_path / "criteria.toml"
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


GOOD = """
[defaults.thresholds]
ppl_increase_ideal = 0.01

[prompts.math]
turns = ["What is 2+2?"]
max_tokens = 20
contains = ["4"]

[prompts.intro]
prompt = "Hello"
temperature = 0.7

[experiments.alpha]
tensors = ["blk.0.ffn_norm.weight"]
format = "bf16"

[experiments.beta]
layers = "0-2"
kinds = ["ffn_norm"]
format = "fp8_e4m3"
chunks = 4
prompts = ["math"]
thresholds = { ppl_increase_acceptable = 0.08 }
settings = { n_ctx = 256 }
expect = { "conversation[math]" = "fail", perplexity = "fail", must_pass = "fail" }
"""


def test_valid_file_becomes_typed_experiments(tmp_path):
    crit = load_criteria(write(tmp_path, GOOD), threads=2)
    assert list(crit.experiments) == ["alpha", "beta"]
    assert not crit.errors
    a, b = crit.experiments["alpha"], crit.experiments["beta"]
    assert a.recipe.selection.names == ("blk.0.ffn_norm.weight",) and a.recipe.format == "bf16"
    assert a.model == tmp_path / "m.gguf" and a.corpus == tmp_path / "c.txt"
    assert [p.id for p in a.prompts] == ["math", "intro"]
    assert a.prompts[0].kind == "chat" and a.prompts[1].kind == "raw"
    assert a.prompts[1].params.temperature == 0.7 and a.prompts[0].params.greedy
    assert b.recipe.selection.layers == "0-2" and b.recipe.selection.kinds == ("ffn_norm",)
    assert b.thresholds.ppl_increase_acceptable == 0.08 and b.thresholds.ppl_increase_ideal == 0.01
    assert b.settings.n_ctx == 256 and b.settings.n_threads == 2 and a.settings.n_ctx == 512
    assert b.chunks == 4 and a.chunks == 10  # the default when [defaults] omits chunks, as criteria.toml ships
    assert b.expect == ("conversation[math]", "perplexity", "must_pass") and a.expect == ()
    assert b.to_json()["expect"] == {"conversation[math]": "fail", "perplexity": "fail", "must_pass": "fail"}
    assert a.to_json()["expect"] is None
    assert [p.id for p in b.prompts] == ["math"]
    assert b.to_json()["recipe"]["format"] == "fp8_e4m3"


@pytest.mark.parametrize(("body", "key", "words"), [
    ("[defaults.thresholds]\nppl_increase_idael = 0.01\n", "defaults.thresholds.ppl_increase_idael",
     "did you mean 'ppl_increase_ideal'"),
    ("[defaults.thresholds]\nppl_increase_ideal = 0.1\nppl_increase_acceptable = 0.05\n",
     "defaults.thresholds.ppl_increase_ideal", "looser"),
    ("[defaults.thresholds]\nmax_rel_diff = \"ten\"\n", "defaults.thresholds.max_rel_diff", "must be a number"),
    ("[defaults.settings]\nn_ctxx = 512\n", "defaults.settings", "unknown key"),
    ("[defaults.settings]\nn_ctx = 0\n", "defaults.settings", "n_ctx must be >= 1"),
    ("[experimnts.x]\n", "experimnts", "did you mean 'experiments'"),
    ("[prompts.p]\nprompt = \"hi\"\nturns = [\"hi\"]\n", "prompts.p", "exactly one of"),
    ("[prompts.p]\nprompt = \"hi\"\ntemprature = 0.7\n", "prompts.p.temprature", "did you mean 'temperature'"),
    ("[prompts.p]\nprompt = \"hi\"\ntop_p = 2.0\n", "prompts.p", "top_p"),
    ("[prompts.p]\nprompt = \"hi\"\nsamples = 3\n", "prompts.p.samples", "1 for a greedy prompt"),
    ("[prompts.p]\nprompt = \"hi\"\ntemperature = 0.7\nsamples = 0\n", "prompts.p.samples", "must be >= 1"),
    ("[experiments.run1]\ntensors=['a']\nformat='bf16'\n[experiments.run10]\ntensors=['a']\nformat='bf16'\n",
     "experiments.run1", "contained in 'run10'"),
    ("[experiments.Run1]\ntensors=['a']\nformat='bf16'\n[experiments.run10]\ntensors=['a']\nformat='bf16'\n",
     "experiments.Run1", "ignoring case"),
    ("[experiments.speed]\ntensors=['a']\nformat='bf16'\n", "experiments.speed", "every test id contains"),
    ("[experiments.'my-exp']\ntensors=['a']\nformat='bf16'\n", "experiments.my-exp", "letters, digits"),
])
def test_file_level_mistakes_refuse_to_start(tmp_path, body, key, words):
    path = write(tmp_path, body)
    with pytest.raises(CriteriaError) as err:
        load_criteria(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(path)), msg
    assert key in msg and words in msg, msg


def test_toml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "[experiments.x\nformat = 'bf16'\n")
    with pytest.raises(CriteriaError, match=r"TOML syntax error.*line 4, column 15") as err:
        load_criteria(path)
    assert str(path) in str(err.value)


def test_missing_files(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(CriteriaError, match=r"--model: model file .*nope\.gguf. does not exist"):
        load_criteria(path, model=tmp_path / "nope.gguf")
    with pytest.raises(CriteriaError, match="no such criteria file"):
        load_criteria(tmp_path / "absent.toml")
    bad = write(tmp_path, "")
    bad.write_text('[defaults]\ncorpus = "missing.txt"\n')
    with pytest.raises(CriteriaError, match=r"defaults\.corpus: corpus file .* does not exist"):
        load_criteria(bad, model=tmp_path / "m.gguf")


@pytest.mark.parametrize(("body", "key", "words"), [
    ("format = 'bf16'\n", "experiments.bad", "selects no tensors"),
    ("tensors = ['a']\n", "experiments.bad.format", "missing"),
    ("tensors = ['a']\nformat = 'bf16'\nepsilon = 0\n", "experiments.bad.epsilon", "must be > 0"),
    ("tensors = ['a']\nformat = 'bf16'\nepsilon = -1e-3\n", "experiments.bad.epsilon", "must be > 0"),
    ("tensors = ['a']\nformat = 'bf16'\nexpect = 'STOP'\n", "experiments.bad.expect",
     "must be a table naming the checks that must fail"),
    ("tensors = ['a']\nformat = 'bf16'\nexpect = {}\n", "experiments.bad.expect", "names no check"),
    ("tensors = ['a']\nformat = 'bf16'\nexpect = { perplexity = 'pass' }\n", "experiments.bad.expect.perplexity",
     'must be "fail"'),
    ("tensors = ['a']\nformat = 'bf16'\nexpect = { perplexty = 'fail' }\n", "experiments.bad.expect.perplexty",
     "did you mean 'perplexity'"),
    ("tensors = ['a']\nformat = 'bf16'\nexpect = { speed = 'fail' }\n", "experiments.bad.expect.speed",
     "speed never fails"),
    ("tensors = ['a']\nformat = 'bf16'\nchecks = ['must_pass']\nexpect = { perplexity = 'fail' }\n",
     "experiments.bad.expect.perplexity", "not a check this experiment runs"),
    ("tensors = ['a']\nformat = 'bf16'\nprompts = ['math']\nexpect = { 'conversation[intro]' = 'fail' }\n",
     "experiments.bad.expect.conversation[intro]", "did you mean 'conversation[math]'"),
    ("tensors = ['a']\nformat = 'bf16'\nprompts = ['mth']\n", "experiments.bad.prompts", "no [prompts.mth]"),
    ("tensors = ['a']\nformat = 'bf16'\nchecks = ['speed']\n", "experiments.bad.checks", "must_pass"),
    ("tensors = ['a']\nformat = 'bf16'\nchunk = 3\n", "experiments.bad.chunk", "did you mean 'chunks'"),
    ("tensors = 'a'\nformat = 'bf16'\n", "experiments.bad.tensors", "array of strings"),
    ("tensors = ['a']\nformat = 'bf17'\n", "experiments.bad", "bf17"),
    ("layers = '2-x'\nformat = 'bf16'\n", "experiments.bad.layers", "must look like"),
    ("tensors = ['a']\nformat = 'bf16'\nthresholds = { mean_rel_diff = 0.2 }\n",
     "experiments.bad.thresholds.mean_rel_diff", "looser"),
])
def test_experiment_mistakes_only_stop_that_experiment(tmp_path, body, key, words):
    path = write(tmp_path, "[prompts.math]\nturns = ['2+2?']\n[experiments.good]\ntensors = ['a']\n"
                           "format = 'bf16'\n[experiments.bad]\n" + body)
    crit = load_criteria(path)
    assert list(crit.experiments) == ["good"]
    assert list(crit.errors) == ["bad"] and crit.names == ["good", "bad"]
    msg = str(crit.errors["bad"])
    assert msg.startswith(str(path)) and key in msg and words in msg and "\n" not in msg, msg
    with pytest.raises(CriteriaError):
        load_criteria(path, strict=True)


def test_sweep_expands_into_named_experiments(tmp_path):
    path = write(tmp_path, """
    [experiments.single]
    tensors = ["blk.0.ffn_norm.weight"]
    format = "bf16"

    [sweeps.norms]
    layers = "0,5,10-11"
    kinds = ["ffn_norm", "attn_norm"]
    formats = ["fp8_e4m3"]
    chunks = 2
    """)
    crit = load_criteria(path)
    cells = crit.sweeps["norms"]
    assert len(cells) == 8
    assert cells[0] == "sweep_norms_L00_ffn_norm_fp8_e4m3" and "sweep_norms_L11_attn_norm_fp8_e4m3" in cells
    cell = crit.experiments["sweep_norms_L05_attn_norm_fp8_e4m3"]
    assert cell.recipe.selection.layers == "5" and cell.recipe.selection.kinds == ("attn_norm",)
    assert cell.chunks == 2 and cell.sweep == "norms" and "conversation" not in cell.checks
    assert cell.markers == ("sweep_norms",)
    assert sweep_cell_name("s", 5, "ffn_up", "q4_0", 3) == "sweep_s_L005_ffn_up_q4_0"


def test_layer_lists():
    assert expand_layers("0,5,10-12") == [0, 5, 10, 11, 12]
    with pytest.raises(CriteriaError, match="backwards"):
        expand_layers("5-2")


@pytest.mark.parametrize(("entry", "message"), [
    ("speed_rounds = 3", "speed_rounds: must be >= 4 (fewer rounds cannot reach p < 0.05 / 3), got 3"),
    ("speed_alpha = 1", "speed_alpha: must be in (0, 1), got 1.0"),
    ("conversation_alpha = 0", "conversation_alpha: must be in (0, 1), got 0.0"),
    ("fluency_factor = 0.9", "fluency_factor: must be >= 1 (a factor on the baseline's own fluency), got 0.9"),
    ("repetition_max = -0.1", "repetition_max: must be >= 0, got -0.1"),
    ("speed_rounds = 2.5", "speed_rounds: must be an integer, got a number 2.5"),
    ("max_rel_diff = inf", "max_rel_diff: must be a finite number, got inf"),
])
def test_threshold_limits(tmp_path, entry, message):
    path = write(tmp_path, f"[defaults.thresholds]\n{entry}\n")
    with pytest.raises(CriteriaError) as err:
        load_criteria(path)
    assert str(err.value) == f"{path}: defaults.thresholds.{message}"


def test_default_assets_are_named_not_hashed_and_fetched_only_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))
    fetched = []

    def fake_ensure(asset):
        fetched.append(asset)
        assets.cached_path(asset).write_bytes(b"GGUF")
        return assets.cached_path(asset)

    monkeypatch.setattr(assets, "ensure", fake_ensure)
    monkeypatch.setattr(assets, "sha256_file", lambda p: pytest.fail(f"{p} was hashed"))
    path = write(tmp_path, "[experiments.one]\ntensors = ['a']\nformat = 'bf16'\n")
    path.write_text(path.read_text().replace('model = "m.gguf"', 'model = "default"'))
    crit = load_criteria(path)
    assert crit.experiments["one"].model == assets.cached_path(assets.DEFAULT_MODEL)
    assert fetched == [assets.DEFAULT_MODEL]  # the corpus is the file's own
    load_criteria(path)  # in the cache now: neither fetched again nor hashed
    assert fetched == [assets.DEFAULT_MODEL]


def test_overrides_win(tmp_path):
    path = write(tmp_path, "[report]\nlang = 'en'\n[experiments.one]\ntensors = ['a']\nformat = 'bf16'\n")
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    crit = load_criteria(path, model=other, threads=1, report_dir=tmp_path / "r", report_lang="zh-TW")
    exp = crit.experiments["one"]
    assert exp.model == other and exp.settings.n_threads == 1
    assert crit.report_dir == tmp_path / "r" and crit.report_lang == "zh-TW"
    with pytest.raises(CriteriaError, match="--report-lang"):
        load_criteria(path, report_lang="fr")


def test_shipped_criteria_file_is_valid():
    crit = load_criteria(REPO / "criteria.toml", strict=True)
    layer0 = crit.experiments["layer0"]
    assert layer0.recipe.selection.names == ("blk.0.ffn_norm.weight",) and layer0.recipe.format == "bf16"
    assert {"layer5", "layer10", "layer15"} <= set(crit.experiments)
    controls = {n: e.expect for n, e in crit.experiments.items() if e.expect}
    # one positive control per family of checks, each naming the check it must fail
    assert {"finite", "format", "perplexity", "conversation[battery]"} <= {k for keys in controls.values()
                                                                          for k in keys}
    questions = {p.question for p in layer0.prompts}
    assert {"Hello, can you introduce yourself?", "你好，請介紹一下自己。", "2+2等於多少？", "What is 2+2?",
            "Write a short story about a robot.", "讓我們聊聊天吧。"} <= questions
    chat = next(p for p in layer0.prompts if p.question == "讓我們聊聊天吧。")
    assert len(chat.turns) >= 3
    # sampled prompts are judged over several seeds, greedy ones on their single answer
    assert {p.id: p.samples for p in layer0.prompts if not p.params.greedy} == {
        "english_intro": 5, "chinese_intro": 5, "math_zh": 5}
    assert all(p.samples == 1 for p in layer0.prompts if p.params.greedy)


def test_shipped_names_select_only_their_own_tests():
    """`pytest -k <experiment>` must not match a test file, test function or another experiment's name."""
    crit = load_criteria(REPO / "criteria.toml", strict=True)
    words = {p.name for p in (REPO / "tests").rglob("*.py")} | {"tests", "acceptance", "unit"}
    for path in (REPO / "tests").rglob("test_*.py"):
        words |= {line.split("(")[0][4:] for line in path.read_text().splitlines() if line.startswith("def test_")}
    prompt_ids = {p.id for e in crit.experiments.values() for p in e.prompts}
    for name in crit.names:
        clashes = [w for w in words | prompt_ids | (set(crit.names) - {name}) if name.lower() in w.lower()]
        assert not clashes, f"{name} is part of {clashes}"


# --- the pytest plugin, on a throw-away project (no model is loaded: the tests only use the `experiment` fixture)

pytest_plugins = ["pytester"]

PLUGIN_CRITERIA = """
[defaults]
model = "m.gguf"
corpus = "c.txt"
[prompts.hi]
prompt = "Hello"
[experiments.good]
tensors = ["blk.0.ffn_norm.weight"]
format = "bf16"
[experiments.bad]
tensors = ["blk.0.ffn_norm.weight"]
format = "bf17"
[experiments.other]
tensors = ["blk.1.ffn_norm.weight"]
format = "fp16"
"""

PLUGIN_TESTS = """
def test_must_pass_build(experiment):
    assert experiment.recipe.format in ("bf16", "fp16")

def test_conversation(experiment, prompt_id):
    assert prompt_id == "hi"
"""


def _project(pytester, criteria: str = PLUGIN_CRITERIA):
    pytester.makefile(".toml", criteria=criteria)
    (pytester.path / "m.gguf").write_bytes(b"GGUF")
    (pytester.path / "c.txt").write_text("text")
    pytester.makeconftest('pytest_plugins = ["fakequant.suite.plugin"]')
    pytester.mkdir("tests")
    pytester.mkdir("tests/acceptance")
    (pytester.path / "tests" / "acceptance" / "test_acceptance_x.py").write_text(PLUGIN_TESTS)


def test_plugin_parametrizes_marks_and_isolates_bad_experiments(pytester):
    _project(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--report-dir", "out", "-rA")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_must_pass_build?bad?*",
                                 "*criteria.toml: experiments.bad: format 'bf17': unknown; did you mean bf16*"])
    assert "During handling" not in result.stdout.str()
    result.stdout.fnmatch_lines(["bad  * INCONCLUSIVE*config*format 'bf17'*"])
    sel = pytester.runpytest("-p", "no:cacheprovider", "--report-dir", "out", "-k", "other", "--collect-only",
                             "-q")
    sel.stdout.fnmatch_lines(["*test_must_pass_build?other?", "*test_conversation?other-hi?",
                              "2/6 tests collected (4 deselected)*"])
    marked = pytester.runpytest("-p", "no:cacheprovider", "--report-dir", "out", "-m", "good", "--collect-only",
                                "-q", "--strict-markers")
    marked.stdout.fnmatch_lines(["*test_must_pass_build?good?", "2/6 tests collected*"])


CRASHING_TESTS = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("no corpus\\nsecond line")

def test_must_pass_build(experiment, outcome):
    outcome("build", "must_pass", "pass", "built")

def test_must_pass_format(experiment):
    raise ZeroDivisionError("boom")

def test_must_pass_load(experiment, outcome):
    outcome("load", "must_pass", "fail", "did not load")

def test_perplexity(experiment, broken):
    pass

def test_numerical(experiment):
    pytest.skip("not declared")

def test_conversation(experiment, prompt_id):
    assert prompt_id == "nope"
"""


def test_a_check_test_that_raises_records_an_error_outcome_naming_it(pytester):
    """A crash (in the test or in a fixture) leaves an ERROR outcome for the test's check, never nothing; an
    outcome the test did record (a failure) and a skip stay as they are."""
    import json

    from fakequant.suite.outcomes import load_experiment
    from fakequant.suite.verdict import decide

    _project(pytester)
    (pytester.path / "tests" / "acceptance" / "test_acceptance_x.py").write_text(CRASHING_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--report-dir", "out", "-k", "good")
    result.assert_outcomes(passed=1, failed=3, errors=1, skipped=1)
    folder = pytester.path / "out" / "good" / ".data" / "outcomes"
    recorded = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert sorted(recorded) == ["build", "conversation_hi", "format", "load", "perplexity"]
    assert {k: v["status"] for k, v in recorded.items()} == {"build": "pass", "conversation_hi": "error",
                                                             "format": "error", "load": "fail", "perplexity": "error"}
    assert recorded["format"]["reason"] == "test_must_pass_format[good] raised at call: ZeroDivisionError: boom"
    assert recorded["perplexity"]["reason"] == "test_perplexity[good] raised at setup: RuntimeError: no corpus"
    assert recorded["perplexity"]["category"] == "perplexity" and recorded["perplexity"]["values"]["when"] == "setup"
    assert recorded["conversation_hi"]["check"] == "conversation[hi]"
    assert recorded["conversation_hi"]["reason"].startswith("test_conversation[good-hi] raised at call: "
                                                            "AssertionError: assert 'hi' == 'nope'")
    result.stdout.fnmatch_lines(["good *STOP *load: did not load"])
    verdict = decide(load_experiment(pytester.path / "out", "good"))
    assert "format could not run: test_must_pass_format[good] raised at call: ZeroDivisionError: boom" in verdict.notes


def test_plugin_refuses_to_start_on_a_broken_file(pytester):
    _project(pytester, PLUGIN_CRITERIA + "[experiments.goo]\ntensors=['a']\nformat='bf16'\n")
    assert "goo]" in (pytester.path / "criteria.toml").read_text()
    result = pytester.runpytest("-p", "no:cacheprovider", "--report-dir", "out")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*experiments.goo*contained in 'good'*"])


def test_report_dir_moves_the_run_reports_named_in_pytest_ini(pytester):
    _project(pytester)
    pytester.makeini("[pytest]\naddopts = --junitxml=reports/junit.xml --html=reports/report.html "
                     "--self-contained-html\n")
    pytester.runpytest("-p", "no:cacheprovider", "--report-dir", "out", "-k", "good")
    assert (pytester.path / "out" / "junit.xml").is_file() and (pytester.path / "out" / "report.html").is_file()
    assert (pytester.path / "out" / "summary.md").is_file()
    assert not (pytester.path / "reports").exists()
    # a path given on the command line stays where it was asked for
    pytester.runpytest("-p", "no:cacheprovider", "--report-dir", "out", "-k", "good", "--junitxml=mine.xml")
    assert (pytester.path / "mine.xml").is_file()


def test_xdist_keeps_each_experiment_on_one_worker(pytester):
    """`pytest -n 2`: one worker builds and loads each candidate. pytest-xdist 3.8 on pytest 9.2 loses its groups
    (upstream issue #1386); the plugin tags the node ids itself (pytest_plugin._tag_groups)."""
    _project(pytester, PLUGIN_CRITERIA.replace("format = \"bf17\"", "format = \"fp16\"")
             + "[prompts.ho]\nprompt = \"Hi\"\n[prompts.hu]\nprompt = \"Hey\"\n")
    (pytester.path / "tests" / "acceptance" / "test_acceptance_x.py").write_text(
        "def test_must_pass_build(experiment):\n    pass\n\n"
        "def test_conversation(experiment, prompt_id):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--report-dir", "out", "-n", "2", "-v")
    workers: dict[str, set[str]] = {}
    for line in result.stdout.lines:
        m = re.search(r"\[(gw\d)\] .*(?:PASSED|FAILED|ERROR|SKIPPED) .*::test_\w+\[(\w+?)[\]-]", line)
        if m:
            workers.setdefault(m.group(2), set()).add(m.group(1))
    assert set(workers) == {"good", "bad", "other"}, result.stdout.str()
    assert all(len(w) == 1 for w in workers.values()), workers


def test_paths_outside_the_project_work_as_one_word_options(pytester, tmp_path_factory):
    """The README's form, `--report-dir=DIR` (what `fakequant sweep` passes too), with DIR outside the project."""
    _project(pytester)
    outside = tmp_path_factory.mktemp("elsewhere")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--report-dir={outside}", "-k", "good")
    result.assert_outcomes(passed=2)
    assert (outside / "summary.md").is_file()
