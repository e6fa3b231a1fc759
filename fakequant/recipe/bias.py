"""The selection bias (winner's curse): a model's mean KLD on the chunks its assignment was chosen on against the
chunks it is evaluated on.

The solver picks the cells whose measured cost is low, and part of a low measurement is noise in its favour: on the
selection chunks the recipe's models look better than they are. Scored again on the evaluation chunks, which nothing
was chosen on, that part is gone. The two slices are different text, so the difference also holds how much harder
one text is than the other; the stock mixes, chosen on nothing, measure that part alone and are reported beside
them as the control. The slices' chunks are independent samples (no pairing): the interval of the difference is
Welch's, with the Welch-Satterthwaite degrees of freedom and a Student t quantile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fakequant.runtime.chunkstats import chunk_interval, t_quantile


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, list[float] | None]:
    """mean(a) - mean(b) and its 95% interval (None with fewer than 2 values on a side, or no spread at all)."""
    n, m = len(a), len(b)
    diff = sum(a) / n - sum(b) / m
    if n < 2 or m < 2:
        return diff, None
    va = sum((x - sum(a) / n) ** 2 for x in a) / (n - 1) / n
    vb = sum((x - sum(b) / m) ** 2 for x in b) / (m - 1) / m
    if va + vb == 0:
        return diff, None
    df = (va + vb) ** 2 / (va ** 2 / (n - 1) + vb ** 2 / (m - 1))
    half = t_quantile(max(1, math.floor(df))) * math.sqrt(va + vb)
    return diff, [diff - half, diff + half]


def selection_bias(selection: Sequence[float], evaluation: Sequence[float]) -> dict[str, Any]:
    """Per-chunk mean KLDs of one model on the selection and on the evaluation slice: both means with their
    intervals, the evaluation's excess over the selection (positive: the model was better on what it was chosen on)
    and the ratio evaluation / selection."""
    sel, ev = chunk_interval(selection), chunk_interval(evaluation)
    diff, ci = welch(evaluation, selection)
    return {"selection_kld_mean": sel.mean, "selection_kld_mean_ci": sel.ci(), "selection_chunks": sel.n,
            "evaluation_kld_mean": ev.mean, "evaluation_kld_mean_ci": ev.ci(), "evaluation_chunks": ev.n,
            "difference": diff, "difference_ci": ci, "ratio": ev.mean / sel.mean if sel.mean > 0 else None}
