"""The perplexity section: the paired statistics, and the total effect split into its floor and the format's own part.

The total (candidate vs original) is what a user deploying the change gets, and the thresholds apply to it. The
floor is a placebo twin (the same tensors nudged by one ulp in their own encoding) scored in the same pass: what any
change of these tensors already does in this model and runtime. The excess is the candidate beyond the placebo,
paired per chunk: the format's own part. Every number is read from the perplexity_comparison artifact (computed by
:mod:`fakequant.runtime.chunkstats`); nothing here recomputes a statistic, it only converts ln ratios to percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fakequant.report import fmt, plots
from fakequant.report.blocks import Block, Cell, Heading, Para, Span, Table
from fakequant.report.reading import (
    DocContext,
    agreement,
    code,
    d,
    excess_kld,
    images,
    level_text,
    lst,
    perplexity_difference,
    perplexity_lines,
    placebo_pair,
    settings_text,
    with_ci,
)
from fakequant.suite.criteria import Thresholds
from fakequant.suite.rules import chunks_to_resolve
from fakequant.suite.vocab import PERPLEXITY, Artifact, Status


def section(ctx: DocContext) -> list[Block]:
    t, pc = ctx.t, ctx.a(Artifact.PERPLEXITY)
    blocks: list[Block] = [Heading(2, t("ppl_section"))]
    if not pc:
        return [*blocks, ctx.absent()]
    diff = perplexity_difference(ctx, pc)
    if diff:
        blocks.append(Para([Span(f"{t('difference')}: ", "b"), diff]))
    ppl_outcomes = [d(o) for o in lst(ctx.doc.get("outcomes")) if d(o).get("category") == PERPLEXITY]
    if any(o.get("status") == Status.INCONCLUSIVE for o in ppl_outcomes):
        acceptable = d(ctx.a(Artifact.EXPERIMENT).get("thresholds")).get("ppl_increase_acceptable")
        needed = chunks_to_resolve(pc, float(acceptable) if isinstance(acceptable, int | float)
                                   else Thresholds.ppl_increase_acceptable)  # as the verdict reads it
        if needed:
            blocks.append(Para([t("resolve_note", needed=needed, chunks=pc.get("chunks"))]))
    blocks += floor_and_excess(ctx, pc)
    rows: list[list[Cell]] = [[label, value] for label, value in perplexity_lines(pc, t("not_measured"))]
    blocks += [Heading(3, t("all_stats")), Table([t("statistic"), t("value")], rows, right={1}),
               Para([t("exact_note")])]
    settings = d(pc.get("settings"))
    if settings:
        blocks.append(Para([Span(f"{t('settings')}: ", "b"), settings_text(settings)]))
    blocks += images(ctx, [(plots.CHUNKS, "plot_chunks"), (plots.KLD, "plot_kld")])
    return blocks


# --- the floor and the excess --------------------------------------------------------------------------------------

def _signed(texts: list[str] | None) -> list[str] | None:
    return None if texts is None else [x if x.startswith("-") else f"+{x}" for x in texts]


def _kld_values(values: list[Any]) -> list[str] | None:
    return fmt.same_scale(values, 3)


def _ln_values(values: list[Any]) -> list[str] | None:
    texts = [fmt.fixed(v, 5, signed=True) for v in values]
    return None if None in texts else [str(x) for x in texts]


def _pct_values(ln_values: list[Any]) -> list[str] | None:
    """ln ratios as perplexity changes in percent, with the same decimals."""
    xs = [fmt.number(v) for v in ln_values]
    if any(x is None for x in xs):
        return None
    texts = _signed(fmt.same_scale([math.expm1(x) * 100 for x in xs if x is not None], 3))
    return None if texts is None else [f"{x}%" for x in texts]


def _kld_pm(block: dict[str, Any]) -> str | None:
    texts = _kld_values([block.get("kld_mean"), block.get("kld_se")])
    if texts is not None:
        return f"{texts[0]} ± {texts[1]}"
    alone = _kld_values([block.get("kld_mean")])
    return alone[0] if alone else None


def _ppl_change(t: Callable[..., str], block: dict[str, Any]) -> str | None:
    """Perplexity change with the 95% interval the decision uses (over chunks), as the summary table gives the
    total."""
    interval = fmt.increase_interval(block)
    if interval is None:
        return None
    inc, lo, hi = interval
    if lo is None or hi is None:
        alone = _signed(fmt.same_scale([inc * 100], 3)) or ["?"]
        return t("no_ci", mean=f"{alone[0]}%")
    texts = _signed(fmt.same_scale([x * 100 for x in (inc, lo, hi)], 3)) or ["?", "?", "?"]
    return t("ppl_increase", inc=f"{texts[0]}%", lo=f"{texts[1]}%", hi=f"{texts[2]}%")


def sentence(t: Callable[..., str], placebo: dict[str, Any], excess: dict[str, Any]) -> str:
    """The floor and the format's own effect in words."""
    ppl = (_pct_values([placebo.get("ln_ppl_ratio")]) or [t("not_measured")])[0]
    kld = (fmt.same_scale([placebo.get("kld_mean")], 2) or [t("not_measured")])[0]  # a size, not a measurement
    first = t("floor_sentence", ppl=ppl, kld=kld)
    own = excess_kld(t, excess) or t("not_measured")
    if excess.get("kld_mean_resolved") is True:
        more = (_pct_values([excess.get("ln_ppl_ratio")]) or [t("not_measured")])[0]
        second = t("excess_resolved", kld=own, ppl=more)
    else:
        second = t("excess_unresolved", kld=own, chunks=excess.get("chunks", "?"))
    return first + t("sentence_join") + second


def floor_table(ctx: DocContext, pc: dict[str, Any], placebo: dict[str, Any], excess: dict[str, Any]) -> Table:
    t, level = ctx.t, level_text(excess)
    own_kld = excess_kld(t, excess)
    if own_kld and excess.get("kld_mean_resolved") is not True:
        own_kld = t("unresolved_mark", value=own_kld)
    own_agree = fmt.pct(excess.get("same_top_p"), 2, signed=False)
    rows: list[list[Cell]] = [
        [t("mean_kld"), ctx.na(_kld_pm(pc)), ctx.na(_kld_pm(placebo)), ctx.na(own_kld)],
        [t("delta_ln"), *(ctx.na(fmt.pm(b.get("ln_ppl_ratio"), b.get("ln_ppl_ratio_se"), 5, signed=True))
                          for b in (pc, placebo)),
         ctx.na(with_ci(t, excess.get("ln_ppl_ratio"), excess.get("ln_ppl_ratio_ci"), level, _ln_values))],
        [t("ppl_change"), ctx.na(_ppl_change(t, pc)), ctx.na(_ppl_change(t, placebo)),
         ctx.na(with_ci(t, excess.get("ln_ppl_ratio"), excess.get("ln_ppl_ratio_ci"), level, _pct_values))],
        [t("top_agree"), ctx.na(agreement(pc)), ctx.na(agreement(placebo)),
         t("vs_placebo", value=own_agree) if own_agree else t("not_measured")],
    ]
    return Table(["", t("col_total"), t("col_floor"), t("col_excess")], rows, right={1, 2, 3})


def placebo_size(ctx: DocContext, pc: dict[str, Any]) -> list[Block]:
    """The nudge's own size, when the placebo's numerical analysis travels with the comparison: its mean relative
    change per tensor (measured on the stored encoding where the build says so: for block types, the scales)."""
    pn = d(pc.get("placebo_numerical"))
    tensors = [d(x) for x in lst(pn.get("tensors"))] or ([pn] if "mean_rel" in pn else [])
    rows: list[list[Cell]] = []
    for x in tensors:
        extra = d(x.get("extra"))
        rel = extra.get("nudge_rel_mean", x.get("mean_rel"))
        moved = (fmt.integer(extra.get("nudged")) if "nudged" in extra
                 else f"{fmt.integer(x.get('changed')) or '?'}/{fmt.integer(x.get('n')) or '?'}")
        rows.append([code(x.get("name", "?")), f"{x.get('source_type', '?')} → {x.get('stored_type', '?')}",
                     ctx.na(moved), ctx.na(fmt.sig(rel, 2))])
    if not rows:
        return []
    return [Para([Span(ctx.t("placebo_size"), "b")]),
            Table([ctx.t("tensor"), ctx.t("type"), ctx.t("placebo_moved"), ctx.t("placebo_rel")], rows,
                  right={2, 3})]


def floor_and_excess(ctx: DocContext, pc: dict[str, Any]) -> list[Block]:
    t = ctx.t
    blocks: list[Block] = [Heading(3, t("floor_section"))]
    pair = placebo_pair(pc)
    if pair is None:
        return [*blocks, Para([t("floor_not_measured")])]
    placebo, excess = pair
    blocks += [Para([sentence(t, placebo, excess)]), floor_table(ctx, pc, placebo, excess),
               Para([t("floor_which", chunks=excess.get("chunks", "?"), level=level_text(excess))])]
    return blocks + placebo_size(ctx, pc)
