"""rowparts: the slices, the threads they run on, errors raised again; and the paired statistics, which run on them,
bit for bit the same over any number of slices."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fakequant.runtime.paired import _BaseChunk, _token_stats
from fakequant.runtime.perplexity import row_logsumexp
from fakequant.runtime.rowparts import map_row_parts, row_parts


def test_row_parts_cover_the_rows_in_order():
    assert row_parts(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert row_parts(2, 8) == [(0, 1), (1, 2)]
    assert row_parts(0, 2) == [(0, 0)]
    assert row_parts(255, 1) == [(0, 255)]


def test_the_slices_run_at_once_the_first_on_the_callers_thread_and_an_error_comes_back():
    together = threading.Barrier(3, timeout=30)  # broken unless all three slices are running at the same time

    def meet(k: int, a: int, b: int) -> tuple[int, int, int, int]:
        together.wait()
        return k, a, b, threading.get_ident()

    seen = map_row_parts(meet, 9, 3)
    assert [s[:3] for s in seen] == [(0, 0, 3), (1, 3, 6), (2, 6, 9)]
    idents = [s[3] for s in seen]
    assert idents[0] == threading.get_ident() and len(set(idents)) == 3

    def fail_on_the_last(k: int, a: int, b: int) -> int:
        if k == 2:
            raise ValueError(f"rows {a}:{b}")
        return k

    with pytest.raises(ValueError, match="rows 6:9"):
        map_row_parts(fail_on_the_last, 9, 3)


def test_the_paired_statistics_are_the_same_over_any_number_of_slices():
    rng = np.random.default_rng(3)
    base_logits = (rng.standard_normal((255, 2000)) * 3).astype(np.float32)
    q_logits = base_logits + (rng.standard_normal(base_logits.shape) * 0.1).astype(np.float32)
    targets = rng.integers(0, 2000, 255)
    mx, lse = row_logsumexp(base_logits)
    norm = mx.astype(np.float64) + lse
    base = _BaseChunk(logits=base_logits, norm=norm, nll=norm - base_logits[np.arange(255), targets],
                      top=base_logits.argmax(axis=1), nonfinite=None)
    one = _token_stats(base, q_logits, targets, 1)
    assert set(one) == {"nll_q", "nll_b", "kld", "dp", "same_top"} and all(len(v) == 255 for v in one.values())
    assert (one["kld"] > 0).all() and 0 < one["same_top"].mean() < 1
    for parts in (2, 3, 7):
        many = _token_stats(base, q_logits, targets, parts)
        assert all(np.array_equal(many[k], one[k]) for k in one)
