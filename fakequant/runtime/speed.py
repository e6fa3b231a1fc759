"""Speed: load time, prompt tokens/s and generation tokens/s of both models, over interleaved rounds.

The seed report quoted "+1.6% load time" and "−2.1% tokens/s" from one run each: differences inside the run-to-run
noise. Here each round loads both models afresh (order alternating, so drift and warm caches hit both alike), runs
the same prompt and generation, and takes llama.cpp's own counters. A metric fails only when the candidate is slower
than the tolerance **and** a one-sided Mann-Whitney U test over the rounds says the slowdown is significant
(Bonferroni-corrected over the three metrics);
otherwise it reports "no significant slowdown" (or a significant slowdown within tolerance); the test is one-sided, so
a candidate that is faster is never a failure.

Both models are measured in the same run on purpose (never against a cached baseline): on a shared machine the
load of the moment moves every number, and only interleaving cancels it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakequant.errors import ModelRuntimeError
from fakequant.suite.rules import speed_metric, speed_status

METRICS = {  # name → (unit, higher is better)
    "load_s": ("s", False),
    "prompt_tps": ("tokens/s", True),
    "gen_tps": ("tokens/s", True),
}
SPEED_PROMPT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
                "combined movable metal type, oil-based ink and a wooden press adapted from those used for wine. "
                "Within fifty years presses were running in more than two hundred cities across Europe, and")
SPEED_TOKENS = 32


@dataclass
class Samples:
    baseline: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})
    candidate: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})


def summarize(samples: Samples, rounds: int, tolerance: float, alpha: float, measured_by: str) -> dict[str, Any]:
    """The "speed" artifact of the shared contract. Three metrics are tested at once, so each is held to
    ``alpha / 3`` (Bonferroni): otherwise an identical file would "fail" about one run in seven."""
    per_metric = alpha / len(METRICS)
    metrics = {m: {"unit": unit, **speed_metric(samples.baseline[m], samples.candidate[m], higher_better=higher,
                                                tolerance=tolerance, alpha=per_metric)}
               for m, (unit, higher) in METRICS.items()}
    return {"rounds": rounds, "tolerance": tolerance, "alpha": alpha, "alpha_per_metric": per_metric,
            "test": "Mann-Whitney U, one-sided, Bonferroni over the 3 metrics",
            "measured_by": measured_by, "metrics": metrics, "status": str(speed_status(metrics.values()))}


def measure_round(paths: dict[str, Path], settings: Any, samples: Samples, round_index: int) -> None:
    """One round, in a fresh Python process: each model loaded, timed, then the same prompt and greedy generation;
    the order alternates between rounds.

    A child process because the suite's own process is not a neutral place to time in: after the unit tests and
    the quality tests (models kept loaded, large logit arrays) two full `make test` runs measured the original
    model 10% and 27% slower than every candidate, the no-op candidate with identical weights included, while
    runs of the speed test alone showed both within 3%. A clean process per round gives both models the same
    conditions."""
    order = ["baseline", "candidate"] if round_index % 2 == 0 else ["candidate", "baseline"]
    job = {"settings": settings.to_json(), "models": [[who, str(paths[who])] for who in order]}
    proc = subprocess.run([sys.executable, "-m", "fakequant.runtime.speed", json.dumps(job)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ModelRuntimeError(f"speed round {round_index + 1}: {last}")
    for who, values in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        store = samples.baseline if who == "baseline" else samples.candidate
        for metric in METRICS:
            store[metric].append(values[metric])


def _child(job: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The child's side of :func:`measure_round`: llama.cpp's counters of each model, in the order given."""
    from fakequant.runtime import llama as runtime
    from fakequant.runtime.settings import RuntimeSettings, SamplingParams

    settings = RuntimeSettings.from_mapping(job["settings"], source="speed round")
    params = SamplingParams(max_tokens=SPEED_TOKENS, temperature=0.0)
    out = {}
    for who, path in job["models"]:
        model = runtime.load_model(Path(path), settings)
        try:
            gen = runtime.generate(model, SPEED_PROMPT, params)
        finally:
            model.close()
        out[who] = {"load_s": model.load_time_s, "prompt_tps": gen.prompt_tokens_per_s,
                    "gen_tps": gen.gen_tokens_per_s}
    return out


def measure(baseline: Path, candidate: Path, settings: Any, *, rounds: int, tolerance: float, alpha: float,
            benchmark: Any = None, round_fn: Callable[..., None] = measure_round) -> dict[str, Any]:
    """Run ``rounds`` interleaved rounds, through pytest-benchmark's ``pedantic`` when it is active.

    pytest-benchmark turns itself off under pytest-xdist (and with ``--benchmark-disable``); then the same rounds
    are run here and the artifact says so in ``measured_by``. Either way the numbers compared are llama.cpp's
    counters of each round, not the benchmark's wall time of the whole round (which it keeps in its own stats)."""
    samples = Samples()
    paths = {"baseline": Path(baseline), "candidate": Path(candidate)}
    counter = iter(range(rounds))

    def one_round() -> None:
        round_fn(paths, settings, samples, next(counter))

    if benchmark is not None and getattr(benchmark, "enabled", False):
        benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
        measured_by = "pytest-benchmark (pedantic, 1 iteration per round)"
    else:
        for _ in range(rounds):
            one_round()
        why = "disabled (pytest-xdist or --benchmark-disable)" if benchmark is not None else "not available"
        measured_by = f"fakequant's own loop: pytest-benchmark {why}"
    result = summarize(samples, rounds, tolerance, alpha, measured_by)
    if benchmark is not None and getattr(benchmark, "enabled", False):
        benchmark.extra_info.update({m: {"baseline_median": v["baseline"]["median"],
                                         "candidate_median": v["candidate"]["median"], "p_value": v["p_value"]}
                                     for m, v in result["metrics"].items()})
    return result


if __name__ == "__main__":  # one speed round, run by measure_round
    from fakequant.errors import FakequantError

    try:
        print(json.dumps(_child(json.loads(sys.argv[1]))))
    except FakequantError as err:
        sys.exit(str(err))
