"""fakequant's runtime against llama.cpp's own tools, measured side by side in one run (alternating rounds).

Prints medians and ratios for:
- perplexity throughput: fakequant.runtime.perplexity (end to end, softmax included) vs llama-perplexity (its
  first chunk's "seconds per pass", softmax included);
- the paired comparison: compare() wall time / one perplexity pass, and bytes of logits written to disk
  (fakequant: none; llama.cpp's KLD mode: its base-logits file);
- prompt and generation tokens/s: fakequant.runtime.llama.generate vs llama-bench (-p / -n), same threads.

Settings on both sides: flash attention off, no repacking (-nr / --repack 0), fakequant's defaults otherwise.
Usage: python benchmarks/bench_runtime.py [--rounds 3] [--chunks 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fakequant.runtime import llama as runtime
from fakequant.runtime.paired import compare
from fakequant.runtime.perplexity import perplexity
from fakequant.runtime.settings import RuntimeSettings, SamplingParams
from fakequant.store import assets, tools


def _tool(name: str) -> Path:
    path = tools.tool_path(name)
    if path is None:
        sys.exit(f"{name} is not built; run `make tools`")
    return path


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return proc.stdout + proc.stderr


def _ratio(a: list[float], b: list[float]) -> str:
    ma, mb = statistics.median(a), statistics.median(b)
    return f"{ma:10.2f} {mb:10.2f} {ma / mb:7.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512)
    args = ap.parse_args()
    settings = RuntimeSettings(n_ctx=args.ctx, n_batch=args.ctx, n_ubatch=args.ctx, n_threads=args.threads)
    model = assets.model_path()
    common = ["-c", str(args.ctx), "-b", str(args.ctx), "-ub", str(args.ctx), "-t", str(args.threads), "-fa", "off",
              "-nr", "--chunks", str(args.chunks)]
    lp, lb = _tool("llama-perplexity"), _tool("llama-bench")
    res: dict[str, list[float]] = {k: [] for k in (
        "ppl_ours", "ppl_tool", "cmp_s", "ppl_s", "pp_ours", "pp_tool", "tg_ours", "tg_tool")}
    kld_bytes = 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "corpus.txt"
        corpus.write_text(assets.corpus_path().read_text()[:args.chunks * args.ctx * 12] + "\n")
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            out = _run([str(lp), "-m", str(model), "-f", str(corpus), *common])
            # llama-perplexity prints the first chunk's time ("N seconds per pass"); both sides include the softmax
            res["ppl_tool"].append(args.ctx / float(re.search(r"([\d.]+) seconds per pass", out).group(1)))
            with runtime.load_model(model, settings) as base, runtime.load_model(model, settings) as twin:
                p = perplexity(base, corpus, chunks=args.chunks)
                res["ppl_ours"].append(p.tokens_per_s)
                res["ppl_s"].append(p.seconds)
                before = sum(f.stat().st_size for f in tmp.iterdir())
                start = time.perf_counter()
                compare(base, twin, corpus, chunks=args.chunks)
                res["cmp_s"].append(time.perf_counter() - start)
                assert sum(f.stat().st_size for f in tmp.iterdir()) == before  # nothing written
                # llama-bench's pp384 and tg128 are separate tests, each from an empty context: tg128 decodes 128
                # tokens at depth 0-127, not after the prompt (at depth 384-511 attention costs ~20% more here)
                ids = base.tokenize("the " * 600)[:384]
                res["pp_ours"].append(runtime.generate_tokens(base, ids, SamplingParams(max_tokens=1))
                                      .prompt_tokens_per_s)
                res["tg_ours"].append(runtime.generate_tokens(base, ids[:1], SamplingParams(max_tokens=129))
                                      .gen_tokens_per_s)
            bench = _bench_json(lb, model, args.threads)
            for row in bench:
                key = "pp_tool" if row["n_prompt"] > 0 else "tg_tool"
                res[key].append(row["avg_ts"])
        _run([str(lp), "-m", str(model), "-f", str(corpus), *common, "--kl-divergence-base", str(tmp / "base.kld")])
        kld_bytes = (tmp / "base.kld").stat().st_size
    print(f"{'':34} {'fakequant':>10} {'llama.cpp':>10} {'ratio':>7}")
    print(f"{'perplexity tokens/s':34} {_ratio(res['ppl_ours'], res['ppl_tool'])}   (target >= 0.95)")
    print(f"{'prompt tokens/s (384)':34} {_ratio(res['pp_ours'], res['pp_tool'])}   (target 0.90-1.10)")
    print(f"{'generation tokens/s (128)':34} {_ratio(res['tg_ours'], res['tg_tool'])}   (target 0.90-1.10)")
    print(f"{'compare() s / perplexity pass s':34} {_ratio(res['cmp_s'], res['ppl_s'])}   (target <= 2.1)")
    print(f"{'logits bytes on disk':34} {0:>10} {kld_bytes:>10}   ({args.chunks} chunks of {args.ctx})")
    print(f"settings: {json.dumps(settings.to_json())}; rounds: {args.rounds}")
    return 0


def _bench_json(exe: Path, model: Path, threads: int) -> list[dict]:
    out = subprocess.run([str(exe), "-m", str(model), "-t", str(threads), "-fa", "0", "--repack", "0",
                          "-p", "384", "-n", "128", "-r", "1", "-o", "json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"llama-bench failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


if __name__ == "__main__":
    sys.exit(main())
