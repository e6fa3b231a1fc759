"""Numbers → short strings with units. Every function returns None when the value is absent or not a number, so
that the caller writes "not measured" in the report's language."""

from __future__ import annotations

import math
from typing import Any

from fakequant.suite import rules


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def sig(value: Any, digits: int = 4) -> str | None:
    """Significant digits, plain notation for ordinary magnitudes."""
    x = number(value)
    if x is None:
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-4 <= abs(x) < 1e6:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
        return f"{x:.{decimals}f}"
    return f"{x:.{digits - 1}e}"


def fixed(value: Any, decimals: int = 4, signed: bool = False) -> str | None:
    x = number(value)
    return None if x is None else f"{x:{'+' if signed else ''}.{decimals}f}"


def pm(value: Any, se: Any, decimals: int = 4, signed: bool = False) -> str | None:
    """``6.7040 ± 0.1234`` (the ± is one standard error, as llama.cpp prints it)."""
    x, s = fixed(value, decimals, signed), fixed(se, decimals)
    if x is None:
        return None
    return x if s is None else f"{x} ± {s}"


def pct(value: Any, decimals: int = 2, signed: bool = True) -> str | None:
    """A fraction as a percentage: 0.0123 → ``+1.23%``."""
    x = number(value)
    if x is None:
        return None
    return f"{x * 100:{'+' if signed else ''}.{decimals}f}%"


def integer(value: Any) -> str | None:
    x = number(value)
    return None if x is None or math.isinf(x) else f"{round(x):,}"


def seconds(value: Any) -> str | None:
    """Durations: ``503 ms`` below 10 s, ``12.3 s`` above."""
    x = number(value)
    if x is None:
        return None
    return f"{x * 1000:.0f} ms" if abs(x) < 10 else f"{x:.1f} s"


def rate(value: Any) -> str | None:
    x = number(value)
    return None if x is None else f"{x:.1f} tok/s"


def same_scale(values: list[Any], digits: int = 2) -> list[str] | None:
    """Several numbers of one kind (a mean and its interval) with the same decimals, ``digits`` significant in the
    largest; scientific below 1e-4. None when any is absent."""
    xs = [number(v) for v in values]
    if any(x is None or math.isinf(x) for x in xs):
        return None
    top = max(abs(x) for x in xs if x is not None)
    if top == 0:
        return ["0"] * len(xs)
    if top < 1e-4:
        return [f"{x:.{digits - 1}e}" for x in xs]
    decimals = max(0, digits - 1 - math.floor(math.log10(top)))
    return [f"{x:.{decimals}f}" for x in xs]


def increase_interval(block: dict[str, Any]) -> tuple[float, float | None, float | None] | None:
    """The perplexity increase exp(Δ ln PPL) − 1 of a comparison block and the 95% interval the decision uses
    (:func:`fakequant.suite.rules.ln_ppl_interval`: over chunks, t quantile); no interval (None, None) from one
    chunk; None without a Δ ln PPL."""
    if number(block.get("ln_ppl_ratio")) is None:
        return None
    try:
        iv = rules.ln_ppl_interval(block)
    except (KeyError, TypeError, ValueError):  # no chunk count: the per-token interval llama.cpp prints
        r, s = float(block["ln_ppl_ratio"]), number(block.get("ln_ppl_ratio_se"))
        return rules.increase_interval(r, s) if s is not None else (math.expm1(r), None, None)
    if iv.low is None or iv.high is None:
        return math.expm1(iv.mean), None, None
    return math.expm1(iv.mean), math.expm1(iv.low), math.expm1(iv.high)

