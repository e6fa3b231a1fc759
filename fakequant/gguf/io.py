"""Read a GGUF's layout, write a copy with some tensors replaced, and verify the copy against the original.

Reading: :func:`read_layout` first runs :func:`fakequant.gguf.check.check_gguf`, then walks the header itself to
record the exact byte span of every key/value pair (so a copy can carry each one over byte for byte, type and all)
and the tensor table. Tensor data is read on demand (:func:`read_tensor_values`), one tensor at a time.

Writing (:func:`write_gguf`): the original is only ever opened read-only. A new header is built from the original's
key/value bytes (minus any old ``fakequant.*`` keys) plus the new provenance keys, and the tensor table with the
replaced tensors' types and offsets. Then:

- same size (every replaced tensor keeps its byte size): the whole data section is copied in the kernel
  (``os.copy_file_range``, no bytes through Python) and the replaced tensors are written over their slots;
- size-changing: the data is streamed tensor by tensor (kernel copy for the untouched ones), re-aligned.

Memory stays at one copy chunk; replaced tensors come from a spill file, not from memory.

Verifying (:func:`verify_copy`): re-open the written file, compare version, alignment, every key (type and value
bytes), the tensor table, and the bytes of every untouched tensor with the original.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from fakequant.errors import GGUFFormatError, RecipeError
from fakequant.gguf.check import check_gguf
from fakequant.quant import ggml as ggml_quants

PROVENANCE_PREFIX = "fakequant."
DEFAULT_ALIGNMENT = 32
ARRAY_PREVIEW = 8  # array elements decoded for display; longer arrays keep their length and first elements
_COPY_CHUNK = 8 << 20  # fallback copy block when copy_file_range is unavailable
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
FLOAT_TYPES = {"F32", "F16", "BF16"}


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


def tensor_nbytes(type_name: str, shape: tuple[int, ...]) -> int:
    blck, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return n // blck * size


def _align(x: int, n: int) -> int:
    return (x + n - 1) // n * n


class _Reader:
    def __init__(self, path: Path, buf: mmap.mmap) -> None:
        self.path, self.buf, self.pos = path, buf, 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFFormatError(f"{self.path}: truncated header at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        if self.pos + n > len(self.buf):
            raise GGUFFormatError(f"{self.path}: string of {n} bytes runs past the end at byte {self.pos}")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, end = self.buf, self.pos, len(self.buf)
        for _ in range(count):
            if pos + 8 > end:
                raise GGUFFormatError(f"{self.path}: truncated string array at byte {pos}")
            pos += 8 + struct.unpack_from("<Q", buf, pos)[0]
        if pos > end:
            raise GGUFFormatError(f"{self.path}: string array runs past the end of the file")
        self.pos = pos

    def value(self, vtype: int) -> Any:
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            etype = self.unpack("<I")
            count = self.unpack("<Q")
            ename = GGUFValueType(etype).name if etype in GGUFValueType._value2member_map_ else str(etype)
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype])
                if self.pos + size * count > len(self.buf):
                    raise GGUFFormatError(f"{self.path}: array of {count} runs past the end of the file")
                head = struct.unpack_from("<" + _SCALAR[etype][1] * min(count, ARRAY_PREVIEW), self.buf, self.pos)
                self.pos += size * count
            elif etype == GGUFValueType.STRING:
                start = self.pos
                head = tuple(self.string() for _ in range(min(count, ARRAY_PREVIEW)))
                self.pos = start
                self.skip_strings(count)
            else:
                raise GGUFFormatError(f"{self.path}: arrays of {ename} are not supported")
            if count <= ARRAY_PREVIEW:
                return list(head)
            return ArrayPreview(ename.lower(), count, tuple(head))
        raise GGUFFormatError(f"{self.path}: unknown metadata value type {vtype} at byte {self.pos}")


def read_layout(path: Path, *, check: bool = True) -> ModelInfo:
    """Validate ``path`` with check_gguf and return its metadata, tensor table and byte layout.

    Layouts are remembered per process by file identity (path, size, mtime, ctime, inode), so the same unchanged
    model is validated and parsed once. ``check=False`` skips check_gguf (for a file this process just wrote;
    the parse itself is still bounds-checked).
    """
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path), os.getcwd(), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    except OSError:
        key = None
    if key is not None and key in _LAYOUTS:
        return _LAYOUTS[key]
    if check:
        check_gguf(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as err:
        raise GGUFFormatError(f"{path}: cannot read ({err.strerror})") from err
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise GGUFFormatError(f"{path}: empty file, not a GGUF")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                info = _parse(path, buf, size)
            except (struct.error, ValueError, KeyError) as err:
                raise GGUFFormatError(f"{path}: malformed header ({err})") from err
    if check and key is not None:
        if len(_LAYOUTS) >= 64:
            _LAYOUTS.pop(next(iter(_LAYOUTS)))
        _LAYOUTS[key] = info
    return info


_LAYOUTS: dict[tuple, ModelInfo] = {}


def _parse(path: Path, buf: mmap.mmap, size: int) -> ModelInfo:
    r = _Reader(path, buf)
    if r.unpack("<4s") != b"GGUF":
        raise GGUFFormatError(f"{path}: not a GGUF file")
    version = r.unpack("<I")
    n_tensors = r.unpack("<Q")
    n_kv = r.unpack("<Q")
    fields: list[KVField] = []
    alignment = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        start = r.pos
        key = r.string()
        vtype = r.unpack("<I")
        value = r.value(vtype)
        fields.append(KVField(key, GGUFValueType(vtype).name, value, start, r.pos))
        if key == "general.alignment" and vtype == GGUFValueType.UINT32:
            alignment = int(value)
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        shape = tuple(r.unpack("<Q") for _ in range(n_dims))
        gtype = GGMLQuantizationType(r.unpack("<I")).name
        offset = r.unpack("<Q")
        tensors.append(TensorInfo(name, gtype, shape, offset, tensor_nbytes(gtype, shape)))
    header_end = r.pos
    return ModelInfo(path=path, version=version, file_size=size, alignment=alignment, header_end=header_end,
                     data_offset=_align(header_end, alignment), fields=fields, tensors=tensors)


# ---------------------------------------------------------------------------------------------- tensor values


def read_tensor_bytes(info: ModelInfo, name: str) -> bytes:
    t = info.tensor(name)
    with open(info.path, "rb") as fh:
        data = os.pread(fh.fileno(), t.nbytes, info.data_offset + t.offset)
    if len(data) != t.nbytes:
        raise GGUFFormatError(f"{info.path}: tensor {name} is truncated ({len(data)} of {t.nbytes} bytes)")
    return data


def decode_values(raw: bytes | np.ndarray, type_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Stored bytes -> float32 array in numpy order (rows × n_per_row, i.e. ``shape`` reversed)."""
    np_shape = tuple(reversed(shape)) or (1,)
    buf = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    if type_name == "F32":
        return buf.view(np.float32).reshape(np_shape).copy()
    if type_name == "F16":
        return buf.view(np.float16).astype(np.float32).reshape(np_shape)
    if type_name == "BF16":
        return buf.view(ml_dtypes.bfloat16).astype(np.float32).reshape(np_shape)
    n_per_row = shape[0] if shape else 1
    return ggml_quants.dequantize_rows(buf, type_name, n_per_row).reshape(np_shape)


def encode_values(values: np.ndarray, type_name: str) -> bytes:
    """float32 values -> the bytes of ``type_name`` (F32 / F16 / BF16 only: storage of fake-quantized values)."""
    dtype = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}[type_name]
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(values, dtype=np.float32).astype(dtype).tobytes()


def exactly_representable(values: np.ndarray, type_name: str) -> bool:
    """True when storing ``values`` (float32) as ``type_name`` loses nothing (NaN stays NaN, inf stays inf)."""
    if type_name == "F32":
        return True
    dtype = {"F16": np.float16, "BF16": ml_dtypes.bfloat16}[type_name]
    with np.errstate(over="ignore", invalid="ignore"):
        back = values.astype(dtype).astype(np.float32)
    return bool(np.all((back == values) | (np.isnan(back) & np.isnan(values))))


def read_tensor_values(info: ModelInfo, name: str) -> np.ndarray:
    t = info.tensor(name)
    if t.type_name not in FLOAT_TYPES and t.type_name not in GGML_QUANT_TYPES:
        raise RecipeError(f"{info.path}: tensor {name} is {t.type_name}, not a float or quantized weight")
    return decode_values(read_tensor_bytes(info, name), t.type_name, t.shape)


GGML_QUANT_TYPES = frozenset({"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
                              "MXFP4", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
                              "IQ4_XS", "IQ1_M", "TQ1_0", "TQ2_0"})


# ---------------------------------------------------------------------------------------------------- writing


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
        cur = _align(cur, info.alignment)
        offsets.append(cur)
        cur += new_sizes.get(t.name, t.nbytes)
    return offsets, False


def build_header(info: ModelInfo, provenance: dict[str, str], new_types: dict[str, str],
                 offsets: list[int]) -> bytes:
    """Original key/value bytes (old fakequant.* keys dropped) + provenance keys + the tensor table, padded."""
    kept = [f for f in info.fields if not f.key.startswith(PROVENANCE_PREFIX)]
    out = bytearray()
    with open(info.path, "rb") as fh:
        head = os.pread(fh.fileno(), info.header_end, 0)
    out += head[:8]  # magic + version
    out += struct.pack("<QQ", len(info.tensors), len(kept) + len(provenance))
    for f in kept:
        out += head[f.start:f.end]
    for key, value in provenance.items():
        out += encode_kv_string(key, value)
    for t, off in zip(info.tensors, offsets, strict=True):
        out += _encode_string(t.name)
        out += struct.pack("<I", len(t.shape))
        out += struct.pack(f"<{len(t.shape)}Q", *t.shape)
        out += struct.pack("<I", GGMLQuantizationType[new_types.get(t.name, t.type_name)])
        out += struct.pack("<Q", off)
    out += b"\0" * (_align(len(out), info.alignment) - len(out))
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


def write_gguf(info: ModelInfo, dest: Path, provenance: dict[str, str], replacements: Iterable[Replacement]) -> bool:
    """Write the copy to ``dest`` (a fresh temporary path); return True when the same-size path was taken."""
    repl = {r.name: r for r in replacements}
    offsets, same_size = plan_offsets(info, {n: r.nbytes for n, r in repl.items()})
    header = build_header(info, provenance, {n: r.type_name for n, r in repl.items()}, offsets)
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
                os.truncate(dst.fileno(), _align(end, info.alignment))  # zero padding after the last tensor
    finally:
        for fh in spills.values():
            fh.close()
    return same_size


# -------------------------------------------------------------------------------------------------- verifying


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
    ``allow_type_change`` is false).
    """
    return compare_layouts(read_layout(original), read_layout(candidate), changed,
                           allow_type_change=allow_type_change)


def compare_layouts(a: ModelInfo, b: ModelInfo, changed: Collection[str], *,
                    allow_type_change: bool = True) -> list[str]:
    """:func:`verify_copy` on two layouts already read."""
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
            if g is not None and head_a[f.start:f.end] != head_b[g.start:g.end]:
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
