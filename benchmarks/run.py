"""fakequant against what a llama.cpp user does by hand: speed, memory and disk, measured side by side (issue 8).

    .venv/bin/python benchmarks/run.py [--quick] [--rounds N] [--chunks N] [--only ppl,ppl_alone,rewrite,layer0]
                                       [--size-gib 1.0] [--markdown FILE]

Sections (each alternates its commands, A B / B A, for ``--rounds`` rounds, and prints medians and ratios):

- ``ppl``: ``fakequant ppl`` vs ``llama-perplexity``, and ``fakequant compare`` vs llama-perplexity's two-run KLD
  workflow (``--kl-divergence-base FILE``, then ``--kl-divergence``), all on the default model over ``--chunks``
  chunks with the same settings (ctx 512, batch 512, 2 threads, flash attention off, no weight repacking);
- ``ppl_alone``: ``fakequant ppl`` vs ``llama-perplexity`` only, on ``--corpus`` with ``--flash-attn``: throughput
  end to end and the peak RSS ratio (targets ≥ 1.0× and ≤ 1.2×);
- ``rewrite``: on a synthetic GGUF of ``--size-gib``: ``cp``, a same-size fake quantization of one small tensor,
  a size-changing one, and gguf-py's ``gguf_new_metadata.py`` copy of the same file;
- ``layer0``: the whole ``pytest -k layer0`` with a cold and a warm cache, and the sum of its unavoidable model
  runs (``benchmarks/bench_layer0.py``).

Every command is a child process: wall time, peak RSS and bytes written to storage come from its resource usage
(``benchmarks/_measure.py``). Work files go to a temporary folder under ``$FAKEQUANT_BENCH_DIR`` (default: the
system's temporary folder), deleted at the end; the shared ``~/.cache/fakequant`` is only read (model, corpus,
tools); the layer0 runs use a temporary ``FAKEQUANT_HOME`` holding links to its ``models/`` and ``corpora/``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import (  # a script beside its helpers, not a package
    BenchError,
    Run,
    alternate,
    check_disk,
    load_now,
    machine,
    mib,
    ratio,
    run_measured,
    verdict,
)
from bench_drift import bench_drift  # the drift section

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
THREADS = 2
CTX = 512
TARGETS = {"ppl": 0.95, "compare": 2.1, "placebo": 1.6, "same_size": 1.5, "layer0_warm": 1.3}


class Report:
    """Lines for the terminal and the Markdown table, collected as the sections run."""

    def __init__(self) -> None:
        self.rows: list[str] = []  # Markdown table rows
        self.notes: list[str] = []
        self.commands: list[str] = []
        self.headlines: list[str] = []

    def row(self, what: str, median_s: str, ratio_text: str, rss: str, written: str, note: str = "") -> None:
        self.rows.append(f"| {what} | {median_s} | {ratio_text} | {rss} | {written} | {note} |")

    def command(self, label: str, cmd: list[str]) -> None:
        # quote only what the shell needs quoted, so that ~ and $TMP stay readable (and ~ still expands)
        words = [c if re.fullmatch(r"[\w@%+=:,./~$-]+", c) else shlex.quote(c) for c in map(str, cmd)]
        self.commands.append(f"- {label}: `{' '.join(words)}`")


def log(text: str) -> None:
    print(text, flush=True)


def short(cmd: list[str], tmp: Path) -> list[str]:
    """Commands as the README shows them: temporary and cache paths replaced by names."""
    home = str(Path.home())
    return [str(c).replace(str(tmp), "$TMP").replace(f"{ROOT}/", "").replace(home, "~") for c in cmd]


# ---------------------------------------------------------------------------------------------------- perplexity


def llama_perplexity_cmd(tool: Path, model: Path, corpus: Path, chunks: int, *extra: str,
                         flash_attn: str = "off") -> list[str]:
    # -fa off: llama-perplexity's default is on; --no-repack: fakequant's default (see fakequant.runtime.settings)
    return [str(tool), "-m", str(model), "-f", str(corpus), "-c", str(CTX), "-b", str(CTX), "-ub", str(CTX),
            "--chunks", str(chunks), "-t", str(THREADS), "-tb", str(THREADS), "-fa", flash_attn, "--no-repack",
            *extra]


def fakequant_cmd(command: str, models: list[Path], corpus: Path, chunks: int, flash_attn: str = "off") -> list[str]:
    return [str(BIN / "fakequant"), command, *map(str, models), "--corpus", str(corpus), "--chunks", str(chunks),
            "--ctx", str(CTX), "--batch", str(CTX), "--threads", str(THREADS), "--flash-attn", flash_attn, "--json",
            "--no-progress"]


_FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+)")
# llama.cpp's log lines start with the time since start, "m.ss.mmm.uuu"
_STAMP = r"(?<![\d.])(\d+)\.(\d+)\.(\d+)\.(\d+) I "
_LOOP_START = re.compile(_STAMP + r"perplexity: calculating perplexity over (\d+) chunks, n_ctx=(\d+)", re.M)
_LOOP_END = re.compile(_STAMP + r"Final estimate", re.M)
_TOKENIZE = re.compile(r"tokenization took ([0-9.]+) ms")
_KLD = re.compile(r"Mean\s+KLD:\s+([-0-9.]+)")
_LN_RATIO = re.compile(r"Mean\s+ln\(PPL\(Q\)/PPL\(base\)\)\s*:\s*([-0-9.]+)")


def _seconds(m: re.Match) -> float:
    minutes, secs, ms, us = (int(g) for g in m.groups()[:4])
    return minutes * 60 + secs + ms / 1e3 + us / 1e6


def parse_llama(run: Run) -> dict[str, float]:
    """Numbers llama-perplexity prints: final PPL, the tokens/s of its chunk loop (from the log's time stamps:
    "calculating perplexity over N chunks" to "Final estimate"), its tokenization time."""
    text = run.stdout + run.stderr
    out: dict[str, float] = {}
    if m := _FINAL.search(text):
        out["ppl"] = float(m.group(1))
    start, end = _LOOP_START.search(text), _LOOP_END.search(text)
    if start and end:
        out["tps_inner"] = int(start.group(5)) * int(start.group(6)) / (_seconds(end) - _seconds(start))
    if m := _TOKENIZE.search(text):
        out["tokenize_s"] = float(m.group(1)) / 1000
    if m := _KLD.search(text):
        out["kld"] = float(m.group(1))
    if m := _LN_RATIO.search(text):
        out["ln_ratio"] = float(m.group(1))
    return out


def bench_ppl(args: argparse.Namespace, tmp: Path, rep: Report) -> None:
    from fakequant.store.assets import corpus_path, model_path
    from fakequant.store.tools import tool_path

    tool = tool_path("llama-perplexity")
    if tool is None:
        raise BenchError("llama-perplexity is not built: run `make tools` (python -m fakequant.store.tools build)")
    model, corpus, n = model_path(), corpus_path(), args.chunks
    cand = tmp / "candidate.gguf"
    run_measured([BIN / "fakequant", "quantize", model, cand, "--tensor", "blk.10.ffn_norm.weight", "--format",
                  "fp8_e4m3"])
    placebo = tmp / "placebo.gguf"
    run_measured([BIN / "fakequant", "placebo", model, placebo, "--tensor", "blk.10.ffn_norm.weight"])
    kld_file = tmp / "kld-base.bin"
    tokens = n * CTX

    def fq_ppl() -> tuple[Run, dict[str, float]]:
        run = run_measured(fakequant_cmd("ppl", [model], corpus, n))
        data = json.loads(run.stdout)
        return run, {"ppl": data["ppl"], "tps_inner": data["tokens_per_s"], "loop_s": data["seconds"]}

    def ll_ppl() -> tuple[Run, dict[str, float]]:
        run = run_measured(llama_perplexity_cmd(tool, model, corpus, n))
        return run, parse_llama(run)

    def fq_compare() -> tuple[Run, dict[str, float]]:
        run = run_measured(fakequant_cmd("compare", [model, cand], corpus, n))
        data = json.loads(run.stdout)
        return run, {"ppl": data["ppl_base"], "kld": data["kld_mean"], "ln_ratio": data["ln_ppl_ratio"],
                     "loop_s": data["seconds"]}

    def fq_compare_placebo() -> tuple[Run, dict[str, float]]:
        run = run_measured([*fakequant_cmd("compare", [model, cand], corpus, n), "--placebo", str(placebo)])
        data = json.loads(run.stdout)
        return run, {"kld": data["kld_mean"], "floor": data["placebo"]["kld_mean"],
                     "excess": data["excess"]["kld_mean"], "loop_s": data["seconds"]}

    def ll_kld_pair() -> tuple[Run, dict[str, float]]:
        first = run_measured(llama_perplexity_cmd(tool, model, corpus, n, "--kl-divergence-base", str(kld_file)),
                             output=kld_file)
        size = kld_file.stat().st_size
        second = run_measured(llama_perplexity_cmd(tool, cand, corpus, n, "--kl-divergence-base", str(kld_file),
                                                   "--kl-divergence"))
        kld_file.unlink()
        both = Run(seconds=first.seconds + second.seconds, max_rss=max(first.max_rss, second.max_rss),
                   written=first.written + second.written, stdout=second.stdout, stderr=second.stderr)
        return both, {"kld_file": size, "ppl": parse_llama(first).get("ppl", float("nan")),
                      **{k: v for k, v in parse_llama(second).items() if k in ("kld", "ln_ratio")}}

    steps: dict[str, Callable[[], tuple[Run, dict[str, float]]]] = {
        "fakequant ppl": fq_ppl, "llama-perplexity": ll_ppl,
        "fakequant compare": fq_compare, "fakequant compare --placebo": fq_compare_placebo,
        "llama-perplexity KLD x2": ll_kld_pair}
    log(f"\n== perplexity: {model.name}, {n} chunks of {CTX} ({tokens} tokens), {args.rounds} rounds "
        f"(load {load_now()})")
    s = alternate(steps, args.rounds, log=log)
    fq, ll, fc, fp, lk = (s[k] for k in steps)

    rep.command("fakequant ppl", short(fakequant_cmd("ppl", [model], corpus, n), tmp))
    rep.command("llama-perplexity", short(llama_perplexity_cmd(tool, model, corpus, n), tmp))
    rep.command("fakequant compare", short(fakequant_cmd("compare", [model, cand], corpus, n), tmp))
    rep.command("fakequant compare --placebo",
                short([*fakequant_cmd("compare", [model, cand], corpus, n), "--placebo", str(placebo)], tmp))
    rep.command("llama-perplexity KLD (run 1)", short(llama_perplexity_cmd(
        tool, model, corpus, n, "--kl-divergence-base", str(kld_file)), tmp))
    rep.command("llama-perplexity KLD (run 2)", short(llama_perplexity_cmd(
        tool, cand, corpus, n, "--kl-divergence-base", str(kld_file), "--kl-divergence"), tmp))

    tps = {name: tokens / x.seconds for name, x in (("fq", fq), ("ll", ll))}
    r_wall = ratio(tps["fq"], tps["ll"])
    r_inner = ratio(fq.med("tps_inner"), ll.med("tps_inner"))
    rep.row(f"`fakequant ppl`, {n} chunks", f"{fq.seconds:.2f} ({fq.spread()})",
            f"**{r_wall:.2f}×** llama-perplexity's tokens/s end to end ({tps['fq']:.0f} vs {tps['ll']:.0f}); "
            f"{r_inner:.2f}× in the decode loop ({fq.med('tps_inner'):.0f} vs {ll.med('tps_inner'):.0f})",
            f"{mib(fq.max_rss):.0f}", f"{mib(fq.written):.1f}",
            f"target ≥ {TARGETS['ppl']}: {verdict(r_wall, TARGETS['ppl'], at_most=False)}; "
            f"PPL {fq.med('ppl'):.4f} vs {ll.med('ppl'):.4f}")
    rep.row(f"`llama-perplexity`, {n} chunks", f"{ll.seconds:.2f} ({ll.spread()})", "1.00", f"{mib(ll.max_rss):.0f}",
            f"{mib(ll.written):.1f}", "")
    r_cmp = ratio(fc.seconds, fq.seconds)
    r_loop = ratio(fc.med("loop_s"), fq.med("loop_s"))
    r_pair = ratio(fc.seconds, lk.seconds)
    rep.row("`fakequant compare` (base + candidate, one pass)", f"{fc.seconds:.2f} ({fc.spread()})",
            f"**{r_cmp:.2f}×** one `fakequant ppl` end to end ({r_loop:.2f}× its chunk loop); "
            f"{r_pair:.2f}× llama-perplexity's KLD pair",
            f"{mib(fc.max_rss):.0f}", f"{mib(fc.written):.1f}",
            f"target ≤ {TARGETS['compare']}× and 0 B of logits: {verdict(r_cmp, TARGETS['compare'])}; "
            f"KLD {fc.med('kld'):.6f}, Δln PPL {fc.med('ln_ratio'):+.6f}")
    r_plac = ratio(fp.seconds, fc.seconds)
    rep.row("`fakequant compare --placebo` (base + candidate + placebo, one pass)", f"{fp.seconds:.2f} ({fp.spread()})",
            f"**{r_plac:.2f}×** the two-model `fakequant compare` end to end "
            f"({ratio(fp.med('loop_s'), fc.med('loop_s')):.2f}× its chunk loop)",
            f"{mib(fp.max_rss):.0f}", f"{mib(fp.written):.1f}",
            f"target ≤ {TARGETS['placebo']}×: {verdict(r_plac, TARGETS['placebo'])}; KLD {fp.med('kld'):.6f}, "
            f"floor {fp.med('floor'):.6f}, excess {fp.med('excess'):+.6f}")
    rep.row("llama-perplexity `--kl-divergence-base` + `--kl-divergence`", f"{lk.seconds:.2f} ({lk.spread()})",
            f"{ratio(lk.seconds, ll.seconds):.2f}× one llama-perplexity pass", f"{mib(lk.max_rss):.0f}",
            f"{mib(lk.written):.1f}",
            f"KLD base file {mib(lk.med('kld_file')):.1f} MiB; KLD {lk.med('kld'):.6f}, "
            f"Δln PPL {lk.med('ln_ratio'):+.6f}")
    rep.headlines.append(f"perplexity: {r_wall:.2f}× llama-perplexity's throughput end to end ({r_inner:.2f}× in the "
                         f"decode loop), target ≥ 0.95")
    rep.headlines.append(f"paired comparison: {r_cmp:.2f}× one perplexity pass end to end ({r_loop:.2f}× in the "
                         f"chunk loop; {r_pair:.2f}× llama-perplexity's "
                         f"two KLD runs), {mib(fc.written):.1f} MiB written vs a {mib(lk.med('kld_file')):.0f} MiB "
                         "KLD base file, target ≤ 2.1×")
    rep.headlines.append(f"placebo in the same pass: {r_plac:.2f}× the two-model comparison end to end, target ≤ "
                         f"{TARGETS['placebo']}×")


def bench_ppl_alone(args: argparse.Namespace, tmp: Path, rep: Report) -> None:
    """`fakequant ppl` against `llama-perplexity` alone, alternated: end-to-end throughput and peak RSS, on
    ``--corpus`` (default: the default corpus; a short held-out text makes the start-up and the per-chunk overheads
    show) with ``--flash-attn``."""
    from fakequant.store.assets import corpus_path, model_path
    from fakequant.store.tools import tool_path

    tool = tool_path("llama-perplexity")
    if tool is None:
        raise BenchError("llama-perplexity is not built: run `make tools` (python -m fakequant.store.tools build)")
    model, n, fa = model_path(), args.chunks, args.flash_attn
    corpus = args.corpus or corpus_path()
    fq_cmd = fakequant_cmd("ppl", [model], corpus, n, flash_attn=fa)
    ll_cmd = llama_perplexity_cmd(tool, model, corpus, n, flash_attn=fa)

    def fq_ppl() -> tuple[Run, dict[str, float]]:
        run = run_measured(fq_cmd)
        return run, {"ppl": json.loads(run.stdout)["ppl"]}

    def ll_ppl() -> tuple[Run, dict[str, float]]:
        run = run_measured(ll_cmd)
        return run, parse_llama(run)

    log(f"\n== perplexity alone: {model.name}, {corpus.name}, {n} chunks of {CTX}, flash attention {fa}, "
        f"{args.rounds} rounds (load {load_now()})")
    s = alternate({"fakequant ppl": fq_ppl, "llama-perplexity": ll_ppl}, args.rounds, log=log)
    fq, ll = s["fakequant ppl"], s["llama-perplexity"]
    rep.command("fakequant ppl (alone)", short(fq_cmd, tmp))
    rep.command("llama-perplexity (alone)", short(ll_cmd, tmp))
    r_wall, r_rss = ratio(ll.seconds, fq.seconds), ratio(fq.max_rss, ll.max_rss)
    rep.row(f"`fakequant ppl`, {n} chunks of {corpus.name}, -fa {fa}", f"{fq.seconds:.2f} ({fq.spread()})",
            f"**{r_wall:.2f}×** llama-perplexity's throughput end to end; **{r_rss:.2f}×** its peak RSS",
            f"{mib(fq.max_rss):.0f}", f"{mib(fq.written):.1f}",
            f"targets ≥ 1.0× throughput: {verdict(r_wall, 1.0, at_most=False)}, ≤ 1.2× memory: "
            f"{verdict(r_rss, 1.2)}; PPL {fq.med('ppl'):.4f} vs {ll.med('ppl'):.4f}")
    rep.row(f"`llama-perplexity`, {n} chunks of {corpus.name}, -fa {fa}", f"{ll.seconds:.2f} ({ll.spread()})", "1.00",
            f"{mib(ll.max_rss):.0f}", f"{mib(ll.written):.1f}", "")
    rep.headlines.append(f"perplexity alone ({corpus.name}, -fa {fa}): {r_wall:.2f}× llama-perplexity's throughput "
                         f"end to end, {r_rss:.2f}× its peak RSS; targets ≥ 1.0× and ≤ 1.2×")


# ------------------------------------------------------------------------------------------------------- rewrite


def bench_rewrite(args: argparse.Namespace, tmp: Path, rep: Report) -> None:
    from fakequant.gguf.synthetic import write_synthetic_gguf

    home = tmp / "home"  # the engine caches the source's sha256 here, not in the shared cache
    env = {**os.environ, "FAKEQUANT_HOME": str(home)}
    src = write_synthetic_gguf(tmp / "synthetic.gguf", int(args.size_gib * 2**30))
    dst = tmp / "out.gguf"
    script = Path(__import__("gguf").__file__).parent / "scripts" / "gguf_new_metadata.py"
    commands = {
        "cp": ["cp", src, dst],
        "same-size (1 norm -> bf16)": [BIN / "fakequant", "quantize", src, dst, "--tensor",
                                       "blk.0.attn_norm.weight", "--format", "bf16"],
        "size-changing (Q8_0 -> q4_0)": [BIN / "fakequant", "quantize", src, dst, "--tensor",
                                         "blk.0.ffn_up.weight", "--format", "q4_0"],
        "gguf_new_metadata.py": [sys.executable, script, src, dst, "--force"],
    }
    run_measured(commands["same-size (1 norm -> bf16)"], env=env)  # hash the source once (cached by path/mtime)
    dst.unlink()

    def step(cmd: list) -> Callable[[], Run]:
        return lambda: run_measured(cmd, env=env, output=dst)

    log(f"\n== rewrite: {src.stat().st_size / 2**20:.0f} MiB synthetic GGUF, {args.rewrite_rounds} rounds "
        f"(load {load_now()})")
    s = alternate({k: step(v) for k, v in commands.items()}, args.rewrite_rounds,
                  between=lambda: dst.unlink(missing_ok=True), log=log)
    cp = s["cp"]
    size = f"{src.stat().st_size / 2**30:.2f} GiB"
    for name, series in s.items():
        r = ratio(series.seconds, cp.seconds)
        target = ""
        if name.startswith("same-size"):
            target = f"target ≤ {TARGETS['same_size']}: {verdict(r, TARGETS['same_size'])}"
            rep.headlines.append(f"same-size rewrite of a {size} GGUF: {r:.2f}× cp, target ≤ 1.5")
        elif name.startswith("size-changing"):
            rep.headlines.append(f"size-changing rewrite: {r:.2f}× cp; gguf_new_metadata.py copy: "
                                 f"{ratio(s['gguf_new_metadata.py'].seconds, cp.seconds):.2f}× cp")
        rep.row(f"{name}, {size}" if name == "cp" else name, f"{series.seconds:.2f} ({series.spread()})",
                "1.00" if name == "cp" else f"**{r:.2f}×** cp", f"{mib(series.max_rss):.0f}",
                f"{mib(series.written):.0f}", target)
        rep.command(name, short([str(c) for c in commands[name]], tmp))


# -------------------------------------------------------------------------------------------------------- layer0


def fresh_home(home: Path) -> None:
    """A FAKEQUANT_HOME with only the shared model and corpus (links): no candidates, baselines or hashes."""
    shared = Path(os.environ.get("FAKEQUANT_HOME") or Path.home() / ".cache" / "fakequant")
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    for sub in ("models", "corpora"):
        (home / sub).symlink_to(shared / sub)


def bench_layer0(args: argparse.Namespace, tmp: Path, rep: Report) -> None:
    cold_home, warm_home, reports = tmp / "home-cold", tmp / "home-warm", tmp / "reports"
    fresh_home(warm_home)

    def pytest_cmd() -> list[str]:
        return [str(BIN / "pytest"), "-k", args.experiment, "-p", "no:cacheprovider", "-o",
                "addopts=-ra --strict-markers", f"--report-dir={reports}", f"--junitxml={reports}/junit.xml",
                f"--html={reports}/report.html", "--self-contained-html", "-q"]

    def pytest_run(home: Path) -> Run:
        env = {**os.environ, "FAKEQUANT_HOME": str(home)}
        # status 1 (some check failed) is a result of the experiment, not a broken benchmark: still timed
        run = run_measured(pytest_cmd(), env=env, cwd=ROOT, ok_codes=(0, 1))
        if "failed" in (run.stdout.strip().splitlines() or [""])[-1]:
            log(f"    (pytest: {run.stdout.strip().splitlines()[-1]})")
        return run

    def cold() -> Run:
        fresh_home(cold_home)
        return pytest_run(cold_home)

    model_cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_layer0.py"), "--experiment", args.experiment]

    def models_only() -> tuple[Run, dict[str, float]]:
        run = run_measured(model_cmd, env={**os.environ, "FAKEQUANT_HOME": str(warm_home)}, cwd=ROOT)
        data = json.loads(run.stdout.strip().splitlines()[-1])
        return run, {"inner": data["seconds"], **{f"part:{k}": v for k, v in data["parts"].items()}}

    log(f"\n== pytest -k {args.experiment}: cold and warm cache, {args.rounds} rounds (load {load_now()})")
    pytest_run(warm_home)  # fill the warm home once
    s = alternate({"cold": cold, "warm": lambda: pytest_run(warm_home), "model runs": models_only}, args.rounds,
                  log=log)
    cold_s, warm_s, mr = s["cold"], s["warm"], s["model runs"]
    parts = ", ".join(f"{k[5:]} {mr.med(k):.1f} s" for k in mr.extra if k.startswith("part:"))
    r_warm_inner = ratio(warm_s.seconds, mr.med("inner"))
    r_warm_proc = ratio(warm_s.seconds, mr.seconds)
    rep.row(f"`pytest -k {args.experiment}`, cold cache", f"{cold_s.seconds:.2f} ({cold_s.spread()})",
            f"{ratio(cold_s.seconds, warm_s.seconds):.2f}× warm", f"{mib(cold_s.max_rss):.0f}",
            f"{mib(cold_s.written):.0f}", "")
    rep.row(f"`pytest -k {args.experiment}`, warm cache", f"{warm_s.seconds:.2f} ({warm_s.spread()})",
            f"**{r_warm_inner:.2f}×** the model runs ({r_warm_proc:.2f}× with their process start-up)",
            f"{mib(warm_s.max_rss):.0f}", f"{mib(warm_s.written):.0f}",
            f"target ≤ {TARGETS['layer0_warm']}: {verdict(r_warm_inner, TARGETS['layer0_warm'])}")
    rep.row("its unavoidable model runs alone", f"{mr.med('inner'):.2f} (process {mr.seconds:.2f})", "1.00",
            f"{mib(mr.max_rss):.0f}", f"{mib(mr.written):.0f}", parts)
    rep.command(f"pytest -k {args.experiment}", short(pytest_cmd(), tmp))
    rep.command("model runs alone", short(model_cmd, tmp))
    rep.headlines.append(f"warm `pytest -k {args.experiment}`: {r_warm_inner:.2f}× the sum of its unavoidable model "
                         f"runs (cold: {ratio(cold_s.seconds, warm_s.seconds):.2f}× warm), target ≤ 1.3")


# ---------------------------------------------------------------------------------------------------------- main

SECTIONS = {"ppl": bench_ppl, "ppl_alone": bench_ppl_alone, "rewrite": bench_rewrite, "layer0": bench_layer0,
            "drift": bench_drift}


def markdown(rep: Report, info: dict[str, str], args: argparse.Namespace, load_end: str) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM; {info['os']}, Python {info['python']}.",
        f"Date: {info['date']}. Load average at the start {info['load']}, at the end {load_end} "
        f"(the machine was shared). {args.rounds} rounds per comparison ({args.rewrite_rounds} for the rewrites), "
        "commands alternated (A B, B A, ...).",
        "",
        "| what | median s (min-max) | ratio | peak RSS MiB | written MiB | notes |",
        "|---|---|---|---|---|---|",
        *rep.rows,
        "",
        "Headlines:",
        "",
        *[f"- {h}" for h in rep.headlines],
        "",
        "Commands:",
        "",
        *rep.commands,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 2 chunks, a 64 MiB file: checks it all runs")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per comparison (default 3; --quick: 1)")
    parser.add_argument("--rewrite-rounds", type=int, default=None,
                        help="rounds of the rewrite section (about a second each; default 7; --quick: 1)")
    parser.add_argument("--chunks", type=int, default=None, help="perplexity chunks (default 8; --quick: 2)")
    parser.add_argument("--size-gib", type=float, default=None, help="synthetic GGUF size (default 1.0)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--experiment", default="layer0", help="experiment of the pytest section (default layer0)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results table to this file")
    parser.add_argument("--corpus", type=Path, default=None, help="text of the ppl_alone section (default: the "
                        "default corpus)")
    parser.add_argument("--flash-attn", choices=("on", "off"), default="off",
                        help="flash attention in the ppl_alone section (default off, fakequant's default)")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.rewrite_rounds = args.rewrite_rounds or (1 if args.quick else 7)
    args.chunks = args.chunks or (2 if args.quick else 8)
    args.size_gib = args.size_gib or (1 / 16 if args.quick else 1.0)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"--only: unknown section {unknown[0]!r}; known: {', '.join(SECTIONS)}")

    info = machine()
    log(f"{info['cpu']}, {info['cores']} cores, {info['date']}, load {info['load']}")
    rep = Report()
    with tempfile.TemporaryDirectory(prefix="fakequant-bench-", dir=os.environ.get("FAKEQUANT_BENCH_DIR")) as t:
        tmp = Path(t)
        check_disk(tmp)
        try:
            for name in only:
                SECTIONS[name](args, tmp, rep)
        except BenchError as err:
            print(f"benchmarks: error: {err}", file=sys.stderr)
            return 2
    text = markdown(rep, info, args, load_now())
    log("\n" + text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
