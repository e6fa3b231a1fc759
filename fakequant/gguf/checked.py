"""Files already found sound: one empty marker per file identity under ``$FAKEQUANT_HOME/checked/``.

Loading a model walks its header first (:mod:`fakequant.gguf.check`); for a model scored again and again unchanged,
that walk and the gguf-py import under it are most of what a short ``fakequant ppl`` spends before llama.cpp loads
the file (benchmarks/README.md). A marker names the file by device, inode, size, modification and change time in
nanoseconds (the identity the sha256 cache trusts too), and the checker by its own source file's size and
modification time, so a changed model or an edited checker is walked again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from fakequant.store.cache import cache_dir

_CHECKER = Path(__file__).with_name("check.py")


def _identity(st: os.stat_result) -> str:
    return f"{st.st_dev:x}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}"


def _marker(path: Path) -> Path | None:
    try:
        return cache_dir("checked") / f"{_identity(os.stat(path))}.{_identity(os.stat(_CHECKER))}"
    except OSError:
        return None


def check_once(path: Path) -> None:
    """Raise :class:`~fakequant.errors.GGUFFormatError` naming ``path`` and the problem unless it is a sound GGUF
    (:func:`~fakequant.gguf.check.read_layout`); a file found sound before and unchanged since is not walked again."""
    marker = _marker(path)  # the identity before the walk: a file changed during it gets no marker of its own
    if marker is not None and marker.exists():
        return
    from fakequant.gguf.check import read_layout  # gguf-py, only when a walk is needed

    read_layout(path)
    if marker is not None:
        with contextlib.suppress(OSError):  # a read-only cache: walk again next time
            marker.touch()
