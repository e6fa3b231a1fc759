"""Conversation tests: run each prompt on the baseline and the candidate, and judge the answers side by side.

The plan's "對話質量" (answers simple questions, writes grammatical sentences, keeps basic logic) becomes checks
that a computer can make on both answers:

- ``valid_text``: non-empty, valid UTF-8 (no replacement characters), no control characters;
- ``not_degenerate``: the answer is not a loop (share of repeated word/character trigrams below a bound);
- ``language``: answered in the language of the question (share of CJK characters among letters);
- ``expectations``: the prompt's ``contains`` / ``contains_any`` strings appear;
- ``fluency``: the baseline model's perplexity of the candidate's answer is not worse than ``fluency_factor`` × its
  perplexity of its own answer, significantly over the answer's tokens (a grammar proxy needing no second model).

A check is judged on both models: baseline passes and candidate fails → **regression** (fail); both fail → the
model's **limitation** (xfail), not the quantization's. A sampled prompt (temperature > 0) is answered once per seed
by each model and judged on the pass counts (see :func:`combine`). Greedy runs also record exact match and the first
diverging token.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fakequant.runtime.settings import SamplingParams
from fakequant.suite.criteria import Prompt, Thresholds
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


def text_problem(text: str) -> str | None:
    """Why ``text`` is not a valid non-empty answer, or ``None``."""
    if not text.strip():
        return "empty answer"
    # a generation stopped by max_tokens can end inside a multi-byte character (byte-level tokens): only a
    # replacement character before the end is invalid text
    if "\ufffd" in text.rstrip("\ufffd"):
        return "invalid UTF-8 (replacement character in the decoded text)"
    bad = [ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\t\r"]
    if bad:
        return f"control character U+{ord(bad[0]):04X} in the answer"
    return None


@dataclass
class CheckResult:
    """One check on both models. ``samples`` > 1: each model answered a sampled prompt once per seed, and
    ``*_passes`` count the answers that pass; ``*_ok`` then say whether most answers pass."""

    name: str
    baseline_ok: bool
    candidate_ok: bool
    detail: str
    samples: int = 1
    baseline_passes: int | None = None
    candidate_passes: int | None = None
    p_value: float | None = None  # one-sided Fisher exact test: the candidate passes less often than the baseline
    alpha: float = 0.05

    @property
    def status(self) -> Status:
        if self.samples == 1:
            return judge(self.baseline_ok, self.candidate_ok)
        if self.p_value is not None and self.p_value < self.alpha:
            return Status.FAIL
        if self.candidate_ok:
            return Status.PASS
        # most candidate answers fail: the model's limitation when most baseline answers fail too; otherwise
        # fewer passes than the baseline without significance, which more seeds would settle
        return Status.LIMITATION if not self.baseline_ok else Status.INCONCLUSIVE

    def to_json(self) -> dict[str, Any]:
        data = {"name": self.name, "baseline_ok": self.baseline_ok, "candidate_ok": self.candidate_ok,
                "detail": self.detail, "status": str(self.status)}
        if self.samples > 1:
            data.update(samples=self.samples, baseline_passes=self.baseline_passes,
                        candidate_passes=self.candidate_passes, p_value=self.p_value)
        return data


def judge(baseline_ok: bool, candidate_ok: bool) -> Status:
    """Regression only when the baseline manages what the candidate does not."""
    if candidate_ok:
        return Status.PASS
    return Status.LIMITATION if not baseline_ok else Status.FAIL


def combine(name: str, base: Sequence[tuple[bool, str]], cand: Sequence[tuple[bool, str]],
            alpha: float) -> CheckResult:
    """One check over every sample of both models (``base[i]`` / ``cand[i]``: sample i's (ok, what was seen)).

    A sampled answer's first token already differs when the logits move at all, so one sample per model cannot
    tell a regression from sampling (measured: BF16 attention weights, +0.02% perplexity, answered a Chinese
    question in English at temperature 0.7 where the baseline did not). With n seeds per model the candidate
    regresses when it passes significantly less often than the baseline: one-sided Fisher exact test."""
    n = len(base)
    first = f"baseline: {base[0][1]} | candidate: {cand[0][1]}"
    if n == 1:
        return CheckResult(name, base[0][0], cand[0][0], first)
    if name == "valid_text":  # broken text is broken in any sample
        bad = next((f"candidate sample {i + 1}: {seen}" for i, (ok, seen) in enumerate(cand) if not ok), first)
        return CheckResult(name, all(ok for ok, _ in base), all(ok for ok, _ in cand), bad)
    from scipy.stats import fisher_exact

    b, c = sum(ok for ok, _ in base), sum(ok for ok, _ in cand)
    p = float(fisher_exact([[b, n - b], [c, n - c]], alternative="greater").pvalue)
    worst = next((i for i, (ok, _) in enumerate(cand) if not ok), 0)
    detail = (f"passes {b}/{n} baseline vs {c}/{n} candidate answers (seeds; p = {p:.3f}, regression when "
              f"p < {alpha:g}); sample {worst + 1}: baseline: {base[worst][1]} | candidate: {cand[worst][1]}")
    return CheckResult(name, 2 * b > n, 2 * c > n, detail, samples=n, baseline_passes=b, candidate_passes=c,
                       p_value=p, alpha=alpha)


def overall(checks: Sequence[CheckResult]) -> Status:
    statuses = [c.status for c in checks]
    for s in (Status.FAIL, Status.INCONCLUSIVE, Status.LIMITATION):
        if s in statuses:
            return s
    return Status.PASS


def answer_checks(prompt: Prompt, questions: Sequence[str], answers: Sequence[str],
                  thresholds: Thresholds) -> dict[str, tuple[bool, str]]:
    """Each text check on one model's answers (one per turn): name → (ok, what was seen)."""
    out: dict[str, tuple[bool, str]] = {}
    problems = [(i, p) for i, p in enumerate(text_problem(a) for a in answers) if p]
    out["valid_text"] = (not problems, f"turn {problems[0][0] + 1}: {problems[0][1]}" if problems else "ok")

    scores = [repetition_score(a) for a in answers]
    worst = max(range(len(scores)), key=scores.__getitem__)
    out["not_degenerate"] = (scores[worst] <= thresholds.repetition_max,
                             f"repeated trigrams {scores[worst]:.0%} (turn {worst + 1}; limit "
                             f"{thresholds.repetition_max:.0%})")

    if prompt.language != "any":
        seen = []
        ok = True
        for q, a in zip(questions, answers, strict=True):
            want = question_language(q) if prompt.language == "auto" else prompt.language
            ratio = cjk_ratio(a)
            good = ratio >= thresholds.cjk_min_ratio if want == "zh" else ratio < thresholds.cjk_min_ratio
            ok &= good
            seen.append(f"{want}: CJK {ratio:.0%}")
        out["language"] = (ok, f"{'; '.join(seen)} (Chinese when CJK ≥ {thresholds.cjk_min_ratio:.0%})")

    if prompt.contains or prompt.contains_any:
        text = "\n".join(answers).lower()
        missing = [s for s in prompt.contains if s.lower() not in text]
        any_ok = not prompt.contains_any or any(s.lower() in text for s in prompt.contains_any)
        parts = []
        if prompt.contains:
            parts.append(f"missing {missing}" if missing else f"contains {list(prompt.contains)}")
        if prompt.contains_any:
            parts.append(f"{'has' if any_ok else 'lacks'} one of {list(prompt.contains_any)}")
        out["expectations"] = (not missing and any_ok, "; ".join(parts))
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


# --------------------------------------------------------------------------------------------- running the models


def run_prompt(model: Any, prompt: Prompt) -> list[list[dict[str, Any]]]:
    """One model's answers to ``prompt``: one list per sample (``prompt.samples`` seeds from ``params.seed``) of
    Generation.to_json(), one per turn (one for a raw prompt).

    Chat turns carry the model's own earlier answers as history, as in the plan's interactive ``llama-cli -i``."""
    return [_one_sample(model, prompt, dataclasses.replace(prompt.params, seed=prompt.params.seed + i))
            for i in range(prompt.samples)]


def _one_sample(model: Any, prompt: Prompt, params: SamplingParams) -> list[dict[str, Any]]:
    from fakequant.runtime import llama as runtime

    if prompt.kind == "raw":
        return [runtime.generate(model, prompt.prompt, params).to_json()]
    messages: list[dict[str, str]] = [{"role": "system", "content": prompt.system}] if prompt.system else []
    out = []
    for turn in prompt.turns:
        messages.append({"role": "user", "content": turn})
        gen = runtime.chat(model, messages, params).to_json()
        out.append(gen)
        messages.append({"role": "assistant", "content": gen["text"]})
    return out


def questions(prompt: Prompt) -> list[str]:
    return [prompt.prompt] if prompt.kind == "raw" else list(prompt.turns)


Scorer = Callable[[str, str], Sequence[float]]  # (answer, prefix) → ln p of each answer token under the baseline


def token_logprobs(model: Any, text: str, prefix: str = "") -> list[float]:
    """ln p(token | everything before it) for each token of ``text`` after ``prefix``, under ``model``.

    The per-token form of :func:`fakequant.runtime.llama.text_logprob` (same tokenization at the seam), so that the
    fluency check can tell a real loss of fluency from the spread of two short answers."""
    import numpy as np

    from fakequant.runtime import llama as runtime

    pre = model.tokenize(prefix, special=True) if prefix else ([model.bos] if model.add_bos else [])
    full = model.tokenize(prefix + text, special=True)
    if full[:len(pre)] != pre:
        full = pre + model.tokenize(text, add_bos=False, special=True)
    start = max(len(pre), 1)
    if len(full) <= start:
        return []
    full = full[-model.settings.n_ctx:] if len(full) > model.settings.n_ctx else full
    start = min(start, len(full) - 1)
    runtime.clear_memory(model)
    logits = runtime.decode(model, full[:-1], first_output=start - 1)
    return runtime.log_softmax_at(logits, np.asarray(full[start:])).tolist()


def fluency_nll(scorer: Scorer, qs: Sequence[str], answers: Sequence[str]) -> list[float]:
    """Negative log-likelihood of every answer token under the baseline model, each answer given its question."""
    out: list[float] = []
    for q, a in zip(qs, answers, strict=True):
        out.extend(-x for x in scorer(a, q))
    return out


def fluency_check(b_nll: Sequence[float], c_nll: Sequence[float], factor: float,
                  alpha: float) -> tuple[bool, float, float, float, str]:
    """Regression when the candidate's answer is less fluent than the baseline's by more than ``factor`` in
    perplexity AND the per-token log-likelihoods say so significantly (one-sided Welch t-test): two different
    20-token answers of the same model easily differ twofold in perplexity."""
    from scipy.stats import ttest_ind

    pb, pc = math.exp(sum(b_nll) / len(b_nll)), math.exp(sum(c_nll) / len(c_nll))
    ratio = pc / pb
    p = 1.0
    if len(b_nll) > 1 and len(c_nll) > 1 and ratio > 1:
        p = float(ttest_ind(c_nll, b_nll, equal_var=False, alternative="greater").pvalue)
        p = 1.0 if math.isnan(p) else p
    ok = not (ratio > factor and p < alpha)
    detail = (f"baseline model's PPL of candidate answer {pc:.2f} vs of its own answer {pb:.2f} "
              f"(×{ratio:.2f}, p = {p:.3f}; regression when > ×{factor:g} and p < {alpha:g})")
    return ok, pb, pc, p, detail


def evaluate(prompt: Prompt, baseline_samples: Sequence[Sequence[dict[str, Any]]],
             candidate_samples: Sequence[Sequence[dict[str, Any]]], thresholds: Thresholds,
             scorer: Scorer | None) -> dict[str, Any]:
    """The "conversations" artifact entry for one prompt (shared contract), from both models' answers as
    :func:`run_prompt` returns them (one sample for a greedy prompt, ``prompt.samples`` for a sampled one).

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
                ok, detail = True, f"{detail}; sampled at temperature {prompt.params.temperature:g}: informational"
            checks.append(CheckResult("fluency", True, ok, detail))
    nonfinite = [g["nonfinite"] for s in candidate_samples for g in s if g.get("nonfinite")]
    if nonfinite:
        checks.append(CheckResult("finite_logits", True, False, f"candidate: NaN/Inf logit at {nonfinite[0]}"))

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
        "status": str(overall(checks)),
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


def reason(entry: dict[str, Any]) -> str:
    """One line for the CheckOutcome: what failed (and on which model), or that all checks held."""
    checks = entry["checks"]
    bad = [c for c in checks if c["status"] == "fail"]
    lim = [c for c in checks if c["status"] == "limitation"]
    match = "identical answer" if entry["exact_match"] else (
        f"diverges at token {entry['first_divergence']['index']}" if entry["first_divergence"] else "differs")
    unsure = [c for c in checks if c["status"] == "inconclusive"]
    if bad:
        return (f"{entry['id']}: regression in {', '.join(c['name'] for c in bad)} — " +
                "; ".join(f"{c['name']}: {c['detail']}" for c in bad))
    if unsure:
        return (f"{entry['id']}: most candidate answers fail {', '.join(c['name'] for c in unsure)}, fewer passes "
                "than the baseline's but not significantly (more seeds would tell) — " +
                "; ".join(f"{c['name']}: {c['detail']}" for c in unsure))
    if lim:
        return (f"{entry['id']}: model limitation (baseline fails too) in {', '.join(c['name'] for c in lim)} — " +
                "; ".join(f"{c['name']}: {c['detail']}" for c in lim))
    return f"{entry['id']}: all {len(checks)} checks pass on both models ({match})"
