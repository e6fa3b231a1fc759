"""The report of ``fakequant recipe NAME``: the recipe's mixed GGUF beside llama.cpp's stock mixes, on the same tokens.

Input: the results dict of :mod:`fakequant.recipe.run` (every number may be None). Output, in one folder:

- ``recipe.json``: the results as given (sorted keys);
- ``recipe.md`` and ``recipe.zh-TW.md``: the decision on the best assignment that passed the suite (or that none
  did), the three slices of text, every try with its decision and why, a side-by-side table sorted by file size
  (each stock mix plain and with the importance matrix), the selection bias, the additivity check, the chosen
  assignment with the llama-quantize command that reproduces it, the measured cells and the timing; the same numbers
  in both languages (words: :mod:`.recipe_words`; tables: :mod:`.recipe_tables`);
- ``pareto.png``: file size against mean KLD and against Δ ln PPL (:mod:`.recipe_plot`).

Text goes through :mod:`fakequant.report.blocks` and :mod:`fakequant.report.markdown`, so that a model name or a note
holding ``|`` or ``*`` stays text. Names and notes come from the pipeline in English; the decision's reasons are
rendered in the report's language from their codes (:mod:`fakequant.i18n`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakequant.report import fmt, markdown
from fakequant.report.blocks import Banner, Block, Bullets, Cell, Heading, Inline, Para, Span, Table
from fakequant.report.drift import statements as drift_statements
from fakequant.report.reading import badge, code, d, lst, sentences
from fakequant.report.recipe_plot import render_png
from fakequant.report.recipe_tables import (
    KEEP,
    additivity_section,
    assignment_section,
    bias_section,
    cells_section,
    mib,
    side_by_side,
)
from fakequant.report.recipe_words import translator
from fakequant.store.cache import atomic_output, dumps

JSON_NAME, MD_NAME, ZH_NAME, PNG_NAME = "recipe.json", "recipe.md", "recipe.zh-TW.md", "pareto.png"
__all__ = ["render_markdown", "render_png", "translator", "write_recipe_report"]


def _slices(results: dict[str, Any], t: Callable[..., str]) -> list[list[Inline]]:
    items: list[list[Inline]] = []
    names = [d(s).get("name") for s in lst(results.get("slices"))]
    if "calibration" not in names and results.get("slices") is not None:
        items.append([Span(f"{t('slice_calibration')}: ", "b"), t("no_imatrix")])
    for s in map(d, lst(results.get("slices"))):
        first, chunks, tokens = fmt.integer(s.get("first_chunk")), fmt.integer(s.get("chunks")), lst(s.get("tokens"))
        if first is None or chunks is None or len(tokens) != 2:
            line = t("not_measured")
        else:
            line = t("slice_line", first=first, last=int(s["first_chunk"]) + int(s["chunks"]) - 1,
                     corpus=Path(str(s.get("corpus"))).name, start=tokens[0], end=tokens[1])
        items.append([Span(f"{t('slice_' + str(s.get('name')))}: ", "b"), line])
    imatrix = d(results.get("imatrix"))
    if imatrix:
        items.append([t("imatrix_line", path=Path(str(imatrix.get("path"))).name,
                        sha=str(imatrix.get("sha256") or "?")[:12], chunks=fmt.integer(imatrix.get("chunks")) or "?")])
    evaluation = next((d(s) for s in results.get("slices") or [] if d(s).get("name") == "evaluation"), {})
    if results.get("suite_chunks") is not None and evaluation:
        items.append([t("suite_chunks", chunks=results["suite_chunks"], first=evaluation.get("first_chunk"),
                        corpus=Path(str(evaluation.get("corpus"))).name)])
    return items


def head(results: dict[str, Any], t: Callable[..., str], lang: str) -> list[Block]:
    decision = d(results.get("decision"))
    word = decision.get("decision")
    line: list[Inline] = [Span(f"{t('decision')}:", "b"), " ",
                          badge(word, lang) if word else t("not_measured")]
    blocks: list[Block] = [Heading(1, t("title", name=str(results.get("recipe") or "?"))),
                           Banner(str(word or "INCONCLUSIVE"), line)]
    tries = [d(x) for x in lst(results.get("tries")) if d(x).get("decision")]
    if results.get("passed") is not None:
        passed = next((x for x in tries if x.get("attempt") == results["passed"]), {})
        blocks.append(Para([Span(t("passed", n=results["passed"], decision=passed.get("decision", "?")), "b")]))
    elif tries:
        blocks.append(Para([Span(t("none_passed", n=len(tries)), "b")]))
    model, corpus = results.get("model"), results.get("corpus")
    size = mib(results.get("model_bytes"), 1)
    items: list[list[Inline]] = []
    if results.get("description"):
        items.append([Span(f"{t('description')}: ", "b"), str(results["description"])])
    items.append([Span(f"{t('model')}: ", "b"), code(Path(str(model)).name) if model else t("not_measured"),
                  *([f" ({t('mib', mib=size)})"] if size else [])])
    items.append([Span(f"{t('corpus')}: ", "b"), code(Path(str(corpus)).name) if corpus else t("not_measured")])
    items.append([Span(f"{t('budget')}: ", "b"), code(results["budget"]) if results.get("budget") else
                  t("not_measured")])
    blocks.append(Bullets(items))
    ctx = fmt.integer(results.get("n_ctx")) or "?"
    blocks += [Heading(2, t("slices", ctx=ctx)), Bullets(_slices(results, t) or [[t("not_measured")]])]
    blocks.append(Heading(2, t("reasons")))
    if t("english_names"):
        blocks.append(Para([t("english_names")]))
    blocks.append(Bullets([[r] for r in sentences(decision, "reasons", lang)] or [[t("not_measured")]]))
    if decision.get("report"):
        blocks.append(Para([Span(f"{t('suite_report')}: ", "b"), code(str(decision["report"]))]))
    return blocks


def tries_section(results: dict[str, Any], t: Callable[..., str], lang: str = "en") -> list[Block]:
    most = fmt.integer(results.get("max_tries")) or "?"
    blocks: list[Block] = [Heading(2, t("tries")), Para([t("tries_note", max=most)])]
    rows: list[list[Cell]] = []
    for x in map(d, lst(results.get("tries"))):
        changed = [f"{g} → {o}" for g, o in d(x.get("assignment")).items() if o != KEEP]
        reasons = t("clause_join").join(sentences(x, "reasons", lang))
        drift = t("statement_join").join(drift_statements(d(x["drift"]), lang)) if x.get("drift") else ""
        rows.append([fmt.integer(x.get("attempt")) or "?", str(x.get("name") or "—"), ", ".join(changed) or "—",
                     str(x.get("decision") or t("not_measured")), reasons or "—", drift or "—",
                     code(str(x["report"])) if x.get("report") else "—"])
    if not rows:
        return [*blocks, Para([t("not_run")])]
    header: list[Cell] = [t("col_try"), t("col_model"), t("col_changes"), t("decision"), t("col_reasons"),
                          t("col_drift"), t("col_report")]
    return [*blocks, Table(header, rows)]


def timing_section(results: dict[str, Any], t: Callable[..., str]) -> list[Block]:
    timing = d(results.get("timing"))
    if not timing:
        return [Heading(2, t("timing")), Para([t("not_measured")])]
    na = "?"

    def secs(key: str) -> str:
        return fmt.seconds(timing.get(key)) or na

    line = t("timing_line", measured=fmt.integer(timing.get("cells_measured")) or na,
             cached=fmt.integer(timing.get("cells_cached")) or na, wall=secs("wall_s"),
             imatrix=secs("imatrix_wall_s"), cells=secs("cells_wall_s"), scoring=secs("scoring_wall_s"),
             suite=secs("suite_wall_s"))
    return [Heading(2, t("timing")), Para([line])]


def render_markdown(results: dict[str, Any], lang: str = "en") -> str:
    t = translator(lang)
    blocks = head(results, t, lang) + tries_section(results, t, lang) + side_by_side(results, t, PNG_NAME)
    for section in (bias_section, additivity_section, assignment_section, cells_section, timing_section):
        blocks += section(results, t)
    return markdown.render(blocks)


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
