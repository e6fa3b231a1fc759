"""The parsed TOML of criteria.toml → :class:`Criteria`: the top-level tables, [defaults] and each experiment.

No fetching or hashing: a model or corpus path is only checked to exist, and "default" names the pinned asset's place
in the cache (``load_criteria`` fetches it if it is missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fakequant.errors import CriteriaError, FakequantError
from fakequant.suite.criteria import read
from fakequant.suite.criteria.context import Context
from fakequant.suite.criteria.names import check_ambiguity, check_name
from fakequant.suite.criteria.prompts import parse_prompts
from fakequant.suite.criteria.recipes import parse_recipe
from fakequant.suite.criteria.sweeps import expand_sweep
from fakequant.suite.criteria.types import Criteria, Experiment, MixRecipe, Prompt
from fakequant.suite.vocab import CATEGORIES, LANGS

_TOP_KEYS = ("defaults", "prompts", "experiments", "sweeps", "recipes", "report")
_DEFAULT_KEYS = ("model", "corpus", "chunks", "epsilon", "checks", "prompts", "settings", "thresholds")
_EXPERIMENT_KEYS = ("description", "tensors", "layers", "kinds", "format", "group_size", "store", "epsilon",
                    "thresholds", "settings", "chunks", "prompts", "checks", "expect", "model", "corpus")
_REPORT_KEYS = ("dir", "lang")


def parse_criteria(data: Mapping[str, Any], path: Path, *, model: str | Path | None = None,
                   corpus: str | Path | None = None, threads: int | None = None,
                   report_dir: str | Path | None = None, report_lang: str | None = None,
                   strict: bool = False) -> Criteria:
    ctx = Context(path)
    ctx.known(data, _TOP_KEYS, "")
    base = ctx.path.resolve().parent
    report = ctx.table(data.get("report", {}), "report")
    ctx.known(report, _REPORT_KEYS, "report")
    lang = report_lang or ctx.typed(report.get("lang", "en"), "str", "report.lang")
    if lang not in LANGS:
        raise ctx.error("report.lang" if report_lang is None else "--report-lang",
                        f"must be one of {', '.join(LANGS)}, got {lang!r}")
    rdir = Path(report_dir) if report_dir is not None else read.path(ctx.typed(report.get("dir", "reports"), "str",
                                                                               "report.dir"), base)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise CriteriaError(f"--threads: must be a positive integer, got {threads!r}")

    prompts = parse_prompts(ctx.table(data.get("prompts", {}), "prompts"), ctx)
    defaults = _parse_defaults(ctx.table(data.get("defaults", {}), "defaults"), ctx, base, prompts,
                               model=model, corpus=corpus, threads=threads)

    experiments: dict[str, Experiment] = {}
    errors: dict[str, CriteriaError] = {}
    sweeps: dict[str, tuple[str, ...]] = {}
    seen: list[tuple[str, str]] = []  # (name, key) in file order, for the -k ambiguity check

    for name, table in ctx.table(data.get("experiments", {}), "experiments").items():
        key = f"experiments.{name}"
        check_name(name, key, ctx)
        seen.append((name, key))
        try:
            experiments[name] = _parse_experiment(name, ctx.table(table, key), key, ctx, defaults, prompts)
        except FakequantError as err:
            errors[name] = err if isinstance(err, CriteriaError) else ctx.error(key, str(err))

    for sname, table in ctx.table(data.get("sweeps", {}), "sweeps").items():
        key = f"sweeps.{sname}"
        check_name(sname, key, ctx)
        try:
            cells = expand_sweep(sname, ctx.table(table, key), key, ctx, defaults, prompts)
        except FakequantError as err:
            # the whole sweep is one entry: its cells cannot be named without a valid definition
            cname = f"sweep_{sname}"
            seen.append((cname, key))
            errors[cname] = err if isinstance(err, CriteriaError) else ctx.error(key, str(err))
            continue
        sweeps[sname] = tuple(cells)
        for cname, cell in cells.items():
            seen.append((cname, key))
            if isinstance(cell, Experiment):
                experiments[cname] = cell
            else:
                errors[cname] = cell

    # recipes are not pytest tests (no -k ambiguity), but their names name report folders
    recipes: dict[str, MixRecipe] = {}
    recipe_errors: dict[str, CriteriaError] = {}
    for rname, table in ctx.table(data.get("recipes", {}), "recipes").items():
        key = f"recipes.{rname}"
        check_name(rname, key, ctx)
        try:
            recipes[rname] = parse_recipe(rname, ctx.table(table, key), key, ctx, defaults, prompts)
        except FakequantError as err:
            recipe_errors[rname] = err if isinstance(err, CriteriaError) else ctx.error(key, str(err))

    check_ambiguity(seen, ctx)
    if strict and (errors or recipe_errors):
        raise next(iter({**errors, **recipe_errors}.values()))
    return Criteria(path=ctx.path, experiments=experiments, errors=errors, sweeps=sweeps, report_dir=rdir,
                    report_lang=lang, recipes=recipes, recipe_errors=recipe_errors)


def _parse_defaults(table: Mapping[str, Any], ctx: Context, base: Path, prompts: Mapping[str, Prompt], *,
                    model: str | Path | None, corpus: str | Path | None, threads: int | None) -> read.Defaults:
    ctx.known(table, _DEFAULT_KEYS, "defaults")
    settings = dict(ctx.table(table.get("settings", {}), "defaults.settings"))
    thresholds = dict(ctx.table(table.get("thresholds", {}), "defaults.thresholds"))
    # validate the defaults now: a bad default would break every experiment, so the suite refuses to start
    read.settings(settings, {}, ctx, "defaults.settings", threads)
    read.thresholds(thresholds, {}, ctx, "defaults.thresholds")
    checks = read.checks(table.get("checks", list(CATEGORIES)), ctx, "defaults.checks")
    pids = read.prompt_ids(table.get("prompts", list(prompts)), prompts, ctx, "defaults.prompts")
    m = read.asset(model if model is not None else table.get("model", "default"), "model", ctx,
                   "--model" if model is not None else "defaults.model", base if model is None else Path.cwd())
    c = read.asset(corpus if corpus is not None else table.get("corpus", "default"), "corpus", ctx,
                   "--corpus" if corpus is not None else "defaults.corpus", base if corpus is None else Path.cwd())
    return read.Defaults(model=m, corpus=c, chunks=read.chunks(table.get("chunks", 10), ctx, "defaults.chunks"),
                         epsilon=read.epsilon(table.get("epsilon", 1e-8), ctx, "defaults.epsilon"), checks=checks,
                         prompts=pids, settings=settings, thresholds=thresholds, model_overridden=model is not None,
                         corpus_overridden=corpus is not None, threads=threads)


def _parse_experiment(name: str, table: Mapping[str, Any], key: str, ctx: Context, defaults: read.Defaults,
                      prompts: Mapping[str, Prompt]) -> Experiment:
    ctx.known(table, _EXPERIMENT_KEYS, key)
    if "format" not in table:
        raise ctx.error(f"{key}.format", "missing: which format to round the tensors through (e.g. \"bf16\")")
    fmt = ctx.typed(table["format"], "str", f"{key}.format")
    selection = read.selection(table, key, ctx)
    checks = read.checks(table["checks"], ctx, f"{key}.checks") if "checks" in table else defaults.checks
    common = read.common(table, key, ctx, defaults, prompts)
    expect = read.expect(table["expect"], checks, common["prompts"], ctx, f"{key}.expect") if "expect" in table \
        else ()
    recipe = read.recipe(selection, fmt, **read.format_options(table, key, ctx, defaults), ctx=ctx, key=key)
    return Experiment(name=name, recipe=recipe, checks=checks, expect=expect, source=key, markers=(name,), **common)
