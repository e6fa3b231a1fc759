"""Copying a GGUF with replaced tensors, and verifying the copy, checked with gguf-py's own reader."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from fakequant.gguf.check import read_layout
from fakequant.gguf.codec import encode_values
from fakequant.gguf.compare import verify_copy
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.gguf.write import Replacement, write_gguf

PROV = {"fakequant.recipe": '{"x": 1}', "fakequant.source_sha256": "ab" * 32, "fakequant.version": "test"}


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf", extra_metadata={"test.flag": True, "test.empty": ""})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("new_type", ["F32", "F16"])
def test_copy_with_one_replaced_tensor(tiny: Path, tmp_path: Path, new_type: str) -> None:
    before_sha = _sha(tiny)
    info = read_layout(tiny)
    name = "blk.1.ffn_norm.weight"  # F32[64]: F32 keeps the size, F16 changes it
    values = np.full(64, 0.75, np.float32)
    spill = tmp_path / "spill.bin"
    spill.write_bytes(b"junk" + encode_values(values, new_type))
    repl = Replacement(name, new_type, spill, 4, len(spill.read_bytes()) - 4)
    out = tmp_path / "out.gguf"
    same = write_gguf(info, out, PROV, [repl])
    assert same is (new_type == "F32")
    assert _sha(tiny) == before_sha  # the original is untouched
    assert verify_copy(tiny, out, {name}) == []
    assert verify_copy(tiny, out, {name}, allow_type_change=False) == (
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
    info = read_layout(tiny)
    out = tmp_path / "copy.gguf"
    write_gguf(info, out, PROV, [])
    assert verify_copy(tiny, out, set()) == []
    copy = read_layout(out)
    target = copy.tensor("blk.0.attn_v.weight")
    data = bytearray(out.read_bytes())
    data[copy.data_offset + target.offset + 10] ^= 0x01
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    assert verify_copy(tiny, bad, set()) == ["tensor blk.0.attn_v.weight: data differs but it was not meant "
                                                     "to change"]
    assert verify_copy(tiny, bad, {"blk.0.attn_v.weight"}) == []
    # a metadata value change of the same size is caught too
    field = next(f for f in copy.fields if f.key == "fakequant_test.pi")
    data = bytearray(out.read_bytes())
    data[field.end - 1] ^= 0x40
    meta_bad = tmp_path / "meta.gguf"
    meta_bad.write_bytes(bytes(data))
    assert verify_copy(tiny, meta_bad, set()) == ["metadata key fakequant_test.pi: type or value differs "
                                                          "(FLOAT32 -> FLOAT32)"]


def test_custom_alignment_and_old_provenance_are_handled(tmp_path: Path) -> None:
    src = write_tiny_gguf(tmp_path / "a64.gguf", alignment=64,
                          extra_metadata={"fakequant.recipe": "old", "fakequant.version": "0"})
    info = read_layout(src)
    assert info.alignment == 64
    spill = tmp_path / "s.bin"
    spill.write_bytes(encode_values(np.ones(64, np.float32), "F16"))
    out = tmp_path / "o.gguf"
    write_gguf(info, out, PROV, [Replacement("blk.0.attn_norm.weight", "F16", spill, 0, 128)])
    assert verify_copy(src, out, {"blk.0.attn_norm.weight"}) == []
    written = read_layout(out)
    assert written.alignment == 64 and all(t.offset % 64 == 0 for t in written.tensors)
    assert [f.key for f in written.fields].count("fakequant.recipe") == 1
    assert written.metadata["fakequant.recipe"] == '{"x": 1}'
