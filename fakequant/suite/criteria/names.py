"""Experiment names must work as ``pytest -k <name>``: selecting that experiment's tests and nothing else."""

from __future__ import annotations

import re

from fakequant.suite.criteria.context import Context
from fakequant.suite.vocab import TEST_FILES, TEST_ORDER

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words that appear in every acceptance test id or in tests/unit: an experiment whose name is a substring of one of
# them would make `pytest -k <name>` select tests of other experiments (or the project's own unit tests).
RESERVED_WORDS = ("tests", "acceptance", "unit", *TEST_FILES, *TEST_ORDER, "and", "or", "not")


def check_name(name: str, key: str, ctx: Context) -> None:
    if not NAME_RE.fullmatch(name):
        raise ctx.error(key, f"name {name!r} must be letters, digits and '_' (not starting with a digit), "
                             "so that `pytest -k`/`-m` can select it")


def check_ambiguity(seen: list[tuple[str, str]], ctx: Context) -> None:
    """``seen``: (name, key) of every experiment, sweep cell and invalid sweep, in file order."""
    names = [(n.lower(), n, k) for n, k in seen]
    for low, name, key in names:
        for word in RESERVED_WORDS:
            if low in word:
                raise ctx.error(key, f"name {name!r} is part of {word!r}, which every test id contains: "
                                     f"`pytest -k {name}` would select other tests; choose another name")
    ordered = sorted(names, key=lambda t: len(t[0]))
    for i, (low, name, key) in enumerate(ordered):
        for low2, name2, key2 in ordered[i + 1:]:
            if low in low2:
                raise ctx.error(key2 if low == low2 else key,
                                f"name {name!r} is contained in {name2!r} ({key2}) ignoring case: `pytest -k {name}` "
                                "would run both; rename one")
