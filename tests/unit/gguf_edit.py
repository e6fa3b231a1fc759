"""Test helper: a copy of a real GGUF with ``tokenizer.chat_template`` replaced or removed (header bytes edited,
tensor data copied unchanged)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from fakequant.gguf.check import read_layout

KEY = "tokenizer.chat_template"


def with_chat_template(source: Path, dest: Path, template: str | None) -> Path:
    """Copy ``source`` with ``tokenizer.chat_template`` set to ``template`` (added if absent), or removed when
    ``template`` is None; offsets are relative to the data section, which is re-aligned after the new header."""
    info = read_layout(source)
    kv = next((f for f in info.fields if f.key == KEY), None)
    with open(source, "rb") as fh:
        head = fh.read(info.header_end)
        new_kv = b""
        if template is not None:
            raw, key = template.encode(), KEY.encode()
            new_kv = struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(raw)) + raw  # 8 = STRING
        start, end = (kv.start, kv.end) if kv else (info.fields[-1].end, info.fields[-1].end)
        header = bytearray(head[:start] + new_kv + head[end:])
        n_kv = struct.unpack_from("<Q", header, 16)[0] + (template is not None) - (kv is not None)
        struct.pack_into("<Q", header, 16, n_kv)  # GGUF v2/v3: magic, version, tensor count, then the KV count
        header += b"\0" * (-len(header) % info.alignment)
        with open(dest, "wb") as out:
            out.write(header)
            os.sendfile(out.fileno(), fh.fileno(), info.data_offset, info.file_size - info.data_offset)
    return dest
