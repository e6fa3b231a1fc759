"""Tensor data <-> numpy: stored bytes of a ggml type to float32 values, and float32 values to F32 / F16 / BF16 bytes.

Float types are converted with numpy and ml_dtypes; ggml's block-quantized types are dequantized by ggml itself
(:mod:`fakequant.quant.ggml`).
"""

from __future__ import annotations

import functools

import numpy as np

from fakequant.quant import ggml as ggml_quants

FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
GGML_QUANT_TYPES = frozenset({"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
                              "MXFP4", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
                              "IQ4_XS", "IQ1_M", "TQ1_0", "TQ2_0"})


@functools.cache
def _float_dtype(type_name: str) -> type:
    """numpy's dtype of a float type; ml_dtypes (a second of CPU to import) only for BF16, which few runs touch."""
    if type_name == "BF16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return {"F32": np.float32, "F16": np.float16}[type_name]


def decode_values(raw: bytes | np.ndarray, type_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Stored bytes -> float32 array in numpy order (rows × n_per_row, i.e. ``shape`` reversed)."""
    np_shape = tuple(reversed(shape)) or (1,)
    buf = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    if type_name == "F32":
        return buf.view(np.float32).reshape(np_shape).copy()
    if type_name in FLOAT_TYPES:
        return buf.view(_float_dtype(type_name)).astype(np.float32).reshape(np_shape)
    n_per_row = shape[0] if shape else 1
    return ggml_quants.dequantize_rows(buf, type_name, n_per_row).reshape(np_shape)


def encode_values(values: np.ndarray, type_name: str) -> bytes:
    """float32 values -> the bytes of ``type_name`` (F32 / F16 / BF16 only: storage of fake-quantized values)."""
    dtype = _float_dtype(type_name)
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(values, dtype=np.float32).astype(dtype).tobytes()


def exactly_representable(values: np.ndarray, type_name: str) -> bool:
    """True when storing ``values`` (float32) as ``type_name`` loses nothing (NaN stays NaN, inf stays inf)."""
    if type_name == "F32":
        return True
    dtype = _float_dtype(type_name)
    with np.errstate(over="ignore", invalid="ignore"):
        back = values.astype(dtype).astype(np.float32)
    return bool(np.all((back == values) | (np.isnan(back) & np.isnan(values))))
