"""The conversation battery's section of an experiment's report: the test's counts, p-value and power, and every
prompt the candidate or a placebo twin broke, from the "conversation_battery" artifact."""

from __future__ import annotations

from typing import Any

from fakequant.report import fmt
from fakequant.report.blocks import Block, Cell, Heading, Para, Span, Table
from fakequant.report.reading import DocContext, code, d, lst, status_cell
from fakequant.suite.vocab import Artifact

_TEXT = {
    "en": {"title": "Conversation battery", "prompts": "prompts (original passes)", "cand": "candidate breaks",
           "twins": "placebo twins' breaks (seeds {seeds})", "p": "p-value (within-prompt permutation test)",
           "smallest": "fewest breaks that would be significant", "none": "none: no power",
           "template": "chat template", "status": "status", "broken": "Broken answers", "id": "prompt",
           "topic": "topic", "original": "original", "candidate": "candidate", "checks": "candidate broke",
           "by_twins": "twins that broke it", "failed": "The original fails {n} prompts (not counted): {ids}",
           "rule": "A regression is a candidate that breaks significantly more of the original's passing answers "
                   "than its placebo twins (p < {alpha}) and more than any twin."},
    "zh-TW": {"title": "對話題組", "prompts": "題數（原模型通過）", "cand": "候選模型答壞",
              "twins": "安慰劑模型答壞（種子 {seeds}）", "p": "p 值（題內置換檢定）",
              "smallest": "達顯著所需最少答壞題數",
              "none": "無：檢定力不足", "template": "對話模板", "status": "狀態", "broken": "答壞的題目", "id": "題目",
              "topic": "類別", "original": "原模型", "candidate": "候選模型", "checks": "候選模型未通過",
              "by_twins": "也答壞的安慰劑", "failed": "原模型未通過 {n} 題（不計入）：{ids}",
              "rule": "候選模型答壞原模型通過之題目顯著多於安慰劑模型（p < {alpha}）且多於每一個安慰劑時，才算退化。"},
}


def _answer(turns: Any) -> str:
    return " | ".join(" ".join(str(t).split()) for t in lst(turns)) or "–"


def section(ctx: DocContext) -> list[Block]:
    data = ctx.a(Artifact.BATTERY)
    if not data:
        return []  # experiments without conversation checks, and reports written before the battery existed
    text = _TEXT.get(ctx.lang, _TEXT["en"])
    test, entries = d(data.get("test")), [d(e) for e in lst(data.get("prompts"))]
    outcome = next((d(o) for o in lst(ctx.doc.get("outcomes")) if d(o).get("check") == "conversation[battery]"), {})
    seeds = ", ".join(str(s) for s in lst(data.get("seeds")))
    smallest = test.get("smallest_significant")
    rows: list[list[Cell]] = [
        [text["prompts"], f"{len(entries)} ({test.get('prompts', '?')})"],
        [text["cand"], str(test.get("candidate_breaks", "?"))],
        [text["twins"].format(seeds=seeds), ", ".join(str(x) for x in lst(test.get("placebo_breaks")))],
        [text["p"], ctx.na(fmt.sig(test.get("p_value"), 3))],
        [text["smallest"], str(smallest) if smallest is not None else text["none"]],
        [text["template"], code(data.get("template") or "?")],
        [text["status"], status_cell(ctx, outcome.get("status") or test.get("status"))],
    ]
    blocks: list[Block] = [Heading(2, text["title"]), Para([text["rule"].format(alpha=test.get("alpha", 0.05))]),
                           Table(["", ""], rows)]
    if outcome.get("reason"):
        blocks.append(Para([Span("conversation[battery]: ", "b"), str(outcome["reason"])]))
    broken = [e for e in entries if e.get("candidate_broke") or any(lst(e.get("placebos_broke")))]
    if broken:
        blocks.append(Heading(3, text["broken"]))
        blocks.append(Table(
            [text["id"], text["topic"], text["original"], text["candidate"], text["checks"], text["by_twins"]],
            [[code(e.get("id", "?")), str(e.get("topic", "")), _answer(e.get("original")), _answer(e.get("candidate")),
              ", ".join(map(str, lst(e.get("candidate_broke")))) or "–",
              str(sum(bool(b) for b in lst(e.get("placebos_broke"))))] for e in broken]))
    failed = [str(e.get("id")) for e in entries if e.get("original_passes") is False]
    if failed:
        blocks.append(Para([text["failed"].format(n=len(failed), ids=", ".join(failed))]))
    return blocks
