"""The catalogs of fakequant.i18n: every reason code the suite can give has an English and a Traditional Chinese
rendering, the English one reads exactly as the rules wrote it before codes existed, and a zh-TW report says its
decision in Chinese."""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path
from typing import Any

import pytest

from fakequant.i18n import CATALOGS, Message, localized, msg, render

ROOT = Path(__file__).resolve().parents[2] / "fakequant"
EN, ZH = CATALOGS["en"], CATALOGS["zh-TW"]
# Where each record keeps its sentence: the position of the reason (detail, headline) among a call's arguments.
SENTENCE_ARG = {"Ruling": 1, "CheckOutcome": 4, "CheckResult": 3, "CellResult": 5}


def _calls(names: set[str]) -> list[tuple[str, ast.Call]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("i18n/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name in names:
                    found.append((rel, node))
    return found


def _codes_in_source() -> dict[str, str]:
    """Every code a ``msg(...)`` / ``Message(...)`` in the package names, with where."""
    codes: dict[str, str] = {}
    for rel, call in _calls({"msg", "Message"}):
        first = call.args[0] if call.args else None
        assert isinstance(first, ast.Constant) and isinstance(first.value, str), \
            f"{rel}:{call.lineno}: a reason code must be a string literal, so that this test can find it"
        codes[first.value] = f"{rel}:{call.lineno}"
    return codes


def test_every_code_the_package_uses_has_an_english_and_a_zh_tw_rendering() -> None:
    codes = _codes_in_source()
    assert len(codes) > 60  # the scan sees the rules, the verdict, the controls and the plugin
    missing = {code: where for code, where in codes.items() if code not in EN or code not in ZH}
    assert not missing, f"reason codes without a rendering in fakequant/i18n/en.py or zh_TW.py: {missing}"


def test_no_rule_gives_a_reason_without_a_code() -> None:
    """A Ruling, CheckOutcome, CheckResult or CellResult built with an English sentence (a literal or an f-string)
    instead of a Message could only be copied by the report, never translated."""
    plain = []
    for rel, call in _calls(set(SENTENCE_ARG)):
        name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
        at = SENTENCE_ARG[name]
        args = call.args[at:at + 1] + [k.value for k in call.keywords if k.arg in ("reason", "detail", "headline")]
        if any(isinstance(a, ast.JoinedStr | ast.Constant) for a in args):
            plain.append(f"{rel}:{call.lineno}")
    assert not plain, f"reasons given as plain text: {plain}"


def _fields(template: str) -> list[tuple[str, str]]:
    return sorted((name, spec or "") for _, name, spec, _ in string.Formatter().parse(template) if name is not None)


def test_both_catalogs_have_the_same_keys_and_fields() -> None:
    assert set(EN) == set(ZH), f"only in en: {set(EN) - set(ZH)}; only in zh-TW: {set(ZH) - set(EN)}"
    differ = [key for key in EN if _fields(EN[key]) != _fields(ZH[key])]
    assert not differ, f"the zh-TW template takes other fields (or format specs) than the English one: {differ}"


M = msg  # short, for the nested examples below
MEASURED = M("perplexity.measured", inc=0.0245, lo=0.0105, hi=0.0387, chunks=10)
# Every reason code with representative values, and the sentence the rules wrote for them before codes existed.
EXAMPLES: dict[str, tuple[dict[str, Any], str]] = {
    "build.done": ({"changed": 0, "total": 576, "tensors": 1, "what": M("build.noop", format="bf16")},
                   "0/576 values changed in 1 tensor(s) (no-op: every value already representable in bf16)"),
    "build.noop": ({"format": "bf16"}, "no-op: every value already representable in bf16"),
    "build.failed": ({"error": "blk.99.ffn_norm.weight: no such tensor"}, "blk.99.ffn_norm.weight: no such tensor"),
    "config.invalid": ({"error": "criteria.toml: experiments.x.format: unknown format 'bf17'"},
                       "criteria.toml: experiments.x.format: unknown format 'bf17'"),
    "format.differs": ({"count": 2, "first": "tensor order differs"},
                       "2 difference(s) from the original's format, first: tensor order differs"),
    "format.same": ({"changed_tensors": 3}, "same format as the original; only the 3 selected tensor(s) may differ"),
    "load.failed": ({"file": "abc.gguf", "error": "failed to load model"}, "abc.gguf: failed to load model"),
    "load.no_token": ({"stop": "eog"}, "quick inference produced no token (stop: eog)"),
    "load.ok": ({"seconds": 0.1234, "prompt": "Hello", "tokens": 5, "text": ", I'm a"},
                "loaded in 0.12 s; 'Hello' → 5 tokens \", I'm a\""),
    "finite.weights": ({"name": "blk.0.attn_q.weight", "nan_after": 3, "inf_after": 0, "nan_before": 0,
                        "inf_before": 0}, "blk.0.attn_q.weight: 3 NaN and 0 Inf after (before: 0 / 0)"),
    "finite.logits": ({"where": "token 3"}, "NaN/Inf logit at token 3"),
    "finite.ok": ({"tensors": 1, "positions": 7}, "no NaN/Inf in 1 changed tensor(s) nor in the logits of 7 positions"),
    "original.changed": ({"model": "/m/a.gguf", "before": "0123456789abcdef", "after": "fedcba9876543210"},
                         "/m/a.gguf: sha256 changed from 0123456789abcdef… to fedcba9876543210…"),
    "original.unchanged": ({"name": "a.gguf", "sha": "0123456789abcdef"}, "a.gguf: sha256 0123456789abcdef… unchanged"),
    "check.crashed": ({"test": "test_numerical[x]", "when": "call", "error": "ZeroDivisionError: boom"},
              "test_numerical[x] raised at call: ZeroDivisionError: boom"),
    "noop.target_format": ({}, "the target format"),
    "numerical.nothing_changed": ({"values": 576}, "0 of 576 values changed: nothing to compare"),
    "numerical.bounds": ({"mean_rel": 0.02612, "mean_tensor": "blk.10.ffn_norm.weight", "mean_ideal": 0.01,
                          "mean_acceptable": 0.05, "max_rel": 0.0625, "max_tensor": "blk.10.ffn_norm.weight",
                          "max_ideal": 0.1, "max_acceptable": 1.0, "tensors": 1},
                         "mean rel diff 2.612% (blk.10.ffn_norm.weight; ideal < 1%, acceptable < 5%), max rel diff "
                         "6.250% (blk.10.ffn_norm.weight; ideal < 10%, acceptable < 100%), over 1 changed tensor(s)"),
    "perplexity.one_chunk": ({"inc": 0.0012, "n": 1}, "perplexity increase +0.120% over 1 chunk(s): an interval "
                             "over chunks needs at least 2 chunks"),
    "perplexity.measured": ({"inc": 0.0245, "lo": 0.0105, "hi": 0.0387, "chunks": 10},
                            "perplexity increase +2.450% (95% CI +1.050% … +3.870%, t over 10 chunks)"),
    "perplexity.below_ideal": ({"measured": MEASURED, "ideal": 0.05},
                               f"{MEASURED} entirely below the ideal bound 5%"),
    "perplexity.above_acceptable": ({"measured": MEASURED, "acceptable": 0.01},
                                    f"{MEASURED} entirely above the acceptable bound 1%"),
    "perplexity.below_acceptable": ({"measured": MEASURED, "acceptable": 0.05, "ideal": 0.01},
                                    f"{MEASURED} below the acceptable bound 5% but not surely below the ideal 1%"),
    "perplexity.straddles": ({"measured": MEASURED, "acceptable": 0.03,
                              "more": M("perplexity.chunks_would_resolve", need=48)},
                             f"{MEASURED} straddles the acceptable bound 3%; about 48 chunks would resolve it"),
    "perplexity.chunks_would_resolve": ({"need": 48}, "about 48 chunks would resolve it"),
    "perplexity.no_chunks_resolve": ({}, "no number of chunks resolves an effect on the bound"),
    "perplexity.nonfinite": ({"where": "chunk 2", "text": MEASURED},
                             f"NaN/Inf logits in the perplexity pass at chunk 2; {MEASURED}"),
    "floor.placebo": ({"ppl": -0.0026, "kld": 0.002391},
                      "a one-ulp nudge of the same tensors (placebo) already moves perplexity by -0.260% and gives KLD "
                      "0.0024"),
    "floor.interval": ({"lo": 0.00021, "hi": 0.0014}, "95% CI +0.00021 … +0.0014"),
    "floor.no_interval": ({}, "no interval from one chunk"),
    "floor.resolved": ({"kld": 0.0008, "interval": M("floor.interval", lo=0.00021, hi=0.0014), "ppl": 0.0022},
                       "the format adds KLD +0.0008 (95% CI +0.00021 … +0.0014) and +0.220% perplexity beyond it"),
    "floor.unresolved": ({"kld": 0.00016, "interval": M("floor.no_interval"), "chunks": 1},
                         "the format's own effect is below what this model and runtime resolve at this position "
                         "(excess KLD +0.00016, no interval from one chunk, 1 chunks)"),
    "speed.slower": ({"value": 0.102}, "10.2% slower"),
    "speed.faster": ({"value": 0.031}, "3.1% faster"),
    "speed.shown": ({"moved": M("speed.slower", value=0.102), "noise": 0.021, "p": 0.0043},
                    "10.2% slower per round (median), A/A noise 2.1%, p = 0.004"),
    "speed.caution": ({"shown": "S", "alpha": 0.05, "tolerance": 0.1}, "S < 0.05: slower beyond the tolerance of 10%"),
    "speed.too_few_rounds": ({"n": 3, "smallest_p": 0.1, "alpha": 0.05},
                             "3 rounds cannot show a slowdown: the smallest p they can reach is 0.100, not below 0.05"),
    "speed.not_slower": ({"moved": M("speed.faster", value=0.031), "p": 0.002},
                         "not slower: 3.1% faster per round (median), significantly below the A/A slowdowns "
                         "(p = 0.002)"),
    "speed.noisy": ({"shown": "S", "noise": 0.152, "tolerance": 0.1},
                    "S; the original against itself already differs by 15.2% per round, more than the tolerance of "
                    "10%: this run cannot resolve it"),
    "speed.within_tolerance": ({"shown": "S", "tolerance": 0.1}, "S: significant, but within the tolerance of 10%"),
    "speed.no_slowdown": ({"ratio": 0.98765, "p": 0.294, "noise": 0.009},
                          "no significant slowdown (0.988× the original, p = 0.29; A/A noise 0.9%)"),
    "speed.metric": ({"metric": "gen_tps", "verdict": "V"}, "gen_tps V"),
    "speed.rounds": ({"rounds": 6, "metrics": [M("speed.metric", metric="load_s", verdict="A"),
                                               M("speed.metric", metric="gen_tps", verdict="B")]},
                     "6 interleaved rounds: load_s A; gen_tps B"),
    "clauses": ({"parts": [M("floor.no_interval"), "x"]}, "no interval from one chunk; x"),
    "verdict.check": ({"check": "perplexity", "reason": "R"}, "perplexity: R"),
    "verdict.speed_never_stops": ({"reason": "speed: R"}, "speed: R (speed alone never stops an experiment)"),
    "verdict.noop": ({"changed": 0, "total": 576, "format": "bf16"},
                     "numerical: 0/576 values changed (already representable in bf16); the candidate is the original, "
                     "so no check can tell anything — choose a format or tensors that change values"),
    "verdict.more_chunks": ({"text": "perplexity: R", "needed": 40, "chunks": 10},
                            "perplexity: R; about 40 chunks (now 10) would resolve it"),
    "verdict.could_not_run": ({"check": "perplexity", "reason": "R"}, "perplexity could not run: R"),
    "verdict.checks_unknown": ({"experiment": "x", "artifact": "experiment", "command": "pytest -k x"},
                               "not measured: which checks x has is unknown (no experiment.json with its checks and "
                               "prompts); run pytest -k x"),
    "verdict.missing": ({"checks": ["finite", "speed"], "command": "pytest -k x"},
                        "not measured: finite, speed (no outcome recorded); run the experiment's tests together: "
                        "pytest -k x"),
    "verdict.limitation": ({"reason": "conversation[a]: R"},
                           "model limitation, not the quantization's: conversation[a]: R"),
    "verdict.unmeasurable": ({"reason": "conversation[a]: R"},
                             "not measurable with this model, not counted as a pass: conversation[a]: R"),
    "verdict.all_pass": ({"passed": 9}, "all 9 checks pass"),
    "verdict.all_pass_but": ({"passed": 9, "count": 2, "checks": ["conversation[a]", "conversation[b]"]},
                             "all 9 checks pass (2 more could not be measured: conversation[a], conversation[b])"),
    "verdict.unreadable": ({"error": "ValueError: bad"}, "the recorded results could not be read: ValueError: bad"),
    "headline.noop": ({"changed": 0, "total": 576, "format": "bf16"},
                      "0/576 values changed (already representable in bf16)"),
    "headline.lead": ({"reason": "load: R", "more": M("headline.more", count=2), "floor": ""}, "load: R (+2 more)"),
    "headline.more": ({"count": 2}, " (+2 more)"),
    "headline.floor_resolved": ({"excess": 0.00175, "floor": 0.00337},
                                " — format's own effect KLD +0.0018 beyond the placebo floor 0.0034"),
    "headline.floor_unresolved": ({"excess": 0.00016, "floor": 0.00356},
                                  " — format's own effect below the placebo floor's resolution (floor KLD 0.0036, "
                                  "excess +0.00016)"),
    "conversation.regression": ({"id": "chat_zh", "checks": ["valid_text", "fluency"],
                                 "details": [M("conversation.detail", name="valid_text", detail="D")]},
                                "chat_zh: regression in valid_text, fluency — valid_text: D"),
    "conversation.greedy_caution": ({"id": "p", "checks": ["valid_text"], "broke": 1, "twins": 4,
                                     "details": [M("conversation.detail", name="valid_text", detail="D")]},
                                    "p: the candidate's greedy answer breaks valid_text; 1 of 4 placebo twins broke it "
                                    "too — one greedy answer is a caution, the battery decides a regression — "
                                    "valid_text: D"),
    "conversation.unsure": ({"id": "p", "said": [M("conversation.no_power", checks=["language"])],
                             "details": [M("conversation.detail", name="language", detail="D")]},
                            "p: no power to detect a regression in language — language: D"),
    "conversation.no_power": ({"checks": ["language"]}, "no power to detect a regression in language"),
    "conversation.weak": ({"checks": ["c0", "c1"]}, "most candidate answers fail c0, c1, fewer passes than the "
                          "baseline's but not significantly (more seeds would tell)"),
    "conversation.limitation": ({"id": "p", "checks": ["language"],
                                 "details": [M("conversation.detail", name="language", detail="D")]},
                                "p: model limitation (baseline fails too) in language — language: D"),
    "conversation.all_pass": ({"id": "p", "count": 2, "match": M("conversation.identical")},
                              "p: all 2 checks pass on both models (identical answer)"),
    "conversation.identical": ({}, "identical answer"),
    "conversation.diverges": ({"index": 3}, "diverges at token 3"),
    "conversation.differs": ({}, "differs"),
    "conversation.detail": ({"name": "valid_text", "detail": M("text.ok")}, "valid_text: ok"),
    "text.ok": ({}, "ok"),
    "text.turn": ({"turn": 2, "problem": M("text.invalid_utf8")},
                  "turn 2: invalid UTF-8 (replacement character in the decoded text)"),
    "text.empty": ({}, "empty answer"),
    "text.invalid_utf8": ({}, "invalid UTF-8 (replacement character in the decoded text)"),
    "text.control": ({"char": "001B"}, "control character U+001B in the answer"),
    "text.repeated": ({"share": 0.6, "turn": 3, "limit": 0.5}, "repeated trigrams 60% (turn 3; limit 50%)"),
    "text.language_turn": ({"want": "zh", "ratio": 0.12}, "zh: CJK 12%"),
    "text.language": ({"seen": [M("text.language_turn", want="zh", ratio=0.12),
                                M("text.language_turn", want="en", ratio=0.0)], "min": 0.2},
                      "zh: CJK 12%; en: CJK 0% (Chinese when CJK ≥ 20%)"),
    "text.missing": ({"strings": "['4']"}, "missing ['4']"),
    "text.contains": ({"strings": "['4']"}, "contains ['4']"),
    "text.has_one": ({"strings": "['four', '四']"}, "has one of ['four', '四']"),
    "text.lacks_one": ({"strings": "['four', '四']"}, "lacks one of ['four', '四']"),
    "sample.first": ({"base": M("text.ok"), "cand": "C"}, "baseline: ok | candidate: C"),
    "sample.candidate": ({"n": 2, "seen": M("text.empty")}, "candidate sample 2: empty answer"),
    "sample.counts": ({"b": 5, "c": 0, "n": 5, "p": 0.00397, "alpha": 0.05},
                      "passes 5/5 baseline vs 0/5 candidate answers (seeds; p = 0.004, regression when p < 0.05)"),
    "sample.counts_no_power": ({"b": 1, "c": 0, "n": 5, "p": 0.5, "smallest": 0.5, "alpha": 0.05},
                               "passes 1/5 baseline vs 0/5 candidate answers (seeds; p = 0.500): no power — 5 samples "
                               "cannot detect a regression from a 1/5 baseline (even 0/5 candidate passes give "
                               "p = 0.500, not below 0.05)"),
    "sample.detail": ({"counts": "N", "worst": 2, "base": "B", "cand": "C"}, "N; sample 2: baseline: B | candidate: C"),
    "fluency.detail": ({"pc": 33.123, "pb": 4.48, "ratio": 7.39, "p": 0.004, "factor": 2.0, "alpha": 0.05},
                       "baseline model's PPL of candidate answer 33.12 vs of its own answer 4.48 (×7.39, p = 0.004; "
                       "regression when > ×2 and p < 0.05)"),
    "fluency.sampled": ({"detail": "D", "temperature": 0.7}, "D; sampled at temperature 0.7: informational"),
    "finite_logits.nonfinite": ({"where": "token 4"}, "candidate: NaN/Inf logit at token 4"),
    "battery.reason": ({"verdict": M("battery.not_measurable"), "counts": "N", "test": "T", "power": "P", "broke": ""},
                       "not measurable — N; T (P)"),
    "battery.counts": ({"breaks": 3, "passes": 10, "prompts": 12, "twins": 4, "twin_breaks": ["0", "1", "0", "2"]},
                       "candidate broke 3 of the original's 10 passing answers (12 prompts), the 4 placebo twins "
                       "0, 1, 0, 2"),
    "battery.test": ({"p": 0.01234}, "within-prompt permutation test p = 0.0123"),
    "battery.no_power": ({"n": 3, "alpha": 0.05}, "no power: even 3 breaks could not be significant at 0.05"),
    "battery.no_power_none": ({}, "no power: the original passes none of the prompts"),
    "battery.power": ({"count": 2}, "2 breaks would have been significant"),
    "battery.broken": ({"ids": ["a", "b"]}, "; broken: a, b"),
    "battery.regression": ({}, "regression: the candidate breaks significantly more answers than its placebo twins"),
    "battery.not_measurable": ({}, "not measurable"),
    "battery.tie": ({}, "no regression: a placebo twin broke as many answers"),
    "battery.no_regression": ({}, "no regression: not significantly more breaks than the placebo twins"),
    "sweep.no_outcome": ({}, "no outcome recorded: its tests did not run"),
    "sweep.not_gathered": ({"hosts": ["a", "b"]},
                           "not recorded by any gathered host (a, b); measure it there or run without --gather"),
    "sweep.stale": ({}, "not measured by this run (the outcomes on disk were recorded with other settings)"),
    "recipe.no_outcome": ({"name": "recipe_kinds", "rc": 4, "command": "pytest -k recipe_kinds", "root": "/p"},
                          "the suite recorded no outcome for recipe_kinds (pytest exit status 4); run "
                          "`pytest -k recipe_kinds` in /p and read its output"),
    "recipe.other_mix": ({"recipe": "kinds"}, "the suite tested another mix than this run chose (its cells changed in "
                         "between); run `fakequant recipe kinds` again"),
    "recipe.no_choice": ({"error": "no assignment fits"}, "no assignment fits"),
    "recipe.nothing_to_test": ({}, "every group keeps its type: nothing to test"),
    "recipe.suite_not_run": ({}, "the suite was not run (run_suite=False)"),
    "expect.did_not_fail": ({"key": "finite"}, "finite did not fail"),
    "expect.unexpected": ({"check": "numerical"}, "numerical failed, not expected"),
    "expect.not_stop": ({"decision": "GO"}, "the decision is GO, not STOP"),
    "expect.could_not_run": ({"check": "load"}, "load (could not run)"),
    "expect.invalid": ({"raw": repr({"finite": "pass"})},
                       "experiment.expect = {'finite': 'pass'} is not a table of checks that must fail (e.g. "
                       "{finite = \"fail\"}); ignored"),
}


def _reason_codes() -> set[str]:
    """The catalogs' reason codes: dotted keys other than the status and category words, and the clause join."""
    return {k for k in EN if ("." in k and not k.startswith(("status.", "category."))) or k == "clauses"}


def test_every_reason_code_has_an_example() -> None:
    assert set(EXAMPLES) == _reason_codes(), "a reason code needs an example here (and its English sentence)"


@pytest.mark.parametrize("code", sorted(EXAMPLES))
def test_english_reads_as_the_rules_wrote_it(code: str) -> None:
    args, expected = EXAMPLES[code]
    message = Message(code, args)
    assert message == expected
    again = Message.from_json(json.loads(json.dumps(message.to_json())))  # as report.json keeps it
    assert again.in_lang("en") == expected and again.code == code


_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_CJK = re.compile(r"[\u3400-\u9fff]")


@pytest.mark.parametrize("code", sorted(EXAMPLES))
def test_zh_tw_says_it_in_chinese(code: str) -> None:
    args, expected = EXAMPLES[code]
    zh = Message(code, args).in_lang("zh-TW")
    template = ZH[code]
    if not _LATIN_WORD.search(_literal(EN[code])):
        return  # the English template is fields and punctuation only: nothing to translate
    words = _literal(template)
    assert _CJK.search(words), f"{code}: zh-TW template has no Chinese: {template!r}"
    assert zh != expected


def _literal(template: str) -> str:
    """A template without its fields."""
    return " ".join(lit for lit, *_ in string.Formatter().parse(template))


def test_a_nan_stored_as_null_reads_as_nan() -> None:
    """Strict JSON stores NaN as null; a format spec still gets a number."""
    assert render("speed.no_slowdown", {"ratio": None, "p": 0.5, "noise": 0.01}, "en").startswith(
        "no significant slowdown (nan× the original")


def test_a_sentence_without_a_code_is_shown_as_recorded() -> None:
    assert localized("an old reason", None, "zh-TW") == "an old reason"
    unknown = {"code": "from.a.newer.version", "args": {}}
    assert localized("recorded text", unknown, "zh-TW") == "recorded text"
