"""Numerical comparison: hand-computed values, NaN/Inf bookkeeping, distributions against numpy/scipy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fakequant.quant.stats import QUANTILES, TensorStats, compare_tensors


def test_hand_computed_values() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    b = np.array([1.0, 2.0, 3.0, 5.0], np.float32)
    s = compare_tensors("t", a, b, epsilon=1e-8)
    assert (s.n, s.changed, s.noop) == (4, 1, False)
    assert s.max_abs == 1.0 and s.mean_abs == 0.25
    assert s.max_rel == pytest.approx(1 / 4) and s.mean_rel == pytest.approx(1 / 16)
    assert s.rmse == pytest.approx(0.5)
    assert s.sqnr_db == pytest.approx(10 * math.log10(30 / 1))  # Σa² = 30, Σ(a-b)² = 1
    assert s.cosine == pytest.approx(34 / math.sqrt(30 * 39))
    assert s.wasserstein == pytest.approx(0.25)
    assert s.quantiles_before["0.5"] == 2.5 and s.quantiles_after["1.0"] == 5.0
    assert sum(s.histogram["before"]) == 4 and sum(s.histogram["after"]) == 4
    assert sum(s.error_histogram["counts"]) == 4


def test_epsilon_enters_relative_difference() -> None:
    a = np.array([0.0, 1.0], np.float32)
    b = np.array([1e-3, 1.0], np.float32)
    assert compare_tensors("t", a, b, epsilon=1e-3).max_rel == pytest.approx(np.float32(1e-3) / 1e-3)
    assert compare_tensors("t", a, b, epsilon=1e-8).max_rel == pytest.approx(np.float32(1e-3) / 1e-8)


def test_noop_and_special_values() -> None:
    a = np.array([np.nan, np.inf, -0.0, 1.5], np.float32)
    s = compare_tensors("same", a, a.copy(), epsilon=1e-8)
    assert s.noop and s.changed == 0 and s.sqnr_db == math.inf and s.max_abs == 0.0
    assert (s.nan_before, s.inf_before, s.nan_after, s.inf_after) == (1, 1, 1, 1)
    zero_sign = compare_tensors("z", np.array([0.0], np.float32), np.array([-0.0], np.float32), epsilon=1e-8)
    assert zero_sign.noop  # -0.0 == 0.0: not a change
    b = np.array([np.nan, 448.0, -0.0, np.nan], np.float32)
    t = compare_tensors("t", a, b, epsilon=1e-8)
    assert t.changed == 2 and (t.nan_after, t.inf_after) == (2, 0)
    assert t.max_abs == 0.0  # the only finite pair (-0.0, -0.0) did not move


def test_json_round_trip_keeps_infinity() -> None:
    a = np.linspace(-1, 1, 100, dtype=np.float32)
    s = compare_tensors("t", a, a.copy(), epsilon=1e-8)
    data = json.loads(json.dumps(s.to_json()))
    for key in ("name", "n", "changed", "max_abs", "mean_abs", "max_rel", "mean_rel", "sqnr_db", "noop"):
        assert key in data
    assert TensorStats.from_json(data) == s


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 300), elements=st.floats(-100, 100, width=32)),
       st.floats(0.5, 2.0), st.floats(-1, 1))
def test_distribution_statistics_match_numpy_and_scipy(a: np.ndarray, gain: float, shift: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    b = (a * np.float32(gain) + np.float32(shift)).astype(np.float32)
    s = compare_tensors("t", a, b, epsilon=1e-8)
    q = np.quantile(a.astype(np.float64), QUANTILES)
    assert [s.quantiles_before[str(p)] for p in QUANTILES] == pytest.approx(q.tolist(), rel=1e-9, abs=1e-9)
    assert s.wasserstein == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-6, abs=1e-9)
    assert s.rmse == pytest.approx(float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2))), rel=1e-9, abs=1e-12)
    assert s.changed == int(np.count_nonzero(a != b))
    edges = np.array(s.histogram["edges"])
    assert s.histogram["before"] == np.histogram(a, bins=edges)[0].tolist()
    assert s.histogram["after"] == np.histogram(b, bins=edges)[0].tolist()


def test_overwrite_inputs_gives_same_numbers() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal(5000).astype(np.float32)
    b = (a + 0.01 * rng.standard_normal(5000)).astype(np.float32)
    keep = compare_tensors("t", a, b, epsilon=1e-8)
    consumed = compare_tensors("t", a.copy(), b.copy(), epsilon=1e-8, overwrite_inputs=True)
    assert keep == consumed
