"""The recipe report's plot: file size against mean KLD and against Δ ln PPL, every model on the evaluation slice
(labels in English: matplotlib's bundled fonts have no CJK glyphs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fakequant.report.recipe_tables import MIB, _n, _pair, sorted_models
from fakequant.store.cache import atomic_output


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
              ("stock_imatrix", "llama.cpp stock mix, imatrix", dict(fmt="D", color="#1a7f37", markersize=6)),
              ("recipe", "recipe", dict(fmt="o", color="#bf8700", markersize=6)),
              ("chosen", "chosen recipe", dict(fmt="*", color="#cf222e", markersize=15)))

    def style_of(m: dict[str, Any]) -> str:
        if m.get("kind") == "recipe" and m.get("name") == results.get("chosen"):
            return "chosen"
        return str(m.get("kind")) + ("_imatrix" if m.get("variant") == "imatrix" else "")

    for style, legend, kwargs in styles:
        chosen = [m for m in models if str(m.get("name")) in points and style_of(m) == style]
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
    for m in models:  # a recipe point to the stock mixes whose size it matches
        here = points.get(str(m.get("name")))
        for other in models:
            there = points.get(str(other.get("name")))
            if m.get("kind") == "recipe" and m.get("vs") and other.get("kind") == "stock" and here and there and \
                    (other.get("mix") or other.get("name")) == m.get("vs"):
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
    fig.suptitle(f"recipe {results.get('recipe') or '?'} on {name}: size against quality on the evaluation slice "
                 "(dashed: the stock mixes of the same size)", fontsize=10, parse_math=False)
    with atomic_output(dest, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
