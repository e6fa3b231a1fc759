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

from fakequant.suite.rules.conversation import CheckResult, combine, fluency_check, judge, overall
from fakequant.suite.vocab import Status

if TYPE_CHECKING:
    from pathlib import Path

    from fakequant.quant.stats import TensorStats
    from fakequant.runtime.llama import Generation
    from fakequant.suite.criteria import Thresholds

__all__ = ["Z95", "CheckResult", "Floor", "NoOp", "Ruling", "chunks_to_resolve", "combine", "finite",
           "floor_and_excess", "fluency_check", "format_check", "increase_interval", "judge", "load", "no_op",
           "numerical", "original_unchanged", "overall", "perplexity", "speed", "speed_metric", "speed_status"]

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


def increase_interval(ln_ratio: float, se: float) -> tuple[float, float, float]:
    """The perplexity increase exp(Δ ln PPL) − 1 and its 95% interval."""
    return math.expm1(ln_ratio), math.expm1(ln_ratio - Z95 * se), math.expm1(ln_ratio + Z95 * se)


def chunks_to_resolve(comparison: Mapping[str, Any], acceptable: float) -> int | None:
    """How many chunks would put the 95% interval of the perplexity increase on one side of the acceptable bound
    (the standard error of the mean Δ ln PPL shrinks as 1/sqrt(chunks)). ``None`` when no count would: an effect
    exactly on the bound, or numbers that are missing or not finite."""
    try:
        ratio = float(comparison["ln_ppl_ratio"])
        se = float(comparison["ln_ppl_ratio_se"])
        chunks = int(comparison["chunks"])
    except (KeyError, TypeError, ValueError):
        return None
    gap = abs(ratio - math.log1p(acceptable))
    if not (se > 0 and chunks > 0 and math.isfinite(se) and math.isfinite(ratio)) or gap == 0:
        return None
    return max(chunks + 1, math.ceil(chunks * (Z95 * se / gap) ** 2))


def perplexity(comparison: Mapping[str, Any], thresholds: Thresholds) -> Ruling:
    """The plan's bounds on the paired perplexity increase, judged on its 95% interval over chunks: pass when
    surely below the ideal bound, fail when surely above the acceptable one, caution when surely below the
    acceptable one only; an interval across the acceptable bound is inconclusive. NaN/Inf logits fail."""
    ln_ratio, se, chunks = comparison["ln_ppl_ratio"], comparison["ln_ppl_ratio_se"], comparison["chunks"]
    ideal, acceptable = thresholds.ppl_increase_ideal, thresholds.ppl_increase_acceptable
    inc, lo, hi = increase_interval(ln_ratio, se)
    values = {"increase": inc, "increase_low": lo, "increase_high": hi, "ln_ppl_ratio": ln_ratio,
              "ln_ppl_ratio_se": se, "ideal": ideal, "acceptable": acceptable, "chunks": chunks}
    measured = f"perplexity increase {inc:+.3%} (95% CI {lo:+.3%} … {hi:+.3%}, {chunks} chunks)"
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


def speed_metric(baseline: Sequence[float], candidate: Sequence[float], *, higher_better: bool, tolerance: float,
                 alpha: float) -> dict[str, Any]:
    """Verdict on one speed metric over the rounds: a failure only when the candidate is slower than ``tolerance``
    AND a one-sided Mann-Whitney U test says so at ``alpha``. ``slowdown`` > 0: slower (relative, on the medians)."""
    mb, mc = statistics.median(baseline), statistics.median(candidate)
    ratio = mc / mb if mb > 0 else float("nan")
    slowdown = (1 - ratio) if higher_better else (ratio - 1)
    from scipy.stats import mannwhitneyu  # here: the speed round's child process never needs scipy

    # one-sided: is the candidate slower? (smaller tokens/s, or longer load)
    p = float(mannwhitneyu(candidate, baseline, alternative="less" if higher_better else "greater").pvalue)
    significant = p < alpha
    if slowdown > tolerance and significant:
        status, verdict = Status.FAIL, f"{slowdown:.1%} slower (p = {p:.3f} < {alpha:g}; tolerance {tolerance:.0%})"
    elif significant:
        status, verdict = Status.PASS, (f"{slowdown:.1%} slower, significant (p = {p:.3f}) but within the "
                                        f"tolerance of {tolerance:.0%}")
    else:
        status, verdict = Status.PASS, (f"no significant slowdown ({ratio:.3f}× baseline, p = {p:.2f}; "
                                        f"spread {_spread(baseline):.1%} / {_spread(candidate):.1%})")
    return {"baseline": {"median": mb, "values": list(baseline)},
            "candidate": {"median": mc, "values": list(candidate)},
            "ratio": ratio, "slowdown": slowdown, "p_value": p, "significant": significant, "status": str(status),
            "verdict": verdict}


def _spread(values: Sequence[float]) -> float:
    """Half the range relative to the median: the run-to-run noise band."""
    med = statistics.median(values)
    return (max(values) - min(values)) / 2 / med if med else 0.0


def speed_status(metrics: Iterable[Mapping[str, Any]]) -> Status:
    """A significant slowdown beyond the tolerance in any metric fails the speed check (which only cautions)."""
    return Status.FAIL if any(m["status"] == Status.FAIL for m in metrics) else Status.PASS


def speed(result: Mapping[str, Any]) -> Ruling:
    """The speed check from the "speed" artifact, with each metric's numbers flattened for JUnit."""
    metrics = result["metrics"]
    values = {f"{m}.{k}": v[k] for m, v in metrics.items() for k in ("ratio", "p_value", "significant", "status")}
    values.update({f"{m}.baseline_median": v["baseline"]["median"] for m, v in metrics.items()})
    values.update({f"{m}.candidate_median": v["candidate"]["median"] for m, v in metrics.items()})
    values["measured_by"] = result["measured_by"]
    reason = f"{result['rounds']} interleaved rounds: " + "; ".join(f"{m} {v['verdict']}" for m, v in metrics.items())
    return Ruling(speed_status(metrics.values()), reason, values)
