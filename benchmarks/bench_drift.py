"""What capturing the per-layer drift costs: ``fakequant compare --placebo`` with and without ``--drift``, side by
side in one run (the ``drift`` section of ``run.py``; also runnable alone).

    .venv/bin/python benchmarks/bench_drift.py [--rounds 3] [--chunks 4]

Both commands score base, candidate (FP8 of ``blk.10.ffn_norm``) and its placebo over the same chunks; with
``--drift`` each model also runs on a second context whose eval callback copies every ``l_out-N`` and the final
norm at the scored positions, and the drift statistics are computed. Target: at most 1.3× end to end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Run, alternate, load_now, mib, ratio, run_measured, verdict  # a script beside its helpers

BIN = Path(sys.executable).parent
TARGET = 1.3
CTX, THREADS = 512, 2


def compare_cmd(model: Path, cand: Path, placebo: Path, corpus: Path, chunks: int, drift: bool) -> list[str]:
    return [str(BIN / "fakequant"), "compare", str(model), str(cand), "--placebo", str(placebo), "--corpus",
            str(corpus), "--chunks", str(chunks), "--ctx", str(CTX), "--batch", str(CTX), "--threads", str(THREADS),
            "--flash-attn", "off", "--json", "--no-progress", *(["--drift"] if drift else [])]


def bench_drift(args: argparse.Namespace, tmp: Path, rep: Any) -> None:
    from fakequant.store.assets import corpus_path, model_path

    model, corpus, n = model_path(), corpus_path(), args.chunks
    cand, placebo = tmp / "drift-candidate.gguf", tmp / "drift-placebo.gguf"
    run_measured([BIN / "fakequant", "quantize", model, cand, "--tensor", "blk.10.ffn_norm.weight", "--format",
                  "fp8_e4m3"])
    run_measured([BIN / "fakequant", "placebo", model, placebo, "--tensor", "blk.10.ffn_norm.weight"])

    def step(drift: bool) -> Any:
        def run() -> tuple[Run, dict[str, float]]:
            r = run_measured(compare_cmd(model, cand, placebo, corpus, n, drift))
            data = json.loads(r.stdout)
            return r, {"loop_s": data["seconds"], "kld": data["kld_mean"], "cpu_s": r.cpu_s}
        return run

    steps = {"compare --placebo": step(False), "compare --placebo --drift": step(True)}
    print(f"\n== drift: {model.name}, {n} chunks of {CTX}, {args.rounds} rounds (load {load_now()})", flush=True)
    s = alternate(steps, args.rounds)
    plain, drift = s["compare --placebo"], s["compare --placebo --drift"]
    r_wall, r_loop = ratio(drift.seconds, plain.seconds), ratio(drift.med("loop_s"), plain.med("loop_s"))
    r_cpu = ratio(drift.med("cpu_s"), plain.med("cpu_s"))  # less sensitive than wall time to a shared machine's load
    rep.row(f"`fakequant compare --placebo --drift`, {n} chunks", f"{drift.seconds:.2f} ({drift.spread()})",
            f"**{r_wall:.2f}×** the same comparison without `--drift` end to end ({r_loop:.2f}× its chunk loop; "
            f"{r_cpu:.2f}× its CPU time)",
            f"{mib(drift.max_rss):.0f}", f"{mib(drift.written):.1f}",
            f"target ≤ {TARGET}×: {verdict(r_wall, TARGET)}; KLD {drift.med('kld'):.6f} vs {plain.med('kld'):.6f}; "
            f"without: {plain.seconds:.2f} s ({plain.spread()}), {mib(plain.max_rss):.0f} MiB")
    rep.headlines.append(f"per-layer drift in the same pass: {r_wall:.2f}× the comparison without it end to end "
                         f"({r_loop:.2f}× in the chunk loop, {r_cpu:.2f}× the CPU time), target ≤ {TARGET}×")


class _Lines:
    def __init__(self) -> None:
        self.rows: list[str] = []
        self.headlines: list[str] = []

    def row(self, *cells: str) -> None:
        self.rows.append("| " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=4)
    args = parser.parse_args()
    rep = _Lines()
    with tempfile.TemporaryDirectory(prefix="fakequant-bench-drift-") as t:
        bench_drift(args, Path(t), rep)
    print("\n".join(rep.rows + rep.headlines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
