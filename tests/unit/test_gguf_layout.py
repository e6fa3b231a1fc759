"""GGUF layout reading (the one header walk) and tensor values, checked with gguf-py's own reader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

from fakequant.errors import GGUFFormatError
from fakequant.gguf.check import read_layout
from fakequant.gguf.layout import read_tensor_values
from fakequant.gguf.synthetic import write_synthetic_gguf, write_tiny_gguf


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf", extra_metadata={"test.flag": True, "test.empty": ""})


def test_layout_agrees_with_gguf_py(tiny: Path) -> None:
    info = read_layout(tiny)
    reader = GGUFReader(tiny)
    assert [t.name for t in info.tensors] == [t.name for t in reader.tensors]
    for ours, theirs in zip(info.tensors, reader.tensors, strict=True):
        assert ours.type_name == theirs.tensor_type.name
        assert list(ours.shape) == [int(d) for d in theirs.shape]
        assert ours.nbytes == int(theirs.n_bytes)
        assert info.data_offset + ours.offset == int(theirs.data_offset)
    assert [f.key for f in info.fields] == [k for k in reader.fields if not k.startswith("GGUF.")]
    meta = info.metadata
    assert meta["general.architecture"] == "llama" and meta["test.flag"] is True and meta["test.empty"] == ""
    assert meta["fakequant_test.ints"] == [1, 2, 3] and meta["fakequant_test.strings"] == ["a", "bc", "é"]


def test_values_agree_with_gguf_py_dequantize(tiny: Path) -> None:
    info = read_layout(tiny)
    reader = GGUFReader(tiny)
    for t in reader.tensors:
        ours = read_tensor_values(info, t.name)
        theirs = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        assert np.array_equal(ours.reshape(-1), theirs.reshape(-1)), t.name


def test_unreadable_input_is_a_one_line_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(GGUFFormatError, match=r"junk\.gguf") as err:
        read_layout(junk)
    assert "\n" not in str(err.value)


def test_synthetic_file_streams_to_requested_size(tmp_path: Path) -> None:
    path = write_synthetic_gguf(tmp_path / "syn.gguf", 64 << 20, dim=1024)
    size = path.stat().st_size
    assert 0.8 * (64 << 20) <= size <= 1.2 * (64 << 20)
    info = read_layout(path)
    assert {t.type_name for t in info.tensors} == {"F32", "F16", "Q8_0"}
    assert info.data_offset + info.tensors[-1].offset + info.tensors[-1].nbytes <= size
    assert os.path.getsize(path) == size


def test_remembered_layout_follows_file_changes(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", n_layers=2)
    first = read_layout(path)
    assert read_layout(path) is first  # unchanged file: parsed once
    write_tiny_gguf(path, n_layers=1)  # replaced in place
    second = read_layout(path)
    assert len(first.tensors) == 20 and len(second.tensors) == 11
