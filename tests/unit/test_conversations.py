"""Conversation checks on fixed texts: each check can fail, and limitation vs regression is decided per check."""

from __future__ import annotations

import math

import pytest

from fakequant.runtime.settings import SamplingParams
from fakequant.suite.conversation import (
    answer_checks,
    cjk_ratio,
    evaluate,
    first_divergence,
    question_language,
    reason,
    repetition_score,
    ruling,
    text_problem,
)
from fakequant.suite.criteria import Prompt, Thresholds
from fakequant.suite.vocab import Status

T = Thresholds()


def gen(text: str, ids: list[int] | None = None, nonfinite: str | None = None) -> dict:
    return {"text": text, "token_ids": ids if ids is not None else [ord(c) for c in text], "prompt_tokens": 3,
            "prompt_tokens_per_s": 100.0, "gen_tokens_per_s": 50.0, "nonfinite": nonfinite}


def test_cjk_ratio_and_language():
    assert cjk_ratio("你好，請介紹一下自己。") == 1.0
    assert cjk_ratio("Hello there") == 0.0
    assert cjk_ratio("我是 robot") == pytest.approx(2 / 7)  # 2 CJK of 7 letters
    assert cjk_ratio("2+2 = 4") == 0.0
    assert question_language("2+2等於多少？") == "zh" and question_language("What is 2+2?") == "en"


def test_repetition_score_separates_loops_from_prose():
    prose = ("The robot woke up in a quiet workshop. It looked at its hands, then at the window, and decided "
             "that today it would learn to paint the sunrise for the old man who built it.")
    assert repetition_score(prose) < 0.1
    assert repetition_score("the cat sat " * 10) > 0.8
    assert repetition_score("!" * 40) > 0.9
    assert repetition_score("我愛你" * 12) > 0.8
    assert repetition_score("short") == 0.0


def test_text_problems():
    assert text_problem("") == "empty answer" and text_problem("  \n") == "empty answer"
    assert "UTF-8" in text_problem("caf\ufffd au lait")
    assert text_problem("cut inside a character \ufffd") is None  # max_tokens stopped mid-character
    assert "U+0007" in text_problem("bell\x07")
    assert text_problem("fine\nanswer\t") is None


def test_answer_checks_expectations_and_language():
    p = Prompt(id="m", kind="chat", turns=("2+2等於多少？",), contains_any=("4", "四"))
    ok = answer_checks(p, p.turns, ["2+2等於4。"], T)
    assert ok["expectations"][0] and ok["language"][0] and ok["valid_text"][0] and ok["not_degenerate"][0]
    bad = answer_checks(p, p.turns, ["The answer is five."], T)
    assert not bad["expectations"][0] and not bad["language"][0]
    q = Prompt(id="e", kind="raw", prompt="What is 2+2?", contains=("4",), language="any")
    assert "language" not in answer_checks(q, [q.prompt], ["4"], T)
    assert not answer_checks(q, [q.prompt], ["four"], T)["expectations"][0]


SPREAD = [-0.4, -0.3, -0.2, -0.1, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4]  # per-token NLL around the mean


def scorer_from(table: dict[str, float]):
    """Per-token log-probabilities whose perplexity is table[answer], with some token-to-token spread."""
    calls = []

    def scorer(answer: str, prefix: str) -> list[float]:
        calls.append(answer)
        return [-(math.log(table[answer]) + d) for d in SPREAD]
    return scorer, calls


def test_identical_answers_pass_and_skip_second_fluency_scoring():
    p = Prompt(id="m", kind="chat", turns=("What is 2+2?",), contains=("4",))
    scorer, calls = scorer_from({"2+2 is 4.": 5.0})
    e = evaluate(p, [[gen("2+2 is 4.")]], [[gen("2+2 is 4.")]], T, scorer)
    assert e["status"] == "pass" and e["exact_match"] and e["first_divergence"] is None
    assert e["fluency"]["baseline_ppl_of_candidate_answer"] == pytest.approx(5.0)
    assert calls == ["2+2 is 4."]
    assert "all 5 checks pass" in reason(e)


def test_regression_when_only_candidate_fails():
    p = Prompt(id="m", kind="chat", turns=("What is 2+2?",), contains=("4",))
    scorer, _ = scorer_from({"2+2 is 4.": 5.0, "2+2 is 5.": 6.0})
    e = evaluate(p, [[gen("2+2 is 4.", [1, 2, 3])]], [[gen("2+2 is 5.", [1, 2, 9])]], T, scorer)
    assert e["status"] == "fail" and not e["exact_match"]
    assert e["first_divergence"] == {"index": 2, "baseline_token": 3, "candidate_token": 9}
    assert {c["name"]: c["status"] for c in e["checks"]}["expectations"] == "fail"
    assert "regression in expectations" in reason(e)
    status, text, values = ruling(e)
    assert status is Status.FAIL and text == reason(e)
    assert values["check_expectations"] == "fail" and values["first_divergence"] == 2


def test_limitation_when_both_fail():
    p = Prompt(id="z", kind="chat", turns=("你好，請介紹一下自己。",))
    scorer, _ = scorer_from({"Hello, I am a bot.": 8.0, "Hi, I am a bot.": 9.0})
    e = evaluate(p, [[gen("Hello, I am a bot.")]], [[gen("Hi, I am a bot.")]], T, scorer)
    assert e["status"] == "limitation"
    assert {c["name"]: c["status"] for c in e["checks"]}["language"] == "limitation"
    assert "model limitation" in reason(e)


def test_fluency_regression_beyond_factor():
    p = Prompt(id="s", kind="raw", prompt="Write a story.", language="any")
    scorer, _ = scorer_from({"A fine story.": 10.0, "story a fine.": 40.0})
    e = evaluate(p, [[gen("A fine story.")]], [[gen("story a fine.")]], T, scorer)
    flu = next(c for c in e["checks"] if c["name"] == "fluency")
    assert flu["status"] == "fail" and "×4.00" in flu["detail"] and e["fluency"]["p_value"] < 0.05
    assert e["prompt"] == "Write a story."


def test_fluency_difference_within_noise_is_not_a_regression():
    p = Prompt(id="s", kind="raw", prompt="Write a story.", language="any")
    wide = [-3.0, -2.0, -1.0, 0.0, 0.0, 1.0, 2.0, 3.0]  # short answers with a large token-to-token spread

    def scorer(answer: str, prefix: str) -> list[float]:
        mean = math.log({"A fine story.": 5.0, "Another tale.": 12.0}[answer])
        return [-(mean + d) for d in wide]
    e = evaluate(p, [[gen("A fine story.")]], [[gen("Another tale.")]], T, scorer)
    flu = next(c for c in e["checks"] if c["name"] == "fluency")
    assert flu["status"] == "pass" and e["fluency"]["p_value"] > 0.05
    assert e["fluency"]["baseline_ppl_of_candidate_answer"] / e["fluency"]["baseline_ppl_of_baseline_answer"] > 2


def test_nonfinite_logits_in_candidate_fail():
    p = Prompt(id="s", kind="raw", prompt="Hi", language="any")
    e = evaluate(p, [[gen("Hello.")]], [[gen("Hello.", nonfinite="generated token 3")]], T, None)
    assert e["status"] == "fail" and any(c["name"] == "finite_logits" for c in e["checks"])


def _zh_samples(texts: str) -> list[list[dict]]:
    """One single-turn sample per character: "z" = a Chinese answer, "e" = an English one, "x" = broken text."""
    return [[gen({"z": "你好，我是助手。", "e": "Hello, I am an assistant.", "x": "你好\ufffd我是"}[t])] for t in texts]


@pytest.mark.parametrize(("base", "cand", "status"), [
    ("zzzzz", "zzzze", "pass"),          # one English answer in five: sampling
    ("zzzzz", "zeeee", "fail"),          # 5/5 against 1/5: p = 0.024
    ("zzzzz", "zzeee", "inconclusive"),  # 5/5 against 2/5: p = 0.083, most candidate answers fail
    ("zeeee", "eeeee", "inconclusive"),  # 1/5 baseline: even 0/5 gives p = 0.5, the test cannot see a regression
    ("eeeee", "eeeee", "limitation"),    # the baseline never passes: the model's limit
    ("zzzzz", "zzzzx", "fail"),          # broken text in any sample
])
def test_sampled_prompt_is_judged_on_pass_counts_over_seeds(base: str, cand: str, status: str):
    p = Prompt(id="z", kind="chat", turns=("你好，請介紹一下自己。",), params=SamplingParams(temperature=0.7),
               samples=5)
    e = evaluate(p, _zh_samples(base), _zh_samples(cand), T, None)
    assert e["status"] == status
    if base == "zeeee":
        assert "z: no power to detect a regression in language" in reason(e)
    assert e["samples"]["seeds"] == [1234, 1235, 1236, 1237, 1238] and len(e["samples"]["candidate"]) == 5
    if cand != "zzzzx":
        lang = next(c for c in e["checks"] if c["name"] == "language")
        assert (lang["baseline_passes"], lang["candidate_passes"]) == (base.count("z"), cand.count("z"))


def test_greedy_prompt_fails_on_its_one_answer():
    greedy = Prompt(id="z", kind="chat", turns=("你好，請介紹一下自己。",))
    assert evaluate(greedy, _zh_samples("z"), _zh_samples("e"), T, None)["status"] == "fail"


def test_sampled_answers_fluency_is_informational():
    p = Prompt(id="s", kind="raw", prompt="Write a story.", language="any", params=SamplingParams(temperature=0.7))
    scorer, _ = scorer_from({"A fine story.": 10.0, "story a fine.": 40.0})
    e = evaluate(p, [[gen("A fine story.")]], [[gen("story a fine.")]], T, scorer)
    flu = next(c for c in e["checks"] if c["name"] == "fluency")
    assert flu["status"] == "pass" and "informational" in flu["detail"] and not e["fluency"]["judged"]


def test_multi_turn_entry_keeps_every_turn():
    p = Prompt(id="c", kind="chat", turns=("Hi", "How are you?", "Bye"), params=SamplingParams(temperature=0.7))
    base = [gen("Hello!"), gen("Fine, thanks."), gen("Goodbye!")]
    cand = [gen("Hello!"), gen("Fine, thanks."), gen("Goodbye!!")]
    e = evaluate(p, [base], [cand], T, None)
    assert e["candidate"]["turns"] == ["Hello!", "Fine, thanks.", "Goodbye!!"]
    assert [m["content"] for m in e["messages"]] == ["Hi", "How are you?", "Bye"]
    assert e["first_divergence"]["index"] == len("Hello!Fine, thanks.Goodbye!")
    assert not e["greedy"] and e["status"] == "pass"


def test_first_divergence_lengths():
    assert first_divergence([1, 2], [1, 2]) is None
    assert first_divergence([1, 2], [1]) == {"index": 1, "baseline_token": 2, "candidate_token": None}
