"""Round trips through every format: error bounds, idempotence, representable values, overflow, against oracles
that do not share the implementation's code path (integer bit arithmetic for bf16, Python's struct 'e' for fp16)."""

from __future__ import annotations

import math
import struct

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fakequant.errors import RecipeError
from fakequant.quant import formats
from fakequant.quant.formats import FLOAT_FORMATS, FORMATS, GGML_FORMATS, IQ_FORMATS, check_format, round_trip

FAST = settings(max_examples=60, deadline=None)
rows_f32 = hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.sampled_from([32, 64, 96])),
                      elements=st.floats(-1e4, 1e4, width=32))


def _either_sign(lo: float, hi: float) -> st.SearchStrategy[float]:
    """float32 values with lo <= |v| <= hi, drawn directly: filtering all float32 values down to a narrow range
    discards most draws, and Hypothesis's filter_too_much health check then fails the test at random."""
    magnitude = st.floats(lo, hi, width=32)
    return st.one_of(magnitude, magnitude.map(lambda v: -v))


def _bf16_oracle(x: float) -> float:
    """Round-to-nearest-even to bfloat16 on the float32 bit pattern (finite, non-overflowing inputs)."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", rounded & 0xFFFFFFFF))[0]


def _one(x: float, fmt: str) -> float:
    return float(round_trip(np.array([x], dtype=np.float32), fmt)[0])


def test_format_list_is_the_documented_one() -> None:
    assert FORMATS == ("bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "int8", "int4", "q8_0", "q4_0", "q4_1", "q5_0",
                       "q5_1", "mxfp4", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", "iq3_s",
                       "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s")


def test_unknown_format_suggests_close_names() -> None:
    with pytest.raises(RecipeError, match=r"'bf61'.*did you mean.*bf16"):
        check_format("bf61")
    assert check_format("FP8-E4M3") == "fp8_e4m3"


# ------------------------------------------------------------------------------------------------ float formats


@FAST
@given(_either_sign(2.0**-126, float(np.float32(3.0e38))))
def test_bf16_matches_bit_oracle_and_relative_bound(x: float) -> None:
    got = _one(x, "bf16")
    assert got == _bf16_oracle(x)
    assert abs(x - got) <= 2.0**-8 * abs(x)


@FAST
@given(st.floats(-65504.0, 65504.0, width=32, exclude_min=True, exclude_max=True))
def test_fp16_matches_struct_half_precision(x: float) -> None:
    expected = struct.unpack("<e", struct.pack("<e", x))[0]  # CPython's own round-half-even float16 packing
    assert _one(x, "fp16") == expected


@pytest.mark.parametrize(("fmt", "lo", "hi", "rel"), [
    ("bf16", 2.0**-126, float(np.float32(3.0e38)), 2.0**-8),
    ("fp16", 2.0**-14, 65504.0, 2.0**-11),
    ("fp8_e4m3", 2.0**-6, 448.0, 2.0**-4),
    ("fp8_e5m2", 2.0**-14, 57344.0, 2.0**-3),
])
@FAST
@given(data=st.data())
def test_float_relative_error_bound_for_normals(fmt: str, lo: float, hi: float, rel: float,
                                                data: st.DataObject) -> None:
    x = data.draw(_either_sign(lo, hi))
    assert abs(x - _one(x, fmt)) <= rel * abs(x)


@pytest.mark.parametrize("fmt", list(FLOAT_FORMATS))
@FAST
@given(rows=rows_f32)
def test_float_round_trip_is_idempotent_and_monotonic(fmt: str, rows: np.ndarray) -> None:
    once = round_trip(rows, fmt)
    assert np.array_equal(round_trip(once, fmt), once)
    flat, out = rows.reshape(-1), once.reshape(-1)
    order = np.argsort(flat, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)  # rounding never reorders values


@pytest.mark.parametrize("fmt", list(FLOAT_FORMATS))
@FAST
@given(raw=hnp.arrays(np.uint8, 64))
def test_values_of_the_format_are_unchanged(fmt: str, raw: np.ndarray) -> None:
    dtype = FLOAT_FORMATS[fmt]
    values = raw.view(np.uint16 if dtype.itemsize == 2 else np.uint8).view(dtype).astype(np.float32)
    values = values[np.isfinite(values)]
    assume(values.size)
    assert np.array_equal(round_trip(values, fmt), values)


def test_overflow_behaviour() -> None:
    big = np.array([1e6, -1e6, np.inf, -np.inf, np.nan], dtype=np.float32)
    assert round_trip(big, "fp16").tolist()[:4] == [math.inf, -math.inf, math.inf, -math.inf]
    assert round_trip(np.array([65519.0, 65520.0], np.float32), "fp16").tolist() == [65504.0, math.inf]
    # fp8_e4m3 saturates (documented choice): beyond ±448 and ±inf -> ±448, NaN stays NaN
    e4m3 = round_trip(big, "fp8_e4m3")
    assert e4m3[:4].tolist() == [448.0, -448.0, 448.0, -448.0] and math.isnan(e4m3[4])
    assert round_trip(np.array([464.0, 465.0, 500.0], np.float32), "fp8_e4m3").tolist() == [448.0] * 3
    assert round_trip(np.array([57344.0, 61439.0, 61440.0], np.float32), "fp8_e5m2").tolist() == \
        [57344.0, 57344.0, math.inf]
    bf_max = float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
    assert round_trip(np.array([bf_max, 3.4e38], np.float32), "bf16").tolist() == [bf_max, math.inf]
    assert all(math.isnan(v) for v in (_one(math.nan, f) for f in FLOAT_FORMATS))


def test_ties_round_to_even() -> None:
    # 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: even mantissa (1.0) wins
    assert _one(1 + 2.0**-8, "bf16") == 1.0
    assert _one(1 + 3 * 2.0**-8, "bf16") == 1 + 2 * 2.0**-7
    # fp8_e4m3: 1 + 2^-4 is halfway between 1 and 1.125
    assert _one(1 + 2.0**-4, "fp8_e4m3") == 1.0
    assert _one(1 + 3 * 2.0**-4, "fp8_e4m3") == 1.25


# ---------------------------------------------------------------------------------------------- integer formats


@pytest.mark.parametrize(("fmt", "qmax", "group"), [("int8", 127, None), ("int4", 7, 32), ("int4", 7, 16)])
@FAST
@given(rows=rows_f32)
def test_integer_formats_within_half_a_step(fmt: str, qmax: int, group: int | None, rows: np.ndarray) -> None:
    out = round_trip(rows, fmt, group_size=group)
    width = rows.shape[1] if group is None else group
    g_in, g_out = rows.reshape(-1, width).astype(np.float64), out.reshape(-1, width).astype(np.float64)
    scale = np.abs(g_in).max(axis=1, keepdims=True) / qmax
    assert np.all(np.abs(g_in - g_out) <= scale / 2 * (1 + 1e-5) + 1e-30)
    # every output is an integer multiple of the scale (when the float32 scale is a normal number: a subnormal
    # scale, from a group whose largest value is below 7 * 2^-126, keeps too few bits for exact multiples)
    normal = scale[:, 0] >= 2.0**-126
    codes = g_out[normal] / scale[normal]
    assert np.all(np.abs(codes - np.rint(codes)) < 1e-3)
    assert np.all(np.abs(codes) <= qmax + 1e-3)
    # the largest magnitude of each group survives (it maps to ±qmax)
    assert np.allclose(np.abs(g_out).max(axis=1), np.abs(g_in).max(axis=1), rtol=1e-6)
    # round trip of a round trip moves nothing beyond float32 rounding of the scale
    twice = round_trip(out, fmt, group_size=group)
    assert np.allclose(twice, out, rtol=1e-6, atol=0)


def test_int_known_values_and_specials() -> None:
    row = np.array([[1.0, -0.5, 0.26, 0.0, 127.0 / 127]], dtype=np.float32)
    # scale 1/127: -0.5 -> code -63.5 -> -64 (ties to even), 0.26 -> 33.02 -> 33
    assert np.allclose(round_trip(row, "int8"), [[1.0, -64 / 127, 33 / 127, 0.0, 1.0]], rtol=1e-6, atol=0)
    # ties to even: 0.5 of a step rounds to 0, 1.5 to 2 (int4, scale 7/7 = 1)
    grp = np.zeros((1, 32), np.float32)
    grp[0, :4] = [7.0, 0.5, 1.5, -2.5]
    assert round_trip(grp, "int4")[0, :4].tolist() == [7.0, 0.0, 2.0, -2.0]
    assert np.array_equal(round_trip(np.zeros((2, 32), np.float32), "int4"), np.zeros((2, 32)))
    special = np.array([[np.nan, np.inf, 2.0, 1.0]], dtype=np.float32)
    out = round_trip(special, "int8")
    assert math.isnan(out[0, 0]) and out[0, 1] == math.inf and out[0, 2] == 2.0  # scale from finite values only


def test_int4_groups_are_independent() -> None:
    rng = np.random.default_rng(1)
    row = rng.standard_normal((1, 64)).astype(np.float32)
    changed = row.copy()
    changed[0, 40] = 100.0  # only the second group's scale grows
    assert np.array_equal(round_trip(row, "int4")[0, :32], round_trip(changed, "int4")[0, :32])
    assert not np.array_equal(round_trip(row, "int4")[0, 32:], round_trip(changed, "int4")[0, 32:])


def test_group_size_validation() -> None:
    x = np.ones((1, 48), np.float32)
    with pytest.raises(RecipeError, match="multiple of 32"):
        round_trip(x, "int4")
    assert round_trip(x, "int4", group_size=16).shape == (1, 48)
    for bad in (0, -4, 2.5):
        with pytest.raises(RecipeError, match="group_size"):
            round_trip(x, "int4", group_size=bad)  # type: ignore[arg-type]
    with pytest.raises(RecipeError, match="only int4"):
        round_trip(x, "int8", group_size=16)


# ------------------------------------------------------------------------------------------- ggml block formats

# Bound on |x - rt(x)| relative to the largest magnitude in the row (generous: the formats' step / 2 plus scale
# rounding; a broken quantizer misses these by orders of magnitude).
GGML_BOUND = {"q8_0": 0.01, "q4_0": 0.13, "q4_1": 0.1, "q5_0": 0.07, "q5_1": 0.05, "mxfp4": 0.34, "q2_k": 0.6,
              "q3_k": 0.3, "q4_k": 0.15, "q5_k": 0.08, "q6_k": 0.04,
              # i-quants, 1.5× the worst of 300 seeds (uniform importance where one is needed, none otherwise):
              # codebooks, coarse below 4 bits; iq3_s without importance is as rough as iq3_xxs with it
              "iq4_nl": 0.15, "iq4_xs": 0.15, "iq3_s": 0.6, "iq3_xxs": 0.55, "iq2_s": 0.66, "iq2_xs": 0.8,
              "iq2_xxs": 0.9, "iq1_m": 1.04, "iq1_s": 1.22}


@pytest.mark.parametrize("fmt", GGML_FORMATS)
@settings(max_examples=15, deadline=None)
# scales from 1: ggml stores block scales as fp16, which go subnormal for tiny weights (q6_k's d = amax / 4096 is
# below fp16's smallest normal when amax < 0.25) and lose the relative precision this bound assumes; llama.cpp's
# own quantizer does the same (the engine matches llama-quantize byte for byte, test_ggml_quants)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1.0, 1e3), rows=st.integers(1, 3))
def test_ggml_formats_error_bound(fmt: str, seed: int, scale: float, rows: int) -> None:
    x = (scale * np.random.default_rng(seed).standard_normal((rows, 256))).astype(np.float32)
    imp = np.ones(256, np.float32) if formats.imatrix_problem(fmt, None) else None  # the i-quants that need one
    out = round_trip(x, fmt, importance=imp)
    assert out.shape == x.shape and out.dtype == np.float32
    amax = np.abs(x).max(axis=1, keepdims=True)
    assert np.all(np.abs(x - out) <= GGML_BOUND[fmt] * amax)
    assert np.array_equal(round_trip(np.zeros((1, 256), np.float32), fmt, importance=imp), np.zeros((1, 256)))


@pytest.mark.parametrize("fmt", ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"])
def test_k_quants_refuse_rows_not_multiple_of_256(fmt: str) -> None:
    with pytest.raises(RecipeError, match=r"multiple of 256, this row has 576.*fall back"):
        round_trip(np.ones((2, 576), np.float32), fmt)


@pytest.mark.parametrize("fmt", [f for f in IQ_FORMATS if f != "iq4_nl"])
def test_i_quants_need_whole_256_blocks_iq4_nl_32(fmt: str) -> None:
    # the default model's rows: 576 (hidden size) allows iq4_nl only, 1536 (ffn_down) every i-quant
    assert "multiple of 256, this row has 576" in formats.row_problem(fmt, 576, importance=True)
    assert formats.row_problem(fmt, 1536, importance=True) is None
    assert formats.row_problem("iq4_nl", 576) is None and "multiple of 32" in formats.row_problem("iq4_nl", 48)


def test_which_i_quants_need_an_importance_matrix() -> None:
    need = {f for f in GGML_FORMATS if formats.imatrix_problem(f, "blk.0.ffn_down.weight")}
    assert need == {"iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s"}  # llama-quantize's rule
    # llama-quantize lets token_embd / output through without one, unless ggml itself asserts on the type
    assert {f for f in need if formats.imatrix_problem(f, "output.weight")} == {"iq2_xs", "iq2_xxs", "iq1_s"}
    assert "needs an importance matrix" in formats.row_problem("iq2_s", 256, tensor="blk.0.attn_q.weight")
    assert formats.row_problem("iq2_s", 256, tensor="blk.0.attn_q.weight", importance=True) is None
    with pytest.raises(RecipeError, match="iq2_xxs needs an importance matrix"):  # before ggml would abort
        round_trip(np.ones((1, 256), np.float32), "iq2_xxs")


def test_importance_changes_the_quantization() -> None:
    x = np.random.default_rng(5).standard_normal((4, 256)).astype(np.float32)
    weights = np.linspace(0.01, 10, 256, dtype=np.float32)
    for fmt in ("q4_0", "q4_k", "iq4_xs"):
        plain, weighted = round_trip(x, fmt), round_trip(x, fmt, importance=weights)
        assert not np.array_equal(plain, weighted), fmt
        # the weighted error is what the importance asks to keep small
        assert (weights * (weighted - x) ** 2).sum() < (weights * (plain - x) ** 2).sum(), fmt


def test_block_formats_refuse_partial_blocks() -> None:
    with pytest.raises(RecipeError, match="multiple of 32"):
        round_trip(np.ones((1, 40), np.float32), "q8_0")
