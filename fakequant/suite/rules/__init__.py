"""Every check's decision rule: measurements and thresholds in, a status and its one-line reason out.

A reason is a :class:`~fakequant.i18n.Message`: a code of the catalogs in :mod:`fakequant.i18n` and the values it
was found with (the bound, the interval, the counts), whose string is the English sentence; the report renders the
same code in the reader's language.

Pure functions: no model, no file, no pytest. The acceptance tests measure and record what these return
(``outcome(check, category, *rules.perplexity(comparison, thresholds))``); :mod:`fakequant.suite.verdict` turns the
recorded statuses into one decision; the report prints what these computed (the interval, the chunks that would
resolve it) rather than computing it again. The conversation checks' rules are in :mod:`.conversation` (re-exported
here).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from fakequant.i18n import Message, msg
from fakequant.runtime.chunkstats import PairedInterval, chunks_to_clear, paired_interval
from fakequant.suite.rules.conversation import CheckResult, combine, fluency_check, judge, overall
from fakequant.suite.vocab import Status

if TYPE_CHECKING:
    from pathlib import Path

    from fakequant.quant.stats import TensorStats
    from fakequant.runtime.llama import Generation
    from fakequant.suite.criteria import Thresholds

__all__ = ["Z95", "CheckResult", "Floor", "NoOp", "Ruling", "build", "build_failed", "chunks_to_resolve", "combine",
           "finite", "floor_and_excess", "fluency_check", "format_check", "increase_interval", "judge",
           "ln_ppl_interval", "load", "load_failed", "no_op", "numerical", "original_unchanged", "overall",
           "perplexity", "speed", "speed_metric", "speed_status"]

Z95 = 1.959964  # two-sided 95% normal quantile


class Ruling(NamedTuple):
    """One check's verdict, in the order the ``outcome`` fixture takes it."""

    status: Status
    reason: Message  # a str: the English sentence, with its code and values for other languages
    values: dict[str, Any]


# ------------------------------------------------------------------------------------------------- nothing changed


@dataclass(frozen=True)
class NoOp:
    changed: int
    total: int
    format: str


def no_op(analysis: Any, fallback_recipe: Any = None) -> NoOp | None:
    """The fake quantization changed nothing, judged on a numerical analysis (``BuildResult.to_json()``): its
    ``noop`` flag, or zero changed values over its tensors. Then the candidate is the original and no check can tell
    anything. ``None`` when something changed, or when the analysis cannot say."""
    analysis = analysis if isinstance(analysis, Mapping) else {}
    raw = analysis.get("tensors")
    tensors = [t for t in raw if isinstance(t, Mapping)] if isinstance(raw, list) else []
    try:
        changed = sum(int(t.get("changed") or 0) for t in tensors)
        total = sum(int(t.get("n") or 0) for t in tensors)
    except (TypeError, ValueError):
        return None
    if not (analysis.get("noop") is True or (tensors and changed == 0)):
        return None
    recipe = analysis.get("recipe")
    if not (isinstance(recipe, Mapping) and recipe):
        recipe = fallback_recipe if isinstance(fallback_recipe, Mapping) else {}
    return NoOp(changed, total, str(recipe.get("format") or "") or msg("noop.target_format"))


# ------------------------------------------------------------------------------------------------------- must pass


def build(tensors: Sequence[TensorStats], fmt: str, noop: bool, reused: bool) -> Ruling:
    """The recipe applied and the candidate was written (or taken from the engine's cache)."""
    total, changed = sum(t.n for t in tensors), sum(t.changed for t in tensors)
    what = msg("build.noop", format=fmt) if noop else fmt
    return Ruling(Status.PASS, msg("build.done", changed=changed, total=total, tensors=len(tensors), what=what),
                  {"tensors": len(tensors), "values": total, "changed": changed, "noop": noop,
                   "reused_from_cache": reused})


def build_failed(error: BaseException | str) -> Ruling:
    """Any failure to build the candidate, in its one line."""
    return Ruling(Status.FAIL, msg("build.failed", error=str(error)), {})


def format_check(differences: Sequence[str], changed_tensors: int) -> Ruling:
    if differences:
        return Ruling(Status.FAIL, msg("format.differs", count=len(differences), first=differences[0]),
                      {"differences": len(differences)})
    return Ruling(Status.PASS, msg("format.same", changed_tensors=changed_tensors),
                  {"differences": 0, "changed_tensors": changed_tensors})


def load_failed(file: str, error: BaseException) -> Ruling:
    """The candidate did not load, or its quick inference raised."""
    return Ruling(Status.FAIL, msg("load.failed", file=file, error=str(error)), {})


def load(gen: Generation, load_time_s: float, prompt: str) -> Ruling:
    """The candidate loaded and its quick inference produced at least one token."""
    values = {"candidate_load_s": load_time_s, "tokens": len(gen.token_ids), "text": gen.text}
    if not gen.token_ids:
        return Ruling(Status.FAIL, msg("load.no_token", stop=gen.stop_reason), values)
    return Ruling(Status.PASS, msg("load.ok", seconds=load_time_s, prompt=prompt, tokens=len(gen.token_ids),
                                   text=gen.text), values)


def finite(tensors: Sequence[TensorStats], gen: Generation) -> Ruling:
    """No NaN/Inf the fake quantization brought into the weights, nor in the logits of a short generation."""
    bad = [t for t in tensors if t.nan_after or t.inf_after]
    new_bad = [t for t in bad if t.nan_after > t.nan_before or t.inf_after > t.inf_before]
    values = {"tensors_with_nonfinite": len(bad), "logits_nonfinite": gen.nonfinite or "none"}
    if new_bad:
        t = new_bad[0]
        return Ruling(Status.FAIL, msg("finite.weights", name=t.name, nan_after=t.nan_after, inf_after=t.inf_after,
                                       nan_before=t.nan_before, inf_before=t.inf_before), values)
    if gen.nonfinite:
        return Ruling(Status.FAIL, msg("finite.logits", where=gen.nonfinite), values)
    return Ruling(Status.PASS, msg("finite.ok", tensors=len(tensors), positions=gen.prompt_tokens + len(gen.token_ids)),
                  values)


def original_unchanged(model: Path, before: str, after: str, seconds: float) -> Ruling:
    """The user's model is never written: its sha256 after the experiment is the one before it."""
    values = {"sha256_before": before, "sha256_after": after, "seconds": seconds}
    if after != before:
        return Ruling(Status.FAIL, msg("original.changed", model=str(model), before=before[:16], after=after[:16]),
                      values)
    return Ruling(Status.PASS, msg("original.unchanged", name=model.name, sha=after[:16]), values)


# ------------------------------------------------------------------------------------------------------- numerical


def numerical(tensors: Sequence[TensorStats], thresholds: Thresholds, epsilon: float) -> Ruling:
    """Per changed tensor, mean and max relative difference |a-b|/(|a|+ε); the worst tensor of each decides."""
    th = thresholds
    rows = [t for t in tensors if not t.noop]
    if not rows:
        return Ruling(Status.INCONCLUSIVE, msg("numerical.nothing_changed", values=sum(t.n for t in tensors)),
                      {"tensors": len(tensors), "changed_tensors": 0, "epsilon": epsilon})
    worst_mean = max(rows, key=lambda t: t.mean_rel)
    worst_max = max(rows, key=lambda t: t.max_rel)
    values = {"tensors": len(tensors), "changed_tensors": len(rows),
              "worst_mean_rel": worst_mean.mean_rel, "worst_mean_rel_tensor": worst_mean.name,
              "worst_max_rel": worst_max.max_rel, "worst_max_rel_tensor": worst_max.name,
              "min_sqnr_db": min(t.sqnr_db for t in rows), "epsilon": epsilon}
    text = msg("numerical.bounds", mean_rel=worst_mean.mean_rel, mean_tensor=worst_mean.name,
               mean_ideal=th.mean_rel_diff, mean_acceptable=th.mean_rel_diff_acceptable, max_rel=worst_max.max_rel,
               max_tensor=worst_max.name, max_ideal=th.max_rel_diff, max_acceptable=th.max_rel_diff_acceptable,
               tensors=len(rows))
    if worst_mean.mean_rel > th.mean_rel_diff_acceptable or worst_max.max_rel > th.max_rel_diff_acceptable:
        return Ruling(Status.FAIL, text, values)
    if worst_mean.mean_rel > th.mean_rel_diff or worst_max.max_rel > th.max_rel_diff:
        return Ruling(Status.CAUTION, text, values)
    return Ruling(Status.PASS, text, values)


# ------------------------------------------------------------------------------------------------------ perplexity


def increase_interval(ln_ratio: float, se: float, quantile: float = Z95) -> tuple[float, float, float]:
    """The perplexity increase exp(Δ ln PPL) − 1 and its interval ± ``quantile``·SE (95% normal by default; the
    decision's own interval is :func:`ln_ppl_interval`)."""
    return math.expm1(ln_ratio), math.expm1(ln_ratio - quantile * se), math.expm1(ln_ratio + quantile * se)


def ln_ppl_interval(comparison: Mapping[str, Any]) -> PairedInterval:
    """The 95% interval of Δ ln PPL the perplexity decision uses, from a comparison artifact: over its chunks
    (``per_chunk.ln_ppl_ratio``), the larger of the chunk-level and the per-token (llama.cpp's ``ln_ppl_ratio_se``)
    standard error, with a t quantile of chunks − 1 degrees of freedom: tokens within a chunk are correlated."""
    per_chunk = comparison.get("per_chunk")
    series = per_chunk.get("ln_ppl_ratio") if isinstance(per_chunk, Mapping) else None
    return paired_interval(float(comparison["ln_ppl_ratio"]), series, comparison.get("ln_ppl_ratio_se"),
                           int(comparison["chunks"]))


def chunks_to_resolve(comparison: Mapping[str, Any], acceptable: float) -> int | None:
    """How many chunks would put the decision's interval of the perplexity increase (:func:`ln_ppl_interval`, the
    t quantile taken at the new count's degrees of freedom) on one side of the acceptable bound, the spread between
    chunks staying what it is. ``None`` when no count would: an effect exactly on the bound, or numbers that are
    missing or not finite."""
    try:
        iv = ln_ppl_interval(comparison)
    except (KeyError, TypeError, ValueError):
        return None
    if iv.se is None or not math.isfinite(iv.mean):
        return None
    return chunks_to_clear(iv.se, iv.n, abs(iv.mean - math.log1p(acceptable)))


def perplexity(comparison: Mapping[str, Any], thresholds: Thresholds) -> Ruling:
    """The plan's bounds on the paired perplexity increase, judged on its 95% interval over chunks
    (:func:`ln_ppl_interval`): pass when surely below the ideal bound, fail when surely above the acceptable one,
    caution when surely below the acceptable one only; an interval across the acceptable bound, or no interval at
    all (one chunk), is inconclusive. NaN/Inf logits fail."""
    ln_ratio, chunks = comparison["ln_ppl_ratio"], comparison["chunks"]
    ideal, acceptable = thresholds.ppl_increase_ideal, thresholds.ppl_increase_acceptable
    iv = ln_ppl_interval(comparison)
    # both standard errors are recorded: llama.cpp's per-token one (comparable with its printout) and the decision's
    values: dict[str, Any] = {"ln_ppl_ratio": ln_ratio, "ln_ppl_ratio_se": comparison.get("ln_ppl_ratio_se"),
                              "ln_ppl_ratio_chunk_se": iv.chunk_se, "interval_se": iv.se, "interval_df": iv.df,
                              "interval_t": iv.quantile, "ideal": ideal, "acceptable": acceptable, "chunks": chunks}
    if iv.se is None or iv.quantile is None:
        inc = math.expm1(ln_ratio)
        values.update(increase=inc, increase_low=None, increase_high=None)
        status, text = Status.INCONCLUSIVE, msg("perplexity.one_chunk", inc=inc, n=iv.n)
    else:
        inc, lo, hi = increase_interval(ln_ratio, iv.se, iv.quantile)
        values.update(increase=inc, increase_low=lo, increase_high=hi)
        measured = msg("perplexity.measured", inc=inc, lo=lo, hi=hi, chunks=chunks)
        if hi < ideal:
            status, text = Status.PASS, msg("perplexity.below_ideal", measured=measured, ideal=ideal)
        elif lo > acceptable:
            status, text = Status.FAIL, msg("perplexity.above_acceptable", measured=measured, acceptable=acceptable)
        elif hi < acceptable:
            status, text = Status.CAUTION, msg("perplexity.below_acceptable", measured=measured,
                                               acceptable=acceptable, ideal=ideal)
        else:
            need = values["chunks_to_resolve"] = chunks_to_resolve(comparison, acceptable)
            more = msg("perplexity.chunks_would_resolve", need=need) if need else msg("perplexity.no_chunks_resolve")
            status, text = Status.INCONCLUSIVE, msg("perplexity.straddles", measured=measured, acceptable=acceptable,
                                                    more=more)
    values.update({k: comparison[k] for k in ("ppl_base", "ppl_q", "kld_mean", "same_top_p") if k in comparison})
    floor = floor_and_excess(comparison)
    if floor is not None:
        text = msg("clauses", parts=[text, floor.reason])
        values.update(floor.values)
    if comparison.get("nonfinite"):
        status, text = Status.FAIL, msg("perplexity.nonfinite", where=comparison["nonfinite"], text=text)
    return Ruling(status, text, values)


class Floor(NamedTuple):
    """What the placebo says about a comparison: the one-line account and its numbers."""

    reason: Message
    values: dict[str, Any]
    resolved: bool  # the format's own effect (excess mean KLD) lies surely above or below zero


def floor_and_excess(comparison: Mapping[str, Any]) -> Floor | None:
    """The total effect split into the floor (a one-ulp placebo of the same tensors, scored in the same pass) and the
    format's excess over it, judged on the excess mean KLD's interval over chunks. None without a placebo."""
    placebo, excess = comparison.get("placebo"), comparison.get("excess")
    if not isinstance(placebo, Mapping) or not isinstance(excess, Mapping):
        return None
    ci = excess.get("kld_mean_ci")
    resolved = bool(excess.get("kld_mean_resolved"))
    values = {"floor_kld_mean": placebo["kld_mean"], "floor_ln_ppl_ratio": placebo["ln_ppl_ratio"],
              "floor_same_top_p": placebo["same_top_p"], "excess_kld_mean": excess["kld_mean"],
              "excess_kld_mean_ci": ci, "excess_ln_ppl_ratio": excess["ln_ppl_ratio"],
              "excess_ln_ppl_ratio_ci": excess.get("ln_ppl_ratio_ci"), "format_effect_resolved": resolved}
    floor = msg("floor.placebo", ppl=math.expm1(placebo["ln_ppl_ratio"]), kld=placebo["kld_mean"])
    interval = msg("floor.interval", lo=ci[0], hi=ci[1]) if ci else msg("floor.no_interval")
    if resolved:
        effect = msg("floor.resolved", kld=excess["kld_mean"], interval=interval,
                     ppl=math.expm1(excess["ln_ppl_ratio"]))
    else:
        effect = msg("floor.unresolved", kld=excess["kld_mean"], interval=interval, chunks=excess["chunks"])
    return Floor(msg("clauses", parts=[floor, effect]), values, resolved)


# ----------------------------------------------------------------------------------------------------------- speed


def _slowdown(value: float, reference: float, higher_better: bool) -> float:
    """Relative slowdown of ``value`` against ``reference``: > 0 is slower (fewer tokens/s, or a longer load)."""
    ratio = value / reference if reference > 0 else math.nan
    return (1 - ratio) if higher_better else (ratio - 1)


def speed_metric(baseline: Sequence[float], candidate: Sequence[float], again: Sequence[float], *,
                 higher_better: bool, tolerance: float, alpha: float) -> dict[str, Any]:
    """Verdict on one speed metric over interleaved rounds, calibrated by the noise the run itself sees.

    Round i timed the original twice (``baseline[i]``, ``again[i]``: an A/A pair) and the candidate once, in an order
    that rotates over the rounds. Per round, the candidate's slowdown is taken against the geometric mean of the two
    base timings, and the A/A slowdown is ``again`` against ``baseline``. A slowdown is called (CAUTION, never a
    failure: speed alone never stops an experiment) only when the median candidate slowdown is beyond ``tolerance``,
    beyond the A/A noise (median |A/A slowdown|), and a one-sided Mann-Whitney test finds the candidate-vs-base
    slowdowns larger than the base-vs-base ones at ``alpha``. A candidate significantly faster by the same test
    passes. Otherwise a run whose A/A noise exceeds the tolerance, or whose rounds are too few for any p below
    ``alpha``, cannot resolve the tolerance: INCONCLUSIVE, said as such."""
    from scipy.stats import mannwhitneyu  # here: the speed round's child process never needs scipy

    n, m = len(candidate), len(again)
    per_round = [_slowdown(c, math.sqrt(b * a), higher_better) for b, c, a in zip(baseline, candidate, again,
                                                                                   strict=True)]
    aa = [_slowdown(a, b, higher_better) for b, a in zip(baseline, again, strict=True)]
    slowdown = statistics.median(per_round)
    noise = statistics.median(abs(x) for x in aa)
    base_all = [*baseline, *again]
    mb, mc = statistics.median(base_all), statistics.median(candidate)
    ratio = mc / mb if mb > 0 else math.nan
    p = float(mannwhitneyu(per_round, aa, alternative="greater").pvalue)
    p_faster = float(mannwhitneyu(per_round, aa, alternative="less").pvalue)
    smallest_p = 1 / math.comb(n + m, n)  # every candidate slowdown above every A/A one
    significant = p < alpha
    moved = msg("speed.slower", value=slowdown) if slowdown >= 0 else msg("speed.faster", value=-slowdown)
    shown = msg("speed.shown", moved=moved, noise=noise, p=p)
    if slowdown > tolerance and slowdown > noise and significant:
        status, verdict = Status.CAUTION, msg("speed.caution", shown=shown, alpha=alpha, tolerance=tolerance)
    elif smallest_p >= alpha:
        status, verdict = Status.INCONCLUSIVE, msg("speed.too_few_rounds", n=n, smallest_p=smallest_p, alpha=alpha)
    elif p_faster < alpha:  # surely not slower, however noisy the run
        status, verdict = Status.PASS, msg("speed.not_slower", moved=moved, p=p_faster)
    elif noise > tolerance:
        status, verdict = Status.INCONCLUSIVE, msg("speed.noisy", shown=shown, noise=noise, tolerance=tolerance)
    elif significant and slowdown > 0:
        status, verdict = Status.PASS, msg("speed.within_tolerance", shown=shown, tolerance=tolerance)
    else:
        status, verdict = Status.PASS, msg("speed.no_slowdown", ratio=ratio, p=p, noise=noise)
    return {"baseline": {"median": mb, "values": list(baseline), "again": list(again)},
            "candidate": {"median": mc, "values": list(candidate)},
            "ratio": ratio, "slowdown": slowdown, "per_round_slowdown": per_round, "aa_slowdown": aa,
            "aa_noise": noise, "p_value": p, "smallest_p": smallest_p, "significant": significant,
            "status": str(status), "verdict": verdict, "verdict_message": verdict.to_json()}


def speed_status(metrics: Iterable[Mapping[str, Any]]) -> Status:
    """The speed check: CAUTION when any metric is slower beyond the tolerance and the run's own noise (never a
    failure; "fail" in an artifact written before that counts as CAUTION), else INCONCLUSIVE when any metric could not
    be resolved, else PASS."""
    seen = {str(m["status"]) for m in metrics}
    if seen & {Status.CAUTION, Status.FAIL}:
        return Status.CAUTION
    return Status.INCONCLUSIVE if Status.INCONCLUSIVE in seen else Status.PASS


def speed(result: Mapping[str, Any]) -> Ruling:
    """The speed check from the "speed" artifact, with each metric's numbers flattened for JUnit."""
    metrics = result["metrics"]
    keys = ("ratio", "slowdown", "aa_noise", "p_value", "significant", "status")
    values = {f"{m}.{k}": v[k] for m, v in metrics.items() for k in keys if k in v}
    values.update({f"{m}.baseline_median": v["baseline"]["median"] for m, v in metrics.items()})
    values.update({f"{m}.candidate_median": v["candidate"]["median"] for m, v in metrics.items()})
    values["measured_by"] = result["measured_by"]
    verdicts = [msg("speed.metric", metric=m, verdict=_verdict(v)) for m, v in metrics.items()]
    reason = msg("speed.rounds", rounds=result["rounds"], metrics=verdicts)
    return Ruling(speed_status(metrics.values()), reason, values)


def _verdict(metric: Mapping[str, Any]) -> Message | str:
    """A metric's verdict with its code, also when the artifact was read back from JSON."""
    verdict, data = metric["verdict"], metric.get("verdict_message")
    if isinstance(verdict, Message) or not isinstance(data, Mapping):
        return verdict
    return Message.from_json(data, str(verdict))
