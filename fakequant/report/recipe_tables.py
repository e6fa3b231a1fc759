"""The tables of the recipe report: the models side by side, the additivity check, the selection bias, the chosen
assignment with its llama-quantize command, the measured cells; and the number formatting they share."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakequant.report import fmt
from fakequant.report.blocks import Block, Cell, Code, Heading, Image, Para, Span, Table
from fakequant.report.reading import code, d, lst
from fakequant.report.recipe_words import WORDS

MIB = 1 << 20
DASH = "—"  # a table cell with nothing measured: short, the same in both languages
KEEP = "keep"
BYTE_TEST = "tests/unit/test_recipe_command.py::test_command_reproduces_the_mixed_model_byte_for_byte"


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
    """The predicted against the measured mean KLD of a recipe model (on the selection slice when it was scored
    there): ``predicted``, ``measured``, ``ratio``
    (measured / predicted), ``overlap`` (the intervals overlap; None without both), ``diff`` (measured − predicted)."""
    pred = d(model.get("predicted"))
    p = _n(pred.get("kld_mean"))
    if p is None and _n(pred.get("floor")) is not None and _n(pred.get("excess_sum")) is not None:
        p = _n(pred["floor"]) + _n(pred["excess_sum"])  # type: ignore[operator]
    measured = d(model.get("selection")) or model  # the cells' own slice, where there is one
    m = _n(measured.get("kld_mean"))
    pci, mci = _pair(pred.get("kld_mean_ci")), _pair(measured.get("kld_mean_ci"))
    return {"predicted": p, "measured": m,
            "ratio": m / p if m is not None and p is not None and p > 0 else None,
            "diff": m - p if m is not None and p is not None else None,
            "overlap": pci[0] <= mci[1] and mci[0] <= pci[1] if pci and mci else None}




def _na(t: Callable[..., str], text: str | None) -> str:
    return text if text not in (None, "") else t("not_measured")


def _cell(text: str | None) -> str:
    return text if text not in (None, "") else DASH


def _bold(cell: Cell) -> Cell:
    parts = cell if isinstance(cell, list) else [cell]
    return [Span(p, "b") if isinstance(p, str) and p.strip() and p != DASH else p for p in parts]


def vs_text(results: dict[str, Any], model: dict[str, Any], t: Callable[..., str]) -> str | None:
    """For a recipe row: how its mean KLD compares with each variant of the stock mix whose size it matches. With
    the paired per-chunk difference (``vs_stock``), a side is claimed only when its interval is on it."""
    name = model.get("vs")
    if model.get("kind") != "recipe" or not name:
        return None
    paired = [d(v) for v in lst(model.get("vs_stock"))]
    if not paired:  # no per-chunk difference: the means alone
        mine, theirs = _n(model.get("kld_mean")), _n(_stock(results, name).get("kld_mean"))
        if mine is None or theirs is None:
            return t("vs_unmeasured", name=name)
        a, b = fmt.same_scale([mine, theirs], 2) or ["?", "?"]
        return t("lower" if mine < theirs else "not_lower", name=name, a=a, b=b)
    texts = []
    for v in paired:
        mine, theirs, ci = _n(model.get("kld_mean")), _n(v.get("kld_mean")), _pair(v.get("difference_ci"))
        if mine is None or theirs is None:
            texts.append(t("vs_unmeasured", name=v.get("name")))
            continue
        a, b = fmt.same_scale([mine, theirs], 2) or ["?", "?"]
        word = "same" if ci is None or ci[0] <= 0 <= ci[1] else ("lower" if ci[1] < 0 else "higher")
        texts.append(t(word, name=v.get("name"), a=a, b=b))
    return "; ".join(texts)


def side_by_side(results: dict[str, Any], t: Callable[..., str], png: str) -> list[Block]:
    chosen = results.get("chosen")
    rows: list[list[Cell]] = []
    original = {"name": Path(str(results["model"])).name if results.get("model") else t("kind_original"),
                "kind": "original", "file_bytes": results.get("model_bytes")}
    models = sorted_models(results)
    if _n(original["file_bytes"]) is not None:  # the reference: where it sits by size, nothing measured against it
        at = next((i for i, m in enumerate(models) if _size_key(m) > _size_key(original)), len(models))
        models.insert(at, original)
    for m in models:
        kind = str(m.get("kind", "")) + ("_imatrix" if m.get("variant") == "imatrix" else "")
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
            Heading(3, t("pareto")), Image(png, t("pareto_alt"))]


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
        measured = d(m.get("selection")) or m
        rows.append([str(m.get("name", "?")), _cell(predicted and predicted + split),
                     _cell(with_ci(measured.get("kld_mean"), measured.get("kld_mean_ci"))),
                     _cell(fmt.fixed(check["ratio"], 2)), verdict_text(check, t)])
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


def bias_section(results: dict[str, Any], t: Callable[..., str]) -> list[Block]:
    blocks: list[Block] = [Heading(2, t("bias")), Para([t("bias_note")])]
    rows: list[list[Cell]] = []
    for m in sorted_models(results):
        b = d(m.get("bias"))
        if not b or (m.get("kind") == "recipe" and str(m.get("note") or "").startswith("the same model")):
            continue
        name = str(m.get("name", "?")) + (f" ({t('control')})" if m.get("kind") == "stock" else "")
        rows.append([name, _cell(with_ci(b.get("selection_kld_mean"), b.get("selection_kld_mean_ci"))),
                     _cell(with_ci(b.get("evaluation_kld_mean"), b.get("evaluation_kld_mean_ci"))),
                     _cell(with_ci(b.get("difference"), b.get("difference_ci"), signed=True)),
                     _cell(fmt.fixed(_n(b.get("ratio")), 2))])
    if not rows:
        return [*blocks, Para([t("no_bias")])]
    header: list[Cell] = [t(k) for k in ("col_model", "col_sel", "col_eval", "col_diff", "col_ratio_es")]
    return [*blocks, Table(header, rows, right={1, 2, 3, 4})]
