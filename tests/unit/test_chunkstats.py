"""Chunk-level intervals and the excess over the placebo: known answers and coverage with correlated tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fakequant.runtime.chunkstats import chunk_interval, excess, t_quantile


def test_interval_known_answer():
    iv = chunk_interval([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(sum((x - 2.5) ** 2 for x in (1, 2, 3, 4)) / 3)
    assert iv.mean == pytest.approx(2.5)
    assert iv.se == pytest.approx(sd / 2)
    assert t_quantile(3) == pytest.approx(3.182446, abs=1e-6)  # the t table's 97.5% point, 3 degrees of freedom
    assert iv.low == pytest.approx(2.5 - 3.182446 * sd / 2, abs=1e-6)
    assert iv.high == pytest.approx(2.5 + 3.182446 * sd / 2, abs=1e-6)
    assert iv.resolved  # [0.446, 4.554] lies above zero


def test_resolved_means_one_side_of_zero():
    assert chunk_interval([1.0, 1.1, 0.9, 1.05]).resolved
    assert chunk_interval([-1.0, -1.1, -0.9]).resolved
    assert not chunk_interval([-1.0, 1.0, 0.5, -0.4]).resolved


def test_one_chunk_has_no_interval():
    iv = chunk_interval([0.3])
    assert iv.mean == 0.3 and iv.se is None and iv.ci() is None and not iv.resolved
    with pytest.raises(ValueError):
        chunk_interval([])


def _per_token_kld(rng: np.random.Generator, chunks: int, tokens: int, level: float) -> np.ndarray:
    """Synthetic per-token KLDs: a chunk effect shared by all its tokens plus token noise (both positive)."""
    chunk_effect = rng.gamma(4.0, level / 4.0, size=(chunks, 1))
    return chunk_effect * rng.gamma(2.0, 0.5, size=(chunks, tokens))


def test_excess_known_answer_on_synthetic_kld():
    rng = np.random.default_rng(0)
    placebo_tokens = _per_token_kld(rng, 8, 255, 0.003)
    candidate_tokens = placebo_tokens + 0.0012  # the format adds exactly 0.0012 nats on every token
    cand = {"kld_mean": candidate_tokens.mean(axis=1).tolist(), "ln_ppl_ratio": [0.01] * 8}
    plac = {"kld_mean": placebo_tokens.mean(axis=1).tolist(), "ln_ppl_ratio": [0.004] * 8}
    out = excess(cand, plac, same_top_p=0.97)
    assert out["kld_mean"] == pytest.approx(0.0012, rel=1e-9)
    assert out["kld_mean_ci"] == pytest.approx([0.0012, 0.0012], rel=1e-6)  # paired: the floor's spread cancels
    assert out["kld_mean_resolved"]
    assert out["ln_ppl_ratio"] == pytest.approx(0.006)
    assert out["chunks"] == 8 and out["same_top_p"] == 0.97


def test_excess_of_a_placebo_against_itself_is_unresolved():
    rng = np.random.default_rng(1)
    a = _per_token_kld(rng, 10, 255, 0.003).mean(axis=1)
    b = _per_token_kld(rng, 10, 255, 0.003).mean(axis=1)  # two independent nudges: same floor, no excess
    out = excess({"kld_mean": a.tolist(), "ln_ppl_ratio": (a * 0).tolist()},
                 {"kld_mean": b.tolist(), "ln_ppl_ratio": (b * 0).tolist()}, same_top_p=0.96)
    lo, hi = out["kld_mean_ci"]
    assert lo < 0 < hi and not out["kld_mean_resolved"]


def test_coverage_with_correlated_tokens():
    """Tokens of a chunk share a chunk effect; the chunk-level t interval still covers the true mean ≥ 93%."""
    rng = np.random.default_rng(2)
    true_mean, trials, covered = 0.0, 600, 0
    for _ in range(trials):
        chunk_effect = rng.normal(0.0, 0.01, size=(6, 1))  # strong within-chunk correlation
        tokens = true_mean + chunk_effect + rng.normal(0.0, 0.01, size=(6, 255))
        iv = chunk_interval(tokens.mean(axis=1))
        covered += iv.low <= true_mean <= iv.high
    assert covered / trials >= 0.93
    # the per-token interval on the same data covers far less: it ignores the chunk effect
    per_token_cover = 0
    for _ in range(trials):
        chunk_effect = rng.normal(0.0, 0.01, size=(6, 1))
        tokens = (chunk_effect + rng.normal(0.0, 0.01, size=(6, 255))).ravel()
        se = tokens.std(ddof=1) / math.sqrt(tokens.size)
        per_token_cover += abs(tokens.mean()) <= 1.96 * se
    assert per_token_cover / trials < 0.5
