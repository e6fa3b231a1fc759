"""Faults while writing: out of disk space, kill -9, two builders at once.

After each: nothing at the destination (or the old file, whole), no corrupt cache entry, the next run recovers on its
own, and the original model's sha256 is unchanged.

Out of disk space is simulated twice: by making the engine's copy fail with ENOSPC half way (always runs), and for
real on a tiny tmpfs (needs root and ``mount``; skipped with the reason otherwise). ``kill -9`` is made to land
mid-write deterministically: the child process blocks inside the write (after the first bytes are out) and signals
the parent, which then kills it.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakequant.errors import FakequantError
from fakequant.gguf import write as gguf_write
from fakequant.gguf.check import check_gguf
from fakequant.gguf.synthetic import write_synthetic_gguf, write_tiny_gguf
from fakequant.quant.candidate import Recipe, build_candidate, verify_format
from fakequant.quant.select import Selection
from fakequant.store.cache import atomic_output, remove_stale_temporaries, sha256_file

TENSOR = "blk.0.ffn_norm.weight"  # F32 with values BF16 cannot hold: a BF16 round trip really changes it
RECIPE = Recipe(Selection(names=(TENSOR,)), "bf16")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private FAKEQUANT_HOME, so that the candidate cache starts empty and is ours alone."""
    folder = tmp_path / "home"
    monkeypatch.setenv("FAKEQUANT_HOME", str(folder))
    return folder


@pytest.fixture
def source(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    path = write_tiny_gguf(tmp_path / "src" / "tiny.gguf", n_layers=2, dim=256)  # about 1.5 MB
    path.chmod(0o444)  # the engine must never need to write it
    return path


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*tmp*")) if folder.exists() else []


def assert_sound_candidate(source: Path, candidate: Path) -> None:
    check_gguf(candidate)
    assert verify_format(source, candidate, [TENSOR]) == []


# --- out of disk space -----------------------------------------------------------------------------------------------
def test_enospc_mid_copy_leaves_nothing_and_the_next_run_recovers(source: Path, home: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    before = sha256_file(source)
    dest = tmp_path / "out" / "candidate.gguf"
    real_copy = gguf_write.copy_range
    calls = []

    def copy_then_fill_the_disk(src, dst, count, src_off, dst_off):  # type: ignore[no-untyped-def]
        calls.append(count)
        real_copy(src, dst, min(count, 4096), src_off, dst_off)  # some bytes are out when the disk fills
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(gguf_write, "copy_range", copy_then_fill_the_disk)
    with pytest.raises(FakequantError) as info:
        build_candidate(source, RECIPE, dest)
    assert calls, "the fault was never injected"
    message = str(info.value)
    assert "\n" not in message and str(dest) in message and "No space left on device" in message, message
    assert not dest.exists()
    assert temporaries(dest.parent) == []
    assert sha256_file(source) == before

    monkeypatch.setattr(gguf_write, "copy_range", real_copy)
    result = build_candidate(source, RECIPE, dest)
    assert result.output == dest
    assert_sound_candidate(source, dest)
    assert sha256_file(source) == before


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: really runs out of space. Needs root (or CAP_SYS_ADMIN) and mount."""
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs to fill needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_real_enospc_in_the_candidate_cache(source: Path, tiny_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FAKEQUANT_HOME on a 1 MiB filesystem, a 1.5 MB candidate: no cache entry, then after freeing space, a build."""
    before = sha256_file(source)
    monkeypatch.setenv("FAKEQUANT_HOME", str(tiny_tmpfs / "home"))
    with pytest.raises(FakequantError) as info:
        build_candidate(source, RECIPE)
    assert "No space left on device" in str(info.value) and "\n" not in str(info.value), str(info.value)
    candidates = tiny_tmpfs / "home" / "candidates"
    assert [p.name for p in candidates.iterdir() if not p.name.endswith(".lock")] == []
    assert sha256_file(source) == before

    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_tmpfs)], check=True)
    result = build_candidate(source, RECIPE)
    assert not result.reused
    assert result.output.parent == candidates
    assert_sound_candidate(source, result.output)
    assert build_candidate(source, RECIPE).reused
    assert sha256_file(source) == before


# --- kill -9 mid-write -----------------------------------------------------------------------------------------------
ENGINE_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fakequant.gguf import write as gguf_write
    from fakequant.quant.candidate import Recipe, build_candidate
    from fakequant.quant.select import Selection

    source, dest, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    real_copy = gguf_write.copy_range

    def copy_then_hang(src, dst, count, src_off, dst_off):
        real_copy(src, dst, min(count, 1 << 20), src_off, dst_off)
        dst.flush()
        marker.write_text("writing")
        time.sleep(600)

    gguf_write.copy_range = copy_then_hang
    build_candidate(Path(source), Recipe(Selection(names=("blk.0.ffn_norm.weight",)), "bf16"),
                    Path(dest) if dest != "-" else None)
""")

ATOMIC_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fakequant.store.cache import atomic_output

    dest, marker = Path(sys.argv[1]), Path(sys.argv[2])
    with atomic_output(dest) as fh:
        fh.write(b"x" * (1 << 20))
        fh.flush()
        marker.write_text("writing")
        time.sleep(600)
""")


def run_and_kill(code: str, args: list[str], marker: Path, env: dict[str, str] | None = None) -> None:
    """Start ``code``, wait until it says it is mid-write, then SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"child exited ({proc.returncode}) before writing: {proc.stderr.read()}")
            assert time.monotonic() < deadline, "child never started writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def large_source(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    path = write_synthetic_gguf(tmp_path / "src" / "synthetic.gguf", 24 << 20, dim=512)
    path.chmod(0o444)
    return path


def test_kill_9_mid_engine_write_to_a_destination(large_source: Path, home: Path, tmp_path: Path) -> None:
    before = sha256_file(large_source)
    dest = tmp_path / "out" / "candidate.gguf"
    dest.parent.mkdir()
    marker = tmp_path / "marker"
    run_and_kill(ENGINE_CHILD, [str(large_source), str(dest), str(marker)], marker,
                 env={**os.environ, "FAKEQUANT_HOME": str(home)})
    assert not dest.exists()
    left = temporaries(dest.parent)
    assert left, "the kill did not land mid-write (no temporary file left behind)"
    assert sha256_file(large_source) == before

    result = build_candidate(large_source, RECIPE, dest)  # the next run recovers on its own
    assert result.output == dest
    assert_sound_candidate(large_source, dest)
    assert sha256_file(large_source) == before


def test_kill_9_mid_engine_write_to_the_cache(large_source: Path, home: Path, tmp_path: Path) -> None:
    before = sha256_file(large_source)
    marker = tmp_path / "marker"
    run_and_kill(ENGINE_CHILD, [str(large_source), "-", str(marker)], marker,
                 env={**os.environ, "FAKEQUANT_HOME": str(home)})
    candidates = home / "candidates"
    assert [p.name for p in candidates.iterdir() if p.suffix in (".gguf", ".json")] == []  # no corrupt entry
    assert temporaries(candidates), "the kill did not land mid-write"

    result = build_candidate(large_source, RECIPE)  # the lock died with the process; its leftovers are removed
    assert not result.reused
    assert_sound_candidate(large_source, result.output)
    assert temporaries(candidates) == []
    again = build_candidate(large_source, RECIPE)
    assert again.reused and again.output == result.output
    assert sha256_file(large_source) == before


def test_kill_9_mid_atomic_output_keeps_the_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "entry.bin"
    dest.write_bytes(b"old and whole")
    marker = tmp_path / "marker"
    run_and_kill(ATOMIC_CHILD, [str(dest), str(marker)], marker)
    assert dest.read_bytes() == b"old and whole"
    assert len(temporaries(tmp_path)) == 1  # the killed writer's temporary, never read as the entry
    assert remove_stale_temporaries(tmp_path) == 1
    with atomic_output(dest) as fh:
        fh.write(b"new")
    assert dest.read_bytes() == b"new"
    assert temporaries(tmp_path) == []


def test_kill_9_mid_atomic_output_without_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "fresh.bin"
    marker = tmp_path / "marker"
    run_and_kill(ATOMIC_CHILD, [str(dest), str(marker)], marker)
    assert not dest.exists()
    with atomic_output(dest) as fh:
        fh.write(b"recovered")
    assert dest.read_bytes() == b"recovered"


# --- two builders at once --------------------------------------------------------------------------------------------
def _build_in_child(source: str, home: str, barrier: multiprocessing.synchronize.Barrier,
                    results: multiprocessing.Queue) -> None:
    os.environ["FAKEQUANT_HOME"] = home
    barrier.wait(60)
    result = build_candidate(Path(source), RECIPE)
    results.put((str(result.output), result.reused, sha256_file(result.output)))


def test_two_processes_build_the_same_candidate_once(source: Path, home: Path) -> None:
    before = sha256_file(source)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(str(source), str(home), barrier, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    (path_a, reused_a, sha_a), (path_b, reused_b, sha_b) = outcomes
    assert path_a == path_b and sha_a == sha_b
    assert sorted([reused_a, reused_b]) == [False, True], "built twice, or never"
    assert_sound_candidate(source, Path(path_a))
    assert sorted(p.name for p in (home / "candidates").iterdir() if not p.name.endswith(".lock")) == [
        Path(path_a).name, Path(path_a).with_suffix(".json").name]
    assert sha256_file(source) == before
