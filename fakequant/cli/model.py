"""``fakequant quantize`` and ``fakequant inspect``: one GGUF in, a table (or one JSON object) out."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from fakequant.gguf.layout import ArrayPreview
from fakequant.quant.candidate import BuildResult, Recipe, build_candidate, model_info
from fakequant.quant.nudge import PLACEBO
from fakequant.quant.select import Selection, select_tensors
from fakequant.store.cache import dumps


def _fmt(x: float | None) -> str:
    if x is None:  # read back from strict JSON: an infinite SQNR (nothing changed)
        return "inf"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def format_table(result: BuildResult) -> str:
    header = ("tensor", "type", "n", "changed", "max_abs", "mean_abs", "max_rel", "mean_rel", "sqnr_db", "noop")
    rows = [header]
    for t in result.tensors:
        rows.append((t.name, f"{t.source_type}->{t.stored_type}", str(t.n), str(t.changed), _fmt(t.max_abs),
                     _fmt(t.mean_abs), _fmt(t.max_rel), _fmt(t.mean_rel), _fmt(t.sqnr_db), str(t.noop).lower()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    how = "same-size rewrite" if result.same_size else "size-changing rewrite"
    lines.append(f"wrote {result.output} ({how}, {result.output_bytes} bytes)")
    if result.noop:
        lines.append(f"NOTE: no value changed: every selected value is already representable in "
                     f"{result.recipe.format}; an experiment on this candidate measures nothing (noop).")
    return "\n".join(lines)


def cmd_quantize(args: argparse.Namespace) -> int:
    recipe = Recipe(Selection(names=tuple(args.tensor)), args.format, group_size=args.group_size, store=args.store,
                    epsilon=args.epsilon)
    return _print_build(build_candidate(Path(args.src), recipe, Path(args.dst)), args.json)


def cmd_placebo(args: argparse.Namespace) -> int:
    recipe = Recipe(Selection(names=tuple(args.tensor)), PLACEBO, seed=args.seed)
    return _print_build(build_candidate(Path(args.src), recipe, Path(args.dst)), args.json)


def _print_build(result: BuildResult, as_json: bool) -> int:
    print(dumps(result.to_json(), indent=2) if as_json else format_table(result))
    return 0


def _value_text(value: Any, limit: int = 80) -> str:
    if isinstance(value, ArrayPreview):
        text = f"[{', '.join(map(repr, value.head))}, ...] ({value.length} {value.element_type})"
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def cmd_inspect(args: argparse.Namespace) -> int:
    info = model_info(Path(args.model))
    tensors = info.tensors
    if args.tensor:
        wanted = set(select_tensors([t.name for t in tensors], Selection(names=tuple(args.tensor)),
                                    source=str(info.path)))
        tensors = [t for t in tensors if t.name in wanted]
    if args.json:
        data = info.to_json()
        data["tensors"] = [t.to_json() for t in tensors]
        print(dumps(data, indent=2))
        return 0
    print(f"{info.path}: GGUF v{info.version}, {len(info.fields)} metadata keys, {len(info.tensors)} tensors, "
          f"alignment {info.alignment}, {info.file_size} bytes")
    for f in info.fields:
        print(f"  {f.key} ({f.value_type.lower()}) = {_value_text(f.value)}")
    width = max((len(t.name) for t in tensors), default=4)
    print(f"  {'tensor'.ljust(width)}  {'type':>6}  {'shape':>16}  {'bytes':>12}")
    for t in tensors:
        print(f"  {t.name.ljust(width)}  {t.type_name:>6}  {'x'.join(map(str, t.shape)):>16}  {t.nbytes:>12}")
    return 0
