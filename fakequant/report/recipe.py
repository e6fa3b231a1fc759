"""The report of ``fakequant recipe NAME``: the recipe's mixed GGUF beside llama.cpp's stock mixes, on the same tokens.

Input: the results dict of :mod:`fakequant.recipe.run` (every number may be None). Output, in one folder:

- ``recipe.json``: the results as given (sorted keys);
- ``recipe.md`` and ``recipe.zh-TW.md``: the decision, a side-by-side table sorted by file size, the additivity check
  (the KLD the cells predicted against the KLD measured), the chosen assignment with the llama-quantize command that
  reproduces it, the measured cells and the timing; the same numbers in both languages;
- ``pareto.png``: file size against mean KLD and against Δ ln PPL (labels in English: matplotlib's bundled fonts have
  no CJK glyphs).

Text goes through :mod:`fakequant.report.blocks` and :mod:`fakequant.report.markdown`, so that a model name or a note
holding ``|`` or ``*`` stays text. Names, notes and reasons come from the pipeline in English and are not translated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakequant.report import fmt, markdown
from fakequant.report.blocks import Banner, Block, Bullets, Cell, Code, Heading, Image, Inline, Para, Span, Table
from fakequant.report.i18n import STRINGS
from fakequant.report.reading import badge, code, d, lst
from fakequant.store.cache import atomic_output, dumps

JSON_NAME, MD_NAME, ZH_NAME, PNG_NAME = "recipe.json", "recipe.md", "recipe.zh-TW.md", "pareto.png"
MIB = 1 << 20
DASH = "—"  # a table cell with nothing measured: short, the same in both languages
KEEP = "keep"
BYTE_TEST = "tests/unit/test_recipe_command.py::test_command_reproduces_the_mixed_model_byte_for_byte"

# key -> (English, Traditional Chinese), as in i18n.STRINGS; keys not here fall back to that table.
WORDS: dict[str, tuple[str, str]] = {
    "title": ("Mixed-precision recipe: {name}", "混合精度量化設定：{name}"),
    "mib": ("{mib} MiB", "{mib} MiB"),
    "scored_on": ("Scored on", "評分範圍"),
    "scored": ("{chunks} chunks × {ctx} tokens", "{chunks} 個 chunk × {ctx} tokens"),
    "budget": ("Budget", "大小預算"),
    "english_names": ("", "模型名稱、備註與理由由流程自動產生，為英文原文（與 recipe.json 相同），未翻譯。"),
    "suite_report": ("The suite's report of the chosen model (must-pass, perplexity, conversations, speed)",
                     "選定模型的測試套件報告（必須通過、perplexity、對話、速度）"),
    "side": ("Side by side", "並列比較"),
    "side_note": ("Every model is scored against the original on the same tokens. Sorted by file size (a recipe "
                  "with no file by the size it aimed at). KLD = mean KL divergence of the model's next-token "
                  "distribution from the original's (nats); Δ ln PPL = ln(PPL(model) / PPL(original)), shown also "
                  "as the perplexity change exp(Δ) − 1; 95% intervals over chunks. The chosen recipe is in bold.",
                  "所有模型都在相同 tokens 上與原始模型比較。依檔案大小排序（沒有產生檔案的量化設定依其目標大小）。"
                  "KLD = 模型的下一個 token 分佈相對於原始模型的平均 KL 散度（nats）；Δ ln PPL = ln(PPL(模型) / "
                  "PPL(原始))，並換算為 perplexity 變化 exp(Δ) − 1；95% 區間跨 chunk 計算。粗體為選定的量化設定。"),
    "col_model": ("Model", "模型"),
    "col_kind": ("Kind", "類型"),
    "col_size": ("Size (MiB)", "大小（MiB）"),
    "col_bpw": ("Bits/weight", "每權重位元數"),
    "col_kld": ("Mean KLD (95% CI)", "平均 KLD（95% 信賴區間）"),
    "col_dln": ("Δ ln PPL (95% CI)", "Δ ln PPL（95% 信賴區間）"),
    "col_ppl": ("Perplexity change (95% CI)", "Perplexity 變化（95% 信賴區間）"),
    "col_top1": ("Top-1 same", "Top-1 相同"),
    "col_vs": ("Vs the stock mix of its size", "對照同大小的內建組合"),
    "col_note": ("Note", "備註"),
    "kind_stock": ("stock", "內建組合"),
    "kind_recipe": ("recipe", "量化設定"),
    "kind_original": ("original", "原始模型"),
    "lower": ("lower than {name}: {a} vs {b}", "低於 {name}：{a} vs {b}"),
    "not_lower": ("not lower than {name}: {a} vs {b}", "未低於 {name}：{a} vs {b}"),
    "vs_unmeasured": ("at {name}'s size, KLD not compared", "{name} 的大小，KLD 無法比較"),
    "chosen": ("chosen", "選定"),
    "additivity": ("Additivity check", "可加性檢查"),
    "add_how": ("The prediction is the largest placebo floor among the changed groups plus the sum of the chosen "
                "cells' excess KLD; its interval combines the cells' half-widths in quadrature, an approximation "
                "since every cell is measured on the same chunks. It agrees when the predicted and the measured "
                "intervals overlap.",
                "預測值為各變動群組中最大的安慰劑基準雜訊，加上所選 cell 超出 KLD 的總和；其區間以平方和開根號合併"
                "各 cell 的半寬，因所有 cell 都在相同 chunk 上測量，這只是近似。預測與實測區間重疊即視為相符。"),
    "col_pred": ("Predicted KLD (CI) = floor + Σ excess", "預測 KLD（信賴區間）= 基準雜訊 + Σ 超出量"),
    "col_meas": ("Measured KLD (95% CI)", "實測 KLD（95% 信賴區間）"),
    "col_ratio": ("Measured / predicted", "實測 / 預測"),
    "col_verdict": ("Verdict", "判定"),
    "agrees": ("agrees", "相符"),
    "misses": ("prediction misses by {diff} (measured {ratio}× predicted)",
               "預測偏差 {diff}（實測為預測的 {ratio} 倍）"),
    "misses_by": ("prediction misses by {diff}", "預測偏差 {diff}"),
    "no_interval": ("no interval: cannot tell", "無區間，無法判定"),
    "no_prediction": ("No recipe model has a prediction.", "沒有任何量化設定模型有預測值。"),
    "assignment": ("Chosen assignment: {name}", "選定的配置：{name}"),
    "no_chosen": ("No assignment: the recipe's own budget produced no model.",
                  "沒有配置：量化設定本身的預算未產生模型。"),
    "col_group": ("Group", "權重群組"),
    "col_format": ("Format", "格式"),
    "keep": ("keep (unchanged)", "保留（不變）"),
    "reproduce": ("Reproduce with llama-quantize", "以 llama-quantize 重現"),
    "reproduce_note": ("Run on the original model, with the tensor types file below saved as tensor_types.txt, this "
                       "command writes fakequant's mixed model byte for byte",
                       "在原始模型上執行此指令，並將下方權重型別檔存為 tensor_types.txt，即可逐位元組寫出與 fakequant "
                       "相同的混合模型"),
    "tested": (" (tested: ", "（已測試："),
    "tested_end": (").", "）。"),
    "types_file": ("Tensor types file (tensor_types.txt)", "權重型別檔（tensor_types.txt）"),
    "types_empty": ("(empty: every matrix ends up in the base type)", "（空白：所有矩陣皆為基礎型別）"),
    "cells": ("Measured cells", "已測量的 cell"),
    "cells_note": ("A cell is one group of tensors in one format, measured against the original. Floor = the "
                   "placebo's mean KLD (the same tensors nudged by one ulp); excess = the cell beyond its placebo, "
                   "paired per chunk, with its 95% interval; total = the cell's own mean KLD.",
                   "一個 cell 是一組權重使用一種格式，與原始模型比較。基準雜訊 = 安慰劑的平均 KLD（相同權重各微調一個 "
                   "ulp）；超出量 = 該 cell 超出安慰劑的部分，逐 chunk 成對計算，附 95% 區間；總 KLD = 該 cell 本身的"
                   "平均 KLD。"),
    "col_tensors": ("Tensors", "權重數"),
    "col_cell_size": ("Size (MiB)", "大小（MiB）"),
    "col_excess": ("Excess KLD (95% CI)", "超出 KLD（95% 信賴區間）"),
    "col_floor": ("Floor KLD", "基準雜訊 KLD"),
    "col_total": ("Total KLD", "總 KLD"),
    "col_cached": ("Cached", "取自快取"),
    "timing": ("Timing", "耗時"),
    "timing_line": ("{measured} cells measured, {cached} from the cache; wall time {wall} (cells {cells}, scoring "
                    "{scoring}).", "測量 {measured} 個 cell，{cached} 個取自快取；總耗時 {wall}（cell {cells}，評分 "
                    "{scoring}）。"),
    "pareto": ("Size against quality", "大小與品質"),
    "pareto_alt": ("File size against mean KLD and Δ ln PPL", "檔案大小與平均 KLD、Δ ln PPL 的關係"),
}


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **fields)`` in ``lang`` from :data:`WORDS`, else from the report's shared table."""
    column = 1 if lang == "zh-TW" else 0

    def t(key: str, **fields: object) -> str:
        text = (WORDS.get(key) or STRINGS[key])[column]
        return text.format(**fields) if fields else text

    return t


# ------------------------------------------------------------------------------------------------------- numbers


def _n(value: Any) -> float | None:
    x = fmt.number(value)
    return x if x is not None and math.isfinite(x) else None


def _pair(ci: Any) -> tuple[float, float] | None:
    bounds = [_n(v) for v in lst(ci)]
    return (bounds[0], bounds[1]) if len(bounds) == 2 and None not in bounds else None  # type: ignore[return-value]


def _plus(text: str, value: float) -> str:
    return f"+{text}" if value > 0 and not text.startswith(("+", "-")) else text


def with_ci(mean: Any, ci: Any, digits: int = 3, signed: bool = False) -> str | None:
    """``0.0500 (0.0400 … 0.0600)``: the mean and its interval on one scale (as the other reports write intervals;
    square brackets would read as a link to Markdown and come out escaped); the mean alone without an interval."""
    m = _n(mean)
    if m is None:
        return None
    bounds = _pair(ci)
    values = [m, *bounds] if bounds else [m]
    texts = fmt.same_scale(values, digits) or [fmt.sig(m, digits) or ""]
    if signed:
        texts = [_plus(s, v) for s, v in zip(texts, values, strict=False)]
    return f"{texts[0]} ({texts[1]} … {texts[2]})" if len(texts) == 3 else texts[0]


def ppl_change(ln_ratio: Any, ci: Any) -> str | None:
    """The perplexity change exp(Δ ln PPL) − 1 and its interval, as percentages."""
    m = _n(ln_ratio)
    if m is None:
        return None
    text = fmt.pct(math.expm1(m)) or ""
    bounds = _pair(ci)
    return f"{text} ({fmt.pct(math.expm1(bounds[0]))} … {fmt.pct(math.expm1(bounds[1]))})" if bounds else text


def mib(nbytes: Any, decimals: int = 2) -> str | None:
    x = _n(nbytes)
    return None if x is None else fmt.fixed(x / MIB, decimals)


def _size_key(model: dict[str, Any]) -> float:
    """File size; a recipe that made no file sorts at the size it aimed at, beside the stock mix it matches."""
    for key in ("file_bytes", "budget_bytes"):
        x = _n(model.get(key))
        if x is not None:
            return x
    return math.inf


def sorted_models(results: dict[str, Any]) -> list[dict[str, Any]]:
    models = [d(m) for m in lst(results.get("models")) if isinstance(m, dict)]
    return sorted(models, key=lambda m: (_size_key(m), m.get("kind") != "stock", str(m.get("name", ""))))


def _stock(results: dict[str, Any], name: Any) -> dict[str, Any]:
    for m in lst(results.get("models")):
        if d(m).get("kind") == "stock" and d(m).get("name") == name:
            return d(m)
    return {}


def additivity(model: dict[str, Any]) -> dict[str, Any]:
    """The predicted against the measured mean KLD of a recipe model: ``predicted``, ``measured``, ``ratio``
    (measured / predicted), ``overlap`` (the intervals overlap; None without both), ``diff`` (measured − predicted)."""
    pred = d(model.get("predicted"))
    p = _n(pred.get("kld_mean"))
    if p is None and _n(pred.get("floor")) is not None and _n(pred.get("excess_sum")) is not None:
        p = _n(pred["floor"]) + _n(pred["excess_sum"])  # type: ignore[operator]
    m = _n(model.get("kld_mean"))
    pci, mci = _pair(pred.get("kld_mean_ci")), _pair(model.get("kld_mean_ci"))
    return {"predicted": p, "measured": m,
            "ratio": m / p if m is not None and p is not None and p > 0 else None,
            "diff": m - p if m is not None and p is not None else None,
            "overlap": pci[0] <= mci[1] and mci[0] <= pci[1] if pci and mci else None}


# ------------------------------------------------------------------------------------------------------ sections


def _na(t: Callable[..., str], text: str | None) -> str:
    return text if text not in (None, "") else t("not_measured")


def _cell(text: str | None) -> str:
    return text if text not in (None, "") else DASH


def _bold(cell: Cell) -> Cell:
    parts = cell if isinstance(cell, list) else [cell]
    return [Span(p, "b") if isinstance(p, str) and p.strip() and p != DASH else p for p in parts]


def head(results: dict[str, Any], t: Callable[..., str], lang: str) -> list[Block]:
    decision = d(results.get("decision"))
    word = decision.get("decision")
    line: list[Inline] = [Span(f"{t('decision')}:", "b"), " ",
                          badge(word, lang) if word else t("not_measured")]
    blocks: list[Block] = [Heading(1, t("title", name=str(results.get("recipe") or "?"))),
                           Banner(str(word or "INCONCLUSIVE"), line)]
    model, corpus = results.get("model"), results.get("corpus")
    size = mib(results.get("model_bytes"), 1)
    items: list[list[Inline]] = []
    if results.get("description"):
        items.append([Span(f"{t('description')}: ", "b"), str(results["description"])])
    items.append([Span(f"{t('model')}: ", "b"), code(Path(str(model)).name) if model else t("not_measured"),
                  *([f" ({t('mib', mib=size)})"] if size else [])])
    items.append([Span(f"{t('corpus')}: ", "b"), code(Path(str(corpus)).name) if corpus else t("not_measured")])
    chunks, ctx = fmt.integer(results.get("chunks")), fmt.integer(results.get("n_ctx"))
    items.append([Span(f"{t('scored_on')}: ", "b"),
                  t("scored", chunks=chunks, ctx=ctx) if chunks and ctx else t("not_measured")])
    items.append([Span(f"{t('budget')}: ", "b"), code(results["budget"]) if results.get("budget") else
                  t("not_measured")])
    blocks.append(Bullets(items))
    blocks.append(Heading(2, t("reasons")))
    if t("english_names"):
        blocks.append(Para([t("english_names")]))
    blocks.append(Bullets([[str(r)] for r in lst(decision.get("reasons"))] or [[t("not_measured")]]))
    if decision.get("report"):
        blocks.append(Para([Span(f"{t('suite_report')}: ", "b"), code(str(decision["report"]))]))
    return blocks


def vs_text(results: dict[str, Any], model: dict[str, Any], t: Callable[..., str]) -> str | None:
    """For a recipe row: whether its mean KLD is lower than that of the stock mix whose size it matches."""
    name = model.get("vs")
    if model.get("kind") != "recipe" or not name:
        return None
    mine, theirs = _n(model.get("kld_mean")), _n(_stock(results, name).get("kld_mean"))
    if mine is None or theirs is None:
        return t("vs_unmeasured", name=name)
    a, b = fmt.same_scale([mine, theirs], 2) or ["?", "?"]
    return t("lower" if mine < theirs else "not_lower", name=name, a=a, b=b)


def side_by_side(results: dict[str, Any], t: Callable[..., str]) -> list[Block]:
    chosen = results.get("chosen")
    rows: list[list[Cell]] = []
    original = {"name": Path(str(results["model"])).name if results.get("model") else t("kind_original"),
                "kind": "original", "file_bytes": results.get("model_bytes")}
    models = sorted_models(results)
    if _n(original["file_bytes"]) is not None:  # the reference: where it sits by size, nothing measured against it
        at = next((i for i, m in enumerate(models) if _size_key(m) > _size_key(original)), len(models))
        models.insert(at, original)
    for m in models:
        kind = str(m.get("kind", ""))
        is_chosen = kind == "recipe" and chosen is not None and m.get("name") == chosen
        name = str(m.get("name", "?")) + (f" ({t('chosen')})" if is_chosen else "")
        row: list[Cell] = [
            name, t(f"kind_{kind}") if f"kind_{kind}" in WORDS else kind, _cell(mib(m.get("file_bytes"))),
            _cell(fmt.fixed(_n(m.get("bpw")), 2)), _cell(with_ci(m.get("kld_mean"), m.get("kld_mean_ci"))),
            _cell(with_ci(m.get("ln_ppl_ratio"), m.get("ln_ppl_ratio_ci"), signed=True)),
            _cell(ppl_change(m.get("ln_ppl_ratio"), m.get("ln_ppl_ratio_ci"))),
            _cell(fmt.pct(_n(m.get("same_top_p")), 2, signed=False)), _cell(vs_text(results, m, t)),
            str(m.get("note") or ""),
        ]
        rows.append([_bold(c) for c in row] if is_chosen else row)
    header: list[Cell] = [t(k) for k in ("col_model", "col_kind", "col_size", "col_bpw", "col_kld", "col_dln",
                                         "col_ppl", "col_top1", "col_vs", "col_note")]
    return [Heading(2, t("side")), Para([t("side_note")]), Table(header, rows, right={2, 3, 4, 5, 6, 7}),
            Heading(3, t("pareto")), Image(PNG_NAME, t("pareto_alt"))]


def verdict_text(check: dict[str, Any], t: Callable[..., str]) -> str:
    if check["predicted"] is None or check["measured"] is None:
        return t("not_measured")
    if check["overlap"] is None:
        return t("no_interval")
    if check["overlap"]:
        return t("agrees")
    diff = _plus(fmt.sig(check["diff"], 2) or "?", check["diff"])
    if check["ratio"] is None:
        return t("misses_by", diff=diff)
    return t("misses", diff=diff, ratio=fmt.fixed(check["ratio"], 2))


def additivity_section(results: dict[str, Any], t: Callable[..., str]) -> list[Block]:
    blocks: list[Block] = [Heading(2, t("additivity")), Para([t("add_how")])]
    rows: list[list[Cell]] = []
    for m in sorted_models(results):
        pred = d(m.get("predicted"))
        if m.get("kind") != "recipe" or not pred:
            continue
        check = additivity(m)
        parts = [fmt.sig(_n(pred.get("floor")), 3), fmt.sig(_n(pred.get("excess_sum")), 3)]
        split = f" = {parts[0]} + {parts[1]}" if None not in parts else ""
        predicted = with_ci(check["predicted"], pred.get("kld_mean_ci"))
        rows.append([str(m.get("name", "?")), _cell(predicted and predicted + split),
                     _cell(with_ci(m.get("kld_mean"), m.get("kld_mean_ci"))), _cell(fmt.fixed(check["ratio"], 2)),
                     verdict_text(check, t)])
    if not rows:
        return [*blocks, Para([t("no_prediction")])]
    header: list[Cell] = [t(k) for k in ("col_model", "col_pred", "col_meas", "col_ratio", "col_verdict")]
    return [*blocks, Table(header, rows, right={1, 2, 3})]


def assignment_section(results: dict[str, Any], t: Callable[..., str]) -> list[Block]:
    chosen = next((d(m) for m in lst(results.get("models")) if d(m).get("name") == results.get("chosen")), {})
    blocks: list[Block] = [Heading(2, t("assignment", name=str(results.get("chosen") or "?")))]
    assignment = d(chosen.get("assignment"))
    if not assignment:
        blocks.append(Para([t("no_chosen")]))
    else:
        rows: list[list[Cell]] = [[code(group), t("keep") if option == KEEP else code(option)]
                                  for group, option in assignment.items()]
        blocks.append(Table([t("col_group"), t("col_format")], rows))
    command = results.get("command") or chosen.get("command")
    blocks.append(Heading(3, t("reproduce")))
    if not command:
        return [*blocks, Para([t("not_measured")])]
    blocks += [Para([t("reproduce_note"), t("tested"), code(BYTE_TEST), t("tested_end")]), Code(str(command)),
               Heading(3, t("types_file"))]
    types = results.get("tensor_types")
    if types is None:
        return [*blocks, Para([t("not_measured")])]
    return [*blocks, Code(str(types)) if str(types).strip() else Para([t("types_empty")])]


def cells_section(results: dict[str, Any], t: Callable[..., str]) -> list[Block]:
    blocks: list[Block] = [Heading(2, t("cells"))]
    rows: list[list[Cell]] = []
    for c in map(d, lst(results.get("cells"))):
        size = _n(c.get("bytes"))
        rows.append([code(c.get("group", "?")), code(c.get("format", "?")), _cell(fmt.integer(c.get("tensors"))),
                     _cell(fmt.sig(size / MIB, 3) if size is not None else None),
                     _cell(with_ci(c.get("excess_kld_mean"), c.get("excess_kld_mean_ci"))),
                     _cell(fmt.sig(_n(c.get("placebo_kld_mean")), 3)), _cell(fmt.sig(_n(c.get("kld_mean")), 3)),
                     t("yes") if c.get("cached") is True else t("no")])
    if not rows:
        return [*blocks, Para([t("not_measured")])]
    header: list[Cell] = [t(k) for k in ("col_group", "col_format", "col_tensors", "col_cell_size", "col_excess",
                                         "col_floor", "col_total", "col_cached")]
    return [*blocks, Para([t("cells_note")]), Table(header, rows, right={2, 3, 4, 5, 6})]


def timing_section(results: dict[str, Any], t: Callable[..., str]) -> list[Block]:
    timing = d(results.get("timing"))
    if not timing:
        return [Heading(2, t("timing")), Para([t("not_measured")])]
    na = "?"
    line = t("timing_line", measured=fmt.integer(timing.get("cells_measured")) or na,
             cached=fmt.integer(timing.get("cells_cached")) or na, wall=fmt.seconds(timing.get("wall_s")) or na,
             cells=fmt.seconds(timing.get("cells_wall_s")) or na, scoring=fmt.seconds(timing.get("scoring_wall_s"))
             or na)
    return [Heading(2, t("timing")), Para([line])]


def render_markdown(results: dict[str, Any], lang: str = "en") -> str:
    t = translator(lang)
    blocks = head(results, t, lang)
    for section in (side_by_side, additivity_section, assignment_section, cells_section, timing_section):
        blocks += section(results, t)
    return markdown.render(blocks)


# ------------------------------------------------------------------------------------------------------------ plot


def _point(model: dict[str, Any], key: str) -> tuple[float, float, float, float] | None:
    """(size MiB, value, error below, error above) of one model on one panel; None when either is absent."""
    x, y = _n(model.get("file_bytes")), _n(model.get(key))
    if x is None or y is None:
        return None
    ci = _pair(model.get(f"{key}_ci"))
    low, high = (max(0.0, y - ci[0]), max(0.0, ci[1] - y)) if ci else (0.0, 0.0)
    return x / MIB, y, low, high


def _panel(ax: Any, results: dict[str, Any], key: str, label: str) -> None:
    models = sorted_models(results)
    points = {str(m.get("name")): p for m in models if (p := _point(m, key)) is not None}
    log = key == "kld_mean" and bool(points) and all(p[1] > 0 for p in points.values())
    styles = (("stock", "llama.cpp stock mix", dict(fmt="s", color="#0969da", markersize=6)),
              ("recipe", "recipe", dict(fmt="o", color="#bf8700", markersize=6)),
              ("chosen", "chosen recipe", dict(fmt="*", color="#cf222e", markersize=15)))
    for style, legend, kwargs in styles:
        chosen = [m for m in models if str(m.get("name")) in points and
                  (("chosen" if m.get("name") == results.get("chosen") and m.get("kind") == "recipe"
                    else str(m.get("kind"))) == style)]
        if not chosen:
            continue
        xs, ys, lows, highs = zip(*(points[str(m.get("name"))] for m in chosen), strict=True)
        if log:  # an interval reaching 0 cannot be drawn on a log axis: stop it at a tenth of the value
            lows = tuple(min(lo, 0.9 * y) for lo, y in zip(lows, ys, strict=True))
        ax.errorbar(xs, ys, yerr=[lows, highs], capsize=3, linestyle="none", label=legend, **kwargs)
        if style != "recipe":
            for m, x, y in zip(chosen, xs, ys, strict=True):
                ax.annotate(str(m.get("name")), (x, y), textcoords="offset points", xytext=(4, 5), fontsize=7,
                            parse_math=False)
    for m in models:  # a recipe point to the stock mix whose size it matches
        here, there = points.get(str(m.get("name"))), points.get(str(m.get("vs")))
        if m.get("kind") == "recipe" and m.get("vs") and here and there:
            ax.plot([here[0], there[0]], [here[1], there[1]], linestyle="--", color="#6e7781", linewidth=0.8)
    size = _n(results.get("model_bytes"))
    if size is not None:
        ax.axvline(size / MIB, linestyle=":", color="black", linewidth=1.0, label="original (KLD 0, Δ 0)")
        if not log:
            ax.plot([size / MIB], [0.0], marker="D", color="black", linestyle="none")
    if key != "kld_mean" or not log:
        ax.axhline(0.0, color="#57606a", linewidth=0.6)
    if log:
        ax.set_yscale("log")
    if not points:
        ax.text(0.5, 0.5, "nothing measured", transform=ax.transAxes, ha="center", va="center", parse_math=False)
    ax.set_xlabel("file size (MiB)")
    ax.set_ylabel(label, parse_math=False)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def render_png(results: dict[str, Any], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    _panel(left, results, "kld_mean", "mean KLD (nats), 95% CI")
    _panel(right, results, "ln_ppl_ratio", "Δ ln PPL, 95% CI")
    name = Path(str(results["model"])).name if results.get("model") else "?"
    fig.suptitle(f"recipe {results.get('recipe') or '?'} on {name}: size against quality (dashed: the stock mix "
                 "of the same size)", fontsize=10, parse_math=False)
    with atomic_output(dest, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------- write


def _write_text(dest: Path, content: str) -> None:
    with atomic_output(dest, "w") as fh:
        fh.write(content)


def write_recipe_report(results: dict, out_dir: Path) -> dict[str, Path]:
    """Write recipe.json, recipe.md, recipe.zh-TW.md and pareto.png into ``out_dir``; return their paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / JSON_NAME, "md": out_dir / MD_NAME, "md_zh": out_dir / ZH_NAME,
             "png": out_dir / PNG_NAME}
    _write_text(paths["json"], dumps(results, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    _write_text(paths["md"], render_markdown(results, "en"))
    _write_text(paths["md_zh"], render_markdown(results, "zh-TW"))
    render_png(results, paths["png"])
    return paths
