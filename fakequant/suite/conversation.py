"""Conversation tests: judge the baseline's and the candidate's answers to each prompt side by side (the answers
come from :mod:`fakequant.runtime.chat`; the rules that turn checks into statuses live in :mod:`~.rules`).

The plan's "對話質量" (answers simple questions, writes grammatical sentences, keeps basic logic) becomes checks
that a computer can make on both answers:

- ``valid_text``: non-empty, valid UTF-8 (no replacement characters), no control characters;
- ``not_degenerate``: the answer is not a loop (share of repeated word/character trigrams below a bound);
- ``language``: answered in the language of the question (share of CJK characters among letters);
- ``expectations``: the prompt's ``contains`` / ``contains_any`` strings appear;
- ``fluency``: the baseline model's perplexity of the candidate's answer is not worse than ``fluency_factor`` × its
  perplexity of its own answer, significantly over the answer's tokens (a grammar proxy needing no second model).

A check is judged on both models: baseline passes and candidate fails → **regression** (fail); both fail → the
model's **limitation** (xfail), not the quantization's. A greedy prompt has one deterministic answer per model and is
judged on it; greedy runs also record exact match and the first diverging token. A greedy plan prompt the candidate
breaks is answered by the placebo twins too (:func:`with_twins`) and is then a caution, not a stop
(:func:`~fakequant.suite.rules.conversation.named_prompt`): the battery (:mod:`fakequant.suite.battery`) decides a
conversation regression over many prompts. A sampled prompt (temperature > 0) is answered once per seed by
each model and judged on the pass counts (see :func:`~fakequant.suite.rules.combine`); a count test that could not
detect a regression from the baseline's count (e.g. 1 pass in 5) says so and is inconclusive.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from fakequant.i18n import Message, msg
from fakequant.runtime.chat import questions
from fakequant.suite.criteria import Prompt, Thresholds
from fakequant.suite.rules import CheckResult, Ruling, combine, fluency_check, overall
from fakequant.suite.rules.conversation import named_prompt
from fakequant.suite.vocab import Status

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_UNITS = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9]")  # words; every other non-space character is a unit


def cjk_ratio(text: str) -> float:
    """Share of CJK characters among the letters (CJK + alphabetic) of ``text``; 0 for text without letters."""
    cjk = len(_CJK.findall(text))
    letters = sum(1 for ch in text if ch.isalpha())  # CJK ideographs are alphabetic too
    return cjk / letters if letters else 0.0


def question_language(text: str) -> str:
    return "zh" if cjk_ratio(text) >= 0.3 else "en"


def repetition_score(text: str, n: int = 3) -> float:
    """Share of the answer's n-grams (of words / single non-space characters) that repeat an earlier one.

    Ordinary prose of 50 tokens scores near 0; "the the the ..." or "!!!!!!!" near 1. Too short to judge → 0."""
    units = _UNITS.findall(text.lower())
    if len(units) < 2 * n:
        return 0.0
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


def text_problem(text: str) -> Message | None:
    """Why ``text`` is not a valid non-empty answer, or ``None``."""
    if not text.strip():
        return msg("text.empty")
    # a generation stopped by max_tokens can end inside a multi-byte character (byte-level tokens): only a
    # replacement character before the end is invalid text
    if "\ufffd" in text.rstrip("\ufffd"):
        return msg("text.invalid_utf8")
    bad = [ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\t\r"]
    if bad:
        return msg("text.control", char=f"{ord(bad[0]):04X}")
    return None


def answer_checks(prompt: Prompt, questions: Sequence[str], answers: Sequence[str],
                  thresholds: Thresholds) -> dict[str, tuple[bool, Message]]:
    """Each text check on one model's answers (one per turn): name → (ok, what was seen)."""
    out: dict[str, tuple[bool, Message]] = {}
    problems = [(i, p) for i, p in enumerate(text_problem(a) for a in answers) if p]
    out["valid_text"] = (not problems, msg("text.turn", turn=problems[0][0] + 1, problem=problems[0][1]) if problems
                         else msg("text.ok"))

    scores = [repetition_score(a) for a in answers]
    worst = max(range(len(scores)), key=scores.__getitem__)
    out["not_degenerate"] = (scores[worst] <= thresholds.repetition_max,
                             msg("text.repeated", share=scores[worst], turn=worst + 1, limit=thresholds.repetition_max))

    if prompt.language != "any":
        seen: list[Message] = []
        ok = True
        for q, a in zip(questions, answers, strict=True):
            want = question_language(q) if prompt.language == "auto" else prompt.language
            ratio = cjk_ratio(a)
            good = ratio >= thresholds.cjk_min_ratio if want == "zh" else ratio < thresholds.cjk_min_ratio
            ok &= good
            seen.append(msg("text.language_turn", want=want, ratio=ratio))
        out["language"] = (ok, msg("text.language", seen=seen, min=thresholds.cjk_min_ratio))

    if prompt.contains or prompt.contains_any:
        text = "\n".join(answers).lower()
        missing = [s for s in prompt.contains if s.lower() not in text]
        any_ok = not prompt.contains_any or any(s.lower() in text for s in prompt.contains_any)
        parts: list[Message] = []
        if prompt.contains:
            parts.append(msg("text.missing", strings=str(missing)) if missing
                         else msg("text.contains", strings=str(list(prompt.contains))))
        if prompt.contains_any:
            strings = str(list(prompt.contains_any))
            parts.append(msg("text.has_one", strings=strings) if any_ok else msg("text.lacks_one", strings=strings))
        out["expectations"] = (not missing and any_ok, msg("clauses", parts=parts))
    return out


def first_divergence(base: Sequence[int], cand: Sequence[int]) -> dict[str, Any] | None:
    """Index and tokens where two token sequences first differ (``None`` when identical)."""
    for i, (a, b) in enumerate(zip(base, cand, strict=False)):
        if a != b:
            return {"index": i, "baseline_token": a, "candidate_token": b}
    if len(base) == len(cand):
        return None
    i = min(len(base), len(cand))
    return {"index": i, "baseline_token": base[i] if i < len(base) else None,
            "candidate_token": cand[i] if i < len(cand) else None}


Scorer = Callable[[str, str], Sequence[float]]  # (answer, prefix) → ln p of each answer token under the baseline


def fluency_nll(scorer: Scorer, qs: Sequence[str], answers: Sequence[str]) -> list[float]:
    """Negative log-likelihood of every answer token under the baseline model, each answer given its question."""
    out: list[float] = []
    for q, a in zip(qs, answers, strict=True):
        out.extend(-x for x in scorer(a, q))
    return out


def evaluate(prompt: Prompt, baseline_samples: Sequence[Sequence[dict[str, Any]]],
             candidate_samples: Sequence[Sequence[dict[str, Any]]], thresholds: Thresholds,
             scorer: Scorer | None) -> dict[str, Any]:
    """The "conversations" artifact entry for one prompt (shared contract), from both models' answers as
    :func:`~fakequant.runtime.chat.run_prompt` returns them (one sample for a greedy prompt, ``prompt.samples``
    for a sampled one).

    ``scorer`` computes fluency with the baseline model on the first sample; it is not called when the answers
    are identical."""
    if len(baseline_samples) != len(candidate_samples) or not baseline_samples:
        raise ValueError(f"{prompt.id}: {len(baseline_samples)} baseline vs {len(candidate_samples)} candidate samples")
    qs = questions(prompt)
    b_seen = [answer_checks(prompt, qs, [g["text"] for g in s], thresholds) for s in baseline_samples]
    c_seen = [answer_checks(prompt, qs, [g["text"] for g in s], thresholds) for s in candidate_samples]
    checks = [combine(name, [r[name] for r in b_seen], [r[name] for r in c_seen], thresholds.conversation_alpha)
              for name in b_seen[0]]

    baseline, candidate = baseline_samples[0], candidate_samples[0]
    b_text = [g["text"] for g in baseline]
    c_text = [g["text"] for g in candidate]
    b_ids = [t for g in baseline for t in g["token_ids"]]
    c_ids = [t for g in candidate for t in g["token_ids"]]
    exact = b_text == c_text and b_ids == c_ids
    fluency: dict[str, Any] = {"baseline_ppl_of_baseline_answer": None, "baseline_ppl_of_candidate_answer": None}
    if scorer is not None and all(a.strip() for a in b_text + c_text):
        b_nll = fluency_nll(scorer, qs, b_text)
        c_nll = b_nll if b_text == c_text else fluency_nll(scorer, qs, c_text)
        if b_nll and c_nll:
            ok, pb, pc, p, detail = fluency_check(b_nll, c_nll, thresholds.fluency_factor,
                                                  thresholds.conversation_alpha)
            fluency = {"baseline_ppl_of_baseline_answer": pb, "baseline_ppl_of_candidate_answer": pc, "p_value": p,
                       "judged": prompt.params.greedy}
            if not prompt.params.greedy:
                # two samples of the *same* model differ this much too (measured: ×3 on
                # SmolLM2's Chinese at temperature 0.7), so a sampled answer's fluency is shown, not judged
                ok, detail = True, msg("fluency.sampled", detail=detail, temperature=prompt.params.temperature)
            checks.append(CheckResult("fluency", True, ok, detail))
    nonfinite = [g["nonfinite"] for s in candidate_samples for g in s if g.get("nonfinite")]
    if nonfinite:
        checks.append(CheckResult("finite_logits", True, False, msg("finite_logits.nonfinite", where=nonfinite[0])))

    entry: dict[str, Any] = {
        "id": prompt.id,
        "kind": prompt.kind,
        "params": prompt.params.to_json(),
        "greedy": prompt.params.greedy,
        # the last turn's generation, with every turn's answer text for multi-turn chats
        "baseline": {**baseline[-1], "turns": b_text},
        "candidate": {**candidate[-1], "turns": c_text},
        "checks": [c.to_json() for c in checks],
        "exact_match": exact,
        "first_divergence": first_divergence(b_ids, c_ids),
        "fluency": fluency,
        "status": str(overall(c.status for c in checks)),
    }
    if len(baseline_samples) > 1:
        entry["samples"] = {"seeds": [prompt.params.seed + i for i in range(len(baseline_samples))],
                            "baseline": [[g["text"] for g in s] for s in baseline_samples],
                            "candidate": [[g["text"] for g in s] for s in candidate_samples]}
    if prompt.kind == "raw":
        entry["prompt"] = prompt.prompt
    else:
        entry["messages"] = [{"role": "user", "content": t} for t in prompt.turns]
        if prompt.system:
            entry["messages"].insert(0, {"role": "system", "content": prompt.system})
    return entry


def with_twins(entry: dict[str, Any], twin_entries: Sequence[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """A plan prompt the candidate breaks, beside its placebo twins' answers (each judged by :func:`evaluate` as if
    it were the candidate): how many of them broke it too, and the prompt's status by
    :func:`~fakequant.suite.rules.conversation.named_prompt` (a greedy break alone is a CAUTION)."""
    nonfinite = any(c["name"] == "finite_logits" and c["status"] == Status.FAIL for c in entry["checks"])
    broke = [s for s, e in zip(seeds, twin_entries, strict=True) if e["status"] == Status.FAIL]
    status = named_prompt(Status(entry["status"]), entry["greedy"], nonfinite)
    return {**entry, "status": str(status),
            "placebos": {"seeds": list(seeds), "twins": len(twin_entries), "broke": len(broke), "broke_seeds": broke,
                         "candidate": [e["candidate"]["turns"] for e in twin_entries]}}


def _detail(check: dict[str, Any]) -> Message | str:
    """A check's detail with its code, also when the entry was read back from JSON."""
    detail, data = check.get("detail", ""), check.get("detail_message")
    if isinstance(detail, Message) or not isinstance(data, dict):
        return detail
    return Message.from_json(data, str(detail))


def _details(checks: Sequence[dict[str, Any]]) -> list[Message]:
    return [msg("conversation.detail", name=c["name"], detail=_detail(c)) for c in checks]


def _names(checks: Sequence[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in checks]


def reason(entry: dict[str, Any]) -> Message:
    """One line for the CheckOutcome: what failed (and on which model), or that all checks held."""
    checks, cid = entry["checks"], entry["id"]
    bad = [c for c in checks if c["status"] == Status.FAIL]
    twins = entry.get("placebos")
    if bad and twins and entry["status"] == Status.CAUTION:
        return msg("conversation.greedy_caution", id=cid, checks=_names(bad), broke=twins["broke"],
                   twins=twins["twins"], details=_details(bad))
    lim = [c for c in checks if c["status"] == Status.LIMITATION]
    if entry["exact_match"]:
        match = msg("conversation.identical")
    elif entry["first_divergence"]:
        match = msg("conversation.diverges", index=entry["first_divergence"]["index"])
    else:
        match = msg("conversation.differs")
    unsure = [c for c in checks if c["status"] == Status.INCONCLUSIVE]
    if bad:
        return msg("conversation.regression", id=cid, checks=_names(bad), details=_details(bad))
    if unsure:
        blind = [c["name"] for c in unsure if c.get("power") is False]
        weak = [c["name"] for c in unsure if c.get("power") is not False]
        said = ([msg("conversation.no_power", checks=blind)] if blind else []) + (
            [msg("conversation.weak", checks=weak)] if weak else [])
        return msg("conversation.unsure", id=cid, said=said, details=_details(unsure))
    if lim:
        return msg("conversation.limitation", id=cid, checks=_names(lim), details=_details(lim))
    return msg("conversation.all_pass", id=cid, count=len(checks), match=match)


def ruling(entry: dict[str, Any]) -> Ruling:
    """The conversation check of one prompt, from its "conversations" artifact entry."""
    values = {"exact_match": entry["exact_match"],
              "first_divergence": (entry["first_divergence"] or {}).get("index", "none"),
              "baseline_text": entry["baseline"]["text"], "candidate_text": entry["candidate"]["text"],
              **{f"fluency_{k}": v for k, v in entry["fluency"].items() if v is not None},
              **{f"check_{c['name']}": c["status"] for c in entry["checks"]}}
    unsure = [c for c in entry["checks"] if c["status"] == Status.INCONCLUSIVE]
    # every unsure check of this prompt is one the sampled test could not have failed (the original passes it too
    # rarely): the verdict reports it as unmeasurable rather than letting it hold up the other checks' decision
    values["no_power"] = bool(unsure) and all(c.get("power") is False for c in unsure)
    if entry.get("placebos"):
        values.update(placebo_breaks=entry["placebos"]["broke"], twins=entry["placebos"]["twins"],
                      placebo_seeds=entry["placebos"]["seeds"])
    return Ruling(Status(entry["status"]), reason(entry), values)
