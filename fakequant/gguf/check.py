"""The one walk over a GGUF header: validate an untrusted file and return its layout.

gguf-py's reader answers malformed files with assorted ValueError/IndexError messages, and can be driven to huge
allocations or endless loops by absurd counts. This module walks the header, the key/value section and the tensor
table itself, with every count and length bounded by the bytes left in the file *before* anything is allocated, then
checks that every tensor's data lies aligned, inside the file and apart from the others. A problem raises
:class:`~fakequant.errors.GGUFFormatError` with one line that says what is wrong; only a file that passes is handed
to gguf-py or llama.cpp. The same pass records what :class:`~fakequant.gguf.layout.ModelInfo` holds (each key/value
pair's value and byte span, the tensor table): :func:`read_layout` returns it, :func:`check_gguf` a summary.

Supported: little-endian GGUF version 2 and 3 (what llama.cpp reads on this machine; version 1 used 32-bit counts and
llama.cpp dropped it). The limits are llama.cpp's own (ggml/src/gguf.cpp): at most 4 dimensions (GGML_MAX_DIMS),
tensor names shorter than 64 bytes (GGML_MAX_NAME), rows a whole number of quantization blocks, ``general.alignment``
a uint32 power of two. Nested arrays, which llama.cpp refuses and gguf-py flattens, are refused here too.

The walk reads the header region through ``mmap`` and never touches tensor data, so a 100 MB model checks in a
fraction of a second.
"""

from __future__ import annotations

import codecs
import itertools
import mmap
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from fakequant.errors import GGUFFormatError
from fakequant.gguf.layout import ARRAY_PREVIEW, ArrayPreview, KVField, ModelInfo, TensorInfo, align

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: a tensor name holds at most 63 bytes
MAX_KEY = 1 << 16  # no real key comes near; bounds what a corrupt key length can make us copy
HEADER_SIZE = 4 + 4 + 8 + 8  # magic, version, tensor count, key/value count
INT64_MAX = 2**63 - 1
_DECODE_CHUNK = 1 << 20  # array strings past the preview longer than this are validated piece by piece, not copied
_NON_ASCII = 0x8080808080808080  # a uint64 length with one of these bits set has a byte that is not ASCII

V = GGUFValueType
# Scalar value types -> how they are stored (little-endian); STRING and ARRAY are variable.
_SCALAR = {t: struct.Struct("<" + code) for t, code in (
    (V.UINT8, "B"), (V.INT8, "b"), (V.UINT16, "H"), (V.INT16, "h"), (V.UINT32, "I"), (V.INT32, "i"),
    (V.FLOAT32, "f"), (V.BOOL, "?"), (V.UINT64, "Q"), (V.INT64, "q"), (V.FLOAT64, "d"))}
_TYPE_NAME = {t.value: t.name.lower() for t in V}  # for messages: "uint32", "string", ...
# The fewest bytes one entry can take, to bound counts by the file size before looping over them.
_MIN_KV = 8 + 4 + 1  # key length, value type, a one-byte value
_MIN_TENSOR = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
_MIN_ELEMENT = {**{t: s.size for t, s in _SCALAR.items()}, V.STRING: 8}
_U64 = struct.Struct("<Q")

_SECTION = {"header": "header", "kv": "key/value section", "tensors": "tensor table", "data": "data section"}


@dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor table as :func:`check_gguf` reports it: ``offset`` is absolute in the file."""

    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]  # ggml order, innermost dimension first
    offset: int  # absolute position of the data in the file
    n_bytes: int


@dataclass(frozen=True)
class GGUFSummary:
    """What :func:`check_gguf` answers for a sound file, built from its layout."""

    path: Path
    file_size: int
    version: int
    alignment: int
    data_offset: int  # where the data section starts
    keys: tuple[str, ...]
    tensors: tuple[TensorEntry, ...]

    @classmethod
    def of(cls, info: ModelInfo) -> GGUFSummary:
        tensors = tuple(TensorEntry(t.name, GGMLQuantizationType[t.type_name], t.shape, info.data_offset + t.offset,
                                    t.nbytes) for t in info.tensors)
        return cls(info.path, info.file_size, info.version, info.alignment, info.data_offset,
                   tuple(f.key for f in info.fields), tensors)


class _Walker:
    """A cursor over the mapped file; every read checks that the bytes exist first.

    ``utf8_arrays=False`` (a file this process wrote from a validated one) skips only the UTF-8 decoding of the
    strings inside arrays beyond the preview, the walk's one costly part; every bound is still checked.
    """

    def __init__(self, path: Path, buf: mmap.mmap | bytes, size: int, *, utf8_arrays: bool = True) -> None:
        self.path = path
        self.buf = buf
        self.size = size
        self.utf8_arrays = utf8_arrays
        self.pos = 0
        self.section = "header"
        self.where = ""  # e.g. "key 7 of 24, 'tokenizer.ggml.tokens'"

    # --- errors -----------------------------------------------------------------------------------------------------
    def fail(self, problem: str) -> NoReturn:
        raise GGUFFormatError(f"{self.path}: {problem}")

    def fail_here(self, problem: str) -> NoReturn:
        self.fail(f"{self.where}: {problem}" if self.where else problem)

    def truncated(self, what: str) -> NoReturn:
        detail = ": ".join(part for part in (self.where, what) if part)
        self.fail(f"truncated in the {_SECTION[self.section]} ({detail})")

    # --- primitive reads --------------------------------------------------------------------------------------------
    def take(self, n: int, what: str) -> int:
        """Advance past ``n`` bytes that must exist; return where they start."""
        if n > self.size - self.pos:
            self.truncated(what)
        start = self.pos
        self.pos += n
        return start

    def u32(self, what: str) -> int:
        return struct.unpack_from("<I", self.buf, self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack_from(self.buf, self.take(8, what))[0]

    def count(self, what: str, noun: str, unit: int) -> int:
        """A uint64 length or count of entries of at least ``unit`` bytes each, refused before anything is allocated.

        More than the whole file could hold is a corrupt field ("impossible"). Less than that but more than what is
        left is truncation, reported where the walk runs out, so that the message names the exact entry; the walk
        stays bounded because every entry consumes at least ``unit`` bytes or fails.
        """
        n = self.u64(what)
        if n * unit > self.size:
            self.fail_here(f"{what} {noun} {n} is impossible for a {self.size}-byte file")
        return n

    def string(self, what: str, *, keep: bool, max_len: int | None = None) -> str:
        """A GGUF string: uint64 length + UTF-8 bytes. Validated; returned only if ``keep``."""
        n = self.count(what, "length", 1)
        if max_len is not None and n > max_len:
            self.fail_here(f"{what} is {n} bytes long, at most {max_len} are allowed")
        start = self.take(n, what)
        at = start  # where decoding stands, for the message
        try:
            if keep or n <= _DECODE_CHUNK:
                text = str(self.buf[start:start + n], "utf-8")
                return text if keep else ""
            decoder = codecs.getincrementaldecoder("utf-8")()
            for at in range(start, start + n, _DECODE_CHUNK):
                decoder.decode(self.buf[at:min(at + _DECODE_CHUNK, self.pos)])
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            self.fail_here(f"{what} is not valid UTF-8 (near byte {at + err.start} of the file)")
        return ""

    def string_array(self, n: int, done: int) -> None:
        """Skip strings ``done + 1`` to ``n`` of an array (a tokenizer holds ~10^5 of them), validating each.

        A tight loop over the lengths for the common case of sound strings; at the first one that is not, the
        checked :meth:`string` walk takes over from there, so the message names the exact string. The UTF-8 check
        is one decode of the bytes the strings span, lengths included, cut around the lengths that have a byte
        of 0x80 or more: an ASCII byte can neither continue nor start a multi-byte sequence, so a stretch of
        strings separated by ASCII lengths is valid UTF-8 exactly when each of them is. When a stretch is not, the
        strings are decoded one by one to find the first bad one.
        """
        start, first = self.pos, done
        done, cuts = self._skip_strings(n, done, utf8=False)
        if self.utf8_arrays and done > first:
            try:
                at = start
                for cut in (*cuts, self.pos):
                    str(self.buf[at:cut], "utf-8")
                    at = cut + 8
            except UnicodeDecodeError:
                self.pos = start
                done, _ = self._skip_strings(n, first, utf8=True)
        for j in range(done, n):
            self.string(f"string {j + 1} of {n}", keep=False)

    def _skip_strings(self, n: int, done: int, *, utf8: bool) -> tuple[int, list[int]]:
        """Advance past sound strings ``done + 1`` ... of ``n`` (decoding each when ``utf8``); stop before the first
        that runs past the file, is longer than _DECODE_CHUNK or (``utf8``) is not UTF-8. Returns how many strings
        are done and where the lengths passed that have a non-ASCII byte start."""
        buf, size, pos = self.buf, self.size, self.pos
        cuts: list[int] = []
        unpack = _U64.unpack_from
        while done < n:  # n <= bytes left / 8, so this loop is bounded by the file size
            if pos + 8 > size:
                break
            length = unpack(buf, pos)[0]
            end = pos + 8 + length
            if end > size or length > _DECODE_CHUNK:
                break
            if utf8:
                try:
                    str(buf[pos + 8:end], "utf-8")
                except UnicodeDecodeError:
                    break
            if length & _NON_ASCII:
                cuts.append(pos)
            pos = end
            done += 1
        self.pos = pos
        return done, cuts

    # --- sections ---------------------------------------------------------------------------------------------------
    def value(self, vtype: int, what: str) -> Any:
        """One value of type ``vtype``, decoded; an array longer than ARRAY_PREVIEW as an ArrayPreview."""
        scalar = _SCALAR.get(vtype)
        if scalar is not None:
            return scalar.unpack_from(self.buf, self.take(scalar.size, what))[0]
        if vtype == V.STRING:
            return self.string(what, keep=True)
        if vtype == V.ARRAY:
            return self.array()
        self.fail_here(f"unknown value type {vtype}")

    def array(self) -> list[Any] | ArrayPreview:
        itype = self.u32("array element type")
        if itype == V.ARRAY:
            self.fail_here("nested arrays are not supported (llama.cpp refuses them)")
        if itype not in _MIN_ELEMENT:
            self.fail_here(f"unknown array element type {itype}")
        n = self.count("array", "count", _MIN_ELEMENT[itype])
        shown = min(n, ARRAY_PREVIEW)
        scalar = _SCALAR.get(itype)
        if scalar is not None:
            start = self.take(n * scalar.size, f"{n} {_TYPE_NAME[itype]} values")
            head = struct.unpack_from("<" + scalar.format[1:] * shown, self.buf, start)
        else:
            head = tuple(self.string(f"string {j + 1} of {n}", keep=True) for j in range(shown))
            self.string_array(n, shown)
        return list(head) if n <= ARRAY_PREVIEW else ArrayPreview(_TYPE_NAME[itype], n, head)

    def header(self) -> tuple[int, int, int]:
        if self.size < HEADER_SIZE:
            self.fail(f"truncated in the header (file is {self.size} bytes, the header alone needs {HEADER_SIZE})")
        version = struct.unpack_from("<I", self.buf, 4)[0]
        if version & 0xFFFF == 0 and version != 0:
            self.fail(f"GGUF version field {version:#010x} looks byte-swapped: big-endian GGUF files are not "
                      f"supported (supported: little-endian version 2 and 3)")
        if version not in SUPPORTED_VERSIONS:
            self.fail(f"unsupported GGUF version {version} (supported: 2 and 3)")
        self.pos = 8
        n_tensors = self.u64("tensor count")
        n_kv = self.u64("key/value count")
        # Every entry takes a minimum number of bytes: refuse counts the whole file could not hold. (Counts it could
        # hold but that run past a truncated end are reported where the walk runs out; the loops stay bounded because
        # each entry consumes bytes or fails.)
        if n_kv * _MIN_KV > self.size:
            self.fail(f"key/value count {n_kv} is impossible for a {self.size}-byte file")
        if n_tensors * _MIN_TENSOR > self.size:
            self.fail(f"tensor count {n_tensors} is impossible for a {self.size}-byte file")
        return version, n_tensors, n_kv

    def key_values(self, n_kv: int) -> tuple[list[KVField], int]:
        self.section = "kv"
        fields: list[KVField] = []
        seen: set[str] = set()
        alignment = DEFAULT_ALIGNMENT
        for i in range(n_kv):
            start = self.pos
            self.where = f"key {i + 1} of {n_kv}"
            key = self.string("key", keep=True, max_len=MAX_KEY)
            if not key:
                self.fail_here("empty key")
            self.where = f"key {i + 1} of {n_kv}, {key!r}"
            if key in seen:
                self.fail_here("duplicate key")
            seen.add(key)
            vtype = self.u32("value type")
            value = self.value(vtype, _TYPE_NAME.get(vtype, "value"))
            if key == "general.alignment":
                if vtype != V.UINT32:
                    self.fail_here(f"must be a uint32, not {_TYPE_NAME[vtype]}")
                if value == 0 or value & (value - 1):
                    self.fail_here(f"alignment {value} is not a power of two")
                alignment = value
            fields.append(KVField(key, V(vtype).name, value, start, self.pos))
        self.where = ""
        return fields, alignment

    def tensor_table(self, n_tensors: int) -> list[TensorInfo]:
        self.section = "tensors"
        tensors: list[TensorInfo] = []
        seen: set[str] = set()
        for i in range(n_tensors):
            self.where = f"tensor {i + 1} of {n_tensors}"
            name = self.string("name", keep=True, max_len=MAX_NAME - 1)
            if not name:
                self.fail_here("empty tensor name")
            self.where = f"tensor {i + 1} of {n_tensors}, {name!r}"
            if name in seen:
                self.fail(f"duplicate tensor name {name!r} (tensor {i + 1} of {n_tensors})")
            seen.add(name)
            n_dims = self.u32("number of dimensions")
            if n_dims == 0 or n_dims > MAX_DIMS:
                self.fail_here(f"{n_dims} dimensions (must be 1 to {MAX_DIMS})")
            dims = tuple(self.u64(f"dimension {d + 1} of {n_dims}") for d in range(n_dims))
            n_elements = 1
            for d, ne in enumerate(dims):
                if ne == 0 or ne > INT64_MAX:
                    self.fail_here(f"dimension {d + 1} is {ne} (must be between 1 and 2**63-1)")
                n_elements *= ne
            if n_elements > INT64_MAX:
                self.fail_here(f"shape {list(dims)} has {n_elements} elements, more than 2**63-1")
            raw_type = self.u32("type")
            try:
                ggml_type = GGMLQuantizationType(raw_type)
                block, type_size = GGML_QUANT_SIZES[ggml_type]
            except (ValueError, KeyError):
                self.fail_here(f"unknown tensor type {raw_type}")
            if dims[0] % block:
                self.fail_here(f"rows of {dims[0]} values are not a whole number of {ggml_type.name} blocks "
                               f"({block} values each)")
            offset = self.u64("data offset")
            tensors.append(TensorInfo(name, ggml_type.name, dims, offset, n_elements // block * type_size))
        self.where = ""
        return tensors

    def data_section(self, tensors: list[TensorInfo], alignment: int) -> int:
        """Check that every tensor's data lies aligned, inside the file and apart from the others; return where the
        data section starts."""
        self.section = "data"
        data_offset = align(self.pos, alignment)
        for t in tensors:
            if t.offset % alignment:
                self.fail(f"tensor {t.name!r} data offset {t.offset} is not a multiple of the alignment ({alignment})")
            end = data_offset + t.offset + t.nbytes
            if end > self.size:
                self.fail(f"tensor {t.name!r} data ends at byte {end}, past the end of the file ({self.size} bytes)")
        by_start = sorted(tensors, key=lambda t: (t.offset, t.nbytes))
        for before, after in itertools.pairwise(by_start):
            if after.offset < before.offset + before.nbytes:
                a, b = data_offset + before.offset, data_offset + after.offset
                self.fail(f"tensors {before.name!r} (bytes {a}-{a + before.nbytes}) and "
                          f"{after.name!r} (bytes {b}-{b + after.nbytes}) overlap")
        return data_offset


def _walk(path: Path, *, utf8_arrays: bool = True) -> ModelInfo:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise GGUFFormatError(f"{path}: no such file") from None
    except OSError as err:
        raise GGUFFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    if stat.S_ISDIR(st.st_mode):
        raise GGUFFormatError(f"{path}: is a directory, not a GGUF file")
    if not stat.S_ISREG(st.st_mode):
        raise GGUFFormatError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise GGUFFormatError(f"{path}: empty file (0 bytes), not a GGUF model")
            head = fh.read(4)
            if head != GGUF_MAGIC:
                if len(head) < 4 and GGUF_MAGIC.startswith(head):
                    raise GGUFFormatError(f"{path}: truncated in the header (file is {size} bytes, "
                                          f"the header alone needs {HEADER_SIZE})")
                raise GGUFFormatError(f"{path}: not a GGUF file (magic {head!r}, expected {GGUF_MAGIC!r})")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                walker = _Walker(path, buf, size, utf8_arrays=utf8_arrays)
                version, n_tensors, n_kv = walker.header()
                fields, alignment = walker.key_values(n_kv)
                tensors = walker.tensor_table(n_tensors)
                header_end = walker.pos
                data_offset = walker.data_section(tensors, alignment)
    except OSError as err:
        raise GGUFFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    return ModelInfo(path=path, version=version, file_size=size, alignment=alignment, header_end=header_end,
                     data_offset=data_offset, fields=fields, tensors=tensors)


def check_gguf(path: Path | str) -> GGUFSummary:
    """Raise GGUFFormatError naming ``path`` and the problem unless it is a structurally sound GGUF file.

    Returns a :class:`GGUFSummary` of the header for a sound file. Tensor *values* are not read.
    """
    return GGUFSummary.of(_walk(Path(path)))


def read_layout(path: Path | str, *, check: bool = True) -> ModelInfo:
    """Validate ``path`` and return its metadata, tensor table and byte layout, in one walk over the header.

    Layouts are remembered per process by file identity (path, size, mtime, ctime, inode), so the same unchanged
    model is validated and parsed once. ``check=False`` is for a file this process just wrote from a validated one:
    the walk skips the UTF-8 decoding of strings inside arrays (every bound is still checked) and the layout is not
    remembered.
    """
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path), os.getcwd(), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    except OSError:
        key = None
    if key is not None and key in _LAYOUTS:
        return _LAYOUTS[key]
    info = _walk(path, utf8_arrays=check)
    if check and key is not None:
        if len(_LAYOUTS) >= 64:
            _LAYOUTS.pop(next(iter(_LAYOUTS)))
        _LAYOUTS[key] = info
    return info


_LAYOUTS: dict[tuple, ModelInfo] = {}
