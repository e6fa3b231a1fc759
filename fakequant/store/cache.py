"""Where artifacts live, and how they are written so that no reader ever sees half a file.

Everything fakequant fetches or computes lives under one folder, ``$FAKEQUANT_HOME`` (default
``~/.cache/fakequant``), so that a fresh clone of the project, CI included, reuses what an earlier run built:

    models/      the default model, fetched and sha256-checked
    corpora/     the default perplexity corpus
    tools/       llama.cpp reference binaries built from the same source as llama-cpp-python
    candidates/  fake-quantized models, content-addressed by recipe and source hash
    baselines/   the original model's results, keyed by model, corpus, settings and llama.cpp build
    cells/       sweep cells' decisions
    sha256/      files' sha256 by path, size, mtime, inode and device (:func:`file_sha256`)
    checked/     empty markers of models found sound, by file identity (:mod:`fakequant.gguf.checked`)

Writers use :func:`atomic_path` (temporary file in the destination folder, fsync, rename; :func:`atomic_output`
is the same with the file opened) and :func:`locked` (a file lock beside the artifact) so that concurrent workers
build a thing once and nobody reads it half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    root = Path(os.environ.get("FAKEQUANT_HOME") or Path.home() / ".cache" / "fakequant")
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(kind: str) -> Path:
    path = cache_root() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of the file's bytes as they are now (no memo: for checks that must see a change)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(obj: Any) -> str:
    """A short hash of a JSON-able value, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``dest``'s content to; on success it appears at ``dest`` at once, on failure
    nothing does.

    The temporary file sits in the destination folder (same filesystem, so the rename is atomic) and is named
    ``.<name>.tmp-*``, which no reader ever looks for. A crash (even ``kill -9``) leaves at most such a
    temporary file, which :func:`remove_stale_temporaries` clears.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temporary(dest)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_output(dest: Path, mode: str = "wb") -> Iterator[Any]:
    """:func:`atomic_path` with the temporary file opened in ``mode``."""
    with atomic_path(dest) as tmp, open(tmp, mode) as fh:
        yield fh


def _make_temporary(dest: Path) -> Path:
    """An empty file beside ``dest`` with the permissions a plain ``open()`` would give (mkstemp's are 0600)."""
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete ``.*.tmp-*`` files left by a killed writer; return how many. Only call under the folder's lock."""
    removed = 0
    for leftover in Path(folder).glob(".*.tmp-*"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed


@contextlib.contextmanager
def locked(path: Path, timeout: float = 3600) -> Iterator[None]:
    """Hold an exclusive lock named after ``path`` (``path`` + ``.lock``) across processes."""
    from filelock import FileLock  # here: the scoring commands, which take no lock, do not pay its import

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=timeout):
        yield


def strict_json(data: Any) -> Any:
    """``data`` with every NaN/±inf float replaced by None: JSON has no such numbers, and strict parsers (jq,
    browsers) reject Python's ``NaN``/``Infinity``. Where it matters, a neighbouring key says why (e.g. ``noop``)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [strict_json(value) for value in data]
    return data


def dumps(data: Any, **kwargs: Any) -> str:
    """Strict JSON text (see :func:`strict_json`); keyword arguments as for :func:`json.dumps`."""
    return json.dumps(strict_json(data), allow_nan=False, default=str, **kwargs)


def write_json(dest: Path, data: Any) -> None:
    with atomic_output(dest, "w") as fh:
        fh.write(dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
        fh.write("\n")


def cached_json(dest: Path, compute: Callable[[], Any]) -> Any:
    """Return the JSON stored at ``dest``, computing and storing it first if absent (once across processes)."""
    dest = Path(dest)
    with locked(dest):
        if dest.exists():
            try:
                return json.loads(dest.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                dest.unlink()  # a corrupt entry cannot come from atomic writes, but never trust it
        value = compute()
        write_json(dest, value)
        return value


# (resolved path, size, mtime_ns, inode, device) -> sha256: any rewrite or replacement of the file is a new key
_SHA256: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its path, size, mtime, inode and device stay the same: in this process
    and, under ``sha256/``, across processes. A run asks for the model's hash for every candidate, baseline and
    sweep cell, and every ``fakequant quantize`` for its source's; hashing a big model takes seconds."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    if key not in _SHA256:
        entry = cached_json(cache_dir("sha256") / f"{stable_hash(list(key))}.json",
                            lambda: {"path": str(path), "size": st.st_size, "sha256": sha256_file(path)})
        _SHA256[key] = str(entry["sha256"])
    return _SHA256[key]


def fsync_early(path: Path) -> None:
    """Flush ``path`` to disk while other work goes on (fsync releases the GIL). Early flush only: errors are left
    to atomic_path's own fsync, which reports them."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
