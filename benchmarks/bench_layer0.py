"""The unavoidable model runs of one experiment's acceptance tests, timed on their own (no pytest, no reports).

    .venv/bin/python benchmarks/bench_layer0.py [--experiment layer0] [--criteria criteria.toml]

What ``pytest -k <experiment>`` cannot do without, with a warm baseline cache, done here with the library
directly and nothing else:

- load the original and the candidate once (test_must_pass_load), and the 5-token quick generation of the
  candidate in test_must_pass_load and test_must_pass_finite;
- when the fake quantization changed something (otherwise these tests skip as INCONCLUSIVE): the paired perplexity
  comparison (one base pass and one candidate pass) and, per prompt, the candidate's conversation and the baseline
  model's fluency scoring of both answers (the baseline's own answers come from the warm cache);
- the speed check's interleaved rounds (each model loaded fresh and generating, ``speed_rounds`` times).

Building the candidate is not a model run (and the warm engine cache holds it): it is done before the clock starts.
Prints one JSON object: seconds per part and in total.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def model_runs(criteria: Path, name: str) -> dict[str, Any]:
    from fakequant.quant.candidate import build_candidate
    from fakequant.runtime import chat, speed
    from fakequant.runtime import llama as runtime
    from fakequant.runtime.paired import BaseReference, compare
    from fakequant.runtime.settings import SamplingParams
    from fakequant.suite import conversation as conv
    from fakequant.suite.criteria import load_criteria

    exp = load_criteria(criteria).experiments[name]
    built = build_candidate(exp.model, exp.recipe)
    quick = SamplingParams(max_tokens=5, temperature=0.0)
    parts: dict[str, float] = {}

    t = time.perf_counter()
    base = runtime.load_model(exp.model, exp.settings)
    cand = runtime.load_model(built.output, exp.settings)
    for _ in range(2):  # test_must_pass_load, test_must_pass_finite
        runtime.generate(cand, "Hello", quick)
    parts["load + quick inference"] = time.perf_counter() - t

    if not built.noop and "perplexity" in exp.checks:
        t = time.perf_counter()
        compare(BaseReference.build(base, exp.corpus, chunks=exp.chunks), cand)
        parts["paired perplexity"] = time.perf_counter() - t
    if not built.noop and "conversation" in exp.checks:
        t = time.perf_counter()
        for prompt in exp.prompts:
            answers = [g["text"] for g in chat.run_prompt(cand, prompt)[0]]  # fluency scores the first sample
            qs = chat.questions(prompt)
            conv.fluency_nll(lambda a, q: chat.token_logprobs(base, a, q), qs, answers)
        parts["conversations"] = time.perf_counter() - t
    base.close()
    cand.close()

    if "speed" in exp.checks:
        th = exp.thresholds
        t = time.perf_counter()
        speed.measure(exp.model, built.output, exp.settings, rounds=th.speed_rounds, tolerance=th.speed_tolerance,
                      alpha=th.speed_alpha)
        parts["speed rounds"] = time.perf_counter() - t
    return {"experiment": name, "noop": built.noop, "parts": parts, "seconds": sum(parts.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="layer0")
    parser.add_argument("--criteria", default=str(Path(__file__).resolve().parent.parent / "criteria.toml"))
    args = parser.parse_args()
    print(json.dumps(model_runs(Path(args.criteria), args.experiment)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
