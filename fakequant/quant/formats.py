"""Format name -> fake-quantization round trip: float32 values in, the values that format would hold out.

Float formats (via ml_dtypes / numpy, round-to-nearest-even):

- ``bf16``, ``fp16``, ``fp8_e5m2``: IEEE-style; a value beyond the largest finite one (after rounding) becomes ±inf.
- ``fp8_e4m3`` (the "fn" variant: no inf, max 448): **saturates**. Finite values beyond ±448 and ±inf become ±448
  (the "satfinite" conversion of hardware FP8 casts); NaN stays NaN. ml_dtypes alone would turn them into NaN.

Integer formats (symmetric, no zero point, ties to even, scale kept in float32):

- ``int8``: one scale per output row (a row of the GGUF tensor), ``scale = max|x| / 127``, codes in [-127, 127].
- ``int4``: one scale per group of ``group_size`` consecutive values of a row (default 32), ``scale = max|x| / 7``,
  codes in [-7, 7]. The row length must be a multiple of the group size.

  NaN and ±inf do not enter the scale and pass through unchanged (they have no integer code); an all-zero row or
  group stays zero.

ggml block formats (``q8_0`` ... ``q6_k``, ``mxfp4``, and the i-quants ``iq4_nl`` ... ``iq1_s``): ggml's own
quantizer and dequantizer (:mod:`fakequant.quant.ggml`), as ``llama-quantize``, with the tensor's importance
(``--imatrix``) when one is given and without otherwise. Rows must be a multiple of the block size (32 for the
legacy types, mxfp4 and iq4_nl; 256 for the K-quants and the other i-quants). Some i-quants need an importance
matrix (:func:`imatrix_problem`). NaN/Inf inputs get whatever ggml does with them (for q8_0 a NaN turns its whole
block of 32 into NaN; K-quants may turn a whole 256-row super-block into NaN); the analysis counts them.
"""

from __future__ import annotations

import difflib

import ml_dtypes
import numpy as np

from fakequant.errors import RecipeError
from fakequant.quant import ggml as ggml_quants

FLOAT_FORMATS = {
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "fp16": np.dtype(np.float16),
    "fp8_e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "fp8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
}
INT_FORMATS = {"int8": 127, "int4": 7}  # format -> largest code
IQ_FORMATS = ("iq4_nl", "iq4_xs", "iq3_s", "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s")
GGML_FORMATS = ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "mxfp4", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", *IQ_FORMATS)
# llama-quantize stops without an importance entry for these ("the result will be garbage"; its
# tensor_requires_imatrix), except for the token embeddings and the output matrix, which it lets through unless
# ggml itself asserts on the type (iq2_xxs, iq2_xs, iq1_s: ggml_quantize_requires_imatrix)
LLAMA_QUANTIZE_NEEDS_IMATRIX = frozenset({"iq3_xxs", "iq2_xxs", "iq2_xs", "iq2_s", "iq1_m", "iq1_s"})
IMATRIX_EXEMPT_TENSORS = frozenset({"token_embd.weight", "per_layer_token_embd.weight", "output.weight"})
FORMATS: tuple[str, ...] = (*FLOAT_FORMATS, *INT_FORMATS, *GGML_FORMATS)

DEFAULT_GROUP_SIZE = 32
FP8_E4M3_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)  # 448


def check_format(fmt: str) -> str:
    """Return ``fmt`` if known, else raise RecipeError with the closest names."""
    if fmt in FORMATS:
        return fmt
    lowered = fmt.lower().replace("-", "_")
    if lowered in FORMATS:
        return lowered
    close = difflib.get_close_matches(lowered, FORMATS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise RecipeError(f"format {fmt!r}: unknown{hint} (known: {', '.join(FORMATS)})")


def effective_group_size(fmt: str, group_size: int | None) -> int | None:
    """The group size a format uses (int4 only), validating a user-given one."""
    if fmt != "int4":
        if group_size is not None:
            raise RecipeError(f"group_size {group_size}: only int4 takes a group size, not {fmt}")
        return None
    if group_size is None:
        return DEFAULT_GROUP_SIZE
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise RecipeError(f"group_size {group_size!r}: must be a positive integer")
    return group_size


def imatrix_problem(fmt: str, tensor: str | None) -> str | None:
    """Why tensor ``tensor`` (None: any tensor) cannot take ``fmt`` without an importance entry, or None."""
    if fmt in GGML_FORMATS and ggml_quants.requires_imatrix(fmt):
        return f"{fmt} needs an importance matrix (ggml refuses it without one)"
    if fmt in LLAMA_QUANTIZE_NEEDS_IMATRIX and tensor not in IMATRIX_EXEMPT_TENSORS:
        return f"{fmt} needs an importance matrix (llama-quantize refuses it without one)"
    return None


def row_problem(fmt: str, n_per_row: int, group_size: int | None = None, *, importance: bool = False,
                tensor: str | None = None) -> str | None:
    """Why rows of ``n_per_row`` values cannot go through ``fmt``, or None when they can. ``importance``: the tensor
    (named ``tensor``, None when unknown) has an importance entry to quantize with."""
    fmt = check_format(fmt)
    if fmt in GGML_FORMATS:
        return ggml_quants.row_problem(fmt, n_per_row, importance=True) \
            or (None if importance else imatrix_problem(fmt, tensor))
    if fmt == "int4":
        group = effective_group_size(fmt, group_size)
        assert group is not None
        if n_per_row % group:
            return f"int4 with group size {group} needs rows whose length is a multiple of {group}, " \
                   f"this row has {n_per_row}"
    return None


def round_trip(values: np.ndarray, fmt: str, *, group_size: int | None = None,
               importance: np.ndarray | None = None) -> np.ndarray:
    """Round ``values`` (float32, rows × n_per_row; a 1-D array is one row) through ``fmt`` and back to float32;
    ``importance`` (one value per column) goes to a ggml format's quantizer, the other formats have no use for it."""
    fmt = check_format(fmt)
    group = effective_group_size(fmt, group_size)
    values = np.asarray(values, dtype=np.float32)
    rows = values.reshape(1, -1) if values.ndim == 1 else values.reshape(-1, values.shape[-1])
    problem = row_problem(fmt, rows.shape[1], group, importance=importance is not None)
    if problem:
        raise RecipeError(problem)
    if fmt in FLOAT_FORMATS:
        out = _float_round_trip(rows, fmt)
    elif fmt == "int8":
        out = _int_round_trip(rows, rows.shape[1], INT_FORMATS[fmt])
    elif fmt == "int4":
        assert group is not None
        out = _int_round_trip(rows, group, INT_FORMATS[fmt])
    else:
        out = ggml_quants.round_trip(rows, fmt, importance)
    return out.reshape(values.shape)


def _float_round_trip(rows: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "fp8_e4m3":
        # Saturate: clip finite overflow and ±inf to ±448 (NaN is kept by np.clip).
        rows = np.clip(rows, -FP8_E4M3_MAX, FP8_E4M3_MAX)
    with np.errstate(over="ignore"):  # fp16 overflow to inf is the documented behaviour
        return rows.astype(FLOAT_FORMATS[fmt]).astype(np.float32)


def _int_round_trip(rows: np.ndarray, group: int, qmax: int) -> np.ndarray:
    groups = rows.reshape(-1, group)
    finite = np.isfinite(groups)
    amax = np.max(np.where(finite, np.abs(groups), np.float32(0)), axis=1, keepdims=True)
    scale = (amax / np.float32(qmax)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    with np.errstate(invalid="ignore"):
        codes = np.clip(np.rint(groups / safe), -qmax, qmax)  # np.rint: ties to even
        out = (codes * safe).astype(np.float32)
    out = np.where(scale > 0, out, np.float32(0)).astype(np.float32)
    out = np.where(finite, out, groups)
    return out.reshape(rows.shape)
