"""Intervals over chunks, and the candidate's excess over its placebo.

Tokens inside one chunk share their context, so their errors are correlated: a per-token standard error understates
the uncertainty. Each chunk is scored from an empty context, so chunks are the independent units: the mean over
chunks of a per-chunk statistic, its standard error ``sd / sqrt(n)`` and a Student t quantile with ``n - 1`` degrees
of freedom give an interval that keeps its coverage with few chunks.

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
