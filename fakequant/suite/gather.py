"""Bring the sweep cells that other hosts measured into one report directory, so that the map is assembled from them.

A host that ran part of a sweep (``pytest --tx ...`` workers, a CI job per cell) leaves each cell's report under its
own report directory: ``<dir>/<cell>/`` with the recorded outcomes in ``.data/``. :func:`gather_cells` copies, for
every cell, the first complete record matching the cell's definition (the rule ``fakequant sweep`` uses to adopt a
recorded cell: same recipe, settings, chunks, thresholds and checks, on a model and corpus of the same sha256 and the
same llama-cpp-python) into the local report directory. A source is either

- a local directory (a copied artifact, a shared filesystem), or
- ``SPEC::DIR``: an execnet gateway spec and a report directory on that host, e.g.
  ``ssh=alice@gpu-a//python=/srv/fakequant/.venv/bin/python::/srv/fakequant/reports`` (DIR relative to the remote
  working directory: the ssh login's home, or the spec's ``chdir``). The files come back over the gateway; execnet
  (which pytest-xdist brings) needs nothing installed on the host but Python.

Nothing is measured here; a record that does not match is left where it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from fakequant.errors import CriteriaError
from fakequant.suite.criteria import Experiment

REMOTE_SEPARATOR = "::"

# runs on the host, inside execnet: sends (relative path, bytes) for every regular file of the named cells' folders
_REMOTE_READER = """
import os
root, names = channel.receive()
for name in names:
    top = os.path.join(root, name)
    if not os.path.isdir(top) or os.path.islink(top):
        continue
    for folder, subfolders, files in os.walk(top):
        for file in files:
            path = os.path.join(folder, file)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    channel.send((os.path.relpath(path, root), fh.read()))
channel.send(None)
"""


def is_remote(source: str) -> bool:
    return REMOTE_SEPARATOR in source


@contextlib.contextmanager
def _fetched(source: str, names: Sequence[str]) -> Iterator[Path]:
    """A local directory holding ``source``'s folders of ``names`` (fetched over execnet for a remote source)."""
    if not is_remote(source):
        folder = Path(source)
        if not folder.is_dir():
            raise CriteriaError(f"--gather {source}: not a directory")
        yield folder
        return
    import execnet

    spec, _, remote_dir = source.rpartition(REMOTE_SEPARATOR)
    if not spec or not remote_dir:
        raise CriteriaError(f"--gather {source}: expected SPEC{REMOTE_SEPARATOR}DIR, e.g. "
                            f"ssh=alice@gpu-a//python=/srv/fakequant/.venv/bin/python{REMOTE_SEPARATOR}reports")
    with tempfile.TemporaryDirectory(prefix="fakequant-gather-") as tmp:
        try:
            gateway = execnet.makegateway(spec)
        except Exception as err:  # execnet raises plain exceptions of many kinds for a host it cannot reach
            raise CriteriaError(f"--gather {source}: cannot open the gateway: {err}") from err
        try:
            channel = gateway.remote_exec(_REMOTE_READER)
            channel.send((remote_dir, list(names)))
            while (item := channel.receive()) is not None:
                rel, content = item
                parts = PurePosixPath(rel).parts
                if PurePosixPath(rel).is_absolute() or ".." in parts or not parts or parts[0] not in names:
                    raise CriteriaError(f"--gather {source}: the host sent an unexpected path {rel!r}")
                dest = Path(tmp, *parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(content)
        finally:
            gateway.exit()
        yield Path(tmp)


def _install(src: Path, dest: Path) -> None:
    """Replace the folder ``dest`` by a copy of ``src``; a reader sees the old folder or the new one, never half."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    old = staging.with_name(staging.name + "-old")
    try:
        shutil.copytree(src, staging / "cell", symlinks=False)
        if dest.exists():
            os.replace(dest, old)
        os.replace(staging / "cell", dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def gather_cells(report_dir: Path, sources: Sequence[str], cells: Sequence[Experiment],
                 recorded: Callable[[Path, Experiment], object | None],
                 log: Callable[[str], None] = print) -> dict[str, str]:
    """Copy each cell's first matching complete record from ``sources`` (in order) into ``report_dir``; return
    cell name -> the source it came from. ``recorded(dir, exp)`` says whether ``dir`` holds one for ``exp``.
    A cell already recorded in ``report_dir`` is kept."""
    report_dir = Path(report_dir)
    taken: dict[str, str] = {exp.name: str(report_dir) for exp in cells if recorded(report_dir, exp) is not None}
    for source in sources:
        wanted = [exp for exp in cells if exp.name not in taken]
        if not wanted:
            break
        with _fetched(source, [exp.name for exp in wanted]) as folder:
            found = 0
            for exp in wanted:
                if recorded(folder, exp) is None:
                    continue
                if (folder / exp.name).resolve() != (report_dir / exp.name).resolve():
                    _install(folder / exp.name, report_dir / exp.name)
                taken[exp.name] = source
                found += 1
        log(f"gather: {found} cell(s) from {source}")
    return taken
