"""Sizes: the bytes of a tensor in a ggml type, the size of the file a set of new types makes, bits per weight.

A ggml type stores each row of ``n_per_row`` values as ``n_per_row / block`` blocks of ``type_size`` bytes
(gguf's ``GGML_QUANT_SIZES``; F32/F16/BF16 are blocks of one value), so a row length that is not a multiple of the
block size rules the type out. The file size follows the writer (:mod:`fakequant.gguf.write`): the header (the
source's key/value pairs, the provenance keys, the tensor table, padded to the alignment) and the data section,
every tensor starting at a multiple of the alignment, the file ending at one.
"""

from __future__ import annotations

from collections.abc import Mapping

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from fakequant.errors import RecipeError
from fakequant.gguf.layout import ModelInfo, TensorInfo, align
from fakequant.gguf.write import build_header, plan_offsets


def type_nbytes(type_name: str, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of ``shape`` (ggml order: ``shape[0]`` is the row length) stored as ``type_name``."""
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]
    except KeyError:
        raise RecipeError(f"ggml type {type_name!r}: unknown") from None
    n_per_row = shape[0] if shape else 1
    if n_per_row % block:
        raise RecipeError(f"{type_name}: rows of {n_per_row} values are not whole blocks of {block}")
    n = 1
    for dim in shape:
        n *= dim
    return n // block * size


def is_matrix(t: TensorInfo) -> bool:
    """A weight matrix: two or more dimensions. The only tensors llama.cpp quantizes, and those bits per weight
    averages over."""
    return len(t.shape) >= 2


def predict_file_size(info: ModelInfo, new_types: Mapping[str, str], provenance: Mapping[str, str]) -> int:
    """Bytes of the file :func:`fakequant.gguf.write.write_gguf` writes when the tensors ``new_types`` names take
    those ggml types and ``provenance`` keys are added."""
    sizes = {name: type_nbytes(t, info.tensor(name).shape) for name, t in new_types.items()}
    offsets, same_size = plan_offsets(info, sizes)
    header = len(build_header(info, dict(provenance), dict(new_types), offsets))
    if same_size:  # the data section is copied as it is, padding included
        return header + info.file_size - info.data_offset
    last = info.tensors[-1]
    return header + align(offsets[-1] + sizes.get(last.name, last.nbytes), info.alignment)


def matrix_bytes(info: ModelInfo, new_types: Mapping[str, str]) -> tuple[int, int]:
    """(bytes, values) of the weight matrices when the tensors ``new_types`` names take those types."""
    nbytes = values = 0
    for t in info.tensors:
        if is_matrix(t):
            nbytes += type_nbytes(new_types[t.name], t.shape) if t.name in new_types else t.nbytes
            values += t.n_elements
    return nbytes, values


def bits_per_weight(info: ModelInfo, new_types: Mapping[str, str]) -> float:
    """Average bits per weight over the weight matrices (token embeddings included; norms and biases not)."""
    nbytes, values = matrix_bytes(info, new_types)
    if not values:
        raise RecipeError(f"{info.path}: no weight matrix (no tensor of two or more dimensions)")
    return 8.0 * nbytes / values
