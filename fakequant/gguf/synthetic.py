"""Small and large GGUF files built from scratch, for tests and benchmarks.

- :func:`write_tiny_gguf`: a llama-shaped model of a few kilobytes (llama tensor names, F32 norms, a mix of
  F16 / Q8_0 / Q4_0 matrices), deterministic for a given seed. Some norm values are deliberately *not* exactly
  representable in BF16, so a BF16 round trip on them changes something.
- :func:`write_synthetic_gguf`: a file of about ``total_bytes`` (e.g. 1 GiB) for benchmarks, streamed tensor by
  tensor so that building it never holds more than one tensor template in memory.

Neither file carries a tokenizer; they are for the engine's reading and writing, not for llama.cpp inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter
from gguf.quants import quantize

from fakequant.quant.select import kind_of

T = GGMLQuantizationType

# kind -> ggml type for the tiny model; "token_embd" / "output_norm" are the two non-block tensors.
DEFAULT_TENSOR_TYPES: Mapping[str, GGMLQuantizationType] = {
    "token_embd": T.F16,
    "attn_norm": T.F32,
    "attn_q": T.Q8_0,
    "attn_k": T.Q4_0,
    "attn_v": T.F16,
    "attn_output": T.Q8_0,
    "ffn_norm": T.F32,
    "ffn_up": T.Q4_0,
    "ffn_gate": T.F16,
    "ffn_down": T.Q8_0,
    "output_norm": T.F32,
}

BLOCK_KINDS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_up", "ffn_gate", "ffn_down")
NORM_KINDS = frozenset({"attn_norm", "ffn_norm", "output_norm"})


def tiny_tensor_shapes(n_layers: int, dim: int, vocab: int = 32, ff: int | None = None) -> dict[str, tuple[int, ...]]:
    """Names -> numpy shapes (rows, row length) in file order, llama style."""
    ff = ff or 2 * dim
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (vocab, dim)}
    for i in range(n_layers):
        for kind in BLOCK_KINDS:
            shape: tuple[int, ...]
            if kind.endswith("norm"):
                shape = (dim,)
            elif kind in ("ffn_up", "ffn_gate"):
                shape = (ff, dim)
            elif kind == "ffn_down":
                shape = (dim, ff)
            else:
                shape = (dim, dim)
            shapes[f"blk.{i}.{kind}.weight"] = shape
    shapes["output_norm.weight"] = (dim,)
    return shapes


def tiny_values(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Deterministic float32 values for one tensor: norms near 1 with full 23-bit mantissas, matrices ~N(0, 0.05)."""
    rng = np.random.default_rng([seed, *name.encode()])
    if kind_of(name) in NORM_KINDS:
        values = 1.0 + 0.25 * rng.standard_normal(shape)
        values = values.astype(np.float32)
        # Guarantee some values that BF16 cannot hold exactly (low mantissa bits set), and some that it can.
        flat = values.reshape(-1)
        flat[0::4] = np.float32(1.0) + np.float32(2.0**-20)
        flat[1::4] = np.round(flat[1::4] * 64) / 64  # exactly representable in bf16 (7 mantissa bits suffice)
        return values
    return (0.05 * rng.standard_normal(shape)).astype(np.float32)


def write_tiny_gguf(
    path: Path,
    *,
    n_layers: int = 2,
    dim: int = 64,
    tensor_types: Mapping[str, GGMLQuantizationType] = DEFAULT_TENSOR_TYPES,
    extra_metadata: Mapping[str, Any] | None = None,
    seed: int = 0,
    alignment: int | None = None,
) -> Path:
    """Write a tiny llama-shaped GGUF to ``path`` and return it.

    ``tensor_types`` maps a tensor kind (``attn_q``, ``ffn_norm``, ``token_embd``, ...) to its ggml type; kinds not
    listed take :data:`DEFAULT_TENSOR_TYPES`. ``dim`` must be a multiple of the block size of every quantized type
    used (32 for Q8_0/Q4_0; 256 for K-quants). ``extra_metadata`` values are written with the writer's type
    inference: str, bool, int (as int32 / uint64 when large), float (float32), lists.
    """
    path = Path(path)
    types = {**DEFAULT_TENSOR_TYPES, **tensor_types}
    writer = GGUFWriter(path, "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_name("fakequant-tiny")
    writer.add_context_length(128)
    writer.add_embedding_length(dim)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(2 * dim)
    writer.add_head_count(max(1, dim // 16))
    writer.add_head_count_kv(max(1, dim // 16))
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_float32("fakequant_test.pi", 3.14159)
    writer.add_array("fakequant_test.ints", [1, 2, 3])
    writer.add_array("fakequant_test.strings", ["a", "bc", "é"])
    for key, value in (extra_metadata or {}).items():
        _add_value(writer, key, value)
    for name, shape in tiny_tensor_shapes(n_layers, dim).items():
        values = tiny_values(name, shape, seed)
        qtype = types[kind_of(name)]
        if qtype == T.F32:
            writer.add_tensor(name, values)
        elif qtype == T.F16:
            writer.add_tensor(name, values.astype(np.float16))
        else:
            writer.add_tensor(name, _quantize(values, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _quantize(values: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    try:
        return quantize(values, qtype)
    except NotImplementedError:
        # K-quants: gguf-py cannot quantize them; use ggml's own quantizer.
        from fakequant.quant.ggml import quantize_rows

        return quantize_rows(values.reshape(-1, values.shape[-1]), qtype.name).reshape(
            *values.shape[:-1], -1
        )


def _add_value(writer: GGUFWriter, key: str, value: Any) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        if -(2**31) <= value < 2**31:
            writer.add_int32(key, value)
        else:
            writer.add_uint64(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_key_value(key, value, GGUFValueType.STRING)  # add_string skips ""
    elif isinstance(value, (list, tuple)):
        writer.add_array(key, list(value))
    else:
        raise TypeError(f"extra_metadata[{key!r}]: unsupported value type {type(value).__name__}")


def write_synthetic_gguf(path: Path, total_bytes: int, *, dim: int = 2048, seed: int = 0) -> Path:
    """Write a llama-shaped GGUF of about ``total_bytes`` (never less than one layer) to ``path``, streaming.

    Each block has F32 norms, F16 attention matrices (dim × dim) and Q8_0 feed-forward matrices; every matrix of a
    kind shares one template, so memory stays at a few templates whatever the file size.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    templates: dict[str, tuple[np.ndarray, GGMLQuantizationType | None]] = {
        "norm": (1.0 + 0.1 * rng.standard_normal(dim, dtype=np.float32), None),
        "f16": ((0.02 * rng.standard_normal((dim, dim), dtype=np.float32)).astype(np.float16), None),
        "q8": (quantize(0.02 * rng.standard_normal((dim, dim), dtype=np.float32), T.Q8_0), T.Q8_0),
    }
    kinds = [("attn_norm", "norm"), ("attn_q", "f16"), ("attn_k", "f16"), ("attn_v", "f16"),
             ("attn_output", "f16"), ("ffn_norm", "norm"), ("ffn_up", "q8"), ("ffn_gate", "q8"), ("ffn_down", "q8")]
    per_layer = sum(templates[t][0].nbytes for _, t in kinds)
    n_layers = max(1, round(total_bytes / per_layer))

    writer = GGUFWriter(path, "llama")
    writer.add_name("fakequant-synthetic")
    writer.add_embedding_length(dim)
    writer.add_block_count(n_layers)
    order: list[tuple[str, str]] = []
    for i in range(n_layers):
        for kind, template in kinds:
            name = f"blk.{i}.{kind}.weight"
            data, raw = templates[template]
            writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, raw_dtype=raw)
            order.append((name, template))
    writer.add_tensor_info("output_norm.weight", (dim,), np.dtype(np.float32), dim * 4)
    order.append(("output_norm.weight", "norm"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _name, template in order:
        writer.write_tensor_data(templates[template][0])
    writer.close()
    return path
