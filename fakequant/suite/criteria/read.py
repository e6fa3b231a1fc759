"""Readers of the values that [defaults], experiments and sweeps share; each returns the typed value or raises a
one-line :class:`~fakequant.errors.CriteriaError` naming the file and the key."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakequant.errors import CriteriaError, FakequantError
from fakequant.quant.select import LAYERS_RE
from fakequant.runtime.settings import RuntimeSettings, out_of_bounds
from fakequant.store import assets
from fakequant.suite.criteria.context import Context, value_kind
from fakequant.suite.criteria.types import IDEAL_PAIRS, Prompt, Thresholds
from fakequant.suite.expectation import FAIL, nameable
from fakequant.suite.vocab import CATEGORIES, SPEED

_THRESHOLD_FIELDS = {f.name: f for f in dataclasses.fields(Thresholds)}


def path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def asset(value: Any, what: str, ctx: Context, key: str, base: Path) -> Path:
    """A model or corpus file. "default" is the pinned default's place in the cache, fetched or not: reading
    criteria neither fetches nor hashes it (``load_criteria`` fetches it when it is missing)."""
    if isinstance(value, Path):
        value = str(value)
    value = ctx.typed(value, "str", key) if key.startswith(("defaults", "experiments", "sweeps", "recipes")) else value
    if value == "default":
        return assets.cached_path(assets.DEFAULT_MODEL if what == "model" else assets.DEFAULT_CORPUS)
    p = path(value, base)
    if not p.exists():
        raise ctx.error(key, f"{what} file {str(p)!r} does not exist")
    if not p.is_file():
        raise ctx.error(key, f"{what} path {str(p)!r} is not a file")
    return p


def chunks(value: Any, ctx: Context, key: str) -> int:
    value = ctx.typed(value, "int", key)
    if value < 1:
        raise ctx.error(key, f"must be >= 1 (perplexity chunks of n_ctx tokens), got {value}")
    return value


def epsilon(value: Any, ctx: Context, key: str) -> float:
    value = ctx.typed(value, "float", key)
    if value <= 0:
        raise ctx.error(key, f"ε must be > 0 (it keeps |a-b|/(|a|+ε) finite where a = 0), got {value}")
    return value


def checks(value: Any, ctx: Context, key: str) -> tuple[str, ...]:
    value = ctx.typed(value, "list[str]", key)
    for item in value:
        if item not in CATEGORIES:
            close = difflib.get_close_matches(item, CATEGORIES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; choose from {', '.join(CATEGORIES)}"
            raise ctx.error(key, f"unknown check {item!r}{hint}")
    if "must_pass" not in value:
        raise ctx.error(key, "'must_pass' cannot be turned off: it is what makes a candidate usable at all")
    return tuple(c for c in CATEGORIES if c in value)


def expect(value: Any, checks: tuple[str, ...], prompts: tuple[Prompt, ...], ctx: Context, key: str) -> tuple[str, ...]:
    """A positive control's checks that must fail: a table of check ids or categories, each set to "fail", among the
    checks this experiment runs (see :mod:`fakequant.suite.expectation`)."""
    example = 'e.g. {perplexity = "fail"} or {"conversation[math_en]" = "fail"}'
    if not isinstance(value, Mapping):
        raise ctx.error(key, f"must be a table naming the checks that must fail, {example}; got {value_kind(value)} "
                             f"{value!r}")
    if not value:
        raise ctx.error(key, f"names no check; {example}")
    allowed = nameable(checks, [p.id for p in prompts])
    for name, verdict in value.items():
        where = f"{key}.{name}"
        if name == SPEED:
            raise ctx.error(where, "speed never fails (a slowdown only cautions), so it cannot be expected to")
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ctx.error(where, f"not a check this experiment runs; {hint}choose from {', '.join(allowed)}")
        if verdict != FAIL:
            raise ctx.error(where, f"must be \"{FAIL}\" (the check must fail), got {verdict!r}")
    return tuple(value)


def prompt_ids(value: Any, prompts: Mapping[str, Prompt], ctx: Context, key: str) -> tuple[str, ...]:
    value = ctx.typed(value, "list[str]", key)
    for pid in value:
        if pid not in prompts:
            close = difflib.get_close_matches(pid, list(prompts), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; defined: {', '.join(prompts) or 'none'}"
            raise ctx.error(key, f"no [prompts.{pid}] table{hint}")
    return tuple(value)


def settings(defaults: Mapping[str, Any], override: Any, ctx: Context, key: str,
             threads: int | None) -> RuntimeSettings:
    merged = {**defaults, **ctx.table(override, key)}
    if threads is not None:
        merged["n_threads"] = threads
    try:
        return RuntimeSettings.from_mapping(merged, source=f"{ctx.path}: {key}")
    except CriteriaError as err:
        raise ctx.sourced(err, key) from None


def thresholds(defaults: Mapping[str, Any], override: Any, ctx: Context, key: str) -> Thresholds:
    override = ctx.table(override, key)
    ctx.known(override, tuple(_THRESHOLD_FIELDS), key)
    values: dict[str, Any] = {}
    for name, value in {**defaults, **override}.items():
        where = f"{key}.{name}"
        if name not in _THRESHOLD_FIELDS:
            ctx.known({name: value}, tuple(_THRESHOLD_FIELDS), key)
        value = ctx.typed(value, "int" if _THRESHOLD_FIELDS[name].type == "int" else "float", where)
        problem = out_of_bounds(_THRESHOLD_FIELDS[name], value)
        if problem:
            raise ctx.error(where, problem)
        values[name] = value
    result = Thresholds(**values)
    for ideal, acceptable in IDEAL_PAIRS:
        if getattr(result, ideal) > getattr(result, acceptable):
            raise ctx.error(f"{key}.{ideal}", f"ideal bound {getattr(result, ideal):g} is looser than "
                                              f"{acceptable} = {getattr(result, acceptable):g}; the ideal bound must "
                                              "be the tighter one")
    return result


def layers(value: Any, ctx: Context, key: str) -> str:
    """A layer list as written (a number or an array of numbers also do), spaces removed; what it selects is read
    by quant.select.parse_layers when tensors are chosen."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        value = ",".join(str(v) for v in value)
    value = ctx.typed(value, "str", key)
    if not LAYERS_RE.fullmatch(value.replace(" ", "")):
        raise ctx.error(key, f"must look like \"0\", \"0-2\", \"0,5,10-12\" or \"all\", got {value!r}")
    return value.replace(" ", "")


def selection(table: Mapping[str, Any], key: str, ctx: Context) -> dict[str, Any]:
    """The ``tensors`` / ``layers`` / ``kinds`` of a table, as keyword arguments of quant.select.Selection; at least
    one must be given."""
    chosen: dict[str, Any] = {}
    if "tensors" in table:
        chosen["names"] = tuple(ctx.typed(table["tensors"], "list[str]", f"{key}.tensors"))
    if "layers" in table:
        chosen["layers"] = layers(table["layers"], ctx, f"{key}.layers")
    if "kinds" in table:
        chosen["kinds"] = tuple(ctx.typed(table["kinds"], "list[str]", f"{key}.kinds"))
    if not chosen:
        raise ctx.error(key, "selects no tensors: give 'tensors' (names or globs), 'layers' and/or 'kinds'")
    return chosen


def recipe(selection: dict[str, Any], fmt: str, group_size: int | None, store: str | None, epsilon: float,
           ctx: Context, key: str) -> Any:
    # imported here: reading criteria must not need the engine's numpy work
    from fakequant.quant.candidate import Recipe
    from fakequant.quant.select import Selection

    try:
        result = Recipe(selection=Selection(**selection), format=fmt, group_size=group_size, store=store,
                        epsilon=epsilon)
        result.validate()
    except FakequantError as err:
        raise ctx.error(key, str(err)) from None
    return result


@dataclass(frozen=True)
class Defaults:
    """[defaults], validated, with the command line's overrides applied."""

    model: Path
    corpus: Path
    chunks: int
    epsilon: float
    checks: tuple[str, ...]
    prompts: tuple[str, ...]
    settings: Mapping[str, Any]
    thresholds: Mapping[str, Any]
    model_overridden: bool
    corpus_overridden: bool
    threads: int | None


def common(table: Mapping[str, Any], key: str, ctx: Context, defaults: Defaults,
           prompts: Mapping[str, Prompt]) -> dict[str, Any]:
    """Keys experiments and sweeps share: overrides of the defaults."""
    base = ctx.path.resolve().parent
    model = defaults.model if defaults.model_overridden or "model" not in table else \
        asset(table["model"], "model", ctx, f"{key}.model", base)
    corpus = defaults.corpus if defaults.corpus_overridden or "corpus" not in table else \
        asset(table["corpus"], "corpus", ctx, f"{key}.corpus", base)
    pids = prompt_ids(table["prompts"], prompts, ctx, f"{key}.prompts") if "prompts" in table else defaults.prompts
    return dict(
        description=ctx.typed(table.get("description", ""), "str", f"{key}.description"),
        thresholds=thresholds(defaults.thresholds, table.get("thresholds", {}), ctx, f"{key}.thresholds"),
        settings=settings(defaults.settings, table.get("settings", {}), ctx, f"{key}.settings", defaults.threads),
        chunks=chunks(table["chunks"], ctx, f"{key}.chunks") if "chunks" in table else defaults.chunks,
        prompts=tuple(prompts[p] for p in pids),
        model=model, corpus=corpus,
    )


def format_options(table: Mapping[str, Any], key: str, ctx: Context, defaults: Defaults) -> dict[str, Any]:
    group = ctx.typed(table["group_size"], "int", f"{key}.group_size") if "group_size" in table else None
    if group is not None and group < 1:
        raise ctx.error(f"{key}.group_size", f"must be >= 1, got {group}")
    store = ctx.typed(table["store"], "str", f"{key}.store") if "store" in table else None
    eps = epsilon(table["epsilon"], ctx, f"{key}.epsilon") if "epsilon" in table else defaults.epsilon
    return dict(group_size=group, store=store, epsilon=eps)
