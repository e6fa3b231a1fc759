"""check_gguf: one test per kind of bad model file, each asserting the exact problem and that the path is named.

Bad files are built byte by byte with :func:`build_gguf` (a minimal GGUF serializer, so that the test can write what
gguf-py's writer would refuse: duplicate names, unknown types, absurd counts), or by patching a valid file written
by :func:`fakequant.gguf.synthetic.write_tiny_gguf`.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from collections.abc import Sequence
from pathlib import Path

import gguf
import pytest

from fakequant.errors import GGUFFormatError
from fakequant.gguf.check import check_gguf
from fakequant.gguf.synthetic import write_tiny_gguf

DEFAULT_MODEL = Path.home() / ".cache" / "fakequant" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

U32, STR, ARR, U64 = 4, 8, 9, 10
F32, Q8_0 = 0, 8


# --- a minimal GGUF serializer ---------------------------------------------------------------------------------------
def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", vtype) + payload


def kv_u32(key: str, value: int) -> bytes:
    return kv(key, U32, struct.pack("<I", value))


def kv_str(key: str, value: str | bytes) -> bytes:
    return kv(key, STR, gstr(value))


def kv_str_array(key: str, values: Sequence[str]) -> bytes:
    return kv(key, ARR, struct.pack("<IQ", STR, len(values)) + b"".join(gstr(v) for v in values))


def tensor_info(name: str | bytes, dims: Sequence[int], ggml_type: int, offset: int) -> bytes:
    return gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack(
        "<IQ", ggml_type, offset)


def build_gguf(path: Path, kvs: Sequence[bytes], infos: Sequence[bytes], data: bytes = b"", *,
               version: int = 3, alignment: int = 32, n_tensors: int | None = None, n_kv: int | None = None) -> Path:
    """Header + key/values + tensor infos, padded to ``alignment``, then ``data``."""
    body = b"GGUF" + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    body += b"".join(kvs) + b"".join(infos)
    body += b"\0" * (-len(body) % alignment)
    path.write_bytes(body + data)
    return path


def two_tensor_file(path: Path, **overrides: object) -> Path:
    """A sound file: two F32 tensors of 8 values (32 bytes each) at offsets 0 and 32."""
    kvs = [kv_str("general.architecture", "llama"), kv_str_array("tokens", ["a", "b", "c"])]
    infos = [tensor_info("a.weight", [8], F32, 0), tensor_info("b.weight", [8], F32, 32)]
    args: dict = {"kvs": kvs, "infos": infos, "data": bytes(64)}
    args.update(overrides)
    return build_gguf(path, args.pop("kvs"), args.pop("infos"), args.pop("data"), **args)


def problem(path: Path) -> str:
    """The message of the GGUFFormatError check_gguf raises for ``path`` (fails the test if it returns)."""
    with pytest.raises(GGUFFormatError) as info:
        check_gguf(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: "):]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def field_offset(path: Path, key: str) -> int:
    """Where key/value ``key`` starts in a valid file (gguf-py knows, since the file is valid)."""
    return gguf.GGUFReader(path).fields[key].offset


# --- files that pass -------------------------------------------------------------------------------------------------
def test_tiny_model_passes_and_agrees_with_gguf_py(tiny: Path) -> None:
    summary = check_gguf(tiny)
    reader = gguf.GGUFReader(tiny)
    assert summary.version == 3
    assert [t.name for t in summary.tensors] == [t.name for t in reader.tensors]
    assert [t.offset for t in summary.tensors] == [t.data_offset for t in reader.tensors]
    assert [t.n_bytes for t in summary.tensors] == [t.n_bytes for t in reader.tensors]
    assert list(summary.keys) == [k for k in reader.fields if not k.startswith("GGUF.")]


def test_hand_built_file_passes(tmp_path: Path) -> None:
    summary = check_gguf(two_tensor_file(tmp_path / "ok.gguf"))
    assert [(t.name, t.n_bytes) for t in summary.tensors] == [("a.weight", 32), ("b.weight", 32)]


def test_version_2_and_custom_alignment_pass(tmp_path: Path) -> None:
    path = build_gguf(tmp_path / "v2.gguf", [kv_u32("general.alignment", 64)],
                      [tensor_info("a", [8], F32, 0), tensor_info("b", [8], F32, 64)], bytes(96), version=2,
                      alignment=64)
    summary = check_gguf(path)
    assert (summary.version, summary.alignment, summary.data_offset % 64) == (2, 64, 0)


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"default model not fetched ({DEFAULT_MODEL})")
def test_default_model_passes_in_well_under_a_second() -> None:
    start = time.perf_counter()
    summary = check_gguf(DEFAULT_MODEL)
    elapsed = time.perf_counter() - start
    assert len(summary.tensors) == 272
    assert summary.tensors[-1].offset + summary.tensors[-1].n_bytes <= summary.file_size == DEFAULT_MODEL.stat().st_size
    assert elapsed < 0.8, f"check_gguf took {elapsed:.2f} s on the 98 MB model"


# --- the file itself -------------------------------------------------------------------------------------------------
def test_missing(tmp_path: Path) -> None:
    assert problem(tmp_path / "nope.gguf") == "no such file"


def test_missing_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    assert problem(tmp_path / "f" / "model.gguf") == "no such file"


def test_directory(tmp_path: Path) -> None:
    assert problem(tmp_path) == "is a directory, not a GGUF file"


def test_not_a_regular_file() -> None:
    assert problem(Path("/dev/null")) == "not a regular file"


def test_unreadable(tmp_path: Path) -> None:
    """Permission denied. Root ignores file modes, so as root the check runs in a forked child that drops to 'nobody'
    (forked, not exec'd: the child keeps the imported modules, so it needs no access to the venv)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    model = two_tensor_file(folder / "secret.gguf")
    model.chmod(0)
    if os.geteuid() != 0:
        assert problem(model) == "cannot read (Permission denied)"
        return
    tmp_path.chmod(0o755)  # let 'nobody' reach the file: only the file itself is closed
    folder.chmod(0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 3
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                check_gguf(model)
                message, status = "passed", 1
            except GGUFFormatError as err:
                message, status = str(err), 0
            os.write(write_end, message.encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0, message
    assert message == f"{model}: cannot read (Permission denied)"


def test_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    assert problem(path) == "empty file (0 bytes), not a GGUF model"


@pytest.mark.parametrize(("content", "shown"), [(b"PK\x03\x04rest of a zip", "b'PK\\x03\\x04'"),
                                                (b"\x89HDF", "b'\\x89HDF'"), (b"x", "b'x'")])
def test_wrong_magic(tmp_path: Path, content: bytes, shown: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    assert problem(path) == f"not a GGUF file (magic {shown}, expected b'GGUF')"


@pytest.mark.parametrize("version", [0, 1, 4, 0xFFFF])
def test_unsupported_version(tmp_path: Path, version: int) -> None:
    path = two_tensor_file(tmp_path / "v.gguf", version=version)
    assert problem(path) == f"unsupported GGUF version {version} (supported: 2 and 3)"


def test_big_endian_is_named(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "be.gguf", version=0x03000000)
    assert problem(path) == ("GGUF version field 0x03000000 looks byte-swapped: big-endian GGUF files are not "
                             "supported (supported: little-endian version 2 and 3)")


# --- truncation, section by section ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [2, 12, 23])
def test_truncated_in_the_header(tiny: Path, size: int) -> None:
    tiny.write_bytes(tiny.read_bytes()[:size])
    assert problem(tiny) == f"truncated in the header (file is {size} bytes, the header alone needs 24)"


def test_truncated_in_the_key_value_section(tiny: Path) -> None:
    reader = gguf.GGUFReader(tiny)
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    index = keys.index("fakequant_test.strings")
    # Cut inside the second string ("bc") of the array: key, type, item type, count, string 1 ("a"), length of 2.
    start = field_offset(tiny, "fakequant_test.strings")
    cut = start + 8 + len("fakequant_test.strings") + 4 + 4 + 8 + (8 + 1) + 8 + 1
    tiny.write_bytes(tiny.read_bytes()[:cut])
    assert problem(tiny) == (f"truncated in the key/value section "
                             f"(key {index + 1} of {len(keys)}, 'fakequant_test.strings': string 2 of 3)")


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"default model not fetched ({DEFAULT_MODEL})")
def test_truncated_real_model_names_the_token(tmp_path: Path) -> None:
    """The first megabyte of the real model ends inside its 49152-token vocabulary."""
    with open(DEFAULT_MODEL, "rb") as fh:
        head = fh.read(1 << 20)
    path = tmp_path / "SmolLM2-cut.gguf"
    path.write_bytes(head)
    message = problem(path)
    assert message.startswith("truncated in the key/value section (key "), message
    assert "'tokenizer.ggml.merges': string " in message or "'tokenizer.ggml.tokens': string " in message, message
    assert message.endswith(" of 49152)") or " of 48900)" in message, message


def test_truncated_in_the_tensor_table(tiny: Path) -> None:
    reader = gguf.GGUFReader(tiny)
    last = reader.tensors[-1]
    # Cut after the last tensor's name and dimension count, inside its dimensions.
    cut = last.field.offset + 8 + len(last.name) + 4 + 4
    tiny.write_bytes(tiny.read_bytes()[:cut])
    n = len(reader.tensors)
    assert problem(tiny) == f"truncated in the tensor table (tensor {n} of {n}, '{last.name}': dimension 1 of 1)"


def test_truncated_in_the_data(tiny: Path) -> None:
    size = tiny.stat().st_size
    last = gguf.GGUFReader(tiny).tensors[-1]
    tiny.write_bytes(tiny.read_bytes()[:size - 10])
    end = last.data_offset + last.n_bytes
    assert end > size - 10
    assert problem(tiny) == (f"tensor '{last.name}' data ends at byte {end}, past the end of the file "
                             f"({size - 10} bytes)")


# --- absurd counts and lengths: refused before anything is allocated -------------------------------------------------
def test_tensor_count_2_63(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", n_tensors=2**63)
    size = path.stat().st_size
    assert problem(path) == f"tensor count 9223372036854775808 is impossible for a {size}-byte file"


def test_key_value_count_2_64_minus_1(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", n_kv=2**64 - 1)
    assert problem(path) == f"key/value count {2**64 - 1} is impossible for a {path.stat().st_size}-byte file"


def test_string_length_2_60(tmp_path: Path) -> None:
    bad = struct.pack("<Q", 2**60) + b"llama"
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv("general.architecture", STR, bad)])
    assert problem(path) == (f"key 1 of 1, 'general.architecture': string length {2**60} is impossible for a "
                             f"{path.stat().st_size}-byte file")


def test_key_length_2_60(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[struct.pack("<Q", 2**60) + b"general.name"])
    assert problem(path) == f"key 1 of 1: key length {2**60} is impossible for a {path.stat().st_size}-byte file"


def test_array_count_2_62(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv("tokens", ARR, struct.pack("<IQ", STR, 2**62))])
    assert problem(path) == (f"key 1 of 1, 'tokens': array count {2**62} is impossible for a "
                             f"{path.stat().st_size}-byte file")


def test_tensor_name_length_2_60(tmp_path: Path) -> None:
    infos = [struct.pack("<Q", 2**60) + b"a.weight"]
    path = two_tensor_file(tmp_path / "m.gguf", infos=infos, n_tensors=1)
    assert problem(path) == (f"tensor 1 of 1: name length {2**60} is impossible for a "
                             f"{path.stat().st_size}-byte file")


def test_lying_counts_end_quickly(tmp_path: Path) -> None:
    """A count the file could just hold (empty strings to the end of 1 MB) is walked, bounded, well under a second."""
    n = (1 << 20) // 8
    # 24-byte header, 30 bytes of key/value up to the strings, padding to 64: the file is 8n bytes, the count fits.
    path = build_gguf(tmp_path / "m.gguf", [kv("tokens", ARR, struct.pack("<IQ", STR, n))], [], bytes(8 * (n - 8)))
    assert path.stat().st_size == 8 * n
    start = time.perf_counter()
    message = problem(path)
    assert message == f"truncated in the key/value section (key 1 of 1, 'tokens': string {n - 6} of {n})"
    assert time.perf_counter() - start < 1.0


# --- the key/value section -------------------------------------------------------------------------------------------
def test_duplicate_key(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv_str("general.name", "a"), kv_str("general.name", "b")])
    assert problem(path) == "key 2 of 2, 'general.name': duplicate key"


def test_empty_key(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv_str("", "a")])
    assert problem(path) == "key 1 of 1: empty key"


def test_key_not_utf8(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv_str(b"general.\xff", "a")])
    assert problem(path).startswith("key 1 of 1: key is not valid UTF-8 (near byte ")


def test_string_value_not_utf8(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv_str("general.name", b"caf\xc3")])
    assert problem(path).startswith("key 1 of 1, 'general.name': string is not valid UTF-8 (near byte ")


def _tokens_file(path: Path, tokens: Sequence[bytes]) -> Path:
    array = struct.pack("<IQ", STR, len(tokens)) + b"".join(gstr(t) for t in tokens)
    return two_tensor_file(path, kvs=[kv("tokenizer.ggml.tokens", ARR, array)])


def _near_byte(path: Path, needle: bytes) -> int:
    return path.read_bytes().index(needle) + len(needle) - 1


def test_array_strings_past_the_preview_of_every_length_and_script_pass(tmp_path: Path) -> None:
    # lengths of 128, 200 and 256+ have bytes of 0x80 or more: the one decode of the array is cut around them
    tokens = [f"t{i}".encode() for i in range(300)]
    tokens[20:23] = [("é" * 64).encode(), ("語" * 100).encode(), b"x" * 300]
    tokens[250] = ("Ċ" * 81).encode()
    assert check_gguf(_tokens_file(tmp_path / "m.gguf", tokens)) is not None


def test_array_string_not_utf8_past_the_preview(tmp_path: Path) -> None:
    tokens = [f"t{i}".encode() for i in range(300)]
    tokens[149] = b"ab\xffcd"
    path = _tokens_file(tmp_path / "m.gguf", tokens)
    at = _near_byte(path, b"ab\xff")
    assert problem(path) == (f"key 1 of 1, 'tokenizer.ggml.tokens': string 150 of 300 is not valid UTF-8 "
                             f"(near byte {at} of the file)")


def test_array_string_cut_in_a_character_before_a_length_that_would_complete_it(tmp_path: Path) -> None:
    # b"\xc3" ends string 100; the next length, 169 = 0xa9, would complete it to "é" if it were decoded with it
    tokens = [f"t{i}".encode() for i in range(300)]
    tokens[99], tokens[100] = b"caf\xc3", b"x" * 0xA9
    path = _tokens_file(tmp_path / "m.gguf", tokens)
    at = _near_byte(path, b"caf\xc3")
    assert problem(path) == (f"key 1 of 1, 'tokenizer.ggml.tokens': string 100 of 300 is not valid UTF-8 "
                             f"(near byte {at} of the file)")


def test_unknown_value_type(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv("general.name", 13, b"")])
    assert problem(path) == "key 1 of 1, 'general.name': unknown value type 13"


def test_unknown_array_element_type(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv("x", ARR, struct.pack("<IQ", 77, 1))])
    assert problem(path) == "key 1 of 1, 'x': unknown array element type 77"


def test_nested_array_is_refused(tmp_path: Path) -> None:
    inner = struct.pack("<IQ", U32, 2) + struct.pack("<II", 1, 2)
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv("x", ARR, struct.pack("<IQ", ARR, 1) + inner)])
    assert problem(path) == "key 1 of 1, 'x': nested arrays are not supported (llama.cpp refuses them)"


@pytest.mark.parametrize("alignment", [0, 3, 48])
def test_alignment_not_a_power_of_two(tmp_path: Path, alignment: int) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv_u32("general.alignment", alignment)])
    assert problem(path) == f"key 1 of 1, 'general.alignment': alignment {alignment} is not a power of two"


def test_alignment_of_the_wrong_type(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", kvs=[kv("general.alignment", U64, struct.pack("<Q", 32))])
    assert problem(path) == "key 1 of 1, 'general.alignment': must be a uint32, not uint64"


# --- the tensor table ------------------------------------------------------------------------------------------------
def test_duplicate_tensor_names(tmp_path: Path) -> None:
    infos = [tensor_info("a.weight", [8], F32, 0), tensor_info("a.weight", [8], F32, 32)]
    path = two_tensor_file(tmp_path / "m.gguf", infos=infos)
    assert problem(path) == "duplicate tensor name 'a.weight' (tensor 2 of 2)"


@pytest.mark.parametrize("ggml_type", [4, 5, 31, 99, 2**32 - 1])
def test_unknown_tensor_type(tmp_path: Path, ggml_type: int) -> None:
    infos = [tensor_info("a.weight", [8], F32, 0), tensor_info("b.weight", [8], ggml_type, 32)]
    assert problem(two_tensor_file(tmp_path / "m.gguf", infos=infos)) == (
        f"tensor 2 of 2, 'b.weight': unknown tensor type {ggml_type}")


@pytest.mark.parametrize("dims", [[], [1, 1, 1, 1, 8]])
def test_number_of_dimensions(tmp_path: Path, dims: list[int]) -> None:
    infos = [tensor_info("a.weight", dims, F32, 0)]
    path = two_tensor_file(tmp_path / "m.gguf", infos=infos)
    assert problem(path) == f"tensor 1 of 1, 'a.weight': {len(dims)} dimensions (must be 1 to 4)"


@pytest.mark.parametrize(("dims", "bad"), [([8, 0], 2), ([2**63, 1], 1), ([2**64 - 1], 1)])
def test_dimension_out_of_range(tmp_path: Path, dims: list[int], bad: int) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", infos=[tensor_info("a.weight", dims, F32, 0)])
    assert problem(path) == (f"tensor 1 of 1, 'a.weight': dimension {bad} is {dims[bad - 1]} "
                             f"(must be between 1 and 2**63-1)")


def test_element_count_overflow(tmp_path: Path) -> None:
    dims = [2**32, 2**32]
    path = two_tensor_file(tmp_path / "m.gguf", infos=[tensor_info("a.weight", dims, F32, 0)])
    assert problem(path) == f"tensor 1 of 1, 'a.weight': shape {dims} has {2**64} elements, more than 2**63-1"


def test_row_not_a_whole_number_of_blocks(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", infos=[tensor_info("a.weight", [48, 2], Q8_0, 0)])
    assert problem(path) == ("tensor 1 of 1, 'a.weight': rows of 48 values are not a whole number of Q8_0 blocks "
                             "(32 values each)")


def test_tensor_name_too_long(tmp_path: Path) -> None:
    name = "blk.0." + "x" * 60
    path = two_tensor_file(tmp_path / "m.gguf", infos=[tensor_info(name, [8], F32, 0)])
    assert problem(path) == f"tensor 1 of 1: name is {len(name)} bytes long, at most 63 are allowed"


def test_empty_tensor_name(tmp_path: Path) -> None:
    path = two_tensor_file(tmp_path / "m.gguf", infos=[tensor_info("", [8], F32, 0)])
    assert problem(path) == "tensor 1 of 1: empty tensor name"


# --- the data section ------------------------------------------------------------------------------------------------
def test_offset_past_the_end(tmp_path: Path) -> None:
    infos = [tensor_info("a.weight", [8], F32, 0), tensor_info("b.weight", [8], F32, 2**40)]
    path = two_tensor_file(tmp_path / "m.gguf", infos=infos)
    size = path.stat().st_size
    start = size - 64 + 2**40
    assert problem(path) == f"tensor 'b.weight' data ends at byte {start + 32}, past the end of the file ({size} bytes)"


def test_offset_near_2_64_does_not_wrap(tmp_path: Path) -> None:
    infos = [tensor_info("a.weight", [8], F32, 0), tensor_info("b.weight", [8], F32, 2**64 - 32)]
    path = two_tensor_file(tmp_path / "m.gguf", infos=infos)
    assert "past the end of the file" in problem(path)


def test_misaligned_offset(tmp_path: Path) -> None:
    infos = [tensor_info("a.weight", [8], F32, 0), tensor_info("b.weight", [4], F32, 36)]
    path = two_tensor_file(tmp_path / "m.gguf", infos=infos, data=bytes(96))
    assert problem(path) == "tensor 'b.weight' data offset 36 is not a multiple of the alignment (32)"


def test_overlapping_tensors(tmp_path: Path) -> None:
    infos = [tensor_info("a.weight", [16], F32, 0), tensor_info("b.weight", [8], F32, 32)]
    path = two_tensor_file(tmp_path / "m.gguf", infos=infos, data=bytes(96))
    data = path.stat().st_size - 96
    assert problem(path) == (f"tensors 'a.weight' (bytes {data}-{data + 64}) and 'b.weight' "
                             f"(bytes {data + 32}-{data + 64}) overlap")


def test_real_model_copy_with_a_bad_tensor_type(tmp_path: Path) -> None:
    """Patch the header region of a real-shaped file: the message names the tensor llama.cpp would stumble on."""
    if not DEFAULT_MODEL.exists():
        pytest.skip(f"default model not fetched ({DEFAULT_MODEL})")
    path = tmp_path / "smol.gguf"
    shutil.copyfile(DEFAULT_MODEL, path)
    tensor = gguf.GGUFReader(path).tensors[5]
    type_at = tensor.field.offset + 8 + len(tensor.name.encode()) + 4 + 8 * len(tensor.shape)
    with open(path, "r+b") as fh:
        fh.seek(type_at)
        fh.write(struct.pack("<I", 1234))
    assert problem(path) == f"tensor 6 of 272, '{tensor.name}': unknown tensor type 1234"
