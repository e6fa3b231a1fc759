"""[sweeps.<name>]: layers × kinds × formats, expanded into ordinary experiments, one per cell, named
``sweep_<name>_L05_ffn_norm_fp8_e4m3``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fakequant.errors import CriteriaError
from fakequant.quant.select import LayersError, parse_layers
from fakequant.suite.criteria import read
from fakequant.suite.criteria.context import Context
from fakequant.suite.criteria.names import NAME_RE
from fakequant.suite.criteria.types import Experiment, Prompt

SWEEP_CHECKS = ("must_pass", "numerical", "perplexity")  # a sweep cell costs about one perplexity pass
SWEEP_KEYS = ("description", "layers", "kinds", "formats", "group_size", "store", "epsilon", "thresholds",
              "settings", "chunks", "prompts", "checks", "model", "corpus")


def expand_sweep(sname: str, table: Mapping[str, Any], key: str, ctx: Context, defaults: read.Defaults,
                 prompts: Mapping[str, Prompt]) -> dict[str, Experiment | CriteriaError]:
    """Every cell of the sweep by name: its experiment, or why that one cell cannot run."""
    ctx.known(table, SWEEP_KEYS, key)
    for required in ("layers", "kinds", "formats"):
        if required not in table:
            raise ctx.error(f"{key}.{required}", "missing: a sweep is layers × kinds × formats")
    layers = expand_layers(read.layers(table["layers"], ctx, f"{key}.layers"), f"{ctx.path}: {key}.layers")
    kinds = ctx.typed(table["kinds"], "list[str]", f"{key}.kinds")
    formats = ctx.typed(table["formats"], "list[str]", f"{key}.formats")
    for what, items in (("kinds", kinds), ("formats", formats)):
        if not items:
            raise ctx.error(f"{key}.{what}", "is empty")
        for item in items:
            if not NAME_RE.fullmatch(item):
                raise ctx.error(f"{key}.{what}", f"{item!r} cannot be part of a test name")
    checks = read.checks(table["checks"], ctx, f"{key}.checks") if "checks" in table else SWEEP_CHECKS
    common = read.common(table, key, ctx, defaults, prompts)
    if "prompts" not in table:
        common["prompts"] = tuple(prompts[p] for p in defaults.prompts)
    options = read.format_options(table, key, ctx, defaults)
    width = max(2, len(str(max(layers))))
    cells: dict[str, Experiment | CriteriaError] = {}
    for layer in layers:
        for kind in kinds:
            for fmt in formats:
                cname = sweep_cell_name(sname, layer, kind, fmt, width)
                try:
                    recipe = read.recipe({"layers": str(layer), "kinds": (kind,)}, fmt, **options, ctx=ctx, key=key)
                    cells[cname] = Experiment(
                        name=cname, recipe=recipe, checks=checks, source=key, sweep=sname,
                        markers=(f"sweep_{sname}",), **{**common, "description": common["description"] or
                                                        f"sweep {sname}: blk.{layer}.{kind} → {fmt}"})
                except CriteriaError as err:
                    cells[cname] = err
    return cells


def sweep_cell_name(sweep: str, layer: int, kind: str, fmt: str, width: int = 2) -> str:
    return f"sweep_{sweep}_L{layer:0{width}d}_{kind}_{fmt}"


def expand_layers(spec: str, where: str = "layers") -> list[int]:
    """"0,5,10-12" → [0, 5, 10, 11, 12]. "all" needs the model, so sweeps must list their layers. ``where`` starts
    the message: the file and key."""
    try:
        layers = parse_layers(spec)
    except LayersError as err:
        if err.backwards is None:
            raise
        raise CriteriaError(f"{where}: range {err.backwards!r} runs backwards") from None
    if layers is None:
        raise CriteriaError(f"{where}: a sweep must list its layers (e.g. \"0-29\"); 'all' is for experiments")
    return layers
