"""The conversation battery's section of an experiment's report: the test's counts, p-value and power, and every
prompt the candidate or a placebo twin broke, from the "conversation_battery" artifact."""

from __future__ import annotations

from typing import Any

from fakequant.report import fmt
from fakequant.report.blocks import Block, Cell, Heading, Para, Span, Table
from fakequant.report.reading import DocContext, code, d, lst, outcome_reason, status_cell
from fakequant.suite.vocab import Artifact


def _answer(turns: Any) -> str:
    return " | ".join(" ".join(str(t).split()) for t in lst(turns)) or "–"


def section(ctx: DocContext) -> list[Block]:
    data = ctx.a(Artifact.BATTERY)
    if not data:
        return []  # experiments without conversation checks, and reports written before the battery existed
    t = ctx.t
    test, entries = d(data.get("test")), [d(e) for e in lst(data.get("prompts"))]
    outcome = next((d(o) for o in lst(ctx.doc.get("outcomes")) if d(o).get("check") == "conversation[battery]"), {})
    seeds = ", ".join(str(s) for s in lst(data.get("seeds")))
    smallest = test.get("smallest_significant")
    rows: list[list[Cell]] = [
        [t("battery_prompts"), f"{len(entries)} ({test.get('prompts', '?')})"],
        [t("battery_cand"), str(test.get("candidate_breaks", "?"))],
        [t("battery_twins", seeds=seeds), ", ".join(str(x) for x in lst(test.get("placebo_breaks")))],
        [t("battery_p"), ctx.na(fmt.sig(test.get("p_value"), 3))],
        [t("battery_smallest"), str(smallest) if smallest is not None else t("battery_none")],
        [t("battery_template"), code(data.get("template") or "?")],
        [t("battery_status"), status_cell(ctx, outcome.get("status") or test.get("status"))],
    ]
    blocks: list[Block] = [Heading(2, t("battery_title")), Para([t("battery_rule", alpha=test.get("alpha", 0.05))]),
                           Table(["", ""], rows)]
    if outcome.get("reason"):
        blocks.append(Para([Span("conversation[battery]: ", "b"), outcome_reason(outcome, ctx.lang)]))
    broken = [e for e in entries if e.get("candidate_broke") or any(lst(e.get("placebos_broke")))]
    if broken:
        blocks.append(Heading(3, t("battery_broken")))
        blocks.append(Table(
            [t(f"battery_{k}") for k in ("id", "topic", "original", "candidate", "checks", "by_twins")],
            [[code(e.get("id", "?")), str(e.get("topic", "")), _answer(e.get("original")), _answer(e.get("candidate")),
              ", ".join(map(str, lst(e.get("candidate_broke")))) or "–",
              str(sum(bool(b) for b in lst(e.get("placebos_broke"))))] for e in broken]))
    failed = [str(e.get("id")) for e in entries if e.get("original_passes") is False]
    if failed:
        blocks.append(Para([t("battery_failed", n=len(failed), ids=", ".join(failed))]))
    return blocks
