"""Where the error enters: the per-layer drift of the hidden state, as a table, a plot and a few lines of text.

Everything is read from the ``drift`` block of the perplexity_comparison artifact (computed by
:mod:`fakequant.runtime.drift`); nothing here recomputes a statistic. A comparison without the block shows nothing; a
block that could not name the layers (another architecture's graph) or missed some says so in one line. Words are
kept here, in English and Traditional Chinese, so that the shared translation table stays untouched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fakequant.report.blocks import Block, Cell, Heading, Image, Para, Span, Table
from fakequant.report.reading import DocContext, d, lst
from fakequant.suite.vocab import Artifact

PLOT = "plot_drift.png"
_BLOCK = re.compile(r"^blk\.(\d+)\.")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "heading": "Where the error enters: drift of the hidden state by layer",
        "intro": "Each block's output (llama.cpp's l_out-N, the residual stream) of the candidate and of the placebo, "
                 "against the original's on the same scored positions: relative error ‖h − h_orig‖ / ‖h_orig‖ per "
                 "position, mean over {positions} positions, {chunks} chunks; {level}% intervals over chunks. The "
                 "excess is the candidate minus the placebo, paired per chunk.",
        "layer": "layer", "candidate": "candidate", "placebo": "placebo (floor)", "excess": "excess",
        "cos": "cos (candidate)", "selected": "changed here",
        "first": "First layer whose excess is resolved above zero: {layer}.",
        "none_resolved": "No layer's excess is resolved above zero at {chunks} chunks.",
        "growth": "Largest growth ({of}): {layer} (+{by}).",
        "of_excess": "of the excess", "of_candidate": "of the candidate's drift; no placebo",
        "unavailable": "Drift by layer not measured: {reason}.",
        "problem": "Note: {text}.",
        "plot": "Drift by layer: candidate and placebo (relative error, 95% intervals); dashed: the changed layers",
    },
    "zh-TW": {
        "heading": "誤差從哪裡進來：各層隱藏狀態的漂移",
        "intro": "候選模型與安慰劑的每個區塊輸出（llama.cpp 的 l_out-N，即殘差流），在相同的評分位置上與原始模型比較："
                 "每個位置的相對誤差 ‖h − h_orig‖ / ‖h_orig‖，{positions} 個位置、{chunks} 個區段的平均；"
                 "區段間的 {level}% 區間。超出量為候選減安慰劑，按區段配對。",
        "layer": "層", "candidate": "候選", "placebo": "安慰劑（底線）", "excess": "超出量",
        "cos": "餘弦（候選）", "selected": "此層被修改",
        "first": "超出量首次確定大於零的層：{layer}。",
        "none_resolved": "在 {chunks} 個區段下，沒有任何層的超出量確定大於零。",
        "growth": "增長最大（{of}）：{layer}（+{by}）。",
        "of_excess": "超出量", "of_candidate": "候選的漂移；無安慰劑",
        "unavailable": "未測量各層漂移：{reason}。",
        "problem": "注意：{text}。",
        "plot": "各層漂移：候選與安慰劑（相對誤差，95% 區間）；虛線：被修改的層",
    },
}


def word(lang: str, key: str, **kw: Any) -> str:
    return WORDS.get(lang, WORDS["en"])[key].format(**kw)


def _num(x: Any) -> str:
    return f"{x:.3e}" if isinstance(x, int | float) else "–"


def _with_ci(iv: Any, signed: bool = False) -> str:
    iv = d(iv)
    mean, ci = iv.get("mean"), iv.get("ci")
    if not isinstance(mean, int | float):
        return "–"
    text = f"{mean:+.3e}" if signed else f"{mean:.3e}"
    if isinstance(ci, list) and len(ci) == 2:
        text += f" ({ci[0]:+.2e} … {ci[1]:+.2e})" if signed else f" ({ci[0]:.2e} … {ci[1]:.2e})"
    return text


def changed_blocks(names: Sequence[Any]) -> set[int]:
    """Block numbers of tensor names ``blk.N.…``."""
    return {int(m.group(1)) for n in names if (m := _BLOCK.match(str(n)))}


def statements(drift: dict[str, Any], lang: str) -> list[str]:
    """The one-line statements: unavailable, first resolved, largest growth, problems."""
    if drift.get("unavailable"):
        return [word(lang, "unavailable", reason=str(drift["unavailable"]).rstrip("."))]
    out = []
    if drift.get("growth_of") == "excess":
        first = drift.get("first_resolved")
        out.append(word(lang, "first", layer=first) if first else
                   word(lang, "none_resolved", chunks=drift.get("chunks", "?")))
    growth = d(drift.get("largest_growth"))
    if growth.get("layer"):
        of = word(lang, "of_excess" if drift.get("growth_of") == "excess" else "of_candidate")
        out.append(word(lang, "growth", of=of, layer=growth["layer"], by=f"{growth.get('by', 0):.3e}"))
    out += [word(lang, "problem", text=str(p).rstrip(".")) for p in lst(drift.get("problems"))]
    return out


def text_lines(drift: dict[str, Any]) -> list[str]:
    """The table and the statements for a terminal (``fakequant compare --drift``)."""
    drift = d(drift)
    if drift.get("unavailable"):
        return statements(drift, "en")
    level = round(100 * float(drift.get("level", 0.95)))
    out = [f"drift of the hidden state by layer: relative error ‖h − h_base‖ / ‖h_base‖ per scored position, mean "
           f"over {drift.get('positions', '?')} positions, {drift.get('chunks', '?')} chunks; {level}% intervals "
           f"over chunks",
           f"{'layer':<12} {'candidate':<32} {'placebo':<32} {'excess (candidate - placebo)':<34} {'cos cand':>10}"]
    for row in map(d, lst(drift.get("layers"))):
        cand, plac, exc = d(row.get("candidate")), d(row.get("placebo")), d(row.get("excess"))
        cos = d(cand.get("cos")).get("mean")
        out.append(f"{row.get('name', '?'):<12} {_with_ci(cand.get('rel_err')):<32} "
                   f"{_with_ci(plac.get('rel_err')) if plac else '–':<32} "
                   f"{_with_ci(exc.get('rel_err'), signed=True) if exc else '–':<34} "
                   f"{f'{cos:.6f}' if isinstance(cos, int | float) else '–':>10}")
    return out + statements(drift, "en")


def section(ctx: DocContext) -> list[Block]:
    """The report's section; nothing when the comparison carries no drift block."""
    drift = d(ctx.a(Artifact.PERPLEXITY).get("drift"))
    if not drift:
        return []
    lang = ctx.lang
    blocks: list[Block] = [Heading(3, word(lang, "heading"))]
    if drift.get("unavailable"):
        return [*blocks, *(Para([line]) for line in statements(drift, lang))]
    level = round(100 * float(drift.get("level", 0.95)))
    blocks.append(Para([word(lang, "intro", positions=drift.get("positions", "?"), chunks=drift.get("chunks", "?"),
                             level=level)]))
    changed = changed_blocks([d(x).get("name") for x in lst(ctx.a(Artifact.NUMERICAL).get("tensors"))])
    rows: list[list[Cell]] = []
    for row in map(d, lst(drift.get("layers"))):
        cand, plac, exc = d(row.get("candidate")), d(row.get("placebo")), d(row.get("excess"))
        name: Cell = Span(str(row.get("name", "?")), "b" if row.get("block") in changed else "code")
        cos = d(cand.get("cos")).get("mean")
        rows.append([name, _with_ci(cand.get("rel_err")), _with_ci(plac.get("rel_err")) if plac else "–",
                     _with_ci(exc.get("rel_err"), signed=True) if exc else "–",
                     f"{cos:.6f}" if isinstance(cos, int | float) else "–",
                     word(lang, "selected") if row.get("block") in changed else ""])
    blocks.append(Table([word(lang, k) for k in ("layer", "candidate", "placebo", "excess", "cos", "selected")],
                        rows, right={1, 2, 3, 4}))
    blocks += [Para([line]) for line in statements(drift, lang)]
    if PLOT in lst(ctx.doc.get("plots")):
        blocks.append(Image(PLOT, word(lang, "plot")))
    return blocks


def draw(artifacts: dict[str, Any], folder: Path) -> str | None:
    """``plot_drift.png`` from the perplexity_comparison artifact's drift block (None, and no stale file, when it
    has no layers)."""
    from fakequant.report import plots  # matplotlib: only when a report is drawn

    folder = Path(folder)
    drift = d(d(artifacts.get(Artifact.PERPLEXITY)).get("drift"))
    rows = [d(r) for r in lst(drift.get("layers")) if d(r).get("block") is not None]
    if not rows or drift.get("unavailable"):
        (folder / PLOT).unlink(missing_ok=True)
        return None
    changed = changed_blocks([d(x).get("name") for x in lst(d(artifacts.get(Artifact.NUMERICAL)).get("tensors"))])
    fig, ax = plots.plt.subplots(figsize=(9, 3.8), layout="constrained")
    x = [int(r["block"]) for r in rows]
    for who, color in (("candidate", "#cf222e"), ("placebo", "#0969da")):
        ivs = [d(d(r.get(who)).get("rel_err")) for r in rows]
        if not all(isinstance(iv.get("mean"), int | float) for iv in ivs):
            continue
        mean = [float(iv["mean"]) for iv in ivs]
        ax.plot(x, mean, marker="o", ms=3, color=color, label=who)
        if all(isinstance(iv.get("ci"), list) for iv in ivs):
            ax.fill_between(x, [max(iv["ci"][0], 0.0) for iv in ivs], [iv["ci"][1] for iv in ivs], color=color,
                            alpha=0.2, linewidth=0)
    for block in sorted(changed):
        ax.axvline(block, color="#555", linestyle="--", linewidth=1)
    if any(isinstance(d(d(r.get("candidate")).get("rel_err")).get("mean"), int | float)
           and d(d(r.get("candidate")).get("rel_err"))["mean"] > 0 for r in rows):
        ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_ylim(bottom=0)  # a relative error is never negative (the intervals' lower ends may be)
    ax.set_xlabel("block (l_out-N)")
    ax.set_ylabel("‖h − h_orig‖ / ‖h_orig‖")
    ax.set_title("Drift of the hidden state from the original, by layer", parse_math=False)
    ax.legend(loc="upper left")
    plots._save(fig, folder / PLOT)
    return PLOT
