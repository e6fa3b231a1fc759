"""The decision rules of issue 5, one rule per test, on outcomes built in memory."""

from __future__ import annotations

import math

import pytest

from fakequant.runtime.chunkstats import chunks_to_clear
from fakequant.suite.outcomes import CheckOutcome, ExperimentData
from fakequant.suite.verdict import Verdict, decide
from fakequant.suite.vocab import Artifact, Decision, Status

MUST_PASS = [("build", "must_pass"), ("format", "must_pass"), ("load", "must_pass"), ("finite", "must_pass"),
             ("original_unchanged", "must_pass")]
ALL_PASS = [*MUST_PASS, ("numerical", "numerical"), ("perplexity", "perplexity"),
            ("conversation[intro]", "conversation"), ("conversation[battery]", "conversation"), ("speed", "speed")]
# the "experiment" artifact of an experiment with every check and one prompt, as the suite records it
DEFINITION = {"name": "exp", "checks": ["must_pass", "numerical", "perplexity", "conversation", "speed"],
              "prompts": [{"id": "intro", "kind": "raw"}], "sweep": None}


def outcome(check: str, category: str, status: str = "pass", reason: str = "") -> CheckOutcome:
    return CheckOutcome("exp", check, category, status, reason or f"{check} measured 1.0 ± 0.1, threshold 2")


def data(*changes: tuple[str, str, str], artifacts: dict | None = None, drop: tuple[str, ...] = ()) -> ExperimentData:
    """All checks pass except ``changes`` = (check, status, reason); ``drop`` removes categories. The "experiment"
    artifact is :data:`DEFINITION` updated with what ``artifacts`` gives for it."""
    status = {check: (st, reason) for check, st, reason in changes}
    outcomes = [outcome(check, cat, *status.get(check, ("pass", ""))) for check, cat in ALL_PASS if cat not in drop]
    artifacts = dict(artifacts or {})
    artifacts[Artifact.EXPERIMENT] = {**DEFINITION, **artifacts.get(Artifact.EXPERIMENT, {})}
    return ExperimentData("exp", outcomes, artifacts)


def test_all_pass_is_go_and_says_so_with_the_perplexity_numbers():
    v = decide(data(("perplexity", "pass", "increase +0.12% (95% interval -0.06% .. +0.30%) < 1% ideal")))
    assert v.decision == Decision.GO
    assert v.headline == "all 10 checks pass; increase +0.12% (95% interval -0.06% .. +0.30%) < 1% ideal"


@pytest.mark.parametrize("check", ["load", "perplexity", "numerical", "conversation[intro]"])
def test_a_failure_of_a_stopping_category_stops(check):
    v = decide(data((check, "fail", "measured 7.1% ± 0.4%, acceptable < 5%")))
    assert v.decision == Decision.STOP
    assert v.reasons == [f"{check}: measured 7.1% ± 0.4%, acceptable < 5%"]


def test_stop_wins_over_inconclusive_and_error_which_become_notes():
    v = decide(data(("perplexity", "fail", "+9% > 5%"), ("numerical", "error", "crashed"),
                    ("conversation[intro]", "inconclusive", "too short")))
    assert v.decision == Decision.STOP
    assert v.reasons == ["perplexity: +9% > 5%"]
    assert "numerical could not run: crashed" in v.notes
    assert "conversation[intro]: too short" in v.notes


def test_stop_reasons_put_must_pass_and_perplexity_first():
    v = decide(data(("conversation[intro]", "fail", "degenerate"), ("perplexity", "fail", "+9% > 5%"),
                    ("load", "fail", "did not load")))
    assert [r.split(":")[0] for r in v.reasons] == ["load", "perplexity", "conversation[intro]"]
    assert v.headline == "load: did not load (+2 more)"


def test_a_speed_failure_alone_is_a_caution_never_a_stop():
    v = decide(data(("speed", "fail", "0.80× the original, p = 0.001, tolerance 10%")))
    assert v.decision == Decision.CAUTION
    assert v.reasons[0].startswith("speed: 0.80× the original")
    assert "never stops" in v.reasons[0]


def test_perplexity_caution_is_caution():
    v = decide(data(("perplexity", "caution", "+2.5% (1.9% .. 3.1%), ideal 1%, acceptable 5%")))
    assert v.decision == Decision.CAUTION
    assert v.reasons == ["perplexity: +2.5% (1.9% .. 3.1%), ideal 1%, acceptable 5%"]


def test_a_model_limitation_is_a_note_not_a_reason():
    v = decide(data(("conversation[intro]", "limitation", "baseline answers in English too")))
    assert v.decision == Decision.GO
    assert v.notes == ["model limitation, not the quantization's: conversation[intro]: baseline answers in English too"]


def test_an_error_prevents_go():
    v = decide(data(("perplexity", "error", "corpus.txt: 700 tokens, 1024 needed")))
    assert v.decision == Decision.INCONCLUSIVE
    assert v.reasons == ["perplexity could not run: corpus.txt: 700 tokens, 1024 needed"]


def test_noop_flag_is_inconclusive_with_the_issue_headline():
    analysis = {"noop": True, "recipe": {"format": "bf16"},
                "tensors": [{"name": "blk.0.ffn_norm.weight", "n": 576, "changed": 0}]}
    v = decide(data(artifacts={Artifact.NUMERICAL: analysis}))
    assert v.decision == Decision.INCONCLUSIVE
    assert v.headline == "0/576 values changed (already representable in bf16)"
    assert "choose a format or tensors that change values" in v.reasons[0]


def test_zero_changed_values_is_noop_even_without_the_flag():
    analysis = {"tensors": [{"n": 576, "changed": 0}, {"n": 100, "changed": 0}]}
    exp = {"recipe": {"format": "fp16"}}
    v = decide(data(artifacts={Artifact.NUMERICAL: analysis, Artifact.EXPERIMENT: exp}))
    assert v.headline == "0/676 values changed (already representable in fp16)"


def test_changed_values_are_not_noop():
    analysis = {"noop": False, "tensors": [{"n": 576, "changed": 3}]}
    assert decide(data(artifacts={Artifact.NUMERICAL: analysis})).decision == Decision.GO


def test_a_missing_category_is_inconclusive_unless_the_experiment_declares_it_away():
    v = decide(data(drop=("perplexity",)))
    assert v.decision == Decision.INCONCLUSIVE
    assert v.reasons[0] == ("not measured: perplexity (no outcome recorded); run the experiment's tests together: "
                            "pytest -k exp")
    declared = {Artifact.EXPERIMENT: {"checks": ["must_pass", "numerical", "conversation", "speed"]}}
    assert decide(data(drop=("perplexity",), artifacts=declared)).decision == Decision.GO


def test_no_outcomes_at_all_is_inconclusive_and_names_every_check():
    v = decide(ExperimentData("exp", [], {Artifact.EXPERIMENT: DEFINITION}))
    assert v.decision == Decision.INCONCLUSIVE
    assert v.reasons[0].startswith("not measured: build, format, load, finite, original_unchanged, numerical, "
                                   "perplexity, conversation[intro], conversation[battery], speed (no outcome "
                                   "recorded)")


def test_without_the_experiment_s_definition_nothing_is_go():
    v = decide(ExperimentData("exp", data().outcomes, {}))
    assert v.decision == Decision.INCONCLUSIVE
    assert v.reasons == ["not measured: which checks exp has is unknown (no experiment.json with its checks and "
                         "prompts); run pytest -k exp"]


def test_the_crash_of_the_issue_is_never_go():
    """No format, finite nor original_unchanged outcome and five of six prompts missing: the categories are all
    there, the checks are not."""
    prompts = [{"id": p} for p in ("a", "b", "c", "d", "e", "f")]
    kept = [o for o in data().outcomes if o.check not in ("format", "finite", "original_unchanged")
            and o.category != "conversation"] + [outcome("conversation[a]", "conversation"),
                                                 outcome("conversation[battery]", "conversation")]
    v = decide(ExperimentData("exp", kept, {Artifact.EXPERIMENT: {**DEFINITION, "prompts": prompts}}))
    assert v.decision == Decision.INCONCLUSIVE
    assert v.reasons == ["not measured: format, finite, original_unchanged, conversation[b], conversation[c], "
                         "conversation[d], conversation[e], conversation[f] (no outcome recorded); run the "
                         "experiment's tests together: pytest -k exp"]


@pytest.mark.parametrize(("check", "category"), ALL_PASS)
def test_a_check_that_raised_is_inconclusive_and_names_the_test(check, category):
    """What the plugin records for a test that raised before recording its outcome."""
    crash = CheckOutcome("exp", check, category, Status.ERROR,
                         "test_x[exp] raised at call: ZeroDivisionError: division by zero")
    kept = [o for o in data().outcomes if o.check != check]
    v = decide(ExperimentData("exp", [*kept, crash], {Artifact.EXPERIMENT: DEFINITION}))
    assert v.decision == Decision.INCONCLUSIVE
    assert v.reasons == [f"{check} could not run: test_x[exp] raised at call: ZeroDivisionError: division by zero"]


def test_a_sweep_cell_is_told_the_sweep_command():
    cell = {**DEFINITION, "checks": ["must_pass", "numerical", "perplexity"], "sweep": "norms"}
    kept = [o for o in data().outcomes if o.check != "finite"]
    v = decide(ExperimentData("exp", kept, {Artifact.EXPERIMENT: cell}))
    assert v.reasons == ["not measured: finite (no outcome recorded); run the experiment's tests together: "
                         "pytest --sweep norms -k exp"]


def test_a_no_op_candidate_owes_only_the_must_pass_checks():
    analysis = {"noop": True, "recipe": {"format": "bf16"}, "tensors": [{"n": 576, "changed": 0}]}
    must_pass = [o for o in data().outcomes if o.category == "must_pass"]
    artifacts = {Artifact.EXPERIMENT: DEFINITION, Artifact.NUMERICAL: analysis}
    v = decide(ExperimentData("exp", must_pass, artifacts))
    assert v.decision == Decision.INCONCLUSIVE and len(v.reasons) == 1  # the no-op, nothing unmeasured
    v = decide(ExperimentData("exp", must_pass[1:], artifacts))
    assert v.reasons[1].startswith("not measured: build (no outcome recorded)")


def test_the_table_of_checks_is_what_the_acceptance_tests_record():
    """CHECK_OF_TEST against the source: each test's ``outcome(...)`` calls record exactly its id."""
    import ast
    from pathlib import Path

    from fakequant.suite.vocab import CHECK_OF_TEST

    found: dict[str, set[str]] = {}
    for path in (Path(__file__).resolve().parents[1] / "acceptance").glob("test_*.py"):
        for fn in ast.parse(path.read_text()).body:
            if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_"):
                found[fn.name] = {ast.unparse(call.args[0]) for call in ast.walk(fn) if isinstance(call, ast.Call)
                                  and getattr(call.func, "id", None) == "outcome"}
    wanted = {test: {repr(check) if "{" not in check else "f'conversation[{prompt.id}]'"}
              for test, (check, _) in CHECK_OF_TEST.items()}
    assert {test: ids for test, ids in found.items() if ids} == wanted


def test_inconclusive_perplexity_says_how_many_chunks_would_resolve_it():
    pc = {"ln_ppl_ratio": 0.047, "ln_ppl_ratio_se": 0.012, "chunks": 20}
    v = decide(data(("perplexity", "inconclusive", "+4.8% straddles 5%"), artifacts={Artifact.PERPLEXITY: pc}))
    assert v.decision == Decision.INCONCLUSIVE
    expected = chunks_to_clear(0.012, 20, math.log(1.05) - 0.047)  # the decision's own t interval over chunks
    assert v.reasons == [f"perplexity: +4.8% straddles 5%; about {expected} chunks (now 20) would resolve it"]


def control(*changes: tuple[str, str, str], expect: dict) -> Verdict:
    return decide(data(*changes, artifacts={Artifact.EXPERIMENT: {"expect": expect}}))


def test_a_control_matches_when_exactly_its_named_checks_fail():
    v = control(("perplexity", "fail", "+30% > 5%"), expect={"perplexity": "fail"})
    assert v.decision == Decision.STOP and v.matched is True
    assert v.expectation.failed == {"perplexity": ("perplexity",)} and not v.expectation.problems()


def test_a_category_key_is_met_by_any_failing_check_of_it():
    v = control(("conversation[intro]", "fail", "no 4"), ("load", "fail", "no token"),
                expect={"conversation": "fail", "must_pass": "fail"})
    assert v.matched is True
    assert v.expectation.failed == {"conversation": ("conversation[intro]",), "must_pass": ("load",)}


def test_another_check_failing_too_is_not_a_match():
    v = control(("perplexity", "fail", "+30%"), ("format", "fail", "metadata differs"), expect={"perplexity": "fail"})
    assert v.decision == Decision.STOP and v.matched is False
    assert v.expectation.unexpected == ("format",)
    assert v.expectation.problems() == ["format failed, not expected"]


def test_a_named_check_that_passed_is_not_a_match():
    v = control(("numerical", "fail", "31% > 5%"), expect={"numerical": "fail", "perplexity": "fail"})
    assert v.decision == Decision.STOP and v.matched is False
    assert v.expectation.missing == ("perplexity",)
    assert v.expectation.problems() == ["perplexity did not fail"]


def test_a_named_check_that_could_not_run_is_not_a_match():
    v = control(("perplexity", "error", "corpus too short"), expect={"perplexity": "fail"})
    assert v.matched is False
    assert v.expectation.problems() == ["perplexity did not fail", "perplexity (could not run) failed, not expected"]


def test_a_control_nobody_named_a_check_of_is_not_a_control():
    v = decide(data(("perplexity", "fail", "+30%")))
    assert v.expectation is None and v.matched is None and v.to_json()["expected"] is None


@pytest.mark.parametrize("raw", ["STOP", {"perplexity": "pass"}, ["perplexity"]])
def test_an_expectation_of_another_form_is_a_note(raw):
    v = decide(data(artifacts={Artifact.EXPERIMENT: {"expect": raw}}))
    assert v.expectation is None
    assert any(repr(raw) in n and "ignored" in n for n in v.notes)


def test_reasons_are_one_line():
    v = decide(data(("perplexity", "fail", "line one\nline two")))
    assert v.reasons == ["perplexity: line one line two"]


def test_verdict_json_round_trip():
    v = control(("perplexity", "fail", "+9%"), ("load", "fail", "no token"), expect={"perplexity": "fail"})
    again = Verdict.from_json(v.to_json())
    assert again == v and again.matched is False
    assert v.to_json()["expected"] == {"perplexity": "fail"}
    assert v.to_json()["expectation"] == {"failed": {"perplexity": ["perplexity"]}, "missing": [],
                                          "unexpected": ["load"], "unexpected_messages": [None]}
    assert [str(r) for r in again.reasons] == v.reasons and again.headline == v.headline
    assert [r.code for r in again.reasons] == ["verdict.check", "verdict.check"]  # the codes come back too


def test_a_powerless_sampled_check_is_named_but_does_not_hold_up_the_decision():
    blind = CheckOutcome("e", "conversation[chinese_intro]", "conversation", Status.INCONCLUSIVE,
                         "chinese_intro: no power to detect a regression in language", {"no_power": True})
    weak = CheckOutcome("e", "conversation[robot]", "conversation", Status.INCONCLUSIVE,
                        "robot: most candidate answers fail, not significantly", {"no_power": False})
    ppl = CheckOutcome("e", "perplexity", "perplexity", Status.PASS, "perplexity increase +0.01%")
    must = [o for o in data().outcomes if o.category == "must_pass"]
    declared = {Artifact.EXPERIMENT: {"checks": ["must_pass", "conversation", "perplexity"],
                                      "prompts": [{"id": "chinese_intro"}, {"id": "robot"}]}}
    robot = CheckOutcome("e", "conversation[robot]", "conversation", Status.PASS, "robot: every check passes")
    battery = CheckOutcome("e", "conversation[battery]", "conversation", Status.PASS, "no regression")
    must.append(battery)
    verdict = decide(ExperimentData("e", [*must, blind, robot, ppl], declared))
    assert verdict.decision == Decision.GO
    assert "1 more could not be measured: conversation[chinese_intro]" in verdict.reasons[0]
    assert any(n.startswith("not measurable with this model, not counted as a pass") for n in verdict.notes)
    # an unsure check that more samples could settle still holds the decision
    assert decide(ExperimentData("e", [*must, blind, weak, ppl], declared)).decision == Decision.INCONCLUSIVE
