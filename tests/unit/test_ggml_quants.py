"""ggml's quantizers through ctypes: bit for bit against gguf-py's independent implementation where it has one,
and against llama-quantize (built from the same source) on the real model when the reference tool is built."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize, quantize

from fakequant.errors import RecipeError
from fakequant.quant import ggml as ggml_quants

GGUF_PY_QUANTIZES = ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "mxfp4")
ALL_BLOCK = (*GGUF_PY_QUANTIZES, "q2_k", "q3_k", "q4_k", "q5_k", "q6_k")


def _rows(seed: int = 0, shape: tuple[int, int] = (8, 512)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0] *= 1e-3
    x[1, :32] = 0.0  # an all-zero block
    x[2, 5] = 40.0  # an outlier
    return x


@pytest.mark.parametrize("fmt", GGUF_PY_QUANTIZES)
def test_quantize_matches_gguf_py_bit_for_bit(fmt: str) -> None:
    x = _rows()
    ours = ggml_quants.quantize_rows(x, fmt)
    theirs = quantize(x, GGMLQuantizationType[fmt.upper()])
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("fmt", ALL_BLOCK)
def test_dequantize_matches_gguf_py(fmt: str) -> None:
    blocks = ggml_quants.quantize_rows(_rows(1), fmt)
    ours = ggml_quants.dequantize_rows(blocks, fmt, 512)
    theirs = dequantize(blocks, GGMLQuantizationType[fmt.upper()])
    assert np.array_equal(ours, theirs.reshape(ours.shape))
    assert blocks.shape[1] == ggml_quants.row_bytes(fmt, 512)


def test_preconditions_are_errors_not_aborts() -> None:
    with pytest.raises(RecipeError, match="multiple of 256"):
        ggml_quants.quantize_rows(np.ones((1, 576), np.float32), "q4_k")
    with pytest.raises(RecipeError, match="importance matrix"):
        ggml_quants.quantize_rows(np.ones((1, 256), np.float32), "iq2_xxs")
    with pytest.raises(RecipeError, match="unknown"):
        ggml_quants.quantize_rows(np.ones((1, 256), np.float32), "q9_9")
    assert ggml_quants.quantize_rows(np.zeros((0, 256), np.float32), "q4_k").shape == (0, 144)


def _tensor_bytes(reader: GGUFReader, name: str) -> tuple[str, np.ndarray]:
    t = next(t for t in reader.tensors if t.name == name)
    return t.tensor_type.name, np.asarray(t.data).view(np.uint8).reshape(-1)


@pytest.mark.slow
@pytest.mark.needs_tools
def test_round_trip_bytes_equal_llama_quantize(tmp_path: Path) -> None:
    """llama-quantize --pure Q4_K on SmolLM2: ffn_down (rows of 1536) becomes Q4_K, the rest falls back. Our
    quantize_rows(dequantize(source)) must give the same bytes for both kinds of tensor."""
    from fakequant.store.assets import model_path
    from fakequant.store.tools import tool_path

    tool = tool_path("llama-quantize")
    if tool is None:
        pytest.skip("llama-quantize not built; run `python -m fakequant.store.tools build` (about 6 minutes)")
    src = model_path()
    out = tmp_path / "q4k.gguf"
    proc = subprocess.run([str(tool), "--allow-requantize", "--pure", str(src), str(out), "Q4_K", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    original, quantized = GGUFReader(src), GGUFReader(out)
    source = {t.name: t for t in original.tensors}
    compared: dict[str, int] = {}
    for t in quantized.tensors:
        if t.tensor_type.name == "F32":  # norms are kept as they are
            continue
        src_type, src_bytes = _tensor_bytes(original, t.name)
        values = ggml_quants.dequantize_rows(src_bytes, src_type, int(source[t.name].shape[0]))
        ours = ggml_quants.quantize_rows(values, t.tensor_type.name.lower()).reshape(-1)
        assert np.array_equal(ours, np.asarray(t.data).view(np.uint8).reshape(-1)), \
            f"{t.name}: {t.tensor_type.name} bytes differ from llama-quantize"
        compared[t.tensor_type.name] = compared.get(t.tensor_type.name, 0) + 1
    # every ffn_down (rows of 1536) is Q4_K; every other matrix fell back (Q5_0 on this build)
    assert compared.get("Q4_K") == 30 and sum(compared.values()) > 30, compared
