"""What ``llama-quantize --imatrix FILE`` hands ggml's quantizer for each tensor, read from a GGUF importance matrix.

llama.cpp ``common/imatrix-loader.cpp`` reads, per tensor ``X``, the F32 tensors ``X.in_sum2`` (the per-column sums
of squared activations, one row per expert) and ``X.counts`` (tokens per expert), rounding each count to an integer
(``std::lround``); ``tools/quantize/quantize.cpp`` ``load_imatrix`` then divides, in float32, each expert's sums by
its count, or writes ones where the count is 0. :func:`load_imatrix` computes exactly that, since the array decides
every quantized byte. In ``src/llama-quant.cpp`` a 2-D tensor's rows all get the same array, the rows of expert
``j`` of a 3-D tensor its ``j``-th slice (:func:`tensor_importance`); a tensor without an entry is quantized without
importance; an entry of the wrong size stops it, except for the token embeddings (quantized without).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFWriter

from fakequant.errors import RecipeError
from fakequant.store.cache import atomic_path, file_sha256

_SUM2, _COUNTS = ".in_sum2", ".counts"
_SIZE_EXEMPT = ("token_embd.weight", "per_layer_token_embd.weight")


def reader(path: Path) -> GGUFReader:
    try:
        return GGUFReader(path)
    except (ValueError, OSError) as err:
        raise RecipeError(f"{path}: not a GGUF importance matrix ({err}); a legacy .dat file converts with "
                          "`llama-imatrix --in-file FILE.dat -o FILE.gguf`") from err


def load_imatrix(path: Path) -> dict[str, np.ndarray]:
    """Tensor name -> the float32 importance llama-quantize hands ggml for it (length ``n_per_row`` times the
    number of experts; see the module docstring). RecipeError naming the file for anything llama-quantize refuses."""
    path = Path(path)
    file = reader(path)
    missing = [k for k in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size")
               if file.get_field(k) is None]
    if missing:
        raise RecipeError(f"{path}: no {missing[0]} key: not an importance matrix that llama-quantize accepts")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for t in file.tensors:
        for suffix, into in ((_SUM2, sums), (_COUNTS, counts)):
            if t.name.endswith(suffix):
                if t.tensor_type.name != "F32":
                    raise RecipeError(f"{path}: tensor {t.name} is {t.tensor_type.name}, not F32")
                into[t.name.removesuffix(suffix)] = np.asarray(t.data, dtype=np.float32).reshape(-1)
    if not sums and not counts:
        raise RecipeError(f"{path}: holds no importance entries")
    out: dict[str, np.ndarray] = {}
    for name in sorted(set(sums) | set(counts)):
        if name not in sums or name not in counts:
            raise RecipeError(f"{path}: {name} has {'no counts' if name in sums else 'counts but no sums'}")
        total, n = sums[name], counts[name]
        if n.size == 0 or total.size % n.size:
            raise RecipeError(f"{path}: {name}: {total.size} sums do not split into {n.size} experts")
        # common_imatrix_load rounds each count to an integer (std::lround: halves away from zero); quantize.cpp
        # divides the float sums by it as a float, or writes ones where it is 0
        count = (np.sign(n) * np.floor(np.abs(n.astype(np.float64)) + 0.5)).astype(np.int64).astype(np.float32)
        per = total.reshape(n.size, -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(count[:, None] > 0, per / count[:, None], np.float32(1)).astype(np.float32)
        if not np.isfinite(values).all():
            raise RecipeError(f"{path}: {name}: the importance holds a non-finite value (llama-quantize refuses it)")
        out[name] = values.reshape(-1)
    return out


def tensor_importance(entries: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...], *,
                      source: str = "") -> np.ndarray | None:
    """The importance rows of tensor ``name`` of ``shape`` (ggml order), one per expert (``ne[2]``, 1 for a matrix):
    float32 (experts × n_per_row); None when the matrix has no entry (llama-quantize then quantizes it without).
    A size that does not match stops llama-quantize, except for the token embeddings (quantized without)."""
    values = entries.get(name)
    if values is None:
        return None
    n_per_row = shape[0]
    experts = shape[2] if len(shape) > 2 else 1
    if values.size != n_per_row * experts:
        if name in _SIZE_EXEMPT:
            return None
        raise RecipeError(f"{source or 'imatrix'}: tensor {name}: importance of {values.size} values for rows of "
                          f"{n_per_row} × {experts} experts (an imatrix of another model?)")
    return values.reshape(experts, n_per_row)


def check_imatrix(path: object, applies: bool, fmt: str) -> None:
    """RecipeError unless ``path`` names an existing file and ``fmt`` (``applies``: it has a ggml type) uses one."""
    if not applies:
        raise RecipeError(f"imatrix: only formats with a ggml type use an importance matrix, not {fmt}")
    if not isinstance(path, str):
        raise RecipeError(f"imatrix {path!r}: give the file's path as a str (it is written into the recipe's JSON)")
    if not Path(path).is_file():
        raise RecipeError(f"imatrix {path!r}: no such importance matrix file")


@functools.lru_cache(maxsize=4)
def _entries(path: str, sha: str) -> dict[str, np.ndarray]:  # ``sha``: a rewritten file is read again
    return load_imatrix(Path(path))


def importance_rows(imatrix: str | None, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The importance rows (experts × n_per_row) ggml gets for tensor ``name`` of ``shape`` from the imatrix file
    ``imatrix`` (None: no imatrix), or None when it gets none."""
    if imatrix is None or len(shape) < 2:
        return None
    return tensor_importance(_entries(imatrix, file_sha256(Path(imatrix))), name, shape, source=imatrix)


def write_imatrix(path: Path, entries: Mapping[str, tuple[np.ndarray, np.ndarray]], *, chunks: int = 1,
                  chunk_size: int = 512, dataset: str = "synthetic") -> Path:
    """Write a GGUF importance matrix as llama-imatrix does: per tensor name, (sums: experts × n_per_row, counts:
    experts) as ``NAME.in_sum2`` and ``NAME.counts``, names sorted, with its metadata keys (for tests and for
    importance matrices made elsewhere)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = GGUFWriter(tmp, arch="imatrix", use_temp_file=False)
        writer.add_type("imatrix")
        writer.add_array("imatrix.datasets", [dataset])
        writer.add_uint32("imatrix.chunk_count", chunks)
        writer.add_uint32("imatrix.chunk_size", chunk_size)
        for name in sorted(entries):
            sums, counts = entries[name]
            sums = np.asarray(sums, dtype=np.float32)
            sums = sums.reshape(1, -1) if sums.ndim == 1 else sums
            writer.add_tensor(f"{name}{_SUM2}", sums)
            writer.add_tensor(f"{name}{_COUNTS}", np.asarray(counts, dtype=np.float32).reshape(-1, 1))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path
