"""Validate a GGUF file's structure before any reader trusts it.

gguf-py's reader answers malformed files with assorted ValueError/IndexError messages, and can be driven to huge
allocations or endless loops by absurd counts. :func:`check_gguf` walks the header, the key/value section and the
tensor table itself, with every count and length bounded by the bytes left in the file *before* anything is
allocated, then checks that every tensor's data lies aligned, inside the file and apart from the others. It raises
:class:`~fakequant.errors.GGUFFormatError` with one line that says what is wrong; only a file that passes is handed
to gguf-py or llama.cpp.

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
from typing import NoReturn

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from fakequant.errors import GGUFFormatError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: a tensor name holds at most 63 bytes
MAX_KEY = 1 << 16  # no real key comes near; bounds what a corrupt key length can make us copy
HEADER_SIZE = 4 + 4 + 8 + 8  # magic, version, tensor count, key/value count
INT64_MAX = 2**63 - 1
_DECODE_CHUNK = 1 << 20  # strings longer than this are validated as UTF-8 piece by piece, never copied whole

# GGUF value types (gguf.constants.GGUFValueType) -> size in bytes of a scalar; STRING = 8 and ARRAY = 9 are variable.
_STRING, _ARRAY = 8, 9
_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_TYPE_NAME = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32", 7: "bool",
              8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
# The fewest bytes one entry can take, to bound counts by the file size before looping over them.
_MIN_KV = 8 + 4 + 1  # key length, value type, a one-byte value
_MIN_TENSOR = 8 + 4 + 4 + 8  # name length, n_dims, type, offset
_MIN_ELEMENT = {**_SCALAR_SIZE, _STRING: 8}

_SECTION = {"header": "header", "kv": "key/value section", "tensors": "tensor table", "data": "data section"}


@dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor table, as stored (``shape`` in ggml order, innermost dimension first)."""

    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]
    offset: int  # absolute position of the data in the file
    n_bytes: int


@dataclass(frozen=True)
class GGUFSummary:
    """What the walk learned on the way; returned only for a sound file."""

    path: Path
    file_size: int
    version: int
    alignment: int
    data_offset: int  # where the data section starts
    keys: tuple[str, ...]
    tensors: tuple[TensorEntry, ...]


class _Walker:
    """A cursor over the mapped file; every read checks that the bytes exist first."""

    def __init__(self, path: Path, buf: mmap.mmap | bytes, size: int) -> None:
        self.path = path
        self.buf = buf
        self.size = size
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
    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str) -> int:
        """Advance past ``n`` bytes that must exist; return where they start."""
        if n > self.left():
            self.truncated(what)
        start = self.pos
        self.pos += n
        return start

    def u32(self, what: str) -> int:
        return struct.unpack_from("<I", self.buf, self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack_from("<Q", self.buf, self.take(8, what))[0]

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
        """A GGUF string: uint64 length + UTF-8 bytes. Validated; returned only if ``keep`` (keys and names)."""
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

    def string_array(self, n: int) -> None:
        """Skip ``n`` strings (a tokenizer holds ~10^5 of them), validating each.

        A tight loop for the common case of sound strings; at the first one that is not, the checked
        :meth:`string` walk takes over from there, so the message names the exact string.
        """
        buf, size, pos = self.buf, self.size, self.pos
        unpack = struct.Struct("<Q").unpack_from
        done = 0
        while done < n:  # n <= bytes left / 8, so this loop is bounded by the file size
            if pos + 8 > size:
                break
            length = unpack(buf, pos)[0]
            end = pos + 8 + length
            if end > size or length > _DECODE_CHUNK:
                break
            try:
                str(buf[pos + 8:end], "utf-8")
            except UnicodeDecodeError:
                break
            pos = end
            done += 1
        self.pos = pos
        for j in range(done, n):
            self.string(f"string {j + 1} of {n}", keep=False)

    # --- sections ---------------------------------------------------------------------------------------------------
    def value(self, vtype: int, what: str) -> int | None:
        """Skip one value of type ``vtype``; return it when it is a uint32 (for general.alignment)."""
        if vtype in _SCALAR_SIZE:
            start = self.take(_SCALAR_SIZE[vtype], what)
            return struct.unpack_from("<I", self.buf, start)[0] if vtype == 4 else None
        if vtype == _STRING:
            self.string(what, keep=False)
            return None
        if vtype == _ARRAY:
            itype = self.u32("array element type")
            if itype == _ARRAY:
                self.fail_here("nested arrays are not supported (llama.cpp refuses them)")
            if itype not in _MIN_ELEMENT:
                self.fail_here(f"unknown array element type {itype}")
            n = self.count("array", "count", _MIN_ELEMENT[itype])
            if itype in _SCALAR_SIZE:
                self.take(n * _SCALAR_SIZE[itype], f"{n} {_TYPE_NAME[itype]} values")
            else:
                self.string_array(n)
            return None
        self.fail_here(f"unknown value type {vtype}")

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

    def key_values(self, n_kv: int) -> tuple[list[str], int]:
        self.section = "kv"
        keys: list[str] = []
        seen: set[str] = set()
        alignment = DEFAULT_ALIGNMENT
        for i in range(n_kv):
            self.where = f"key {i + 1} of {n_kv}"
            key = self.string("key", keep=True, max_len=MAX_KEY)
            if not key:
                self.fail_here("empty key")
            self.where = f"key {i + 1} of {n_kv}, {key!r}"
            if key in seen:
                self.fail_here("duplicate key")
            seen.add(key)
            keys.append(key)
            vtype = self.u32("value type")
            found = self.value(vtype, _TYPE_NAME.get(vtype, "value"))
            if key == "general.alignment":
                if vtype != 4:
                    self.fail_here(f"must be a uint32, not {_TYPE_NAME.get(vtype, vtype)}")
                assert found is not None
                if found == 0 or found & (found - 1):
                    self.fail_here(f"alignment {found} is not a power of two")
                alignment = found
        self.where = ""
        return keys, alignment

    def tensor_table(self, n_tensors: int) -> list[tuple[str, GGMLQuantizationType, tuple[int, ...], int, int]]:
        self.section = "tensors"
        rows = []
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
            rows.append((name, ggml_type, dims, offset, n_elements // block * type_size))
        self.where = ""
        return rows


def check_gguf(path: Path | str) -> GGUFSummary:
    """Raise GGUFFormatError naming ``path`` and the problem unless it is a structurally sound GGUF file.

    Returns a :class:`GGUFSummary` of the header for a sound file. Tensor *values* are not read.
    """
    path = Path(path)
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
                return _walk(path, buf, size)
    except OSError as err:
        raise GGUFFormatError(f"{path}: cannot read ({err.strerror or err})") from None


def _walk(path: Path, buf: mmap.mmap, size: int) -> GGUFSummary:
    walker = _Walker(path, buf, size)
    version, n_tensors, n_kv = walker.header()
    keys, alignment = walker.key_values(n_kv)
    rows = walker.tensor_table(n_tensors)

    walker.section = "data"
    data_offset = -(-walker.pos // alignment) * alignment
    tensors = []
    for name, ggml_type, dims, offset, n_bytes in rows:
        if offset % alignment:
            walker.fail(f"tensor {name!r} data offset {offset} is not a multiple of the alignment ({alignment})")
        start = data_offset + offset
        end = start + n_bytes
        if end > size:
            walker.fail(f"tensor {name!r} data ends at byte {end}, past the end of the file ({size} bytes)")
        tensors.append(TensorEntry(name, ggml_type, dims, start, n_bytes))
    by_start = sorted(tensors, key=lambda t: (t.offset, t.n_bytes))
    for before, after in itertools.pairwise(by_start):
        if after.offset < before.offset + before.n_bytes:
            walker.fail(f"tensors {before.name!r} (bytes {before.offset}-{before.offset + before.n_bytes}) and "
                        f"{after.name!r} (bytes {after.offset}-{after.offset + after.n_bytes}) overlap")
    return GGUFSummary(path, size, version, alignment, data_offset, tuple(keys), tuple(tensors))
