"""ggml's own quantizers and dequantizers, called through ctypes in the libggml-base that llama-cpp-python installed.

Quantizing goes through ``ggml_quantize_chunk``, the very call ``llama-quantize`` makes for each tensor (llama.cpp
``src/llama-quant.cpp``), with the tensor's importance (one weight per column, the same for every row: what
llama-quantize hands ggml from ``--imatrix``, see :mod:`fakequant.recipe.imatrix`) or none, so a round trip here
produces the bytes ``llama-quantize`` would write. Dequantizing uses ``ggml_get_type_traits(type)->to_float``, the
function llama.cpp itself uses.

ggml aborts the whole process on a failed assertion, so every precondition (row length a multiple of the block
size, an importance matrix where the type needs one) is checked here first and reported as a :class:`RecipeError`.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from fakequant.errors import RecipeError


class _TypeTraits(ctypes.Structure):
    _fields_ = [  # struct ggml_type_traits (ggml/include/ggml.h)
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


def library_path() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError("llama_cpp: package not installed; ggml block formats need its libggml-base")
    lib_dir = Path(next(iter(spec.submodule_search_locations))) / "lib"
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        if (lib_dir / name).exists():
            return lib_dir / name
    raise RecipeError(f"{lib_dir}: no libggml-base library found (llama-cpp-python installation incomplete)")


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library_path()))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(ctypes.c_float)]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def ggml_type(type_name: str) -> GGMLQuantizationType:
    try:
        return GGMLQuantizationType[type_name.upper()]
    except KeyError:
        raise RecipeError(f"ggml type {type_name!r}: unknown") from None


def block_size(type_name: str) -> int:
    return GGML_QUANT_SIZES[ggml_type(type_name)][0]


def row_bytes(type_name: str, n_per_row: int) -> int:
    blck, size = GGML_QUANT_SIZES[ggml_type(type_name)]
    return n_per_row // blck * size


def requires_imatrix(type_name: str) -> bool:
    """Whether ggml itself refuses to quantize ``type_name`` without importance (it asserts: iq2_xxs, iq2_xs,
    iq1_s). llama-quantize refuses a few more, see :func:`fakequant.quant.formats.imatrix_problem`."""
    return bool(_lib().ggml_quantize_requires_imatrix(int(ggml_type(type_name))))


def row_problem(type_name: str, n_per_row: int, *, importance: bool = False) -> str | None:
    """Why rows of ``n_per_row`` values cannot be quantized to ``type_name`` (with an importance array when
    ``importance``), or None."""
    blck = block_size(type_name)
    if n_per_row % blck:
        what = f"{type_name.lower()} needs rows whose length is a multiple of {blck}, this row has {n_per_row}"
        if blck == 256:
            what += " (llama-quantize would fall back to another type for such a tensor, e.g. q5_0 for q4_k)"
        return what
    if not importance and requires_imatrix(type_name):
        return f"{type_name.lower()} needs an importance matrix (ggml refuses it without one)"
    return None


def quantize_rows(rows: np.ndarray, type_name: str, importance: np.ndarray | None = None) -> np.ndarray:
    """float32 (nrows × n_per_row) -> the ggml blocks, uint8 (nrows × row_bytes), exactly as llama-quantize.

    ``importance``: float32, one value per column (n_per_row), the same for every row, as llama-quantize passes a
    2-D tensor's imatrix entry; None quantizes without."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if rows.ndim != 2:
        raise ValueError(f"quantize_rows: expected a 2-D array, got shape {rows.shape}")
    nrows, n_per_row = rows.shape
    problem = row_problem(type_name, n_per_row, importance=importance is not None)
    if problem:
        raise RecipeError(problem)
    weights = None
    if importance is not None:
        importance = np.ascontiguousarray(importance, dtype=np.float32)
        if importance.shape != (n_per_row,):
            raise ValueError(f"quantize_rows: importance of shape {importance.shape} for rows of {n_per_row}")
        weights = importance.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    qtype = int(ggml_type(type_name))
    out = np.empty((nrows, row_bytes(type_name, n_per_row)), dtype=np.uint8)
    if nrows == 0:
        return out
    written = _lib().ggml_quantize_chunk(qtype, rows.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                         out.ctypes.data, 0, nrows, n_per_row, weights)
    if written != out.nbytes:
        raise RuntimeError(f"ggml_quantize_chunk({type_name}) wrote {written} bytes, expected {out.nbytes}")
    return out


def dequantize_rows(blocks: np.ndarray, type_name: str, n_per_row: int) -> np.ndarray:
    """ggml blocks (any shape, whole rows, C-contiguous bytes) -> float32 (nrows × n_per_row) via ggml's to_float."""
    raw = np.ascontiguousarray(blocks).view(np.uint8).reshape(-1)
    per_row = row_bytes(type_name, n_per_row)
    if n_per_row % block_size(type_name) or raw.size % per_row:
        raise ValueError(f"dequantize_rows: {raw.size} bytes are not whole rows of {n_per_row} {type_name} values")
    nrows = raw.size // per_row
    out = np.empty((nrows, n_per_row), dtype=np.float32)
    traits = _lib().ggml_get_type_traits(int(ggml_type(type_name))).contents
    if not traits.to_float:
        raise RecipeError(f"ggml type {type_name}: ggml has no dequantizer for it")
    to_float = _TO_FLOAT(traits.to_float)
    if out.size:
        to_float(raw.ctypes.data, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.size)
    return out


def round_trip(rows: np.ndarray, type_name: str, importance: np.ndarray | None = None) -> np.ndarray:
    """Quantize float32 rows to ``type_name`` with ggml (and ``importance``) and dequantize them again."""
    rows = np.asarray(rows, dtype=np.float32)
    return dequantize_rows(quantize_rows(rows, type_name, importance), type_name, rows.shape[1])
