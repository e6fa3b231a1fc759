"""Where the parser is in criteria.toml, and the checks every value goes through, so that each message is one line
naming the file and the key: ``criteria.toml: experiments.layer5.format: ...``."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fakequant.errors import CriteriaError


class Context:
    def __init__(self, path: Path):
        self.path = path

    def error(self, key: str, message: str) -> CriteriaError:
        return CriteriaError(f"{self.path}: {key}: {message}")

    def sourced(self, err: CriteriaError, key: str) -> CriteriaError:
        """Settings' own checks say ``settings: n_ctx must be ...``; make sure the file and key are named."""
        msg = str(err)
        return err if msg.startswith(str(self.path)) else self.error(key, msg)

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a table, got {value_kind(value)}")
        return value

    def known(self, table: Mapping[str, Any], allowed: tuple[str, ...], key: str) -> None:
        for name in table:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
                raise self.error(f"{key}.{name}" if key else name, f"unknown key{hint}")

    def typed(self, value: Any, kind: str, key: str) -> Any:
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }[kind]
        if not ok:
            raise self.error(key, f"must be {_article(kind)}, got {value_kind(value)} {value!r}")
        if kind == "float":
            value = float(value)
            if not math.isfinite(value):
                raise self.error(key, f"must be a finite number, got {value!r}")
        return value


def value_kind(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _article(kind: str) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
            "list[str]": "an array of strings"}[kind]
