"""Which ggml type a fake-quantized tensor is stored in, and the bytes of the native types.

Compute like the real thing: llama.cpp picks a matmul kernel by the weight's ggml type, and only the quantized
kernels quantize the activations too. A quantized matrix stored as F32 therefore runs another computation, a
confound as large as a format's own effect. So a tensor of two or more dimensions is stored in the format's own
ggml type where one exists ("native"): ``bf16`` -> BF16, ``fp16`` -> F16, ``q8_0`` ... ``q6_k``, ``mxfp4`` and the
i-quants -> that block type, written by ggml's quantizer (:func:`fakequant.quant.ggml.quantize_rows`, the call
``llama-quantize`` makes, with the tensor's importance when there is one), with the dequantized blocks as the values
the statistics see. A tensor already in the
target type keeps its bytes, as ``llama-quantize`` copies it.

1-D tensors (norms, biases), which llama.cpp never quantizes, and every tensor of a format without a ggml type
(``fp8_*``, ``int8``, ``int4``) keep the older rule: the source type when it holds every value exactly, else F32.

``store``: unset (the automatic choice above), ``"native"`` (the same, refused for a format without a ggml type),
``"f32"`` / ``"f16"`` (force that type for every selected tensor, refused when it would change a value).
"""

from __future__ import annotations

from typing import IO

import numpy as np

from fakequant.errors import RecipeError
from fakequant.gguf.codec import FLOAT_TYPES, encode_values, exactly_representable
from fakequant.quant import formats
from fakequant.quant import ggml as ggml_quants

NATIVE_TYPES: dict[str, str] = {"bf16": "BF16", "fp16": "F16", **{f: f.upper() for f in formats.GGML_FORMATS}}
FORCED_TYPES = {"f32": "F32", "f16": "F16"}
STORE_CHOICES = ("native", *FORCED_TYPES)


def check_store(fmt: str, store: str | None) -> None:
    """RecipeError when ``store`` is unknown or cannot apply to ``fmt``."""
    if store is None:
        return
    if store not in STORE_CHOICES:
        raise RecipeError(f"store {store!r}: choose one of {', '.join(STORE_CHOICES)} (or leave it unset)")
    if store == "native" and fmt not in NATIVE_TYPES:
        raise RecipeError(f"store native: format {fmt} has no ggml type (those with one: "
                          f"{', '.join(NATIVE_TYPES)}); leave store unset or use f32")


def native_type(fmt: str, store: str | None, shape: tuple[int, ...]) -> str | None:
    """The ggml type a tensor of ``shape`` (ggml order) is stored in natively, or None when the value rule decides."""
    if store in FORCED_TYPES or len(shape) < 2:
        return None
    return NATIVE_TYPES.get(fmt)


def value_type(after: np.ndarray, source_type: str, store: str | None, fmt: str, where: str) -> str:
    """The older rule for non-native storage: a forced type, else the source type if it holds every value, else F32."""
    if store in FORCED_TYPES:
        target = FORCED_TYPES[store]
        if not exactly_representable(after, target):
            raise RecipeError(f"{where}: store {store} would change the {fmt} values (not exactly representable); "
                              f"use store f32")
        return target
    if source_type in FLOAT_TYPES and exactly_representable(after, source_type):
        return source_type
    return "F32"


def encode_native(rows: np.ndarray, fmt: str, stored: str,
                  importance: np.ndarray | None = None) -> tuple[bytes, np.ndarray]:
    """float32 rows -> (the bytes of ``stored``, the values those bytes hold), for ``stored = NATIVE_TYPES[fmt]``;
    ``importance`` (one value per column) goes to ggml's quantizer, float types have no use for it."""
    if stored in FLOAT_TYPES:
        after = formats.round_trip(rows, fmt)  # exact in ``stored`` by construction
        return encode_values(after, stored), after
    blocks = ggml_quants.quantize_rows(rows, fmt, importance)
    return blocks.tobytes(), ggml_quants.dequantize_rows(blocks, stored, rows.shape[1])


def write_native(rows: np.ndarray, fmt: str, stored: str, importance: np.ndarray | None, out: IO[bytes],
                 step: int) -> np.ndarray:
    """:func:`encode_native` over ``rows`` in chunks of ``step`` rows, the bytes appended to ``out``; return the
    stored values. ``importance``: None, or one row per expert (the rows split evenly among them, in order); a chunk
    never spans two experts, each has its own array."""
    after = np.empty_like(rows)
    experts = 1 if importance is None else len(importance)
    per_expert = rows.shape[0] // experts
    for e in range(experts):
        end = (e + 1) * per_expert
        for start in range(e * per_expert, end, step):
            stop = min(start + step, end)
            raw, after[start:stop] = encode_native(rows[start:stop], fmt, stored,
                                                   None if importance is None else importance[e])
            out.write(raw)
    return after
