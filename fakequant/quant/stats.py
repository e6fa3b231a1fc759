"""Numerical comparison of a tensor before and after fake quantization.

Differences are computed in float64 over the pairs where both values are finite; NaN and Inf are counted
separately. A value "changed" when it is not equal to its original (NaN stays NaN counts as unchanged; -0.0 vs 0.0
is unchanged). ``noop`` is true when nothing changed: the experiment would measure nothing.

Definitions (a = before, b = after, over finite pairs):
  rel = |a - b| / (|a| + ε);  rmse = sqrt(mean((a - b)²));  sqnr_db = 10·log10(Σa² / Σ(a - b)²) (+inf when the
  error is zero);  cosine = a·b / (|a||b|) (1.0 when both are zero vectors);  wasserstein = W₁ between the empirical
  distributions of the finite values of a and of b (how far the value distribution moved, in value units).

JSON: written through fakequant.store.cache.dumps, so an infinite sqnr_db (nothing changed) becomes null there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

QUANTILES = (0.0, 0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999, 1.0)
HISTOGRAM_BINS = 64
_CHUNK = 1 << 18  # elements per chunk for the float64 pairwise statistics (bounds temporary memory)


@dataclass
class TensorStats:
    name: str
    shape: tuple[int, ...]
    n: int
    changed: int
    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    rmse: float
    sqnr_db: float
    cosine: float
    nan_before: int
    inf_before: int
    nan_after: int
    inf_after: int
    quantiles_before: dict[str, float]
    quantiles_after: dict[str, float]
    histogram: dict[str, list]  # {"edges": [...], "before": [...], "after": [...]}
    error_histogram: dict[str, list]  # {"edges": [...], "counts": [...]} of b - a
    wasserstein: float
    noop: bool
    epsilon: float
    source_type: str = ""  # ggml type in the source file (set by the engine)
    stored_type: str = ""  # ggml type written to the candidate
    format: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        data = asdict(self)
        data["shape"] = list(self.shape)
        return data

    @classmethod
    def from_json(cls, data: dict) -> TensorStats:
        data = dict(data)
        data["shape"] = tuple(data["shape"])
        return cls(**data)


def compare_tensors(name: str, before: np.ndarray, after: np.ndarray, *, epsilon: float,
                    overwrite_inputs: bool = False) -> TensorStats:
    """Compare two arrays of the same shape. With ``overwrite_inputs`` the arrays are sorted in place (saves memory)."""
    if before.shape != after.shape:
        raise ValueError(f"{name}: shapes differ, {before.shape} vs {after.shape}")
    a = np.asarray(before, dtype=np.float32).reshape(-1)
    b = np.asarray(after, dtype=np.float32).reshape(-1)
    n = a.size

    changed = 0
    n_pairs = 0
    max_abs = max_rel = 0.0
    sum_abs = sum_rel = sum_sq_err = sum_sq_a = sum_sq_b = dot = 0.0
    err_lo, err_hi = math.inf, -math.inf
    for start in range(0, n, _CHUNK):
        ca, cb = a[start:start + _CHUNK], b[start:start + _CHUNK]
        finite = np.isfinite(ca) & np.isfinite(cb)
        if finite.all():  # the common case: no masking, no NaN bookkeeping
            changed += int(ca.size - np.count_nonzero(ca == cb))
            fa, fb = ca.astype(np.float64), cb.astype(np.float64)
        else:
            same = (ca == cb) | (np.isnan(ca) & np.isnan(cb))
            changed += int(ca.size - np.count_nonzero(same))
            fa, fb = ca[finite].astype(np.float64), cb[finite].astype(np.float64)
        if fa.size == 0:
            continue
        err = fb - fa
        abs_err = np.abs(err)
        rel = abs_err / (np.abs(fa) + epsilon)
        n_pairs += fa.size
        max_abs = max(max_abs, float(abs_err.max()))
        max_rel = max(max_rel, float(rel.max()))
        sum_abs += float(abs_err.sum())
        sum_rel += float(rel.sum())
        sum_sq_err += float(err @ err)
        sum_sq_a += float(fa @ fa)
        sum_sq_b += float(fb @ fb)
        dot += float(fa @ fb)
        err_lo, err_hi = min(err_lo, float(err.min())), max(err_hi, float(err.max()))

    mean_abs = sum_abs / n_pairs if n_pairs else 0.0
    mean_rel = sum_rel / n_pairs if n_pairs else 0.0
    rmse = math.sqrt(sum_sq_err / n_pairs) if n_pairs else 0.0
    if sum_sq_err == 0.0:
        sqnr = math.inf
    elif sum_sq_a == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(sum_sq_a / sum_sq_err)
    if sum_sq_a == 0.0 and sum_sq_b == 0.0:
        cosine = 1.0
    elif sum_sq_a == 0.0 or sum_sq_b == 0.0:
        cosine = 0.0
    else:
        cosine = dot / math.sqrt(sum_sq_a * sum_sq_b)

    error_histogram = _error_histogram(a, b, err_lo, err_hi)
    nan_before, inf_before = int(np.count_nonzero(np.isnan(a))), int(np.count_nonzero(np.isinf(a)))
    nan_after, inf_after = int(np.count_nonzero(np.isnan(b))), int(np.count_nonzero(np.isinf(b)))

    # Distribution statistics from sorted copies (or the inputs themselves, sorted in place).
    sa = _sorted_finite(a, overwrite_inputs)
    sb = _sorted_finite(b, overwrite_inputs)
    return TensorStats(
        name=name, shape=tuple(int(s) for s in before.shape), n=int(n), changed=changed,
        max_abs=max_abs, mean_abs=mean_abs, max_rel=max_rel, mean_rel=mean_rel, rmse=rmse, sqnr_db=sqnr,
        cosine=min(1.0, max(-1.0, cosine)),
        nan_before=nan_before, inf_before=inf_before, nan_after=nan_after, inf_after=inf_after,
        quantiles_before=_quantiles(sa), quantiles_after=_quantiles(sb),
        histogram=_histogram(sa, sb), error_histogram=error_histogram,
        wasserstein=_wasserstein(sa, sb), noop=changed == 0, epsilon=epsilon,
    )


def _sorted_finite(x: np.ndarray, in_place: bool) -> np.ndarray:
    if in_place and x.flags.writeable:
        x.sort()
    else:
        x = np.sort(x)
    # sorted order: -inf, finite..., +inf, NaN
    lo = int(np.searchsorted(x, -np.inf, side="right"))
    hi = int(np.searchsorted(x[lo:], np.inf, side="left")) + lo if x.size else 0
    return x[lo:hi]


def _quantiles(sorted_finite: np.ndarray) -> dict[str, float]:
    if sorted_finite.size == 0:
        return {str(q): math.nan for q in QUANTILES}
    # linear interpolation between order statistics (numpy's default), computed on the sorted array
    pos = np.asarray(QUANTILES) * (sorted_finite.size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, sorted_finite.size - 1)
    frac = pos - lo
    vals = sorted_finite[lo].astype(np.float64) * (1 - frac) + sorted_finite[hi].astype(np.float64) * frac
    return {str(q): float(v) for q, v in zip(QUANTILES, vals, strict=True)}


def _histogram(sa: np.ndarray, sb: np.ndarray) -> dict[str, list]:
    if sa.size == 0 and sb.size == 0:
        return {"edges": [], "before": [], "after": []}
    lo = min(float(s[0]) for s in (sa, sb) if s.size)
    hi = max(float(s[-1]) for s in (sa, sb) if s.size)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)

    def counts(s: np.ndarray) -> list[int]:
        idx = np.searchsorted(s, edges, side="left")
        idx[-1] = s.size  # last bin is closed on the right
        return np.diff(idx).astype(int).tolist()

    return {"edges": edges.tolist(), "before": counts(sa), "after": counts(sb)}


def _error_histogram(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> dict[str, list]:
    if not math.isfinite(lo):
        return {"edges": [], "counts": []}
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    total = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    for start in range(0, a.size, _CHUNK):
        ca, cb = a[start:start + _CHUNK], b[start:start + _CHUNK]
        finite = np.isfinite(ca) & np.isfinite(cb)
        if finite.all():
            err = cb.astype(np.float64) - ca.astype(np.float64)
        else:
            err = cb[finite].astype(np.float64) - ca[finite].astype(np.float64)
        # uniform bins: compute the bin index directly (np.histogram's general path is several times slower)
        idx = np.floor((err - lo) * (HISTOGRAM_BINS / (hi - lo))).astype(np.int64)
        total += np.bincount(np.clip(idx, 0, HISTOGRAM_BINS - 1), minlength=HISTOGRAM_BINS)
    return {"edges": edges.tolist(), "counts": total.tolist()}


def _wasserstein(sa: np.ndarray, sb: np.ndarray) -> float:
    if sa.size == 0 or sb.size == 0:
        return math.nan
    if sa.size == sb.size:
        total = 0.0
        for start in range(0, sa.size, _CHUNK):
            total += float(np.abs(sa[start:start + _CHUNK].astype(np.float64)
                                  - sb[start:start + _CHUNK].astype(np.float64)).sum())
        return total / sa.size
    # different finite counts: integrate |Qa - Qb| over a fine grid of probabilities
    p = (np.arange(10_000) + 0.5) / 10_000
    qa = sa[np.minimum((p * sa.size).astype(np.int64), sa.size - 1)].astype(np.float64)
    qb = sb[np.minimum((p * sb.size).astype(np.int64), sb.size - 1)].astype(np.float64)
    return float(np.mean(np.abs(qa - qb)))
