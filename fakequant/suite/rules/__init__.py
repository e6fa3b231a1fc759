"""Every check's decision rule: measurements and thresholds in, a status and its one-line reason out.

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

from fakequant.runtime.chunkstats import PairedInterval, chunks_to_clear, paired_interval
from fakequant.suite.rules.conversation import CheckResult, combine, fluency_check, judge, overall
from fakequant.suite.vocab import Status

if TYPE_CHECKING:
    from pathlib import Path

    from fakequant.quant.stats import TensorStats
    from fakequant.runtime.llama import Generation
    from fakequant.suite.criteria import Thresholds

__all__ = ["Z95", "CheckResult", "Floor", "NoOp", "Ruling", "chunks_to_resolve", "combine", "finite",
           "floor_and_excess", "fluency_check", "format_check", "increase_interval", "judge", "ln_ppl_interval",
           "load", "no_op", "numerical", "original_unchanged", "overall", "perplexity", "speed", "speed_metric",
           "speed_status"]

Z95 = 1.959964  # two-sided 95% normal quantile


class Ruling(NamedTuple):
    """One check's verdict, in the order the ``outcome`` fixture takes it."""

    status: Status
    reason: str
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
    return NoOp(changed, total, str(recipe.get("format") or "the target format"))


# ------------------------------------------------------------------------------------------------------- must pass


def format_check(differences: Sequence[str], changed_tensors: int) -> Ruling:
    if differences:
        return Ruling(Status.FAIL, f"{len(differences)} difference(s) from the original's format, first: "
                                   f"{differences[0]}", {"differences": len(differences)})
    return Ruling(Status.PASS, f"same format as the original; only the {changed_tensors} selected tensor(s) may differ",
                  {"differences": 0, "changed_tensors": changed_tensors})


def load(gen: Generation, load_time_s: float, prompt: str) -> Ruling:
    """The candidate loaded and its quick inference produced at least one token."""
    values = {"candidate_load_s": load_time_s, "tokens": len(gen.token_ids), "text": gen.text}
    if not gen.token_ids:
        return Ruling(Status.FAIL, f"quick inference produced no token (stop: {gen.stop_reason})", values)
    return Ruling(Status.PASS, f"loaded in {load_time_s:.2f} s; '{prompt}' → {len(gen.token_ids)} tokens {gen.text!r}",
                  values)


def finite(tensors: Sequence[TensorStats], gen: Generation) -> Ruling:
    """No NaN/Inf the fake quantization brought into the weights, nor in the logits of a short generation."""
    bad = [t for t in tensors if t.nan_after or t.inf_after]
    new_bad = [t for t in bad if t.nan_after > t.nan_before or t.inf_after > t.inf_before]
    values = {"tensors_with_nonfinite": len(bad), "logits_nonfinite": gen.nonfinite or "none"}
    if new_bad:
        t = new_bad[0]
        return Ruling(Status.FAIL, f"{t.name}: {t.nan_after} NaN and {t.inf_after} Inf after (before: "
                                   f"{t.nan_before} / {t.inf_before})", values)
    if gen.nonfinite:
        return Ruling(Status.FAIL, f"NaN/Inf logit at {gen.nonfinite}", values)
    return Ruling(Status.PASS, f"no NaN/Inf in {len(tensors)} changed tensor(s) nor in the logits of "
                               f"{gen.prompt_tokens + len(gen.token_ids)} positions", values)


def original_unchanged(model: Path, before: str, after: str, seconds: float) -> Ruling:
    """The user's model is never written: its sha256 after the experiment is the one before it."""
    values = {"sha256_before": before, "sha256_after": after, "seconds": seconds}
    if after != before:
        return Ruling(Status.FAIL, f"{model}: sha256 changed from {before[:16]}… to {after[:16]}…", values)
    return Ruling(Status.PASS, f"{model.name}: sha256 {after[:16]}… unchanged", values)


# ------------------------------------------------------------------------------------------------------- numerical


def numerical(tensors: Sequence[TensorStats], thresholds: Thresholds, epsilon: float) -> Ruling:
    """Per changed tensor, mean and max relative difference |a-b|/(|a|+ε); the worst tensor of each decides."""
    th = thresholds
    rows = [t for t in tensors if not t.noop]
    if not rows:
        return Ruling(Status.INCONCLUSIVE, f"0 of {sum(t.n for t in tensors)} values changed: nothing to compare",
                      {"tensors": len(tensors), "changed_tensors": 0, "epsilon": epsilon})
    worst_mean = max(rows, key=lambda t: t.mean_rel)
    worst_max = max(rows, key=lambda t: t.max_rel)
    values = {"tensors": len(tensors), "changed_tensors": len(rows),
              "worst_mean_rel": worst_mean.mean_rel, "worst_mean_rel_tensor": worst_mean.name,
              "worst_max_rel": worst_max.max_rel, "worst_max_rel_tensor": worst_max.name,
              "min_sqnr_db": min(t.sqnr_db for t in rows), "epsilon": epsilon}
    text = (f"mean rel diff {worst_mean.mean_rel:.3%} ({worst_mean.name}; ideal < {th.mean_rel_diff:.0%}, "
            f"acceptable < {th.mean_rel_diff_acceptable:.0%}), max rel diff {worst_max.max_rel:.3%} "
            f"({worst_max.name}; ideal < {th.max_rel_diff:.0%}, acceptable < {th.max_rel_diff_acceptable:.0%}), "
            f"over {len(rows)} changed tensor(s)")
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
        status, text = Status.INCONCLUSIVE, (f"perplexity increase {inc:+.3%} over {iv.n} chunk(s): an interval over "
                                             "chunks needs at least 2 chunks")
    else:
        inc, lo, hi = increase_interval(ln_ratio, iv.se, iv.quantile)
        values.update(increase=inc, increase_low=lo, increase_high=hi)
        measured = f"perplexity increase {inc:+.3%} (95% CI {lo:+.3%} … {hi:+.3%}, t over {chunks} chunks)"
        if hi < ideal:
            status, text = Status.PASS, f"{measured} entirely below the ideal bound {ideal:.0%}"
        elif lo > acceptable:
            status, text = Status.FAIL, f"{measured} entirely above the acceptable bound {acceptable:.0%}"
        elif hi < acceptable:
            status, text = Status.CAUTION, (f"{measured} below the acceptable bound {acceptable:.0%} but not surely "
                                            f"below the ideal {ideal:.0%}")
        else:
            need = values["chunks_to_resolve"] = chunks_to_resolve(comparison, acceptable)
            more = (f"about {need} chunks would resolve it" if need
                    else "no number of chunks resolves an effect on the bound")
            status, text = Status.INCONCLUSIVE, f"{measured} straddles the acceptable bound {acceptable:.0%}; {more}"
    values.update({k: comparison[k] for k in ("ppl_base", "ppl_q", "kld_mean", "same_top_p") if k in comparison})
    floor = floor_and_excess(comparison)
    if floor is not None:
        text = f"{text}; {floor.reason}"
        values.update(floor.values)
    if comparison.get("nonfinite"):
        status, text = Status.FAIL, f"NaN/Inf logits in the perplexity pass at {comparison['nonfinite']}; {text}"
    return Ruling(status, text, values)


class Floor(NamedTuple):
    """What the placebo says about a comparison: the one-line account and its numbers."""

    reason: str
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
    floor = (f"a one-ulp nudge of the same tensors (placebo) already moves perplexity by "
             f"{math.expm1(placebo['ln_ppl_ratio']):+.3%} and gives KLD {placebo['kld_mean']:.2g}")
    interval = f"95% CI {ci[0]:+.2g} … {ci[1]:+.2g}" if ci else "no interval from one chunk"
    if resolved:
        effect = (f"the format adds KLD {excess['kld_mean']:+.2g} ({interval}) and "
                  f"{math.expm1(excess['ln_ppl_ratio']):+.3%} perplexity beyond it")
    else:
        effect = (f"the format's own effect is below what this model and runtime resolve at this position "
                  f"(excess KLD {excess['kld_mean']:+.2g}, {interval}, {excess['chunks']} chunks)")
    return Floor(f"{floor}; {effect}", values, resolved)


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
    moved = f"{slowdown:.1%} slower" if slowdown >= 0 else f"{-slowdown:.1%} faster"
    shown = f"{moved} per round (median), A/A noise {noise:.1%}, p = {p:.3f}"
    if slowdown > tolerance and slowdown > noise and significant:
        status, verdict = Status.CAUTION, f"{shown} < {alpha:.3g}: slower beyond the tolerance of {tolerance:.0%}"
    elif smallest_p >= alpha:
        status, verdict = Status.INCONCLUSIVE, (f"{n} rounds cannot show a slowdown: the smallest p they can reach "
                                                f"is {smallest_p:.3f}, not below {alpha:.3g}")
    elif p_faster < alpha:  # surely not slower, however noisy the run
        status, verdict = Status.PASS, (f"not slower: {moved} per round (median), significantly below the A/A "
                                        f"slowdowns (p = {p_faster:.3f})")
    elif noise > tolerance:
        status, verdict = Status.INCONCLUSIVE, (f"{shown}; the original against itself already differs by "
                                                f"{noise:.1%} per round, more than the tolerance of {tolerance:.0%}: "
                                                "this run cannot resolve it")
    elif significant and slowdown > 0:
        status, verdict = Status.PASS, f"{shown}: significant, but within the tolerance of {tolerance:.0%}"
    else:
        status, verdict = Status.PASS, (f"no significant slowdown ({ratio:.3f}× the original, p = {p:.2f}; "
                                        f"A/A noise {noise:.1%})")
    return {"baseline": {"median": mb, "values": list(baseline), "again": list(again)},
            "candidate": {"median": mc, "values": list(candidate)},
            "ratio": ratio, "slowdown": slowdown, "per_round_slowdown": per_round, "aa_slowdown": aa,
            "aa_noise": noise, "p_value": p, "smallest_p": smallest_p, "significant": significant,
            "status": str(status), "verdict": verdict}


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
    reason = f"{result['rounds']} interleaved rounds: " + "; ".join(f"{m} {v['verdict']}" for m, v in metrics.items())
    return Ruling(speed_status(metrics.values()), reason, values)
