"""Fuzzing: mutations of a small valid GGUF fed to check_gguf and to the engine's open / inspect / verify.

Only FakequantError subclasses may escape -- never another exception, a hang or an unbounded allocation:

- hang: Hypothesis' per-example deadline, plus a SIGALRM watchdog that interrupts an example stuck in a loop
  (a deadline alone only fires after the example returns);
- memory: the address space is capped (RLIMIT_AS, soft limit, restored afterwards) at what the process already
  maps plus :data:`MEMORY_HEADROOM`, so an attempt to allocate for a 2**60-byte string raises MemoryError, which
  fails the test like any other stray exception.

A file check_gguf accepts must also open in gguf-py's reader (the contract the engine relies on) and have every
tensor's values readable through the engine.

A few hundred examples by default; more with ``FAKEQUANT_FUZZ_EXAMPLES=20000 .venv/bin/pytest
tests/unit/test_fuzz_gguf.py`` (or ``make fuzz``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import signal
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakequant.errors import FakequantError, GGUFFormatError
from fakequant.gguf.check import check_gguf
from fakequant.gguf.layout import read_tensor_values
from fakequant.gguf.synthetic import write_tiny_gguf

EXAMPLES = int(os.environ.get("FAKEQUANT_FUZZ_EXAMPLES", "300"))
MEMORY_HEADROOM = 1 << 30  # a few hundred MB would do for the tiny file; 1 GiB leaves room for the interpreter
WATCHDOG_S = 20

FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=5000, database=None, derandomize=False,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

HUGE = [0, 1, 2**31, 2**32 - 1, 2**32, 2**60, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


def _base_file(folder: Path) -> bytes:
    # One layer, rows of 32: a few kilobytes with every section (string arrays, F32, F16, Q8_0, Q4_0 tensors).
    return write_tiny_gguf(folder / "base.gguf", n_layers=1, dim=32).read_bytes()


def length_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every count, length, dimension, type and offset field of a *valid* GGUF."""
    fields = [(8, 8), (16, 8)]
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def string() -> None:
        nonlocal pos
        fields.append((pos, 8))
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    for _ in range(n_kv):
        string()
        vtype = struct.unpack_from("<I", data, pos)[0]
        fields.append((pos, 4))
        pos += 4
        if vtype == 8:
            string()
        elif vtype == 9:
            itype, count = struct.unpack_from("<IQ", data, pos)
            fields += [(pos, 4), (pos + 4, 8)]
            pos += 12
            for _ in range(count):
                if itype == 8:
                    string()
                else:
                    pos += sizes[itype]
        else:
            pos += sizes[vtype]
    for _ in range(n_tensors):
        string()
        n_dims = struct.unpack_from("<I", data, pos)[0]
        fields.append((pos, 4))
        pos += 4
        fields += [(pos + 8 * d, 8) for d in range(n_dims)]
        pos += 8 * n_dims
        fields += [(pos, 4), (pos + 4, 8)]
        pos += 12
    return fields


@st.composite
def mutations(draw: st.DrawFn, data: bytes, fields: list[tuple[int, int]], header_end: int) -> bytes:
    """1 to 4 mutations, mostly in the header region (mutating tensor data proves nothing about parsing)."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        limit = max(1, len(buf))
        near = st.integers(0, min(limit, header_end + 64) - 1)
        in_field = st.sampled_from(fields).flatmap(lambda f: st.integers(f[0], f[0] + f[1] - 1)).map(
            lambda p, last=limit - 1: min(p, last))
        pos_strategy = st.one_of(near, in_field, in_field, st.integers(0, limit - 1))
        kind = draw(st.sampled_from(["flip", "truncate", "field", "field", "insert", "delete", "byte"]))
        if kind == "flip" and buf:
            pos = draw(pos_strategy)
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del buf[draw(st.integers(0, len(buf))):]
        elif kind == "field":
            offset, width = draw(st.sampled_from(fields))
            value = draw(st.one_of(st.sampled_from(HUGE), st.integers(0, 2**(8 * width) - 1),
                                   st.integers(0, 4096)))
            value %= 2**(8 * width)
            packed = struct.pack("<I" if width == 4 else "<Q", value)
            buf[offset:offset + width] = packed
        elif kind == "insert":
            pos = draw(st.integers(0, min(len(buf), header_end + 64)))
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and buf:
            pos = draw(pos_strategy)
            del buf[pos:pos + draw(st.integers(1, 16))]
        elif buf:
            buf[draw(pos_strategy)] = draw(st.integers(0, 255))
    return bytes(buf)


class Hang(Exception):
    """Raised by the watchdog inside an example that ran too long."""


@contextlib.contextmanager
def bounded(seconds: int = WATCHDOG_S, headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """Cap this process's address space and wall time for the duration of the block."""

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"example still running after {seconds} s")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as fh:
        mapped = int(fh.read().split()[0]) * resource.getpagesize()
    cap = mapped + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def exercise(path: Path, base: Path) -> str:
    """Every entry point that opens a model file; return 'ok' or the error class. Non-fakequant errors propagate."""
    try:
        summary = check_gguf(path)
    except GGUFFormatError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
        checked = False
    else:
        checked = True
        # The contract the engine relies on: what check_gguf accepts, gguf-py's reader opens, with the same tensors.
        reader = gguf.GGUFReader(path)
        assert [t.name for t in reader.tensors] == [t.name for t in summary.tensors]
        assert [t.data_offset for t in reader.tensors] == [t.offset for t in summary.tensors]

    from fakequant.cli.model import cmd_inspect  # imported here so that a missing engine fails only this part
    from fakequant.quant import candidate as engine

    outcome = "ok"
    try:
        info = engine.model_info(path)
        for tensor in info.tensors:
            read_tensor_values(info, tensor.name)
        with contextlib.redirect_stdout(io.StringIO()):
            cmd_inspect(argparse.Namespace(model=str(path), tensor=None, json=False))
            cmd_inspect(argparse.Namespace(model=str(path), tensor=None, json=True))
        engine.verify_format(base, path, [])
    except FakequantError as err:
        assert "\n" not in str(err), repr(str(err))
        outcome = type(err).__name__
    assert checked or outcome != "ok", "the engine opened a file check_gguf refused"
    return outcome


@dataclass(frozen=True)
class Base:
    """The valid file every mutation starts from (short repr: Hypothesis prints it with a failing example)."""

    path: Path
    data: bytes = field(repr=False)
    fields: list[tuple[int, int]] = field(repr=False)
    header_end: int


@pytest.fixture(scope="module")
def base_file(tmp_path_factory: pytest.TempPathFactory) -> Base:
    folder = tmp_path_factory.mktemp("fuzz")
    data = _base_file(folder)
    fields = length_fields(data)
    return Base(folder / "base.gguf", data, fields, max(offset + width for offset, width in fields))


def test_length_fields_cover_the_header(base_file: Base) -> None:
    """The fuzzer's map of length fields is right: overwriting each with 2**63 is refused, never accepted."""
    path, data, fields = base_file.path, base_file.data, base_file.fields
    assert len(fields) > 50
    target = path.with_name("field.gguf")
    for offset, width in fields:
        if width != 8:
            continue
        mutated = bytearray(data)
        mutated[offset:offset + 8] = struct.pack("<Q", 2**63)
        target.write_bytes(mutated)
        with pytest.raises(GGUFFormatError):
            check_gguf(target)


def test_the_base_file_passes_everything(base_file: Base) -> None:
    assert exercise(base_file.path, base_file.path) == "ok"


@FUZZ_SETTINGS
@given(st.data())
def test_mutated_gguf_only_fakequant_errors(base_file: Base, data: st.DataObject) -> None:
    mutated = data.draw(mutations(base_file.data, base_file.fields, base_file.header_end), label="mutated")
    target = base_file.path.with_name("mutated.gguf")
    target.write_bytes(mutated)
    with bounded():
        exercise(target, base_file.path)


@FUZZ_SETTINGS
@given(cut=st.integers(0, 4096))
def test_every_truncation_is_refused(base_file: Base, cut: int) -> None:
    cut = min(cut, len(base_file.data) - 1)
    target = base_file.path.with_name("cut.gguf")
    target.write_bytes(base_file.data[:cut])
    with bounded(), pytest.raises(GGUFFormatError):
        check_gguf(target)


def test_watchdog_and_memory_cap_work() -> None:
    """The guards themselves: a runaway loop is interrupted, a 2**40-byte allocation fails instead of succeeding."""
    with pytest.raises(Hang), bounded(seconds=1):
        while True:
            pass
    with pytest.raises(MemoryError), bounded():
        bytearray(2**40)
