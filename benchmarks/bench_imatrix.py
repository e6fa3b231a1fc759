"""What an importance matrix costs: ``llama-imatrix`` over the calibration slice, next to one ``llama-perplexity``
pass over the same tokens, measured side by side (A B, B A, ...) in one run.

    .venv/bin/python benchmarks/bench_imatrix.py [--chunks 4] [--rounds 3] [--markdown FILE]

Both are whole commands on the default model and corpus with the settings fakequant runs with (context 512, batch
and micro-batch 512, 2 threads, flash attention off, no weight repacking) over the first ``--chunks`` chunks: the
command :func:`fakequant.recipe.imatrix.imatrix_argv` builds (``--no-ppl``), and ``llama-perplexity`` with the same
options. Both tokenize the whole corpus first, as they always do. The imatrix is written to a temporary folder
(the cache is only read: model, corpus, tools).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import BenchError, alternate, load_now, machine, mib, ratio, run_measured  # a script beside its helpers

THREADS, CTX = 2, 512


def main() -> int:
    from fakequant.recipe.imatrix import imatrix_argv
    from fakequant.runtime.settings import RuntimeSettings
    from fakequant.store.assets import corpus_path, model_path
    from fakequant.store.tools import tool_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    imatrix_tool, perplexity_tool = tool_path("llama-imatrix"), tool_path("llama-perplexity")
    if imatrix_tool is None or perplexity_tool is None:
        raise BenchError("llama-imatrix / llama-perplexity are not built: run `make tools`")
    model, corpus, n = model_path(), corpus_path(), args.chunks
    settings = RuntimeSettings(n_ctx=CTX, n_batch=CTX, n_ubatch=CTX, n_threads=THREADS, flash_attn=False)
    with tempfile.TemporaryDirectory(prefix="fq-bench-imatrix-") as tmp:
        out = Path(tmp) / "imatrix.gguf"
        imatrix_cmd = imatrix_argv(imatrix_tool, model, corpus, out, chunks=n, settings=settings)
        perplexity_cmd = [str(perplexity_tool), "-m", str(model), "-f", str(corpus), "-c", str(CTX), "-b", str(CTX),
                          "-ub", str(CTX), "--chunks", str(n), "-t", str(THREADS), "-tb", str(THREADS), "-fa", "off",
                          "--no-repack"]
        load_start = load_now()
        print(f"== imatrix: {model.name}, {n} chunks of {CTX} ({n * CTX} tokens), {args.rounds} rounds "
              f"(load {load_start})", flush=True)
        series = alternate({"llama-imatrix": lambda: run_measured(imatrix_cmd, output=out),
                            "llama-perplexity": lambda: run_measured(perplexity_cmd)}, args.rounds,
                           between=lambda: out.unlink(missing_ok=True))
        load_end = load_now()
    im, pp = series["llama-imatrix"], series["llama-perplexity"]
    home = str(Path.home())

    def shown(cmd: list[str]) -> str:
        return " ".join(str(c).replace(tmp, "$TMP").replace(home, "~") for c in cmd)

    m = machine()
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; {m['date']}; load average {load_start} → "
             f"{load_end}.", "",
             "| what | median s (min-max) | ratio | peak RSS MiB |", "|---|---|---|---|",
             f"| `llama-imatrix`, {n} chunks | {im.seconds:.2f} ({im.spread()}) | "
             f"**{ratio(im.seconds, pp.seconds):.2f}×** one perplexity pass over the same tokens | "
             f"{mib(im.max_rss):.0f} |",
             f"| `llama-perplexity`, {n} chunks | {pp.seconds:.2f} ({pp.spread()}) | 1.00 | {mib(pp.max_rss):.0f} |",
             "", f"- llama-imatrix: `{shown(imatrix_cmd)}`", f"- llama-perplexity: `{shown(perplexity_cmd)}`"]
    text = "\n".join(lines)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"bench_imatrix: {err}", file=sys.stderr)
        sys.exit(2)
