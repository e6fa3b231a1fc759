"""Intervals over chunks, and the candidate's excess over its placebo.

Tokens inside one chunk share their context, so their errors are correlated: a per-token standard error understates
the uncertainty. Each chunk is scored from an empty context, so chunks are the independent units: the mean over
chunks of a per-chunk statistic, its standard error ``sd / sqrt(n)`` and a Student t quantile with ``n - 1`` degrees
of freedom give an interval that keeps its coverage with few chunks. :func:`paired_interval` is the one interval the
perplexity decision uses, and :func:`chunks_to_clear` the chunk count that same interval would need.

The excess of a candidate over its placebo twin (same tensors, a one-ulp nudge) is paired per chunk: both models
are scored on the same chunks against the same base, so the chunk-to-chunk variation of the floor cancels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVEL = 0.95


def t_quantile(df: int, level: float = LEVEL) -> float:
    """Two-sided Student t quantile: the interval is mean ± q·SE."""
    from scipy import stats  # imported here: most commands never compute an interval

    return float(stats.t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Interval:
    """Mean of per-chunk values with its standard error and two-sided interval (None with fewer than 2 chunks:
    one chunk says nothing about the spread between chunks)."""

    mean: float
    se: float | None
    low: float | None
    high: float | None
    n: int

    @property
    def resolved(self) -> bool:
        """The interval lies entirely on one side of zero."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def ci(self) -> list[float] | None:
        return None if self.low is None or self.high is None else [self.low, self.high]


def chunk_interval(values: Any, level: float = LEVEL) -> Interval:
    """Interval of the mean of independent per-chunk values."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        raise ValueError("chunk_interval: no chunks")
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, None, None, None, n)
    se = float(x.std(ddof=1) / math.sqrt(n))
    half = t_quantile(n - 1, level) * se
    return Interval(mean, se, mean - half, mean + half, n)


@dataclass(frozen=True)
class PairedInterval:
    """The interval of a paired mean (Δ ln PPL) that a decision rests on: the larger of the standard error over chunks
    and the per-token one (few chunks can show a spread smaller than the tokens' by chance), with a t quantile of
    ``n - 1`` degrees of freedom. ``low``/``high`` are None when no interval exists (fewer than 2 chunks)."""

    mean: float
    se: float | None  # the one used: max(chunk_se, token_se)
    chunk_se: float | None
    token_se: float | None  # llama.cpp's per-token formula, kept for comparison with its printout
    n: int  # chunks
    quantile: float | None
    low: float | None
    high: float | None

    @property
    def df(self) -> int:
        return self.n - 1


def _finite_se(value: Any) -> float | None:
    try:
        se = float(value)
    except (TypeError, ValueError):
        return None
    return se if math.isfinite(se) and se >= 0 else None


def paired_interval(mean: float, per_chunk: Any, token_se: Any, chunks: int, level: float = LEVEL) -> PairedInterval:
    """``mean`` ± t(n-1)·SE, SE the larger of the per-chunk series' standard error and ``token_se``. Without a series
    (an artifact written before chunks were kept) the per-token SE stands alone, still with the t quantile of
    ``chunks - 1`` degrees of freedom."""
    chunk_se = None
    n = int(chunks)
    if per_chunk is not None and len(per_chunk) > 0:
        iv = chunk_interval(per_chunk, level)
        chunk_se, n = iv.se, iv.n
    tok = _finite_se(token_se)
    known = [se for se in (chunk_se, tok) if se is not None]
    if n < 2 or not known:
        return PairedInterval(mean, None, chunk_se, tok, n, None, None, None)
    se = max(known)
    q = t_quantile(n - 1, level)
    return PairedInterval(mean, se, chunk_se, tok, n, q, mean - q * se, mean + q * se)


def chunks_to_clear(se: float, n: int, gap: float, level: float = LEVEL) -> int | None:
    """The smallest number of chunks, more than ``n``, whose interval (the spread between chunks as now, so the SE
    shrinks as sqrt(n / m), and the t quantile of m - 1 degrees of freedom) is narrower than ``gap`` on each side.
    None when nothing would: no spread measured, fewer than 2 chunks, or no gap."""
    if not (n >= 2 and math.isfinite(se) and se > 0 and math.isfinite(gap) and gap > 0):
        return None
    sd = se * math.sqrt(n)

    def clears(m: int) -> bool:
        return t_quantile(m - 1, level) * sd / math.sqrt(m) < gap

    from scipy import stats

    # the normal quantile is below every t quantile: no count under this one can clear
    low = max(n + 1, math.ceil((float(stats.norm.ppf(0.5 + level / 2)) * sd / gap) ** 2))
    high = low
    while not clears(high):
        low, high = high + 1, high * 2
    while low < high:  # the smallest clearing count in [low, high]
        mid = (low + high) // 2
        low, high = (low, mid) if clears(mid) else (mid + 1, high)
    return high


def excess(candidate: dict[str, list[float]], placebo: dict[str, list[float]], same_top_p: float,
           level: float = LEVEL) -> dict[str, Any]:
    """The candidate beyond its placebo, paired per chunk.

    ``candidate`` and ``placebo`` are the per-chunk series of one comparison pass (``kld_mean`` and
    ``ln_ppl_ratio`` against the same base, same chunks); ``same_top_p`` is the share of tokens on which candidate and
    placebo pick the same top token. ``ln_ppl_ratio`` here is ln PPL(candidate) − ln PPL(placebo).
    """
    out: dict[str, Any] = {"chunks": len(candidate["kld_mean"]), "level": level, "same_top_p": same_top_p}
    for key in ("kld_mean", "ln_ppl_ratio"):
        diff = np.asarray(candidate[key], dtype=np.float64) - np.asarray(placebo[key], dtype=np.float64)
        iv = chunk_interval(diff, level)
        out[key] = iv.mean
        out[f"{key}_se"] = iv.se
        out[f"{key}_ci"] = iv.ci()
        out[f"{key}_resolved"] = iv.resolved
    return out
