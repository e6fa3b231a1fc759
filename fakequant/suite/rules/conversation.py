"""The conversation checks' rules: one answer per model (greedy) judged directly, several sampled answers per model
judged on their pass counts, the fluency of an answer, a broken plan prompt (a caution alone), and the battery's test
over prompts against placebo twins (what stops an experiment for its conversations). Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fakequant.i18n import Message, msg
from fakequant.suite.vocab import Status


def judge(baseline_ok: bool, candidate_ok: bool) -> Status:
    """One answer per model (a greedy prompt, or the fluency of one answer): regression only when the baseline
    manages what the candidate does not; both failing is the model's limit.

    Greedy decoding is deterministic, so each model has exactly one answer to a greedy prompt and there is no
    sampling noise to test one answer against. But a one-ulp nudge flips tokens too (the placebo of SmolLM2's
    blk.0.ffn_norm changes the top token at 3.4% of positions), so one broken answer says "this answer broke", not
    "the format is worse than noise": a plan prompt's broken greedy answer is a caution (:func:`named_prompt`), and
    the battery's test over prompts against placebo twins decides (:func:`battery_test`); sampled prompts are judged
    on pass counts (:func:`combine`)."""
    if candidate_ok:
        return Status.PASS
    return Status.LIMITATION if not baseline_ok else Status.FAIL


@dataclass
class CheckResult:
    """One conversation check on both models. ``samples`` > 1: each model answered a sampled prompt once per seed,
    and ``*_passes`` count the answers that pass; ``*_ok`` then say whether most answers pass."""

    name: str
    baseline_ok: bool
    candidate_ok: bool
    detail: str  # what was seen: a Message (its English sentence, with its code and values)
    samples: int = 1
    baseline_passes: int | None = None
    candidate_passes: int | None = None
    p_value: float | None = None  # one-sided Fisher exact test: the candidate passes less often than the baseline
    alpha: float = 0.05
    # the p-value of the most extreme outcome (no candidate answer passes): at or above alpha, the test has no power
    smallest_p: float | None = None

    @property
    def powerless(self) -> bool:
        """The baseline passes sometimes, yet not even zero candidate passes could show a regression."""
        return bool(self.baseline_passes) and self.smallest_p is not None and self.smallest_p >= self.alpha

    @property
    def status(self) -> Status:
        if self.samples == 1:
            return judge(self.baseline_ok, self.candidate_ok)
        if self.p_value is not None and self.p_value < self.alpha:
            return Status.FAIL
        if self.powerless:  # neither a pass nor the model's limitation: this check could not have failed
            return Status.INCONCLUSIVE
        if self.candidate_ok:
            return Status.PASS
        # most candidate answers fail: the model's limitation when most baseline answers fail too; otherwise
        # fewer passes than the baseline without significance, which more seeds would settle
        return Status.LIMITATION if not self.baseline_ok else Status.INCONCLUSIVE

    def to_json(self) -> dict[str, Any]:
        data = {"name": self.name, "baseline_ok": self.baseline_ok, "candidate_ok": self.candidate_ok,
                "detail": self.detail, "status": str(self.status),
                "detail_message": self.detail.to_json() if isinstance(self.detail, Message) else None}
        if self.samples > 1:
            data.update(samples=self.samples, baseline_passes=self.baseline_passes,
                        candidate_passes=self.candidate_passes, p_value=self.p_value, smallest_p=self.smallest_p,
                        power=not self.powerless)
        return data


def combine(name: str, base: Sequence[tuple[bool, str]], cand: Sequence[tuple[bool, str]],
            alpha: float) -> CheckResult:
    """One check over every sample of both models (``base[i]`` / ``cand[i]``: sample i's (ok, what was seen)).

    A sampled answer's first token already differs when the logits move at all, so one sample per model cannot
    tell a regression from sampling (measured: BF16 attention weights, +0.02% perplexity, answered a Chinese
    question in English at temperature 0.7 where the baseline did not). With n seeds per model the candidate
    regresses when it passes significantly less often than the baseline: one-sided Fisher exact test.

    That test's power depends on the baseline's own count: the most it can see is zero candidate passes, and with
    5 + 5 answers that reaches p < 0.05 only from a baseline of 4/5 or 5/5 (3/5: p = 0.083; 1/5: p = 0.5). A check
    whose smallest reachable p is not below ``alpha`` says so and is INCONCLUSIVE, never a pass or a limitation."""
    n = len(base)
    first = msg("sample.first", base=base[0][1], cand=cand[0][1])
    if n == 1:
        return CheckResult(name, base[0][0], cand[0][0], first)
    if name == "valid_text":  # broken text is broken in any sample
        bad = next((msg("sample.candidate", n=i + 1, seen=seen) for i, (ok, seen) in enumerate(cand) if not ok), first)
        return CheckResult(name, all(ok for ok, _ in base), all(ok for ok, _ in cand), bad)
    from scipy.stats import fisher_exact

    b, c = sum(ok for ok, _ in base), sum(ok for ok, _ in cand)
    p = float(fisher_exact([[b, n - b], [c, n - c]], alternative="greater").pvalue)
    smallest = float(fisher_exact([[b, n - b], [0, n]], alternative="greater").pvalue)
    worst = next((i for i, (ok, _) in enumerate(cand) if not ok), 0)
    result = CheckResult(name, 2 * b > n, 2 * c > n, first, samples=n, baseline_passes=b, candidate_passes=c,
                         p_value=p, alpha=alpha, smallest_p=smallest)
    if result.powerless:
        counts = msg("sample.counts_no_power", b=b, c=c, n=n, p=p, smallest=smallest, alpha=alpha)
    else:
        counts = msg("sample.counts", b=b, c=c, n=n, p=p, alpha=alpha)
    result.detail = msg("sample.detail", counts=counts, worst=worst + 1, base=base[worst][1], cand=cand[worst][1])
    return result


def overall(statuses: Iterable[Status]) -> Status:
    """A prompt's status from its checks': a regression first, then what more seeds would settle, then limits."""
    seen = set(statuses)
    return next((s for s in (Status.FAIL, Status.INCONCLUSIVE, Status.LIMITATION) if s in seen), Status.PASS)


def fluency_check(b_nll: Sequence[float], c_nll: Sequence[float], factor: float,
            alpha: float) -> tuple[bool, float, float, float, Message]:
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
    detail = msg("fluency.detail", pc=pc, pb=pb, ratio=ratio, p=p, factor=factor, alpha=alpha)
    return ok, pb, pc, p, detail


# ----------------------------------------------------------------------------------------- plan prompts, battery


def named_prompt(status: Status, greedy: bool, nonfinite: bool) -> Status:
    """A plan prompt's status: a greedy answer the candidate breaks is a CAUTION, never alone a STOP.

    One greedy answer is one draw of where a perturbation flips a near-tied token: the placebo twins (one-ulp
    nudges of the same tensors) flip tokens too, and one of six answers breaking cannot tell the format from that
    noise (1 broken of 1 candidate + 8 placebos has p = 1/9 at best). The report says how many twins broke the same
    prompt; STOP for a conversation comes from the battery's test over many prompts (:func:`battery_test`), or from a
    sampled prompt's significant Fisher test, or from NaN/Inf logits (a must-pass matter)."""
    if status is Status.FAIL and greedy and not nonfinite:
        return Status.CAUTION
    return status


@dataclass(frozen=True)
class BatteryTest:
    """The battery's test over prompts: does the candidate break more of the original's passing answers than its
    placebo twins do?

    Per prompt the original passes, each of the K + 1 perturbed models (candidate, K twins) either keeps that pass or
    breaks it (fails a check the original's answer passes). Null hypothesis: within each prompt the candidate is
    exchangeable with the twins. Given that prompt's number of broken answers b (candidate included), the candidate
    is then one of the b broken with probability b / (K + 1), independently over prompts; its break count is a sum of
    those Bernoulli draws (a Poisson-binomial), and the p-value is its exact upper tail at the observed count: a
    permutation test of the model labels within each prompt (stratified by prompt, so a prompt every model breaks
    carries no evidence, and one no twin breaks carries the most).

    Why not the other exact tests: permuting whole models (the candidate as one of K + 1 exchangeable models, ranked
    by break count) needs no independence over prompts, but its smallest p-value is 1 / (K + 1) = 0.2 with K = 4, so
    it can never find a regression; a binomial test against the twins' pooled rate treats that rate as known and
    ignores how fragile each prompt is. The stratified test is exact and has power: with K = 4 and no twin breaking
    them, 2 broken prompts give p = 1/25 = 0.04. Its independence over prompts fails when models differ in how
    fragile they are as a whole (a twin that breaks many): so a regression also needs more breaks than every twin
    has, which is the whole-model ranking's demand. ``smallest_significant`` is the power statement: the fewest
    breaks (placed where the twins broke least) that would have been a regression; None when no count could."""

    prompts: int  # the original's passing prompts: the answers that can break
    candidate_breaks: int
    placebo_breaks: tuple[int, ...]  # per twin
    p_value: float
    smallest_significant: int | None
    alpha: float

    @property
    def regression(self) -> bool:
        return self.p_value < self.alpha and self.candidate_breaks > max(self.placebo_breaks, default=0)

    @property
    def powerless(self) -> bool:
        return self.smallest_significant is None

    @property
    def status(self) -> Status:
        if self.regression:
            return Status.FAIL
        return Status.INCONCLUSIVE if self.powerless else Status.PASS

    def to_json(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "candidate_breaks": self.candidate_breaks,
                "placebo_breaks": list(self.placebo_breaks), "twins": len(self.placebo_breaks),
                "p_value": self.p_value, "smallest_significant": self.smallest_significant, "alpha": self.alpha,
                "regression": self.regression, "power": not self.powerless, "status": str(self.status)}


def _upper_tail(probs: Sequence[float], at_least: int) -> float:
    """P(sum of independent Bernoulli(probs) >= at_least), exactly (dynamic programming over the count)."""
    dist = [1.0]
    for p in probs:
        dist = [a * (1 - p) + b * p for a, b in zip([*dist, 0.0], [0.0, *dist], strict=True)]
    return min(1.0, sum(dist[at_least:]))


def battery_test(candidate: Sequence[bool], placebos: Sequence[Sequence[bool]], alpha: float) -> BatteryTest:
    """``candidate[i]`` / ``placebos[j][i]``: whether that model broke the original's i-th passing prompt."""
    n, k = len(candidate), len(placebos)
    if k < 1 or any(len(p) != n for p in placebos):
        raise ValueError(f"battery test: {k} twins with {[len(p) for p in placebos]} answers for {n} prompts")
    twin_breaks = [sum(p[i] for p in placebos) for i in range(n)]  # per prompt
    per_twin = tuple(sum(p) for p in placebos)
    c = sum(candidate)
    p_value = _upper_tail([(q + b) / (k + 1) for q, b in zip(twin_breaks, candidate, strict=True)], c)
    floor = max(per_twin, default=0)
    smallest = None
    order = sorted(twin_breaks)  # the candidate's breaks placed where the twins broke least: the best case
    for m in range(floor + 1, n + 1):
        if _upper_tail([(q + (i < m)) / (k + 1) for i, q in enumerate(order)], m) < alpha:
            smallest = m
            break
    return BatteryTest(n, c, per_twin, p_value, smallest, alpha)
