"""``fakequant sweep``, ``list``, ``report`` and ``fetch``: the suite's commands."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from fakequant.errors import AssetError
from fakequant.report import read_report, render_experiment
from fakequant.report.sensitivity import DECISIONS, ERROR
from fakequant.store.assets import corpus_path, model_path
from fakequant.suite.criteria import load_criteria
from fakequant.suite.sweep import listing, run_sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    run = run_sweep(args.criteria, args.name, jobs=args.jobs, report_dir=args.report_dir, gather=args.gather)
    counts = {d: sum(c.decision == d for c in run.smap.cells) for d in (*DECISIONS, ERROR)}
    print(" ".join(f"{d}={n}" for d, n in counts.items() if n))
    print(run.smap.safe_line())
    for kind, path in run.paths.items():
        print(f"{kind:5} {path}")
    if not run.complete:
        print(f"fakequant sweep: {counts[ERROR]} cell(s) could not be measured; see their reports", file=sys.stderr)
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    data = listing(load_criteria(args.criteria))
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return 0
    for e in data["experiments"]:
        if e["sweep"] is None:
            state = f"  INVALID: {e['error']}" if e["error"] else ""
            print(f"{e['name']:24} pytest {shlex.join(e['pytest'])}{state}")
    for sname, sweep in data["sweeps"].items():
        print(f"sweep {sname}: {len(sweep['cells'])} cells  (fakequant sweep {sname} -j N)")
        for cell in sweep["cells"]:
            print(f"  {cell}")
    # An invalid experiment is listed (pytest still runs the others), but `fakequant list` doubles as the
    # criteria.toml validator: each problem goes to stderr as one line, and the exit status is 2.
    errors = [e["error"] for e in data["experiments"] if e["error"]]
    for error in errors:
        print(f"fakequant list: error: {error}", file=sys.stderr)
    return 2 if errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild summary.md and summary.html beside a report.json (a CI artifact travels alone)."""
    path = Path(args.report_json)
    doc = read_report(path)
    render_experiment(doc, path.parent, args.lang)
    print(f"wrote {path.parent / 'summary.md'} and {path.parent / 'summary.html'} ({doc['verdict']['decision']})")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    wanted = args.what or ["model", "corpus"]
    unknown = sorted(set(wanted) - {"model", "corpus"})
    if unknown:
        raise AssetError(f"fetch: unknown asset {unknown[0]!r}; choose 'model' or 'corpus'")
    if "model" in wanted:
        print(f"model:  {model_path()}")
    if "corpus" in wanted:
        print(f"corpus: {corpus_path()}")
    return 0
