"""``fakequant ppl`` and ``fakequant compare``: score one model, or two side by side, on a corpus."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from fakequant.runtime.llama import load_model
from fakequant.runtime.perplexity import perplexity
from fakequant.runtime.settings import RuntimeSettings


def settings_from_args(args: argparse.Namespace) -> RuntimeSettings:
    ubatch = args.ubatch if args.ubatch is not None else args.batch
    gpu = {} if args.gpu_layers is None else {"n_gpu_layers": args.gpu_layers}
    return RuntimeSettings(n_ctx=args.ctx, n_batch=args.batch, n_ubatch=min(ubatch, args.batch),
                           n_threads=args.threads, flash_attn=args.flash_attn == "on", **gpu)


def _show_progress(args: argparse.Namespace) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty() and not (args.json and not sys.stdout.isatty())


def cmd_ppl(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with load_model(Path(args.model), settings) as model:
        result = perplexity(model, Path(args.corpus), chunks=args.chunks, progress=_show_progress(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(f"model      {result.model}\ncorpus     {result.corpus}  ({result.chunks} chunks of {result.n_ctx})")
    print(f"settings   {json.dumps(result.settings)}")
    print("running    " + ",".join(f"[{i + 1}]{p:.4f}" for i, p in enumerate(result.chunk_ppl)))
    print(f"PPL        {result.ppl:.4f} +/- {result.ppl_se:.5f}")
    print(f"speed      {result.tokens_per_s:.1f} tokens/s over {result.tokens} tokens")
    if result.nonfinite:
        print(f"NON-FINITE {result.nonfinite}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fakequant.runtime.paired import compare  # the paired pass and drift capture: not for ppl

    settings = settings_from_args(args)
    with contextlib.ExitStack() as stack:
        base, cand = (stack.enter_context(load_model(Path(p), settings)) for p in (args.base, args.candidate))
        placebo = stack.enter_context(load_model(Path(args.placebo), settings)) if args.placebo else None
        result = compare(base, cand, Path(args.corpus), chunks=args.chunks, progress=_show_progress(args),
                         placebo=placebo, drift=args.drift)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    s = result.stats
    print(f"base       {result.base}\ncandidate  {result.candidate}\ncorpus     {result.corpus}  "
          f"({s['chunks']} chunks of {s['n_ctx']}, {s['tokens']} scored tokens)")
    print(f"settings   {json.dumps(result.settings)}")
    rows = [
        ("Mean PPL(Q)", f"{s['ppl_q']:10.6f} ± {s['ppl_q_se']:10.6f}"),
        ("Mean PPL(base)", f"{s['ppl_base']:10.6f} ± {s['ppl_base_se']:10.6f}"),
        ("Cor(ln(PPL(Q)), ln(PPL(base)))", f"{100 * s['ln_ppl_cor']:6.2f}%"),
        ("Mean ln(PPL(Q)/PPL(base))", f"{s['ln_ppl_ratio']:10.6f} ± {s['ln_ppl_ratio_se']:10.6f}"),
        ("Mean PPL(Q)/PPL(base)", f"{s['ppl_ratio']:10.6f} ± {s['ppl_ratio_se']:10.6f}"),
        ("Mean PPL(Q)-PPL(base)", f"{s['ppl_diff']:10.6f} ± {s['ppl_diff_se']:10.6f}"),
        ("Mean KLD", f"{s['kld_mean']:10.6f} ± {s['kld_se']:10.6f}"),
        ("Maximum / 99.9% / 99% KLD", f"{s['kld_max']:.6f} / {s['kld_p999']:.6f} / {s['kld_p99']:.6f}"),
        ("Median KLD", f"{s['kld_median']:.6f}"),
        ("Mean Δp", f"{100 * s['dp_mean']:6.3f} ± {100 * s['dp_se']:5.3f} %"),
        ("RMS Δp", f"{100 * s['dp_rms']:6.3f} ± {100 * s['dp_rms_se']:5.3f} %"),
        ("Same top p", f"{100 * s['same_top_p']:6.3f} ± {100 * s['same_top_p_se']:5.3f} %"),
    ]
    for name, value in rows:
        print(f"{name:<31}: {value}")
    if result.placebo is not None and result.excess is not None:
        _print_floor_and_excess(result.placebo, result.excess)
    if result.drift is not None:
        from fakequant.report import drift as drift_report  # the report package loads matplotlib: only here

        print("\n" + "\n".join(drift_report.text_lines(result.drift)))
    if result.nonfinite:
        print(f"NON-FINITE {result.nonfinite}")
    return 0


def _interval(block: dict, key: str) -> str:
    ci = block.get(f"{key}_ci")
    return f"[{ci[0]:+.6f}, {ci[1]:+.6f}]" if ci else "(no interval: one chunk)"


def _print_floor_and_excess(placebo: dict, excess: dict) -> None:
    print(f"\nplacebo    {placebo['path']}  (the same tensors nudged by one ulp: the floor)")
    for name, value in (
        ("Mean KLD (placebo)", f"{placebo['kld_mean']:10.6f} ± {placebo['kld_se']:10.6f}"),
        ("Mean ln(PPL(P)/PPL(base))", f"{placebo['ln_ppl_ratio']:10.6f} ± {placebo['ln_ppl_ratio_se']:10.6f}"),
        ("Same top p (placebo)", f"{100 * placebo['same_top_p']:6.3f} ± {100 * placebo['same_top_p_se']:5.3f} %"),
    ):
        print(f"{name:<31}: {value}")
    level = round(100 * excess["level"])
    print(f"excess over the placebo, paired per chunk ({excess['chunks']} chunks, {level}% intervals, t quantile):")
    for name, value in (
        ("Excess mean KLD", f"{excess['kld_mean']:+10.6f} {_interval(excess, 'kld_mean')}"),
        ("ln(PPL(Q)/PPL(P))", f"{excess['ln_ppl_ratio']:+10.6f} {_interval(excess, 'ln_ppl_ratio')}"),
        ("Same top p (Q vs P)", f"{100 * excess['same_top_p']:6.3f} %"),
    ):
        print(f"{name:<31}: {value}")
