"""Reading a text file the user named (criteria.toml, a report.json): every way it can be unreadable is one line
naming the file, raised as the caller's error type."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def parse_user_file(path: Path, error: type[FakequantError], *, missing: str, expected: str,
                    parse: Callable[[str], Any], invalid: type[Exception], explain: Callable[[Any], str]) -> Any:
    """The file read by :func:`read_user_text` and parsed; a syntax error is one line, ``explain``'s account of it."""
    text = read_user_text(path, error, missing=missing, expected=expected)
    try:
        return parse(text)
    except invalid as err:
        raise error(f"{path}: {explain(err)}") from None
