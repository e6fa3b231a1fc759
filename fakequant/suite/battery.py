"""The conversation battery: the shipped prompts (:mod:`fakequant.suite.criteria.battery`) answered greedily by the
original, the candidate and K placebo twins, and judged as one test over prompts.

Per prompt the original passes (every text check of :func:`~fakequant.suite.conversation.answer_checks`: valid
text, not a loop, its language, its expected strings), each other model either keeps that pass or breaks it. The
decision is :func:`~fakequant.suite.rules.conversation.battery_test` (why that test, and its power, are said
there); this module turns answers into the "conversation_battery" artifact and that artifact into the check's
ruling, with every number of the sentence in the ruling's values.

Only prompts the original passes are answered by the other models (the others carry no evidence, and cost), and the
original's and the twins' answers are cached by their model's content, like the baseline's other results: a
placebo twin is content-addressed, so its answers serve every experiment with the same tensor selection and every
later run. The candidate's answers are computed afresh each run: they are what is tested.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fakequant.i18n import Message, msg
from fakequant.runtime import chat
from fakequant.suite.baseline import baseline_cached, baseline_key
from fakequant.suite.conversation import answer_checks
from fakequant.suite.criteria import Thresholds
from fakequant.suite.criteria.battery import BatteryPrompt
from fakequant.suite.rules import Ruling
from fakequant.suite.rules.conversation import battery_test
from fakequant.suite.vocab import Status

Samples = list[list[dict[str, Any]]]  # chat.run_prompt's answers: one list per sample, one entry per turn


def cached_answers(model_path: Path, settings: Any, prompts: Sequence[BatteryPrompt],
                   load: Callable[[], Any]) -> dict[str, Samples]:
    """One model's answers to ``prompts``, cached per (model sha256, settings, prompt, chat format, llama.cpp build);
    ``load()`` gives the loaded model and is called only on a miss."""
    out = {}
    for bp in prompts:
        key = baseline_key(model_path, None, settings, prompt=bp.prompt.to_json(), chat_format=chat.PROMPT_FORMAT)
        out[bp.id] = baseline_cached("battery", key, lambda bp=bp: chat.run_prompt(load(), bp.prompt))
    return out


def checks_of(bp: BatteryPrompt, samples: Samples, thresholds: Thresholds) -> dict[str, tuple[bool, str]]:
    """The text checks of one model's (single, greedy) answer to a battery prompt."""
    return answer_checks(bp.prompt, chat.questions(bp.prompt), [g["text"] for g in samples[0]], thresholds)


def broken(base: Mapping[str, tuple[bool, str]], model: Mapping[str, tuple[bool, str]]) -> list[str]:
    """The checks the original's answer passes and this model's fails."""
    return [name for name, (ok, _) in base.items() if ok and not model[name][0]]


def passing(battery: Sequence[BatteryPrompt], base: Mapping[str, Samples],
            thresholds: Thresholds) -> list[BatteryPrompt]:
    """The prompts whose original answer passes every check: the only ones that can break."""
    return [bp for bp in battery if all(ok for ok, _ in checks_of(bp, base[bp.id], thresholds).values())]


def _texts(samples: Samples) -> list[str]:
    return [g["text"] for g in samples[0]]


def evaluate(battery: Sequence[BatteryPrompt], base: Mapping[str, Samples], candidate: Mapping[str, Samples],
             placebos: Sequence[Mapping[str, Samples]], seeds: Sequence[int], thresholds: Thresholds) -> dict[str, Any]:
    """The "conversation_battery" artifact: every prompt with the original's answer and whether it passes, and for
    each passing prompt the candidate's and the twins' answers and which checks they broke; then the test."""
    entries = []
    cand_broke: list[bool] = []
    twin_broke: list[list[bool]] = [[] for _ in placebos]
    for bp in battery:
        b_checks = checks_of(bp, base[bp.id], thresholds)
        failed = [name for name, (ok, _) in b_checks.items() if not ok]
        entry: dict[str, Any] = {"id": bp.id, "topic": bp.topic, "turns": list(bp.prompt.turns),
                                 "original": _texts(base[bp.id]), "original_passes": not failed,
                                 "original_failed": failed}
        if not failed:
            c = broken(b_checks, checks_of(bp, candidate[bp.id], thresholds))
            ps = [broken(b_checks, checks_of(bp, p[bp.id], thresholds)) for p in placebos]
            entry.update(candidate=_texts(candidate[bp.id]), candidate_broke=c,
                         placebos=[_texts(p[bp.id]) for p in placebos], placebos_broke=ps)
            cand_broke.append(bool(c))
            for row, p_broke in zip(twin_broke, ps, strict=True):
                row.append(bool(p_broke))
        entries.append(entry)
    test = battery_test(cand_broke, twin_broke, thresholds.conversation_alpha)
    template = next((g.get("template") for s in base.values() for g in s[0]), None)
    return {"prompts": entries, "seeds": list(seeds), "template": template, "test": test.to_json()}


def ruling(data: Mapping[str, Any]) -> Ruling:
    """The battery check, from its artifact; the values carry every number and prompt id of the reason."""
    test = data["test"]
    entries = data["prompts"]
    values = {
        "prompts": len(entries), "original_passes": test["prompts"], "candidate_breaks": test["candidate_breaks"],
        "placebo_breaks": list(test["placebo_breaks"]), "twins": test["twins"], "seeds": list(data["seeds"]),
        "p_value": test["p_value"], "alpha": test["alpha"], "smallest_significant": test["smallest_significant"],
        "regression": test["regression"], "template": data.get("template"),
        "broken_by_candidate": [e["id"] for e in entries if e.get("candidate_broke")],
        # the verdict lists a battery without power as not measurable rather than holding up the decision
        "no_power": not test["power"],
    }
    return Ruling(Status(test["status"]), reason(values), values)


def reason(v: Mapping[str, Any]) -> Message:
    """The battery's one sentence, from the ruling's values alone."""
    n = v["original_passes"]
    counts = msg("battery.counts", breaks=v["candidate_breaks"], passes=n, prompts=v["prompts"], twins=v["twins"],
                 twin_breaks=[str(x) for x in v["placebo_breaks"]])
    test = msg("battery.test", p=v["p_value"])
    if v["smallest_significant"] is None:
        power = msg("battery.no_power", n=n, alpha=v["alpha"]) if n else msg("battery.no_power_none")
    else:
        power = msg("battery.power", count=v["smallest_significant"])
    broke = msg("battery.broken", ids=list(v["broken_by_candidate"])) if v["broken_by_candidate"] else ""
    if v["regression"]:
        verdict = msg("battery.regression")
    elif v["smallest_significant"] is None:
        verdict = msg("battery.not_measurable")
    elif v["p_value"] < v["alpha"]:
        verdict = msg("battery.tie")
    else:
        verdict = msg("battery.no_regression")
    return msg("battery.reason", verdict=verdict, counts=counts, test=test, power=power, broke=broke)
