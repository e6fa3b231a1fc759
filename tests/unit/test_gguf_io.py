"""GGUF layout reading, copying with replaced tensors, and verification, checked with gguf-py's own reader."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

from fakequant.errors import GGUFFormatError
from fakequant.gguf import io as gguf_io
from fakequant.gguf.synthetic import write_synthetic_gguf, write_tiny_gguf

PROV = {"fakequant.recipe": '{"x": 1}', "fakequant.source_sha256": "ab" * 32, "fakequant.version": "test"}


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf", extra_metadata={"test.flag": True, "test.empty": ""})


def test_layout_agrees_with_gguf_py(tiny: Path) -> None:
    info = gguf_io.read_layout(tiny)
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
    info = gguf_io.read_layout(tiny)
    reader = GGUFReader(tiny)
    for t in reader.tensors:
        ours = gguf_io.read_tensor_values(info, t.name)
        theirs = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        assert np.array_equal(ours.reshape(-1), theirs.reshape(-1)), t.name


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("new_type", ["F32", "F16"])
def test_copy_with_one_replaced_tensor(tiny: Path, tmp_path: Path, new_type: str) -> None:
    before_sha = _sha(tiny)
    info = gguf_io.read_layout(tiny)
    name = "blk.1.ffn_norm.weight"  # F32[64]: F32 keeps the size, F16 changes it
    values = np.full(64, 0.75, np.float32)
    spill = tmp_path / "spill.bin"
    spill.write_bytes(b"junk" + gguf_io.encode_values(values, new_type))
    repl = gguf_io.Replacement(name, new_type, spill, 4, len(spill.read_bytes()) - 4)
    out = tmp_path / "out.gguf"
    same = gguf_io.write_gguf(info, out, PROV, [repl])
    assert same is (new_type == "F32")
    assert _sha(tiny) == before_sha  # the original is untouched
    assert gguf_io.verify_copy(tiny, out, {name}) == []
    assert gguf_io.verify_copy(tiny, out, {name}, allow_type_change=False) == (
        [] if new_type == "F32" else [f"tensor {name}: type F32 became F16"])

    reader, orig = GGUFReader(out), GGUFReader(tiny)  # gguf-py reads the copy
    for t, o in zip(reader.tensors, orig.tensors, strict=True):
        got = np.asarray(t.data)
        if t.name == name:
            assert t.tensor_type.name == new_type and np.array_equal(got.astype(np.float32), values)
        else:
            assert np.array_equal(got, np.asarray(o.data)) and t.tensor_type == o.tensor_type
        assert int(t.data_offset) % 32 == 0
    assert str(bytes(reader.fields["fakequant.recipe"].parts[-1]), "utf-8") == '{"x": 1}'
    assert set(reader.fields) - set(orig.fields) == set(PROV)


def test_verify_finds_tampering(tiny: Path, tmp_path: Path) -> None:
    info = gguf_io.read_layout(tiny)
    out = tmp_path / "copy.gguf"
    gguf_io.write_gguf(info, out, PROV, [])
    assert gguf_io.verify_copy(tiny, out, set()) == []
    copy = gguf_io.read_layout(out)
    target = copy.tensor("blk.0.attn_v.weight")
    data = bytearray(out.read_bytes())
    data[copy.data_offset + target.offset + 10] ^= 0x01
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    assert gguf_io.verify_copy(tiny, bad, set()) == ["tensor blk.0.attn_v.weight: data differs but it was not meant "
                                                     "to change"]
    assert gguf_io.verify_copy(tiny, bad, {"blk.0.attn_v.weight"}) == []
    # a metadata value change of the same size is caught too
    field = next(f for f in copy.fields if f.key == "fakequant_test.pi")
    data = bytearray(out.read_bytes())
    data[field.end - 1] ^= 0x40
    meta_bad = tmp_path / "meta.gguf"
    meta_bad.write_bytes(bytes(data))
    assert gguf_io.verify_copy(tiny, meta_bad, set()) == ["metadata key fakequant_test.pi: type or value differs "
                                                          "(FLOAT32 -> FLOAT32)"]


def test_custom_alignment_and_old_provenance_are_handled(tmp_path: Path) -> None:
    src = write_tiny_gguf(tmp_path / "a64.gguf", alignment=64,
                          extra_metadata={"fakequant.recipe": "old", "fakequant.version": "0"})
    info = gguf_io.read_layout(src)
    assert info.alignment == 64
    spill = tmp_path / "s.bin"
    spill.write_bytes(gguf_io.encode_values(np.ones(64, np.float32), "F16"))
    out = tmp_path / "o.gguf"
    gguf_io.write_gguf(info, out, PROV, [gguf_io.Replacement("blk.0.attn_norm.weight", "F16", spill, 0, 128)])
    assert gguf_io.verify_copy(src, out, {"blk.0.attn_norm.weight"}) == []
    written = gguf_io.read_layout(out)
    assert written.alignment == 64 and all(t.offset % 64 == 0 for t in written.tensors)
    assert [f.key for f in written.fields].count("fakequant.recipe") == 1
    assert written.metadata["fakequant.recipe"] == '{"x": 1}'


def test_unreadable_input_is_a_one_line_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(GGUFFormatError, match=r"junk\.gguf") as err:
        gguf_io.read_layout(junk)
    assert "\n" not in str(err.value)


def test_synthetic_file_streams_to_requested_size(tmp_path: Path) -> None:
    path = write_synthetic_gguf(tmp_path / "syn.gguf", 64 << 20, dim=1024)
    size = path.stat().st_size
    assert 0.8 * (64 << 20) <= size <= 1.2 * (64 << 20)
    info = gguf_io.read_layout(path)
    assert {t.type_name for t in info.tensors} == {"F32", "F16", "Q8_0"}
    assert info.data_offset + info.tensors[-1].offset + info.tensors[-1].nbytes <= size
    assert os.path.getsize(path) == size


def test_remembered_layout_follows_file_changes(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", n_layers=2)
    first = gguf_io.read_layout(path)
    assert gguf_io.read_layout(path) is first  # unchanged file: parsed once
    write_tiny_gguf(path, n_layers=1)  # replaced in place
    second = gguf_io.read_layout(path)
    assert len(first.tensors) == 20 and len(second.tensors) == 11
