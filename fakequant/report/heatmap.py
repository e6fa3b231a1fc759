"""``sensitivity.png``: a sweep's heat maps, layers down, tensor kinds across.

With a placebo in any cell: the floor (the placebo's mean KLD; one placebo per layer × kind serves every format, so
one map), then per format Δ ln PPL (the total, annotated ± SE and the decision's initial) and the excess mean KLD
(the format's own part, annotated with its top-token agreement; "in floor" when its interval holds 0). Without any
placebo (older cells): per format Δ ln PPL and the total mean KLD, as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakequant.report.sensitivity import ERROR, CellResult, SensitivityMap
from fakequant.store.cache import atomic_output

_EDGE = {"CAUTION": "orange", "STOP": "red", "INCONCLUSIVE": "grey", ERROR: "black"}
_DECISION_MARK = {"GO": "G", "CAUTION": "C", "STOP": "S", "INCONCLUSIVE": "I", ERROR: "E"}


def _grid(smap: SensitivityMap, value: Callable[[int, str], float | None]) -> Any:
    import numpy as np

    out = np.full((len(smap.layers), len(smap.kinds)), np.nan)
    for i, layer in enumerate(smap.layers):
        for j, kind in enumerate(smap.kinds):
            v = value(layer, kind)
            if v is not None:
                out[i, j] = v
    return out


def _cells(smap: SensitivityMap, fmt: str, attr: str) -> Any:
    return _grid(smap, lambda layer, kind: getattr(smap.cell(layer, kind, fmt), attr, None))


def _floor_value(smap: SensitivityMap, layer: int, kind: str) -> float | None:
    """The placebo's mean KLD at (layer, kind): every format's cell scored the same placebo, take the first."""
    for fmt in smap.formats:
        c = smap.cell(layer, kind, fmt)
        if c is not None and c.placebo_kld_mean is not None:
            return c.placebo_kld_mean
    return None


def _kld_panel(fig: Any, ax: Any, k: Any, title: str) -> Callable[[float], str]:
    """A KLD map, on a log scale where it spans more than a decade (otherwise its tick labels say nothing);
    returns the text colour that reads on a given value's shade."""
    import numpy as np
    from matplotlib.colors import LogNorm

    positive = k[np.isfinite(k) & (k > 0)]
    norm = LogNorm(float(positive.min()), float(positive.max())) if positive.size and \
        positive.max() > 10 * positive.min() else None
    im = ax.imshow(np.where(k > 0, k, np.nan) if norm else k, cmap="viridis", norm=norm, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    ax.set_title(title, fontsize=8, parse_math=False)
    low = math.sqrt(norm.vmin * norm.vmax) if norm is not None else im.norm.vmin + 0.5 * (im.norm.vmax - im.norm.vmin)
    return lambda v: "white" if v < low else "black"


def _delta_text(ax: Any, c: CellResult, i: int, j: int, span: float, font: float) -> None:
    mark = _DECISION_MARK.get(c.decision, "?")
    if c.ln_ppl_ratio is None:
        ax.text(j, i, mark, ha="center", va="center", fontsize=font)
        return
    se = "" if c.ln_ppl_ratio_se is None else f"±{c.ln_ppl_ratio_se:.1e}"
    dark = abs(c.ln_ppl_ratio) > 0.6 * span
    ax.text(j, i, f"{c.ln_ppl_ratio:+.1e} {mark}\n{se}", ha="center", va="center", fontsize=font,
            color="white" if dark else "black")
    if c.decision in _EDGE:
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((j - 0.47, i - 0.44), 0.94, 0.88, fill=False, lw=1.5, edgecolor=_EDGE[c.decision]))


def _kld_text(ax: Any, c: CellResult, i: int, j: int, shade: Callable[[float], str], own: bool, font: float) -> None:
    same = "" if c.same_top_p is None else f"({c.same_top_p * 100:.1f}%)"
    if not own:
        if c.kld_mean is not None:
            ax.text(j, i, f"{c.kld_mean:.1e}\n{same}", ha="center", va="center", fontsize=font, color=shade(c.kld_mean))
        return
    if c.excess_kld_mean is None:
        total = "" if c.kld_mean is None else f"\ntotal {c.kld_mean:.1e}"
        ax.text(j, i, f"no placebo{total}", ha="center", va="center", fontsize=font, color="grey")
        return
    below = "" if c.excess_resolved else " in floor"
    colour = shade(c.excess_kld_mean) if c.excess_resolved and c.excess_kld_mean > 0 else "black"
    ax.text(j, i, f"{c.excess_kld_mean:+.1e}{below}\n{same}", ha="center", va="center", fontsize=font, color=colour)


def render_png(smap: SensitivityMap, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    layers, kinds, formats = smap.layers, smap.kinds, smap.formats
    own = any(c.has_placebo for c in smap.cells)  # the format's own part where measured, else the total
    first = 1 if own else 0  # the floor map comes first
    panels = 2 * len(formats) + first
    panel_w = 0.9 + 1.3 * len(kinds)
    fig, axes = plt.subplots(1, panels, figsize=(panel_w * panels + 1.0, 1.8 + 0.36 * len(layers)), squeeze=False)
    font = 6.5 if len(kinds) > 2 else 7
    if own:
        floor = _grid(smap, lambda layer, kind: _floor_value(smap, layer, kind))
        shade = _kld_panel(fig, axes[0, 0], floor, "floor: placebo mean KLD (one-ulp nudge, every format)")
        for (i, j), v in np.ndenumerate(floor):
            if np.isfinite(v):
                axes[0, 0].text(j, i, f"{v:.1e}", ha="center", va="center", fontsize=font, color=shade(v))
            elif any(c.measured for c in smap.cells if (c.layer, c.kind) == (layers[i], kinds[j])):
                axes[0, 0].text(j, i, "no placebo", ha="center", va="center", fontsize=font, color="grey")
    for f, fmt in enumerate(formats):
        ax, ax2 = axes[0, first + 2 * f], axes[0, first + 2 * f + 1]
        d = _cells(smap, fmt, "ln_ppl_ratio")
        span = (float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0) or 1e-6
        im = ax.imshow(d, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -span, span), aspect="auto")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        ax.set_title(f"{fmt}: Δ ln PPL ± SE, decision (total)", fontsize=8, parse_math=False)
        k = _cells(smap, fmt, "excess_kld_mean" if own else "kld_mean")
        if own:  # only an excess that stands out of the floor is shaded; the rest reads "in floor" on white
            k = np.where(_cells(smap, fmt, "excess_resolved") == 1, k, np.nan)
        title = f"{fmt}: excess mean KLD over the placebo (top-1 same)" if own else f"{fmt}: mean KLD (top-1 same)"
        shade = _kld_panel(fig, ax2, k, title)
        for i, layer in enumerate(layers):
            for j, kind in enumerate(kinds):
                c = smap.cell(layer, kind, fmt)
                if c is not None:
                    _delta_text(ax, c, i, j, span, font)
                    if c.measured:
                        _kld_text(ax2, c, i, j, shade, own, font)
    for a in axes.flat:
        a.set_xticks(range(len(kinds)), kinds, fontsize=7)
        a.set_yticks(range(len(layers)), [str(x) for x in layers], fontsize=7)
        a.set_ylabel("layer", fontsize=7)
    fig.suptitle(f"sweep {smap.sweep}: G=GO, C=CAUTION (orange), S=STOP (red), I=INCONCLUSIVE (grey), "
                 "E=not measured", fontsize=8, parse_math=False)
    fig.tight_layout()
    with atomic_output(dest, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
