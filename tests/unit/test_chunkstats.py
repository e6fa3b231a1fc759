"""Chunk-level intervals, the perplexity decision's interval and the excess over the placebo: known answers and
coverage with correlated tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fakequant.runtime.chunkstats import chunk_interval, chunks_to_clear, excess, paired_interval, t_quantile
from fakequant.runtime.paired import paired_stats
from fakequant.suite import rules
from fakequant.suite.criteria import Thresholds


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


def _correlated_comparison(rng: np.random.Generator, chunks: int, tokens: int = 255) -> dict:
    """A comparison artifact as paired.compare writes it, from tokens whose Δ nll shares a per-chunk effect (true
    Δ ln PPL = 0): llama.cpp's per-token SE from paired_stats, the per-chunk series as _Series keeps it."""
    nll_b = rng.gamma(2.0, 1.5, size=(chunks, tokens))
    nll_q = nll_b + rng.normal(0.0, 0.01, size=(chunks, 1)) + rng.normal(0.0, 0.02, size=(chunks, tokens))
    zeros = np.zeros(chunks * tokens)
    stats = paired_stats(nll_q.ravel(), nll_b.ravel(), zeros, zeros, zeros > 0)
    return {**stats, "chunks": chunks, "per_chunk": {"ln_ppl_ratio": (nll_q - nll_b).mean(axis=1).tolist()}}


@pytest.mark.parametrize("chunks", [3, 10])
def test_the_perplexity_rule_covers_the_truth_with_correlated_tokens(chunks):
    """The interval rules.perplexity decides on covers the true increase (0) ≥ 93% of the time; llama.cpp's per-token
    interval on the same data covers far less."""
    rng = np.random.default_rng(chunks)
    trials, covered, per_token = 1000, 0, 0
    for _ in range(trials):
        pc = _correlated_comparison(rng, chunks)
        values = rules.perplexity(pc, Thresholds()).values
        covered += values["increase_low"] <= 0.0 <= values["increase_high"]
        per_token += abs(pc["ln_ppl_ratio"]) <= 1.959964 * pc["ln_ppl_ratio_se"]
        assert values["interval_df"] == chunks - 1 and values["ln_ppl_ratio_se"] == pc["ln_ppl_ratio_se"]
    assert covered / trials >= 0.93
    assert per_token / trials < 0.6


def test_paired_interval_takes_the_larger_standard_error_and_a_t_quantile():
    steady = paired_interval(0.01, [0.01, 0.0101, 0.0099], token_se=0.001, chunks=3)
    assert steady.se == 0.001 and steady.chunk_se == pytest.approx(0.0001 / math.sqrt(3))
    assert steady.quantile == t_quantile(2) and steady.low == pytest.approx(0.01 - t_quantile(2) * 0.001)
    spread = paired_interval(0.01, [0.0, 0.02, 0.01], token_se=0.001, chunks=3)
    assert spread.se == spread.chunk_se == pytest.approx(0.01 / math.sqrt(3)) and spread.df == 2
    assert paired_interval(0.01, None, token_se=math.nan, chunks=3).low is None  # no SE known at all
    assert paired_interval(0.01, [0.01], token_se=0.001, chunks=1).low is None  # one chunk: no interval


def test_chunks_to_clear_uses_the_t_quantile_of_the_new_count():
    need = chunks_to_clear(0.01, 4, 0.015)  # sd over chunks 0.02: at m chunks, half width t(m-1)·0.02/sqrt(m)
    assert need == 10 and t_quantile(9) * 0.02 / math.sqrt(10) < 0.015 <= t_quantile(8) * 0.02 / math.sqrt(9)
    assert chunks_to_clear(0.01, 4, 1.0) == 5  # already clear: one more chunk, never fewer
    assert chunks_to_clear(0.0, 4, 0.01) is None and chunks_to_clear(0.01, 1, 0.01) is None
    assert chunks_to_clear(0.01, 4, 0.0) is None
