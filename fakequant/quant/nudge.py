"""One-ulp nudges of a tensor's stored bytes: the smallest change the tensor's own encoding allows.

- F32 / F16 / BF16: every finite non-zero value moves by one ulp of its own type, away from or toward zero with
  a seeded random choice per value. Zeros stay: the step next to zero is a subnormal, an infinite relative change,
  not a nudge. NaN and ±inf stay: they have no neighbour of the same kind.
- ggml block types: the fp16 scale ``d`` of every block moves by one fp16 ulp (random direction per block), and
  no other byte of the block changes. ``d`` sits at byte 0 in Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q5_K, and at
  the end in Q2_K, Q3_K and Q6_K (ggml-common.h; gguf-py quants.py splits the blocks the same way). A zero ``d``
  stays (its block's values are all zero or all the minimum: a nudge would create a value from nothing).
  Other block types (MXFP4's power-of-two scale, i-quants, ternary types) are refused.

At the ends of a type's range the step goes the other way: never onto ±inf, never onto zero. The random
directions come from ``numpy.random.default_rng([seed, *name])``: the same seed and tensor give the same bytes.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from fakequant.errors import RecipeError

PLACEBO = "placebo"  # the pseudo-format of a Recipe whose tensors get this nudge

# type -> (unsigned little-endian word, exponent bits, mantissa bits)
FLOAT_BITS: dict[str, tuple[str, int, int]] = {"F32": ("<u4", 8, 23), "F16": ("<u2", 5, 10), "BF16": ("<u2", 8, 7)}
# block type -> byte offset of the block's fp16 scale d
SCALE_OFFSETS: dict[str, int] = {"Q4_0": 0, "Q4_1": 0, "Q5_0": 0, "Q5_1": 0, "Q8_0": 0, "Q4_K": 0, "Q5_K": 0,
                                 "Q2_K": 80, "Q3_K": 108, "Q6_K": 208}
NUDGEABLE_TYPES = (*FLOAT_BITS, *SCALE_OFFSETS)


def type_problem(type_name: str) -> str | None:
    """Why a tensor of ``type_name`` cannot be nudged, or None when it can."""
    if type_name in NUDGEABLE_TYPES:
        return None
    return f"the placebo nudges only {', '.join(NUDGEABLE_TYPES)} tensors, not {type_name}"


def ulp_step(bits: np.ndarray, away: np.ndarray, exp_bits: int, mant_bits: int) -> np.ndarray:
    """Sign-magnitude float bit patterns moved one ulp in magnitude (``away`` from zero, else toward it).

    Zeros, ±inf and NaN are returned unchanged; the largest finite magnitude steps down, the smallest up."""
    word = bits.dtype
    wide = bits.astype(np.int64)
    magnitude = wide & ((1 << (exp_bits + mant_bits)) - 1)
    inf = ((1 << exp_bits) - 1) << mant_bits
    movable = (magnitude != 0) & (magnitude < inf)
    away = np.where(magnitude + 1 >= inf, False, np.where(magnitude == 1, True, away))
    return np.where(movable, wide + np.where(away, 1, -1), wide).astype(word)


def _directions(name: str, seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng([seed, *name.encode("utf-8")])
    return rng.integers(0, 2, size=n, dtype=np.uint8).astype(bool)


def nudge_tensor(raw: bytes, type_name: str, name: str, seed: int) -> bytes:
    """The stored bytes of tensor ``name`` (type ``type_name``) with the one-ulp nudge applied."""
    problem = type_problem(type_name)
    if problem:
        raise RecipeError(f"tensor {name}: {problem}")
    buf = np.frombuffer(raw, dtype=np.uint8)
    if type_name in FLOAT_BITS:
        word, exp_bits, mant_bits = FLOAT_BITS[type_name]
        bits = buf.view(word)
        return ulp_step(bits, _directions(name, seed, bits.size), exp_bits, mant_bits).tobytes()
    block = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]][1]
    if buf.size % block:
        raise RecipeError(f"tensor {name}: {buf.size} bytes are not whole {type_name} blocks of {block}")
    blocks = buf.reshape(-1, block).copy()
    at = SCALE_OFFSETS[type_name]
    d = np.ascontiguousarray(blocks[:, at:at + 2]).view("<u2").reshape(-1)
    stepped = ulp_step(d, _directions(name, seed, d.size), 5, 10)
    blocks[:, at:at + 2] = stepped.view(np.uint8).reshape(-1, 2)
    return blocks.tobytes()


def nudge_size(old: bytes, new: bytes, type_name: str) -> dict[str, int | float]:
    """The nudge measured on the encoding itself: how many values (floats) or block scales ``d`` (blocks) moved,
    and the mean and largest |Δ|/|x| over them.

    For block types this, not the values' ``mean_rel``, is the placebo's size: in a type with a minimum
    (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) a value ``d·q + m`` near zero gets a huge relative change from a 0.1 % step
    of ``d``."""
    a, b = _units(old, type_name), _units(new, type_name)
    moved = a != b
    rel = np.abs(b[moved] - a[moved]) / np.abs(a[moved])
    return {"nudged": int(moved.sum()), "nudge_rel_mean": float(rel.mean()) if rel.size else 0.0,
            "nudge_rel_max": float(rel.max()) if rel.size else 0.0}


def _units(raw: bytes, type_name: str) -> np.ndarray:
    """The nudged units as float64: every value of a float tensor, or every block's scale ``d``."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    if type_name in FLOAT_BITS:
        word = FLOAT_BITS[type_name][0]
        dtype = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}[type_name]
        return buf.view(word).view(dtype).astype(np.float64)
    block = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]][1]
    at = SCALE_OFFSETS[type_name]
    d = np.ascontiguousarray(buf.reshape(-1, block)[:, at:at + 2])
    return d.view("<f2").reshape(-1).astype(np.float64)
