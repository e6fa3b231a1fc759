"""Atomic writes, the cross-process JSON cache and the remembered sha256 of files."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from fakequant.store import cache
from fakequant.store.cache import (
    atomic_output,
    atomic_path,
    cached_json,
    file_sha256,
    remove_stale_temporaries,
    stable_hash,
)


def test_atomic_output_publishes_only_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_output(dest) as fh:
        fh.write(b"half")
        raise RuntimeError("writer died")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []

    with atomic_output(dest) as fh:
        fh.write(b"whole")
    assert dest.read_bytes() == b"whole"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's private 0600


def test_atomic_path_replaces_existing_file_whole(tmp_path: Path) -> None:
    dest = tmp_path / "model.gguf"
    dest.write_bytes(b"old")
    with pytest.raises(OSError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"new but")
        raise OSError(28, "No space left on device")
    assert dest.read_bytes() == b"old"
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".model.gguf.tmp-abc123").write_bytes(b"partial")
    (tmp_path / "model.gguf").write_bytes(b"finished")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def _compute_once(dest: str, counter: str) -> None:
    def compute() -> dict:
        with open(counter, "a") as fh:
            fh.write("x")
        return {"value": 42}

    assert cached_json(Path(dest), compute) == {"value": 42}


def test_cached_json_computes_once_across_processes(tmp_path: Path) -> None:
    dest, counter = tmp_path / "entry.json", tmp_path / "counter"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_compute_once, args=(str(dest), str(counter))) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert counter.read_text() == "x"
    assert json.loads(dest.read_text()) == {"value": 42}


def test_cached_json_recomputes_a_corrupt_entry(tmp_path: Path) -> None:
    dest = tmp_path / "entry.json"
    dest.write_text("{not json")
    assert cached_json(dest, lambda: [1, 2]) == [1, 2]
    assert json.loads(dest.read_text()) == [1, 2]


def test_file_sha256_is_remembered_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))
    path = tmp_path / "model.gguf"
    path.write_bytes(b"old content")
    assert file_sha256(path) == hashlib.sha256(b"old content").hexdigest()

    def no_hashing(_path: Path) -> str:
        raise AssertionError("hashed again")

    with monkeypatch.context() as patched:
        patched.setattr(cache, "sha256_file", no_hashing)
        assert file_sha256(path) == hashlib.sha256(b"old content").hexdigest()
        patched.setattr(cache, "_SHA256", {})  # a new process: the entry under sha256/ answers
        assert file_sha256(path) == hashlib.sha256(b"old content").hexdigest()

    path.write_bytes(b"new content")  # same size, new content and mtime
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))  # a coarse-mtime file system still sees a change
    assert file_sha256(path) == hashlib.sha256(b"new content").hexdigest()
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "no-such.gguf")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
