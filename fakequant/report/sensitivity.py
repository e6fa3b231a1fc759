"""The sensitivity map of a sweep: how much a format hurts each layer × tensor kind, and which layers look safe.

Input: one :class:`CellResult` per sweep cell (an ordinary experiment measured by the acceptance suite and read back
by :mod:`fakequant.suite.sweep`). Output, under ``reports/sweeps/<name>/``:

- ``sensitivity.json``: every cell's numbers, the ranking and the per-layer summary (machine-readable);
- ``sensitivity.md``: the same as tables, a ranked list of the most sensitive tensors, and one line naming the
  layers that look safe to go on with (in the report's language, its words in :mod:`fakequant.i18n`);
- ``sensitivity.png`` (drawn by :mod:`fakequant.report.heatmap`): heat maps, layer × tensor kind: the floor (the
  placebo's mean KLD), then per format Δ ln PPL (annotated ± SE and the decision's initial) and the excess mean KLD
  (the format's own part; the total mean KLD when no cell has a placebo).

Sensitivity is ranked by the excess mean KLD over the placebo: KLD is far less noisy than Δ ln PPL on a few chunks,
whose sign on a harmless change is chance, and the total KLD of an early tensor is mostly floor (any change there,
however small, moves the output), so the total would rank positions, not formats. Cells measured without a placebo
(older cache entries, recorded runs) come after the others, by total mean KLD, marked. A layer "looks safe" when
every one of its cells decided GO (decisions follow the total: what a user deploying the change gets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fakequant.i18n import Message, localized, translator
from fakequant.store.cache import atomic_output, write_json

DECISIONS = ("GO", "CAUTION", "STOP", "INCONCLUSIVE")
ERROR = "ERROR"  # the cell could not be measured (its tests errored, or its definition is invalid)
JSON_NAME, MD_NAME, PNG_NAME = "sensitivity.json", "sensitivity.md", "sensitivity.png"
RANKED_BY = ("excess_kld_mean (the candidate beyond its placebo), descending; then the cells without a placebo, "
             "by kld_mean")


@dataclass(frozen=True)
class CellResult:
    """What one sweep cell measured; numbers are None when the cell did not get that far."""

    name: str
    layer: int
    kind: str
    format: str
    decision: str  # one of DECISIONS, or ERROR
    headline: str = ""
    ln_ppl_ratio: float | None = None  # mean ln(PPL(candidate)/PPL(base)) over the scored tokens
    ln_ppl_ratio_se: float | None = None
    kld_mean: float | None = None
    same_top_p: float | None = None  # share of tokens whose top-1 token is the same in both models
    chunks: int | None = None
    # the floor: the placebo twin's mean KLD (same tensors nudged by one ulp; one per layer × kind, every format's)
    placebo_kld_mean: float | None = None
    excess_kld_mean: float | None = None  # the candidate beyond its placebo, paired per chunk: the format's own part
    excess_kld_mean_ci: tuple[float, float] | None = None  # 95% t interval over chunks; None with one chunk
    excess_resolved: bool | None = None  # the interval excludes 0
    cached: bool = False  # taken from the cell cache, not measured in this run
    headline_message: dict[str, Any] | None = None  # the headline's code and values (i18n.Message.to_json)

    def __post_init__(self) -> None:
        if isinstance(self.headline, Message) and self.headline_message is None:
            object.__setattr__(self, "headline_message", self.headline.to_json())

    @property
    def measured(self) -> bool:
        return self.ln_ppl_ratio is not None

    @property
    def has_placebo(self) -> bool:
        return self.excess_kld_mean is not None

    @property
    def tensor(self) -> str:
        return f"blk.{self.layer}.{self.kind}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in data.items() if k in known}
        ci = fields.get("excess_kld_mean_ci")
        fields["excess_kld_mean_ci"] = tuple(ci) if isinstance(ci, list | tuple) and len(ci) == 2 else None
        return cls(**fields)


@dataclass
class SensitivityMap:
    sweep: str
    cells: list[CellResult]
    meta: dict[str, Any] = field(default_factory=dict)  # model, corpus, settings, chunks, timing

    @property
    def layers(self) -> list[int]:
        return sorted({c.layer for c in self.cells})

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(c.kind for c in self.cells))

    @property
    def formats(self) -> list[str]:
        return list(dict.fromkeys(c.format for c in self.cells))

    def cell(self, layer: int, kind: str, fmt: str) -> CellResult | None:
        for c in self.cells:
            if (c.layer, c.kind, c.format) == (layer, kind, fmt):
                return c
        return None

    def ranked(self) -> list[CellResult]:
        """Measured cells, most sensitive first: by the format's own part (excess mean KLD over the placebo); then
        the cells without a placebo, by total mean KLD and Δ ln PPL."""
        measured = [c for c in self.cells if c.measured]
        own = sorted((c for c in measured if c.has_placebo),
                     key=lambda c: (-(c.excess_kld_mean or 0.0), -(c.kld_mean or 0.0), c.name))
        total = sorted((c for c in measured if not c.has_placebo),
                       key=lambda c: (-(c.kld_mean or 0.0), -(c.ln_ppl_ratio or 0.0), c.name))
        return own + total

    def layer_status(self) -> dict[int, str]:
        """Per layer: STOP if any cell stopped; else UNRESOLVED if any is inconclusive or unmeasured; else CAUTION
        if any cell cautions; else GO."""
        out: dict[int, str] = {}
        for layer in self.layers:
            decisions = {c.decision for c in self.cells if c.layer == layer}
            if "STOP" in decisions:
                out[layer] = "STOP"
            elif decisions & {"INCONCLUSIVE", ERROR}:
                out[layer] = "UNRESOLVED"
            elif "CAUTION" in decisions:
                out[layer] = "CAUTION"
            else:
                out[layer] = "GO"
        return out

    def safe_line(self, lang: str = "en") -> str:
        t = translator(lang)
        status = self.layer_status()
        groups = {s: [layer for layer, v in status.items() if v == s] for s in ("GO", "CAUTION", "STOP", "UNRESOLVED")}
        what = " × ".join(["/".join(self.kinds), "/".join(self.formats)])
        parts = [t("sens_safe", what=what, layers=layer_ranges(groups["GO"]) or t("sens_none"),
                   count=len(groups["GO"]), total=len(status))]
        labels = (("CAUTION", "sens_caution"), ("STOP", "sens_stop"), ("UNRESOLVED", "sens_unresolved"))
        parts += [t("sens_group", label=t(label), layers=layer_ranges(groups[key])) for key, label in labels
                  if groups[key]]
        return t("clause_join").join(parts) + t("sens_end")

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "meta": self.meta,
            "layers": self.layers,
            "kinds": self.kinds,
            "formats": self.formats,
            "cells": [c.to_json() for c in self.cells],
            "ranked": [c.name for c in self.ranked()],
            "ranked_by": RANKED_BY,
            "layer_status": {str(k): v for k, v in self.layer_status().items()},
            "safe_line": self.safe_line(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SensitivityMap:
        return cls(sweep=data["sweep"], cells=[CellResult.from_json(c) for c in data["cells"]],
                   meta=dict(data.get("meta") or {}))


def layer_ranges(layers: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → "0-2, 5, 7-8"."""
    out: list[str] = []
    items = sorted(set(layers))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ", ".join(out)


# ------------------------------------------------------------------------------------------------------ formatting


def delta(c: CellResult) -> str:
    """Δ ln PPL ± one standard error, five decimals (the printed precision the single reports are checked to)."""
    if c.ln_ppl_ratio is None:
        return "—"
    se = "" if c.ln_ppl_ratio_se is None else f" ± {c.ln_ppl_ratio_se:.5f}"
    return f"{c.ln_ppl_ratio:+.5f}{se}"


def ppl_change(c: CellResult) -> str:
    return "—" if c.ln_ppl_ratio is None else f"{math.expm1(c.ln_ppl_ratio) * 100:+.3f}%"


def kld(c: CellResult) -> str:
    return "—" if c.kld_mean is None else f"{c.kld_mean:.3g}"


def floor_kld(c: CellResult) -> str:
    return "—" if c.placebo_kld_mean is None else f"{c.placebo_kld_mean:.3g}"


def excess_kld(c: CellResult, lang: str = "en") -> str:
    """The excess mean KLD with its interval; "not resolved" when the interval holds 0."""
    t = translator(lang)
    if c.excess_kld_mean is None:
        return t("sens_no_placebo") if c.measured else "—"
    ci = "" if c.excess_kld_mean_ci is None else f" [{c.excess_kld_mean_ci[0]:.3g}, {c.excess_kld_mean_ci[1]:.3g}]"
    return f"{c.excess_kld_mean:.3g}{ci}" + ("" if c.excess_resolved else t("sens_not_resolved"))


def top1(c: CellResult) -> str:
    return "—" if c.same_top_p is None else f"{c.same_top_p * 100:.2f}%"


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(smap: SensitivityMap, top: int = 10, lang: str = "en") -> str:
    t, meta = translator(lang), smap.meta

    def row(*cells: object) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    def head(*keys: str) -> list[str]:
        return [row(*(k if k == "#" else t(f"sens_col_{k}") for k in keys)), "|" + "---|" * len(keys)]

    lines = [t("sens_title", sweep=smap.sweep), ""]
    lines.append(t("sens_cells", layers=len(smap.layers), kinds=len(smap.kinds), kind_list=", ".join(smap.kinds),
                   formats=len(smap.formats), format_list=", ".join(smap.formats), cells=len(smap.cells)))
    for key, label in (("model", "sens_model"), ("corpus", "sens_corpus"), ("chunks", "sens_chunks"),
                       ("settings", "sens_settings")):
        if meta.get(key) is not None:
            lines.append(f"- {t(label)}: `{meta[key]}`")
    timing = meta.get("timing") or {}
    if timing:
        lines.append("- " + t("sens_timing", run=timing.get("cells_run", 0), cached=timing.get("cells_cached", 0),
                              wall=timing.get("wall_s", 0), jobs=timing.get("jobs", 1),
                              threads=timing.get("threads", "?")))
    lines += ["", f"**{smap.safe_line(lang)}**", ""]

    ranked = smap.ranked()[:top]
    if ranked:
        lines += [t("sens_top", count=len(ranked)), "",
                  *head("#", "tensor", "format", "excess", "floor", "total", "delta", "change", "top1", "decision")]
        for i, c in enumerate(ranked, 1):
            lines.append(row(i, f"`{c.tensor}`", c.format, excess_kld(c, lang), floor_kld(c), kld(c), delta(c),
                             ppl_change(c), top1(c), c.decision))
        lines.append("")
        if any(not c.has_placebo for c in ranked):
            lines += [t("sens_dagger"), ""]

    for fmt in smap.formats:
        lines += [t("sens_decisions", format=fmt), "", row(t("sens_col_layer"), *smap.kinds),
                  "|---|" + "---|" * len(smap.kinds)]
        for layer in smap.layers:
            cells = []
            for kind in smap.kinds:
                c = smap.cell(layer, kind, fmt)
                cells.append("" if c is None else f"{c.decision} {'' if c.ln_ppl_ratio is None else delta(c)}".strip())
            lines.append(row(layer, *cells))
        lines.append("")

    lines += [t("sens_every"), "", *head("experiment", "layer", "kind", "format", "delta", "change", "mean", "floor",
                                         "excess", "top1", "decision", "why")]
    for c in sorted(smap.cells, key=lambda c: (c.format, c.layer, smap.kinds.index(c.kind))):
        cached = t("sens_cached") if c.cached else ""
        why = localized(c.headline, c.headline_message, lang)
        lines.append(row(f"`{c.name}`{cached}", c.layer, c.kind, c.format, delta(c), ppl_change(c), kld(c),
                         floor_kld(c), excess_kld(c, lang), top1(c), c.decision, _md_cell(why)))
    lines += ["", t("sens_legend"), ""]
    return "\n".join(lines)


def write(smap: SensitivityMap, folder: Path, lang: str = "en") -> dict[str, Path]:
    """Write the three outputs into ``folder`` (the Markdown in ``lang``); return their paths by kind."""
    folder = Path(folder)
    paths = {"json": folder / JSON_NAME, "md": folder / MD_NAME, "png": folder / PNG_NAME}
    write_json(paths["json"], smap.to_json())
    with atomic_output(paths["md"], "w") as fh:
        fh.write(render_markdown(smap, lang=lang))
    from fakequant.report.heatmap import render_png  # here: heatmap imports this module's types

    render_png(smap, paths["png"])
    return paths
