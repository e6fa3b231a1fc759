"""The conversation battery: its test over prompts (both sides, and its power statement), the shipped file's
validation, the rule for a broken plan prompt, and what a positive control naming the battery needs."""

from __future__ import annotations

import itertools
import math
import tomllib
from pathlib import Path

import pytest

from fakequant.errors import CriteriaError
from fakequant.suite import battery
from fakequant.suite.conversation import answer_checks, question_language, with_twins
from fakequant.suite.criteria import Thresholds
from fakequant.suite.criteria.battery import BATTERY_FILE, TOPICS, load_battery, parse_battery
from fakequant.suite.expectation import nameable
from fakequant.suite.outcomes import CheckOutcome, ExperimentData
from fakequant.suite.rules.conversation import battery_test, named_prompt
from fakequant.suite.verdict import decide
from fakequant.suite.vocab import Artifact, Decision, Status

T = Thresholds()


def clean(n: int) -> list[bool]:
    return [False] * n


def brute_force_p(candidate: list[bool], placebos: list[list[bool]]) -> float:
    """The permutation p-value by enumeration: within each prompt, every way of handing the K + 1 answers' broken /
    kept to the candidate's label, each equally likely under the null, independently over prompts."""
    k = len(placebos)
    per_prompt = [[candidate[i], *(p[i] for p in placebos)] for i in range(len(candidate))]
    observed = sum(candidate)
    hits = total = 0
    for pick in itertools.product(range(k + 1), repeat=len(candidate)):
        total += 1
        hits += sum(per_prompt[i][j] for i, j in enumerate(pick)) >= observed
    return hits / total


def test_candidate_breaking_many_that_no_twin_breaks_is_a_regression():
    n = 40
    cand = [True] * 6 + clean(n - 6)
    twins = [clean(n) for _ in range(4)]
    twins[1][30] = True  # a twin breaks one other prompt
    test = battery_test(cand, twins, 0.05)
    assert test.candidate_breaks == 6 and test.placebo_breaks == (0, 1, 0, 0) and test.prompts == n
    # 7 prompts have a broken answer, the candidate's label lands on it with probability 1/5 each: P(S >= 6)
    assert test.p_value == pytest.approx(7 * 0.2 ** 6 * 0.8 + 0.2 ** 7)
    assert test.regression and test.status is Status.FAIL


def test_candidate_breaking_as_many_as_the_twins_is_no_regression():
    n = 40
    twins = [clean(n) for _ in range(4)]
    for j, twin in enumerate(twins):  # each twin breaks 3 prompts of its own
        for i in range(3):
            twin[3 * j + i] = True
    cand = clean(n)
    cand[20:23] = [True] * 3
    test = battery_test(cand, twins, 0.05)
    assert test.candidate_breaks == 3 and test.placebo_breaks == (3, 3, 3, 3)
    assert not test.regression and test.status is Status.PASS
    # the same prompts broken by every model carry no evidence at all
    same = battery_test([True] * 3 + clean(37), [[True] * 3 + clean(37) for _ in range(4)], 0.05)
    assert same.p_value == 1.0 and same.status is Status.PASS


def test_significant_but_no_more_than_one_twin_is_no_regression():
    """A twin that breaks many is a model-level spread the within-prompt test does not see: the candidate must also
    break more than every twin."""
    n = 40
    cand = [True] * 6 + clean(n - 6)
    twins = [clean(n) for _ in range(4)]
    twins[0][10:16] = [True] * 6
    test = battery_test(cand, twins, 0.05)
    assert test.p_value < 0.05  # P(S >= 6) over 12 Bernoulli(1/5): 0.019
    assert not test.regression and test.status is Status.PASS
    assert test.smallest_significant == 7


@pytest.mark.parametrize("cand,twins", [
    ([True, False, True, False], [[False, True, False, False], [True, False, False, False]]),
    ([True, True, False], [[True, False, False], [False, False, True], [False, True, True]]),
    ([False, True, True, True], [[False, False, False, True], [False, True, False, False]]),
])
def test_p_value_is_the_exact_permutation_tail(cand, twins):
    assert battery_test(cand, twins, 0.05).p_value == pytest.approx(brute_force_p(cand, twins))


def test_power_statement_is_the_fewest_breaks_that_could_be_significant():
    twins = [clean(40) for _ in range(4)]
    test = battery_test(clean(40), twins, 0.05)
    # K = 4, clean twins: 1 break gives p = 0.2, 2 give 0.04
    assert test.smallest_significant == 2 and test.status is Status.PASS
    assert battery_test([True, *clean(39)], twins, 0.05).status is Status.PASS
    assert battery_test([True, True, *clean(38)], twins, 0.05).status is Status.FAIL
    # at alpha 0.01: 0.2^2 = 0.04 is not enough, 0.2^3 = 0.008 is
    assert battery_test(clean(40), twins, 0.01).smallest_significant == 3
    # with one twin the candidate is one of two: p = 0.5^m, so 5 breaks (0.031) are the fewest at 0.05
    assert battery_test(clean(40), [clean(40)], 0.05).smallest_significant == 5


def test_smallest_significant_is_really_the_boundary():
    twins = [clean(30) for _ in range(4)]
    for i in range(0, 30, 3):
        twins[i % 4][i] = True
    test = battery_test(clean(30), twins, 0.05)
    m = test.smallest_significant
    assert m is not None
    # m breaks where the twins broke least are a regression; m - 1 anywhere are not
    order = sorted(range(30), key=lambda i: sum(t[i] for t in twins))
    at = clean(30)
    for i in order[:m]:
        at[i] = True
    assert battery_test(at, twins, 0.05).regression
    below = clean(30)
    for i in order[:m - 1]:
        below[i] = True
    assert not battery_test(below, twins, 0.05).regression


def test_no_power_when_too_few_prompts_pass_on_the_original():
    one = battery_test([True], [[False]] * 4, 0.05)  # one prompt: p = 0.2 at best
    assert one.smallest_significant is None and one.status is Status.INCONCLUSIVE
    none = battery_test([], [[]] * 4, 0.05)
    assert none.prompts == 0 and none.status is Status.INCONCLUSIVE


# ------------------------------------------------------------------------------------------------ the shipped file


def test_shipped_battery_has_the_plans_kinds_in_both_languages():
    prompts = load_battery()
    assert len(prompts) >= 40
    assert {p.topic for p in prompts} == set(TOPICS)
    langs = {question_language(p.prompt.turns[0]) for p in prompts}
    assert langs == {"en", "zh"}
    assert any(len(p.prompt.turns) > 1 for p in prompts)  # multi-turn chats
    assert all(p.prompt.params.greedy and p.prompt.params.max_tokens <= 48 for p in prompts)
    # several arithmetic answers need the digit 4 (control_conversation zeroes that token)
    assert sum(p.topic in ("arithmetic", "word_problem") and "4" in p.prompt.contains for p in prompts) >= 4


def test_every_shipped_prompt_has_a_check_that_can_fail_besides_valid_text():
    for bp in load_battery():
        p = bp.prompt
        wrong = "Sure." if question_language(p.turns[-1]) == "zh" or p.contains or p.contains_any else "好的，沒問題。"
        checks = answer_checks(p, p.turns, [wrong] * len(p.turns), T)
        failing = [name for name, (ok, _) in checks.items() if not ok and name != "valid_text"]
        assert failing, f"{bp.id}: the answer {wrong!r} fails no check"


def battery_data(n: int = 40, **override: object) -> dict:
    data = {f"p{i}": {"topic": "question", "turns": [f"What is {i}+1?"], "contains": [str(i + 1)]} for i in range(n)}
    data["p0"] = {**data["p0"], **override}
    return data


@pytest.mark.parametrize("override,message", [
    ({"temperature": 0.7}, "p0.temperature: must be 0"),
    ({"max_tokens": 200}, "p0.max_tokens: at most 48"),
    ({"contains": [" "]}, "cannot fail"),
    ({"contains": [], "language": "any"}, "no check that can fail"),
    ({"topic": "poetry"}, "p0.topic: must be one of"),
    ({"topic": None}, "p0.topic"),
    ({"prompt": "raw text", "turns": None}, "p0.prompt"),
    ({"colour": "red"}, "p0.colour: unknown key"),
])
def test_battery_file_validation_names_the_key(override, message):
    data = battery_data(**{k: v for k, v in override.items() if v is not None})
    for k, v in override.items():
        if v is None:
            data["p0"].pop(k)
    with pytest.raises(CriteriaError, match=message.replace(".", r"\.")) as err:
        parse_battery(data, Path("battery.toml"))
    assert str(err.value).startswith("battery.toml: ")


def test_battery_with_too_few_prompts_is_refused():
    with pytest.raises(CriteriaError, match="holds 39 prompts; at least 40"):
        parse_battery(battery_data(39), Path("battery.toml"))
    assert len(parse_battery(battery_data(40), Path("battery.toml"))) == 40
    assert tomllib.loads(BATTERY_FILE.read_text())  # the shipped file is plain TOML


# --------------------------------------------------------------------------------- answers → artifact → ruling


def samples(*turns: str) -> list[list[dict]]:
    return [[{"text": t, "token_ids": [ord(c) for c in t], "template": "plain"} for t in turns]]


def test_evaluate_and_ruling_on_answers():
    prompts = [bp for bp in load_battery() if len(bp.prompt.turns) == 1 and bp.prompt.contains == ("4",)]
    assert len(prompts) >= 3
    base = {bp.id: samples("The answer is 4.") for bp in prompts}
    cand = {bp.id: samples("The answer is 5.") for bp in prompts}  # every one broken (the "4" is gone)
    twins = [dict(base) for _ in range(4)]
    data = battery.evaluate(prompts, base, cand, twins, [0, 1, 2, 3], T)
    status, reason, values = battery.ruling(data)
    assert status is Status.FAIL
    assert values["candidate_breaks"] == len(prompts) and values["placebo_breaks"] == [0, 0, 0, 0]
    assert values["p_value"] == pytest.approx(0.2 ** len(prompts)) and values["smallest_significant"] == 2
    assert values["broken_by_candidate"] == [bp.id for bp in prompts] and values["template"] == "plain"
    assert data["prompts"][0]["candidate_broke"] == ["expectations"]
    assert f"candidate broke {len(prompts)} of the original's {len(prompts)} passing answers" in reason
    assert reason == battery.reason(values)  # the sentence comes from the values alone
    # the twins answer like the candidate: no regression
    same = battery.evaluate(prompts, base, cand, [dict(cand) for _ in range(4)], [0, 1, 2, 3], T)
    assert battery.ruling(same).status is not Status.FAIL
    # one twin answers like the candidate, the others like the original: as many breaks as a twin, no regression
    one = battery.evaluate(prompts, base, cand, [dict(cand), *(dict(base) for _ in range(3))], [0, 1, 2, 3], T)
    status, reason, values = battery.ruling(one)
    assert status is not Status.FAIL and values["placebo_breaks"] == [len(prompts), 0, 0, 0]


def test_prompts_the_original_fails_are_not_counted():
    prompts = [bp for bp in load_battery() if bp.prompt.contains == ("4",)][:3]
    base = {bp.id: samples("I do not know.") for bp in prompts}  # lacks "4": the original fails them all
    assert battery.passing(prompts, base, T) == []
    data = battery.evaluate(prompts, base, {}, [{}, {}], [0, 1], T)
    status, reason, values = battery.ruling(data)
    assert status is Status.INCONCLUSIVE and values["no_power"] and values["original_passes"] == 0
    assert "no power" in reason


# ------------------------------------------------------------------------------------------ plan prompts, verdict


def test_a_broken_greedy_plan_prompt_alone_is_a_caution():
    assert named_prompt(Status.FAIL, greedy=True, nonfinite=False) is Status.CAUTION
    assert named_prompt(Status.FAIL, greedy=False, nonfinite=False) is Status.FAIL  # a significant Fisher test
    assert named_prompt(Status.FAIL, greedy=True, nonfinite=True) is Status.FAIL  # NaN logits
    assert named_prompt(Status.LIMITATION, greedy=True, nonfinite=False) is Status.LIMITATION
    entry = {"id": "chat_zh", "greedy": True, "status": "fail", "exact_match": False,
             "first_divergence": {"index": 3}, "baseline": {"text": "a"}, "candidate": {"text": "b"},
             "fluency": {}, "checks": [{"name": "valid_text", "status": "fail", "detail": "turn 2: invalid UTF-8"}]}
    twin_ok = {"status": "pass", "candidate": {"turns": ["a"]}}
    twin_bad = {"status": "fail", "candidate": {"turns": ["c"]}}
    out = with_twins(entry, [twin_ok, twin_bad, twin_ok, twin_ok], [0, 1, 2, 3])
    assert out["status"] == "caution" and out["placebos"]["broke"] == 1 and out["placebos"]["broke_seeds"] == [1]
    from fakequant.suite.conversation import ruling

    status, reason, values = ruling(out)
    assert status is Status.CAUTION and values["placebo_breaks"] == 1 and values["twins"] == 4
    assert "1 of 4 placebo twins broke it too" in reason


MUST = [("build", "must_pass"), ("format", "must_pass"), ("load", "must_pass"), ("finite", "must_pass"),
        ("original_unchanged", "must_pass"), ("numerical", "numerical")]
CONTROL = {"name": "exp", "checks": ["must_pass", "numerical", "conversation"], "prompts": [{"id": "math_en"}],
           "expect": {"conversation[battery]": "fail"}}


def control(*extra: tuple[str, str]) -> ExperimentData:
    outcomes = [CheckOutcome("exp", c, cat, s, f"{c}: {s}") for c, cat, s in
                [*((c, cat, "pass") for c, cat in MUST), ("conversation[math_en]", "conversation", "caution"),
                 *extra]]
    return ExperimentData("exp", outcomes, {Artifact.EXPERIMENT: CONTROL})


def test_control_naming_the_battery_is_caught_only_by_the_battery():
    assert "conversation[battery]" in nameable(["conversation"], ["math_en"])
    caught = decide(control(("conversation[battery]", "conversation", "fail")))
    assert caught.decision == Decision.STOP and caught.matched
    # the battery switched off (no outcome): the broken math_en alone is a caution, and the control does not match
    off = decide(control())
    assert off.decision == Decision.INCONCLUSIVE and not off.matched
    assert any("conversation[battery]" in r for r in off.reasons)
    passed = decide(control(("conversation[battery]", "conversation", "pass")))
    assert passed.decision == Decision.CAUTION and not passed.matched


def test_alpha_and_twins_come_from_the_thresholds():
    assert T.battery_placebos == 4 and math.isclose(T.conversation_alpha, 0.05)


def test_report_section_shows_the_counts_the_p_value_and_the_broken_prompts():
    from fakequant.report import battery as section
    from fakequant.report.markdown import render
    from fakequant.report.reading import DocContext

    prompts = [bp for bp in load_battery() if len(bp.prompt.turns) == 1 and bp.prompt.contains == ("4",)]
    base = {bp.id: samples("The answer is 4.") for bp in prompts}
    cand = {bp.id: samples("The answer is 5.") for bp in prompts}
    data = battery.evaluate(prompts, base, cand, [dict(base) for _ in range(4)], [0, 1, 2, 3], T)
    status, reason, _ = battery.ruling(data)
    doc = {"artifacts": {Artifact.BATTERY: data}, "outcomes": [
        {"check": "conversation[battery]", "category": "conversation", "status": str(status), "reason": reason}]}
    for lang in ("en", "zh-TW"):
        text = render(section.section(DocContext(doc, lang)))
        assert f"{0.2 ** len(prompts):.3g}" in text and prompts[0].id in text and "The answer is 5." in text
    assert "fewest breaks that would be significant | 2" in render(section.section(DocContext(doc, "en")))
    assert section.section(DocContext({"artifacts": {}}, "en")) == []
