"""[recipes.<name>]: a mixed-precision recipe under a size budget.

Which tensors may change (``tensors`` / ``layers`` / ``kinds``, as in experiments), how they form groups that each
get one format (``group``: ``"cell"`` = one (layer, kind), the default; ``"kind"`` = one kind across the selected
layers; ``"layer"``), the ggml formats a group may take (``formats``; keeping the source type is always allowed),
exactly one budget (``budget_mib``: the file size; ``budget_bpw``: average bits per weight over the weight
matrices), and the corpus, chunks, settings, thresholds and prompts of the measurement, as experiments have them
(``chunks``: the suite's perplexity check of the chosen model).

The text the recipe reads comes in three slices (:mod:`fakequant.recipe.slices`): ``calibration_chunks`` for the
importance matrix (``imatrix = true``, the default; ``false`` quantizes without one and has no calibration slice),
``selection_chunks`` on which the cells are measured and the assignment chosen, ``evaluation_chunks`` on which every
model of the final table is scored, after the other two or from the start of ``evaluation_corpus`` when given.
``max_tries``: how many assignments go through the suite, the next best after each STOP or INCONCLUSIVE.

Only what needs no model is checked here; whether the selection matches tensors and which formats their rows allow
is checked against the model when the recipe is planned (:mod:`fakequant.recipe.groups`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fakequant.errors import RecipeError
from fakequant.quant.select import Selection
from fakequant.suite.criteria import read
from fakequant.suite.criteria.context import Context
from fakequant.suite.criteria.types import GROUPINGS, MixRecipe, Prompt

RECIPE_KEYS = ("description", "tensors", "layers", "kinds", "formats", "group", "budget_mib", "budget_bpw",
               "thresholds", "settings", "chunks", "prompts", "model", "corpus", "imatrix", "calibration_chunks",
               "selection_chunks", "evaluation_chunks", "evaluation_corpus", "max_tries")
SLICE_KEYS = ("calibration_chunks", "selection_chunks", "evaluation_chunks")
BUDGETS = ("budget_mib", "budget_bpw")
MAX_BPW = 32.0  # F32: no ggml type stores a weight in more bits


def parse_recipe(name: str, table: Mapping[str, Any], key: str, ctx: Context, defaults: read.Defaults,
                 prompts: Mapping[str, Prompt]) -> MixRecipe:
    ctx.known(table, RECIPE_KEYS, key)
    selection = Selection(**read.selection(table, key, ctx))
    if "formats" not in table:
        raise ctx.error(f"{key}.formats", "missing: the ggml formats the tensors may take, e.g. [\"q4_0\", \"q8_0\"]")
    formats = _formats(table["formats"], ctx, f"{key}.formats")
    group = ctx.typed(table.get("group", "cell"), "str", f"{key}.group")
    if group not in GROUPINGS:
        raise ctx.error(f"{key}.group", f"must be one of {', '.join(GROUPINGS)}, got {group!r}")
    budget = _budget(table, key, ctx)
    return MixRecipe(name=name, selection=selection, formats=formats, group=group,
                     budget_mib=budget.get("budget_mib"), budget_bpw=budget.get("budget_bpw"), source=key,
                     **read.common(table, key, ctx, defaults, prompts), **_text(table, key, ctx))


def _text(table: Mapping[str, Any], key: str, ctx: Context) -> dict[str, Any]:
    """The importance matrix switch, the slices' chunk counts, the evaluation corpus and the number of tries."""
    out: dict[str, Any] = {}
    if "imatrix" in table:
        out["imatrix"] = ctx.typed(table["imatrix"], "bool", f"{key}.imatrix")
    for name in (*SLICE_KEYS, "max_tries"):
        if name in table:
            value = ctx.typed(table[name], "int", f"{key}.{name}")
            # a slice of one chunk has no interval over chunks; the calibration of an importance matrix may be one
            least = 2 if name in ("selection_chunks", "evaluation_chunks") else 1
            if value < least:
                what = "tries through the suite" if name == "max_tries" else "chunks of n_ctx tokens"
                raise ctx.error(f"{key}.{name}", f"must be >= {least} ({what}), got {value}")
            out[name] = value
    if "evaluation_corpus" in table:
        out["evaluation_corpus"] = read.asset(table["evaluation_corpus"], "corpus", ctx, f"{key}.evaluation_corpus",
                                              ctx.path.resolve().parent)
    if out.get("imatrix") is False and "calibration_chunks" in table:
        raise ctx.error(f"{key}.calibration_chunks", "is the importance matrix's slice, and imatrix = false")
    return out


def _formats(value: Any, ctx: Context, key: str) -> tuple[str, ...]:
    # imported here: reading criteria must not need the engine's numpy work
    from fakequant.quant.formats import check_format
    from fakequant.quant.storage import NATIVE_TYPES

    items = ctx.typed(value, "list[str]", key)
    if not items:
        raise ctx.error(key, "is empty: list the ggml formats the tensors may take, e.g. [\"q4_0\", \"q8_0\"]")
    for item in items:
        try:
            fmt = check_format(item)
        except RecipeError as err:
            raise ctx.error(key, str(err)) from None
        if fmt != item:
            raise ctx.error(key, f"format {item!r}: write it as {fmt!r}")
        if fmt not in NATIVE_TYPES:
            raise ctx.error(key, f"format {fmt!r} has no ggml type; a recipe stores every tensor in a real one: "
                                 f"{', '.join(NATIVE_TYPES)}")
    repeated = sorted({f for f in items if items.count(f) > 1})
    if repeated:
        raise ctx.error(key, f"format {repeated[0]!r} is listed twice")
    return tuple(items)


def _budget(table: Mapping[str, Any], key: str, ctx: Context) -> dict[str, float]:
    given = [b for b in BUDGETS if b in table]
    if len(given) != 1:
        why = "both are given" if given else "none is given"
        raise ctx.error(key, f"give exactly one budget, budget_mib (file size in MiB) or budget_bpw (average bits "
                             f"per weight over the weight matrices); {why}")
    where = f"{key}.{given[0]}"
    value = ctx.typed(table[given[0]], "float", where)
    if value <= 0:
        raise ctx.error(where, f"must be > 0, got {value:g}")
    if given[0] == "budget_bpw" and value > MAX_BPW:
        raise ctx.error(where, f"{value:g} bits per weight is more than F32's {MAX_BPW:g}; is it a size in MiB "
                               "(budget_mib)?")
    return {given[0]: value}
