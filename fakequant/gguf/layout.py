"""What a GGUF holds, as the one header walk (:mod:`fakequant.gguf.check`) returns it, and its tensors' data.

:class:`ModelInfo` is the metadata and the tensor table with the byte layout needed to copy the file: every
key/value pair's exact byte span (so a copy can carry it over byte for byte, type and all) and every tensor's type,
shape and offset. Long metadata arrays (a tokenizer's ~10^5 strings) are kept as an :class:`ArrayPreview`.

Tensor data is read on demand, one tensor at a time (:func:`read_tensor_bytes`, :func:`read_tensor_values`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fakequant.errors import GGUFFormatError, RecipeError
from fakequant.gguf.codec import FLOAT_TYPES, GGML_QUANT_TYPES, decode_values

ARRAY_PREVIEW = 8  # array elements decoded for display; longer arrays keep their length and first elements


def align(x: int, n: int) -> int:
    """``x`` rounded up to a multiple of ``n``."""
    return -(-x // n) * n


@dataclass(frozen=True)
class ArrayPreview:
    """A long metadata array, summarised: element type, length and the first elements."""

    element_type: str
    length: int
    head: tuple[Any, ...]

    def to_json(self) -> dict:
        return {"array": self.element_type, "length": self.length, "head": list(self.head)}


@dataclass(frozen=True)
class KVField:
    key: str
    value_type: str  # GGUFValueType name, e.g. "STRING", "ARRAY"
    value: Any  # decoded scalar / string / list, or an ArrayPreview for long arrays
    start: int  # byte span of the whole pair (key included) in the file
    end: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_name: str  # ggml type name, e.g. "F32", "Q4_1"
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length (ne0)
    offset: int  # relative to the start of the data section
    nbytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def n_per_row(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def n_rows(self) -> int:
        return self.n_elements // self.n_per_row if self.n_per_row else 0

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type_name, "shape": list(self.shape), "offset": self.offset,
                "nbytes": self.nbytes}


@dataclass
class ModelInfo:
    """What a GGUF holds: metadata and tensor table, with the byte layout needed to copy it."""

    path: Path
    version: int
    file_size: int
    alignment: int
    header_end: int  # end of the tensor table (before padding)
    data_offset: int  # start of the data section
    fields: list[KVField]
    tensors: list[TensorInfo]
    _by_name: dict[str, TensorInfo] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {t.name: t for t in self.tensors}

    @property
    def metadata(self) -> dict[str, Any]:
        return {f.key: f.value for f in self.fields}

    def tensor(self, name: str) -> TensorInfo:
        return self._by_name[name]

    def to_json(self) -> dict:
        def plain(v: Any) -> Any:
            return v.to_json() if isinstance(v, ArrayPreview) else v

        return {"path": str(self.path), "version": self.version, "file_size": self.file_size,
                "alignment": self.alignment, "data_offset": self.data_offset,
                "metadata": {f.key: {"type": f.value_type, "value": plain(f.value)} for f in self.fields},
                "tensors": [t.to_json() for t in self.tensors]}


def read_tensor_bytes(info: ModelInfo, name: str) -> bytes:
    t = info.tensor(name)
    with open(info.path, "rb") as fh:
        data = os.pread(fh.fileno(), t.nbytes, info.data_offset + t.offset)
    if len(data) != t.nbytes:
        raise GGUFFormatError(f"{info.path}: tensor {name} is truncated ({len(data)} of {t.nbytes} bytes)")
    return data


def read_tensor_values(info: ModelInfo, name: str) -> np.ndarray:
    """One tensor's values as float32, in numpy order (see :func:`fakequant.gguf.codec.decode_values`)."""
    t = info.tensor(name)
    if t.type_name not in FLOAT_TYPES and t.type_name not in GGML_QUANT_TYPES:
        raise RecipeError(f"{info.path}: tensor {name} is {t.type_name}, not a float or quantized weight")
    return decode_values(read_tensor_bytes(info, name), t.type_name, t.shape)
