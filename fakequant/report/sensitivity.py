"""The sensitivity map of a sweep: how much a format hurts each layer × tensor kind, and which layers look safe.

Input: one :class:`CellResult` per sweep cell (an ordinary experiment measured by the acceptance suite and read back
by :mod:`fakequant.suite.sweep`). Output, under ``reports/sweeps/<name>/``:

- ``sensitivity.json``: every cell's numbers, the ranking and the per-layer summary (machine-readable);
- ``sensitivity.md``: the same as tables, a ranked list of the most sensitive tensors, and one line naming the
  layers that look safe to go on with;
- ``sensitivity.png``: heat maps, layer × tensor kind, one pair per format: Δ ln PPL (annotated ± SE and the
  decision's initial) and mean KLD (annotated with top-token agreement).

Sensitivity is ranked by mean KL divergence: it is never negative and far less noisy than Δ ln PPL on a few chunks,
whose sign on a harmless change is chance. A layer "looks safe" when every one of its cells decided GO.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fakequant.store.cache import atomic_output, write_json

DECISIONS = ("GO", "CAUTION", "STOP", "INCONCLUSIVE")
ERROR = "ERROR"  # the cell could not be measured (its tests errored, or its definition is invalid)
JSON_NAME, MD_NAME, PNG_NAME = "sensitivity.json", "sensitivity.md", "sensitivity.png"


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
    cached: bool = False  # taken from the cell cache, not measured in this run

    @property
    def measured(self) -> bool:
        return self.ln_ppl_ratio is not None

    @property
    def tensor(self) -> str:
        return f"blk.{self.layer}.{self.kind}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


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
        """Measured cells, most sensitive first (mean KLD, then Δ ln PPL)."""
        measured = [c for c in self.cells if c.measured]
        return sorted(measured, key=lambda c: (-(c.kld_mean or 0.0), -(c.ln_ppl_ratio or 0.0), c.name))

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

    def safe_line(self) -> str:
        status = self.layer_status()
        groups = {s: [layer for layer, v in status.items() if v == s] for s in ("GO", "CAUTION", "STOP", "UNRESOLVED")}
        what = " × ".join(["/".join(self.kinds), "/".join(self.formats)])
        parts = [f"Layers that look safe to go on with ({what}, every cell GO): "
                 f"{layer_ranges(groups['GO']) or 'none'} ({len(groups['GO'])} of {len(status)})"]
        labels = (("CAUTION", "go with care (CAUTION)"), ("STOP", "not safe (STOP)"),
                  ("UNRESOLVED", "unresolved (INCONCLUSIVE or not measured)"))
        parts += [f"{label}: {layer_ranges(groups[key])}" for key, label in labels if groups[key]]
        return "; ".join(parts) + "."

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "meta": self.meta,
            "layers": self.layers,
            "kinds": self.kinds,
            "formats": self.formats,
            "cells": [c.to_json() for c in self.cells],
            "ranked": [c.name for c in self.ranked()],
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


def top1(c: CellResult) -> str:
    return "—" if c.same_top_p is None else f"{c.same_top_p * 100:.2f}%"


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(smap: SensitivityMap, top: int = 10) -> str:
    meta = smap.meta
    lines = [f"# Sweep `{smap.sweep}`: sensitivity map", ""]
    lines.append(f"{len(smap.layers)} layers × {len(smap.kinds)} tensor kinds ({', '.join(smap.kinds)}) × "
                 f"{len(smap.formats)} formats ({', '.join(smap.formats)}) = {len(smap.cells)} cells.")
    for key, label in (("model", "Model"), ("corpus", "Corpus"), ("chunks", "Perplexity chunks"),
                       ("settings", "Settings (same for every cell)")):
        if meta.get(key) is not None:
            lines.append(f"- {label}: `{meta[key]}`")
    timing = meta.get("timing") or {}
    if timing:
        lines.append(f"- This run: {timing.get('cells_run', 0)} cells measured, {timing.get('cells_cached', 0)} "
                     f"taken from the cell cache, wall time {timing.get('wall_s', 0):.1f} s with "
                     f"{timing.get('jobs', 1)} worker(s) × {timing.get('threads', '?')} thread(s)")
    lines += ["", f"**{smap.safe_line()}**", ""]

    ranked = smap.ranked()[:top]
    if ranked:
        lines += [f"## Most sensitive tensors (top {len(ranked)}, by mean KLD)", "",
                  "| # | tensor | format | mean KLD | Δ ln PPL ± SE | PPL change | top-1 same | decision |",
                  "|---|---|---|---|---|---|---|---|"]
        for i, c in enumerate(ranked, 1):
            lines.append(f"| {i} | `{c.tensor}` | {c.format} | {kld(c)} | {delta(c)} | {ppl_change(c)} | {top1(c)} "
                         f"| {c.decision} |")
        lines.append("")

    for fmt in smap.formats:
        lines += [f"## Decisions, {fmt} (layer × tensor kind: decision, Δ ln PPL)", "",
                  "| layer | " + " | ".join(smap.kinds) + " |", "|---|" + "---|" * len(smap.kinds)]
        for layer in smap.layers:
            row = []
            for kind in smap.kinds:
                c = smap.cell(layer, kind, fmt)
                row.append("" if c is None else f"{c.decision} {'' if c.ln_ppl_ratio is None else delta(c)}".strip())
            lines.append(f"| {layer} | " + " | ".join(row) + " |")
        lines.append("")

    lines += ["## Every cell", "",
              "| experiment | layer | kind | format | Δ ln PPL ± SE | PPL change | mean KLD | top-1 same | decision "
              "| why |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(smap.cells, key=lambda c: (c.format, c.layer, smap.kinds.index(c.kind))):
        cached = " (cached)" if c.cached else ""
        lines.append(f"| `{c.name}`{cached} | {c.layer} | {c.kind} | {c.format} | {delta(c)} | {ppl_change(c)} | "
                     f"{kld(c)} | {top1(c)} | {c.decision} | {_md_cell(c.headline)} |")
    lines += ["", "Δ ln PPL = mean ln(PPL(candidate)/PPL(base)) on the same tokens, ± one standard error "
              "(paired over tokens); KLD = mean KL divergence of the candidate's next-token distribution from the "
              "base's; top-1 same = share of positions where both models rank the same token first. Each cell is an "
              "ordinary experiment: its own report is in `reports/<experiment>/`.", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- heat map

_EDGE = {"CAUTION": "orange", "STOP": "red", "INCONCLUSIVE": "grey", ERROR: "black"}
_DECISION_MARK = {"GO": "G", "CAUTION": "C", "STOP": "S", "INCONCLUSIVE": "I", ERROR: "E"}


def render_png(smap: SensitivityMap, dest: Path) -> None:
    """Two heat maps per format (Δ ln PPL, mean KLD), layers down, tensor kinds across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm, TwoSlopeNorm
    from matplotlib.patches import Rectangle

    layers, kinds, formats = smap.layers, smap.kinds, smap.formats
    panel_w = 0.9 + 1.3 * len(kinds)
    fig_h = 1.8 + 0.36 * len(layers)
    fig, axes = plt.subplots(1, 2 * len(formats), figsize=(2 * panel_w * len(formats) + 1.0, fig_h), squeeze=False)
    font = 6.5 if len(kinds) > 2 else 7

    def grid(fmt: str, attr: str) -> np.ndarray:
        out = np.full((len(layers), len(kinds)), np.nan)
        for i, layer in enumerate(layers):
            for j, kind in enumerate(kinds):
                c = smap.cell(layer, kind, fmt)
                value = None if c is None else getattr(c, attr)
                if value is not None:
                    out[i, j] = value
        return out

    for f, fmt in enumerate(formats):
        d = grid(fmt, "ln_ppl_ratio")
        k = grid(fmt, "kld_mean")
        span = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
        span = span or 1e-6
        ax = axes[0, 2 * f]
        im = ax.imshow(d, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -span, span), aspect="auto")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        ax.set_title(f"{fmt}: Δ ln PPL ± SE, decision", fontsize=8, parse_math=False)
        ax2 = axes[0, 2 * f + 1]
        positive = k[np.isfinite(k) & (k > 0)]
        # a log scale only where KLD spans more than a decade; otherwise its tick labels say nothing
        norm = LogNorm(float(positive.min()), float(positive.max())) if positive.size and \
            positive.max() > 10 * positive.min() else None
        im2 = ax2.imshow(np.where(k > 0, k, np.nan) if norm else k, cmap="viridis", norm=norm, aspect="auto")
        fig.colorbar(im2, ax=ax2, fraction=0.05, pad=0.02)
        ax2.set_title(f"{fmt}: mean KLD (top-1 same)", fontsize=8, parse_math=False)
        for i, layer in enumerate(layers):
            for j, kind in enumerate(kinds):
                c = smap.cell(layer, kind, fmt)
                if c is None:
                    continue
                mark = _DECISION_MARK.get(c.decision, "?")
                if c.ln_ppl_ratio is None:
                    ax.text(j, i, mark, ha="center", va="center", fontsize=font)
                    continue
                se = "" if c.ln_ppl_ratio_se is None else f"±{c.ln_ppl_ratio_se:.1e}"
                dark = abs(c.ln_ppl_ratio) > 0.6 * span
                ax.text(j, i, f"{c.ln_ppl_ratio:+.1e} {mark}\n{se}", ha="center", va="center", fontsize=font,
                        color="white" if dark else "black")
                if c.decision in _EDGE:
                    ax.add_patch(Rectangle((j - 0.47, i - 0.44), 0.94, 0.88, fill=False, lw=1.5,
                                           edgecolor=_EDGE[c.decision]))
                if c.kld_mean is not None:
                    same = "" if c.same_top_p is None else f" ({c.same_top_p * 100:.1f}%)"
                    low = math.sqrt(norm.vmin * norm.vmax) if norm is not None else im2.norm.vmin + 0.5 * (
                        im2.norm.vmax - im2.norm.vmin)
                    shade = "white" if c.kld_mean < low else "black"
                    ax2.text(j, i, f"{c.kld_mean:.1e}\n{same.strip()}", ha="center", va="center", fontsize=font,
                             color=shade)
        for a in (ax, ax2):
            a.set_xticks(range(len(kinds)), kinds, fontsize=7)
            a.set_yticks(range(len(layers)), [str(x) for x in layers], fontsize=7)
            a.set_ylabel("layer", fontsize=7)
    fig.suptitle(f"sweep {smap.sweep}: G=GO, C=CAUTION (orange), S=STOP (red), I=INCONCLUSIVE (grey), "
                 "E=not measured", fontsize=8,
                 parse_math=False)
    fig.tight_layout()
    with atomic_output(dest, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def write(smap: SensitivityMap, folder: Path) -> dict[str, Path]:
    """Write the three outputs into ``folder``; return their paths by kind."""
    folder = Path(folder)
    paths = {"json": folder / JSON_NAME, "md": folder / MD_NAME, "png": folder / PNG_NAME}
    write_json(paths["json"], smap.to_json())
    with atomic_output(paths["md"], "w") as fh:
        fh.write(render_markdown(smap))
    render_png(smap, paths["png"])
    return paths
