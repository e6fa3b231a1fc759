"""Reading a text file the user named (criteria.toml, a report.json): every way it can be unreadable is one line
naming the file, raised as the caller's error type."""

from __future__ import annotations

from pathlib import Path

from fakequant.errors import FakequantError


def read_user_text(path: Path, error: type[FakequantError], *, missing: str, expected: str) -> str:
    """The file's UTF-8 text. ``missing`` completes "<path>: " when it does not exist; ``expected`` names what a
    directory was mistaken for."""
    if not path.exists():
        raise error(f"{path}: {missing}")
    if path.is_dir():
        raise error(f"{path}: is a directory, expected {expected}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror})") from None
