"""Positive controls: which checks ``expect`` may name, and, through the pytest plugin on a throw-away project,
that a named check's failure is an xfail while any other failure, or a named check that passes, fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakequant.suite.expectation import Expectation, judge, keys_of, nameable, names
from fakequant.suite.outcomes import CheckOutcome
from fakequant.suite.vocab import Decision

REPO = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]


def test_nameable_keys_are_the_checks_the_experiment_runs_and_can_fail():
    keys = nameable(("must_pass", "conversation", "speed"), ["math_en", "chat_zh"])
    assert keys == ("must_pass", "build", "format", "load", "finite", "original_unchanged", "conversation",
                    "conversation[math_en]", "conversation[chat_zh]", "conversation[battery]")  # speed never fails
    assert nameable(("must_pass", "perplexity"), ["math_en"])[-1] == "perplexity"


def test_a_key_names_its_check_or_every_check_of_its_category():
    assert names(("finite",), "finite", "must_pass") and names(("must_pass",), "finite", "must_pass")
    assert not names(("finite",), "format", "must_pass")
    assert names(("conversation",), "conversation[math_en]", "conversation")
    assert not names(("conversation[chat_zh]",), "conversation[math_en]", "conversation")
    assert not names((), "perplexity", "perplexity")


def test_judge_counts_limitations_and_skips_as_neither_failed_nor_unexpected():
    outcomes = [CheckOutcome("c", "conversation[math_en]", "conversation", "fail", "no 4"),
                CheckOutcome("c", "conversation[math_zh]", "conversation", "limitation", "baseline fails too"),
                CheckOutcome("c", "speed", "speed", "inconclusive", "A/A noise")]
    e = judge(["conversation[math_en]"], outcomes, Decision.STOP)
    assert e.matched and e.failed == {"conversation[math_en]": ("conversation[math_en]",)} and not e.unexpected
    assert not judge(["conversation[math_en]"], outcomes, Decision.CAUTION).matched  # only STOP can match
    assert Expectation.from_json({"conversation[math_en]": "fail"}, e.to_json(), Decision.STOP) == e


def test_only_a_table_of_fail_values_is_read_as_an_expectation():
    assert keys_of({"finite": "fail", "format": "fail"}) == (("finite", "format"), None)
    assert keys_of(None) == ((), None)
    keys, note = keys_of("STOP")
    assert keys == () and "'STOP'" in note


# --- through the plugin: two recorded checks and the real test_expected_decision

CRITERIA = """
[defaults]
model = "m.gguf"
corpus = "c.txt"
[experiments.ctl]
tensors = ["blk.0.ffn_norm.weight"]
format = "bf16"
checks = ["must_pass", "perplexity"]
expect = { perplexity = "fail" }
"""

TESTS = """
import os

def test_must_pass_format(experiment, outcome):
    outcome("format", "must_pass", os.environ["FQ_FORMAT"], "the recorded format check")

def test_perplexity(experiment, outcome):
    outcome("perplexity", "perplexity", os.environ["FQ_PPL"], "the recorded perplexity check")
"""


@pytest.mark.parametrize(("fmt", "ppl", "outcomes", "words"), [
    ("pass", "fail", {"passed": 2, "xfailed": 1}, "[expected to fail: perplexity (failed) — matched]"),
    ("fail", "fail", {"passed": 0, "xfailed": 1, "failed": 2}, "format failed, not expected"),
    ("pass", "pass", {"passed": 2, "failed": 1}, "perplexity did not fail"),
])
def test_a_control_fails_the_run_unless_exactly_its_named_check_fails(pytester, monkeypatch, fmt, ppl, outcomes,
                                                                     words):
    pytester.makefile(".toml", criteria=CRITERIA)
    (pytester.path / "m.gguf").write_bytes(b"GGUF")
    (pytester.path / "c.txt").write_text("text")
    pytester.makeconftest('pytest_plugins = ["fakequant.suite.plugin"]')
    pytester.mkdir("tests")
    pytester.mkdir("tests/acceptance")
    (pytester.path / "tests" / "acceptance" / "test_acceptance_x.py").write_text(TESTS)
    decision = (REPO / "tests" / "acceptance" / "test_acceptance_decision.py").read_text()
    # another basename: `pytest tests` has already imported the real one under its own (rootdir-less) module name
    (pytester.path / "tests" / "acceptance" / "test_decision_copy.py").write_text(decision)
    monkeypatch.setenv("FQ_FORMAT", fmt)
    monkeypatch.setenv("FQ_PPL", ppl)
    result = pytester.runpytest("-p", "no:cacheprovider", "--report-dir", "out", "-rA")
    result.assert_outcomes(**outcomes)
    assert (result.ret == 0) == (outcomes.get("failed", 0) == 0)
    assert words in result.stdout.str()
