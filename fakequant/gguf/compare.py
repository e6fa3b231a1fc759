"""Compare a written copy with its original: version, alignment, every key (type and value bytes), the tensor table,
and the bytes of every tensor that was not meant to change.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from fakequant.gguf.check import read_layout
from fakequant.gguf.layout import ModelInfo, read_tensor_bytes
from fakequant.gguf.write import PROVENANCE_PREFIX, Replacement


class _Comparer:
    """Compares byte ranges of two open files through two reusable 1 MiB buffers (no allocation per chunk)."""

    CHUNK = 1 << 20

    def __init__(self, fa: BinaryIO, fb: BinaryIO) -> None:
        self.fa, self.fb = fa.fileno(), fb.fileno()
        self.ba, self.bb = bytearray(self.CHUNK), bytearray(self.CHUNK)
        self.ma, self.mb = memoryview(self.ba), memoryview(self.bb)

    def same(self, a_off: int, b_off: int, count: int) -> bool:
        while count > 0:
            n = min(count, self.CHUNK)
            if os.preadv(self.fa, [self.ma[:n]], a_off) != n or os.preadv(self.fb, [self.mb[:n]], b_off) != n:
                return False
            if not (self.ba == self.bb if n == self.CHUNK else self.ma[:n].tobytes() == self.mb[:n].tobytes()):
                return False
            count -= n
            a_off += n
            b_off += n
        return True


def verify_copy(original: Path, candidate: Path, changed: Collection[str], *,
                allow_type_change: bool = True) -> list[str]:
    """Differences between the two files beyond the allowed ones; [] means the candidate is a faithful copy.

    Allowed: ``fakequant.*`` keys, and for the tensors in ``changed`` their data (and type, unless
    ``allow_type_change`` is false). Both files are validated and read by :func:`~fakequant.gguf.check.read_layout`.
    """
    return compare_layouts(read_layout(original), read_layout(candidate), changed,
                           allow_type_change=allow_type_change)


def compare_layouts(a: ModelInfo, b: ModelInfo, changed: Collection[str], *,
                    allow_type_change: bool = True, altered_keys: Collection[str] = ()) -> list[str]:
    """:func:`verify_copy` on two layouts already read; the values of ``altered_keys`` may differ too (a build that
    changed them on purpose verifies everything else)."""
    problems: list[str] = []
    if a.version != b.version:
        problems.append(f"version {a.version} became {b.version}")
    if a.alignment != b.alignment:
        problems.append(f"alignment {a.alignment} became {b.alignment}")
    fa = [f for f in a.fields if not f.key.startswith(PROVENANCE_PREFIX)]
    fb = [f for f in b.fields if not f.key.startswith(PROVENANCE_PREFIX)]
    keys_a, keys_b = [f.key for f in fa], [f.key for f in fb]
    problems += [f"metadata key {k} is missing" for k in keys_a if k not in keys_b]
    problems += [f"metadata key {k} was added" for k in keys_b if k not in keys_a]
    if not problems and keys_a != keys_b:
        problems.append("metadata keys are in a different order")
    with open(a.path, "rb") as ha, open(b.path, "rb") as hb:
        head_a = os.pread(ha.fileno(), a.header_end, 0)
        head_b = os.pread(hb.fileno(), b.header_end, 0)
        by_key_b = {f.key: f for f in fb}
        for f in fa:
            g = by_key_b.get(f.key)
            if g is not None and f.key not in altered_keys and head_a[f.start:f.end] != head_b[g.start:g.end]:
                problems.append(f"metadata key {f.key}: type or value differs ({f.value_type} -> {g.value_type})")
        names_a, names_b = [t.name for t in a.tensors], [t.name for t in b.tensors]
        if names_a != names_b:
            missing = [n for n in names_a if n not in names_b]
            added = [n for n in names_b if n not in names_a]
            problems.append(f"tensor table differs (missing {missing[:3]}, added {added[:3]}, or reordered)")
            return problems
        end = b.data_offset
        comparer = _Comparer(ha, hb)
        for ta, tb in zip(a.tensors, b.tensors, strict=True):
            if ta.shape != tb.shape:
                problems.append(f"tensor {ta.name}: shape {list(ta.shape)} became {list(tb.shape)}")
            if ta.type_name != tb.type_name and (ta.name not in changed or not allow_type_change):
                problems.append(f"tensor {ta.name}: type {ta.type_name} became {tb.type_name}")
            if tb.offset % b.alignment:
                problems.append(f"tensor {tb.name}: offset {tb.offset} is not aligned to {b.alignment}")
            end = max(end, b.data_offset + tb.offset + tb.nbytes)
            if ta.name in changed:
                continue
            if ta.nbytes != tb.nbytes or not comparer.same(a.data_offset + ta.offset, b.data_offset + tb.offset,
                                                           ta.nbytes):
                problems.append(f"tensor {ta.name}: data differs but it was not meant to change")
        if end > b.file_size:
            problems.append(f"tensor data runs past the end of the file ({end} > {b.file_size} bytes)")
    return problems


def check_replaced(written: ModelInfo, replacements: list[Replacement]) -> list[str]:
    """Differences between each replaced tensor of ``written`` and the bytes and type it was given."""
    problems = []
    for r in replacements:
        t = written.tensor(r.name)
        with open(r.data_path, "rb") as fh:
            want = os.pread(fh.fileno(), r.nbytes, r.offset)
        if t.type_name != r.type_name or read_tensor_bytes(written, r.name) != want:
            problems.append(f"tensor {r.name}: written bytes differ from the fake-quantized values")
    return problems
