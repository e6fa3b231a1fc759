"""Write a copy of a GGUF with some tensors replaced and provenance keys added; the original is only ever read.

A new header is built from the original's key/value bytes (minus any old ``fakequant.*`` keys) plus the new
provenance keys, and the tensor table with the replaced tensors' types and offsets. Then:

- same size (every replaced tensor keeps its byte size): the whole data section is copied in the kernel
  (``os.copy_file_range``, no bytes through Python) and the replaced tensors are written over their slots;
- size-changing: the data is streamed tensor by tensor (kernel copy for the untouched ones), re-aligned.

Memory stays at one copy chunk; replaced tensors come from a spill file, not from memory. The copy is checked
against the original by :mod:`fakequant.gguf.compare`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gguf import GGMLQuantizationType, GGUFValueType

from fakequant.errors import GGUFFormatError
from fakequant.gguf.layout import ModelInfo, align

PROVENANCE_PREFIX = "fakequant."
_COPY_CHUNK = 8 << 20  # fallback copy block when copy_file_range is unavailable


@dataclass(frozen=True)
class Replacement:
    """New bytes for one tensor, stored at ``offset`` in the spill file ``data_path``."""

    name: str
    type_name: str
    data_path: Path
    offset: int
    nbytes: int


def _encode_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def encode_kv_string(key: str, value: str) -> bytes:
    return _encode_string(key) + struct.pack("<I", GGUFValueType.STRING) + _encode_string(value)


def plan_offsets(info: ModelInfo, new_sizes: dict[str, int]) -> tuple[list[int], bool]:
    """New data offsets of every tensor, and whether the data layout is unchanged (same-size rewrite)."""
    if all(new_sizes[n] == info.tensor(n).nbytes for n in new_sizes):
        return [t.offset for t in info.tensors], True
    offsets, cur = [], 0
    for t in info.tensors:
        cur = align(cur, info.alignment)
        offsets.append(cur)
        cur += new_sizes.get(t.name, t.nbytes)
    return offsets, False


def build_header(info: ModelInfo, provenance: dict[str, str], new_types: dict[str, str],
                 offsets: list[int], altered: dict[str, str] | None = None) -> bytes:
    """Original key/value bytes (old fakequant.* keys dropped; a key in ``altered``, a string, with its new value
    in its place) + provenance keys + the tensor table, padded."""
    altered = altered or {}
    kept = [f for f in info.fields if not f.key.startswith(PROVENANCE_PREFIX)]
    out = bytearray()
    with open(info.path, "rb") as fh:
        head = os.pread(fh.fileno(), info.header_end, 0)
    out += head[:8]  # magic + version
    out += struct.pack("<QQ", len(info.tensors), len(kept) + len(provenance))
    for f in kept:
        if f.key in altered:
            if f.value_type != "STRING":
                raise GGUFFormatError(f"{info.path}: metadata key {f.key} is {f.value_type}, not a string")
            out += encode_kv_string(f.key, altered[f.key])
        else:
            out += head[f.start:f.end]
    for key, value in provenance.items():
        out += encode_kv_string(key, value)
    for t, off in zip(info.tensors, offsets, strict=True):
        out += _encode_string(t.name)
        out += struct.pack("<I", len(t.shape))
        out += struct.pack(f"<{len(t.shape)}Q", *t.shape)
        out += struct.pack("<I", GGMLQuantizationType[new_types.get(t.name, t.type_name)])
        out += struct.pack("<Q", off)
    out += b"\0" * (align(len(out), info.alignment) - len(out))
    return bytes(out)


def copy_range(src: BinaryIO, dst: BinaryIO, count: int, src_off: int, dst_off: int) -> None:
    """Copy ``count`` bytes between file descriptors in the kernel when possible, else through a small buffer."""
    sfd, dfd = src.fileno(), dst.fileno()
    while count > 0:
        try:
            n = os.copy_file_range(sfd, dfd, min(count, 1 << 30), src_off, dst_off)
        except OSError:
            n = 0
        if n <= 0:  # not supported here (other filesystem, old kernel) or unexpected EOF: plain copy
            block = os.pread(sfd, min(count, _COPY_CHUNK), src_off)
            if not block:
                raise GGUFFormatError(f"{getattr(src, 'name', '?')}: unexpected end of file at byte {src_off}")
            n = os.pwrite(dfd, block, dst_off)
        count -= n
        src_off += n
        dst_off += n


def write_gguf(info: ModelInfo, dest: Path, provenance: dict[str, str], replacements: Iterable[Replacement],
               altered: dict[str, str] | None = None) -> bool:
    """Write the copy to ``dest`` (a fresh temporary path); return True when the same-size path was taken.
    ``altered``: string keys given a new value (a positive control's deliberate metadata change)."""
    repl = {r.name: r for r in replacements}
    offsets, same_size = plan_offsets(info, {n: r.nbytes for n, r in repl.items()})
    header = build_header(info, provenance, {n: r.type_name for n, r in repl.items()}, offsets, altered)
    spills: dict[Path, BinaryIO] = {}
    try:
        # No O_TRUNC: on ext4, truncating then closing a file forces a synchronous flush at close (auto_da_alloc);
        # the caller fsyncs instead, overlapped with verification. The final size is set explicitly below.
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT, 0o666)
        with open(info.path, "rb") as src, open(fd, "wb") as dst:
            dst.write(header)
            dst.flush()
            base = len(header)
            if same_size:
                copy_range(src, dst, info.file_size - info.data_offset, info.data_offset, base)
            end = base
            for t, off in zip(info.tensors, offsets, strict=True):
                r = repl.get(t.name)
                if r is not None:
                    if r.data_path not in spills:
                        spills[r.data_path] = open(r.data_path, "rb")  # noqa: SIM115 (closed below)
                    copy_range(spills[r.data_path], dst, r.nbytes, r.offset, base + off)
                    end = base + off + r.nbytes
                elif not same_size:
                    copy_range(src, dst, t.nbytes, info.data_offset + t.offset, base + off)
                    end = base + off + t.nbytes
            if same_size:
                os.truncate(dst.fileno(), base + info.file_size - info.data_offset)
            else:
                os.truncate(dst.fileno(), align(end, info.alignment))  # zero padding after the last tensor
    finally:
        for fh in spills.values():
            fh.close()
    return same_size
