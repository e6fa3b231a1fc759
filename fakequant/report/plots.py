"""PNG plots from the recorded artifacts: weights before/after, quantization error, per-chunk perplexity, KLD.

Each function draws from the artifact alone (so ``fakequant report`` can redraw them from report.json) and returns
the file name it wrote, or None when the artifact lacks the data. Labels are English: matplotlib's bundled fonts
have no CJK glyphs; captions in the reports are translated. Titles are drawn with ``parse_math=False`` because
tensor names come from the model file and a ``$`` would otherwise start mathtext.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from fakequant.store.cache import atomic_output
from fakequant.suite.vocab import Artifact

MAX_PANELS = 6  # tensors drawn per figure; the numerical table lists them all
WEIGHTS = "plot_weights.png"
ERROR = "plot_error.png"
CHUNKS = "plot_chunk_ppl.png"
KLD = "plot_kld.png"


def _numbers(values: Any) -> list[float] | None:
    if not isinstance(values, list) or not values:
        return None
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out


def _hist(hist: Any, *keys: str) -> tuple[list[float], list[list[float]]] | None:
    """(bin edges, one list of counts per key) of a histogram artifact: ``edges``, or ``log10_edges`` (the KLD
    histogram of fakequant.runtime.paired.compare)."""
    if not isinstance(hist, dict):
        return None
    edges = _numbers(hist.get("edges"))
    if edges is None and (log_edges := _numbers(hist.get("log10_edges"))) is not None:
        edges = [10.0 ** e for e in log_edges]
    series = [_numbers(hist.get(k)) for k in keys]
    if edges is None or any(s is None or len(s) != len(edges) - 1 for s in series):
        return None
    return edges, [s for s in series if s is not None]


def _save(fig: Any, dest: Path) -> None:
    with atomic_output(dest, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def _panels(items: Sequence[tuple[str, Any]], draw: Callable[[Any, Any], None], title: str, dest: Path) -> bool:
    items = list(items)[:MAX_PANELS]
    if not items:
        return False
    cols = min(len(items), 2)
    rows = math.ceil(len(items) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 3.4 * rows), squeeze=False, layout="constrained")
    for ax, (name, data) in zip(axes.flat, items, strict=False):
        draw(ax, data)
        ax.set_title(name, fontsize=10, parse_math=False)
    for ax in list(axes.flat)[len(items):]:
        ax.set_visible(False)
    fig.suptitle(title, parse_math=False)
    _save(fig, dest)
    return True


def _tensors(analysis: Any) -> list[dict[str, Any]]:
    tensors = analysis.get("tensors") if isinstance(analysis, dict) else None
    chosen = [t for t in tensors or [] if isinstance(t, dict)]
    # Changed tensors are the interesting ones; fall back to all when nothing changed.
    return [t for t in chosen if t.get("changed")] or chosen


def weights(analysis: Any, folder: Path) -> str | None:
    items = [(str(t.get("name", "?")), h) for t in _tensors(analysis)
             if (h := _hist(t.get("histogram"), "before", "after"))]

    def draw(ax: Any, data: Any) -> None:
        edges, (before, after) = data
        ax.stairs(before, edges, label="original", linewidth=2.0, color="#0969da")
        ax.stairs(after, edges, label="candidate", linewidth=1.2, linestyle="--", color="#cf222e")
        ax.set_xlabel("weight value")
        ax.set_ylabel("count")
        ax.legend(fontsize=8)

    ok = _panels(items, draw, "Weight distribution before and after fake quantization", folder / WEIGHTS)
    return WEIGHTS if ok else None


def errors(analysis: Any, folder: Path) -> str | None:
    items = [(str(t.get("name", "?")), (h, t.get("changed") == 0)) for t in _tensors(analysis)
             if (h := _hist(t.get("error_histogram"), "counts"))]

    def draw(ax: Any, data: Any) -> None:
        (edges, (counts,)), unchanged = data
        ax.stairs(counts, edges, fill=True, color="#8250df", alpha=0.7)
        if unchanged:
            ax.text(0.02, 0.95, "no value changed: every error is 0", transform=ax.transAxes, va="top",
                    parse_math=False)
        ax.set_xlabel("candidate − original")
        ax.set_ylabel("count")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))

    ok = _panels(items, draw, "Quantization error per value", folder / ERROR)
    return ERROR if ok else None


def _per_chunk(block: Any) -> dict[str, Any]:
    per_chunk = block.get("per_chunk") if isinstance(block, dict) else None
    return per_chunk if isinstance(per_chunk, dict) else {}


def _kld_bars(ax: Any, cand: list[float] | None, floor: list[float] | None) -> None:
    """Mean KLD per chunk, the placebo's bar beside the candidate's: what stands above the floor is the format's."""
    series = [(v, label, colour) for v, label, colour in ((cand, "candidate", "#cf222e"),
                                                          (floor, "placebo (floor)", "#6e7781")) if v]
    width = 0.8 / len(series)
    for k, (values, label, colour) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        ax.bar([i + 1 + offset for i in range(len(values))], values, width=width, label=label, color=colour,
               alpha=0.8)
    positive = [v for values, _, _ in series for v in values if v > 0]
    if positive and max(positive) / min(positive) > 100:  # early and late chunks can differ by decades
        ax.set_yscale("log")
    ax.set_ylabel("mean KLD (nats)")
    ax.legend(fontsize=8)


def chunk_perplexity(comparison: Any, folder: Path) -> str | None:
    """Perplexity per chunk, its change against the original, and the mean KLD per chunk (the placebo's beside the
    candidate's when the comparison has a placebo)."""
    if not isinstance(comparison, dict):
        return None
    per_chunk = _per_chunk(comparison)
    base, cand = _numbers(per_chunk.get("ppl_base")), _numbers(per_chunk.get("ppl_q"))
    if base is None or cand is None:
        return None
    floor = _per_chunk(comparison.get("placebo"))
    floor_ppl, floor_kld = _numbers(floor.get("ppl_q")), _numbers(floor.get("kld_mean"))
    kld_values = _numbers(per_chunk.get("kld_mean"))
    panels = 3 if kld_values or floor_kld else 2
    fig, axes = plt.subplots(panels, 1, figsize=(9, 5.5 + 2.4 * (panels - 2)), sharex=True, layout="constrained",
                             gridspec_kw={"height_ratios": [2, 1, 1.3][:panels]})
    top, bottom = axes[0], axes[1]
    x = list(range(1, len(base) + 1))
    top.plot(x, base, marker="o", markersize=3, label="original", color="#0969da")
    top.plot(list(range(1, len(cand) + 1)), cand, marker="x", markersize=3, linestyle="--", label="candidate",
             color="#cf222e")
    if floor_ppl:
        top.plot(list(range(1, len(floor_ppl) + 1)), floor_ppl, marker=".", markersize=3, linestyle=":",
                 label="placebo (one-ulp nudge)", color="#6e7781")
    top.set_ylabel("perplexity")
    top.legend(fontsize=8)
    top.set_title("Perplexity per chunk (each chunk scored on its second half)", parse_math=False)
    bottom.axhline(0, color="#57606a", linewidth=0.8)
    for values, label, colour in ((cand, "candidate", "#8250df"), (floor_ppl, "placebo", "#6e7781")):
        if values:
            pairs = list(zip(base, values, strict=False))
            bottom.plot(x[:len(pairs)], [100 * (q / b - 1) if b else math.nan for b, q in pairs], marker="o",
                        markersize=3, color=colour, label=label)
    bottom.set_ylabel("vs original (%)")
    if floor_ppl:
        bottom.legend(fontsize=8)
    if panels == 3:
        _kld_bars(axes[2], kld_values, floor_kld)
    axes[-1].set_xlabel("chunk")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, folder / CHUNKS)
    return CHUNKS


def kld(comparison: Any, folder: Path) -> str | None:
    data = _hist(comparison.get("kld_hist") if isinstance(comparison, dict) else None, "counts")
    if data is None:
        return None
    edges, (counts,) = data
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    ax.stairs(counts, edges, fill=True, color="#1a7f37", alpha=0.7)
    if edges[0] > 0 and edges[-1] / edges[0] > 100:
        ax.set_xscale("log")
    if max(counts) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("KL divergence per token (nats)")
    ax.set_ylabel("tokens")
    ax.set_title("KL divergence of the candidate from the original, per scored token", parse_math=False)
    _save(fig, folder / KLD)
    return KLD


def draw_all(artifacts: dict[str, Any], folder: Path) -> list[str]:
    """Every plot the artifacts allow; returns the file names written into ``folder``."""
    analysis, comparison = artifacts.get(Artifact.NUMERICAL), artifacts.get(Artifact.PERPLEXITY)
    written = [weights(analysis, folder), errors(analysis, folder), chunk_perplexity(comparison, folder),
               kld(comparison, folder)]
    for stale in {WEIGHTS, ERROR, CHUNKS, KLD} - set(written):  # an earlier run's plot must not pass for this one's
        (folder / stale).unlink(missing_ok=True)
    return [name for name in written if name]
