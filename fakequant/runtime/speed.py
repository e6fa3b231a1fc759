"""Speed: load time, prompt tokens/s and generation tokens/s of both models, over interleaved rounds.

The seed report quoted "+1.6% load time" and "−2.1% tokens/s" from one run each: differences inside the run-to-run
noise. Here each round loads the original twice and the candidate once, afresh, in one of the six orders of the three
(rotating over the rounds, so each takes every position equally often in six rounds), runs the same prompt and
generation, and takes llama.cpp's own counters. The two timings of the original are an A/A pair: the noise this very
run sees between two loads of identical bytes. A metric is called slower (CAUTION: speed never fails the suite) only
when the candidate's median slowdown is beyond the tolerance, beyond that A/A noise, and a one-sided Mann-Whitney test
finds the candidate-vs-base slowdowns larger than the base-vs-base ones (Bonferroni-corrected over the three metrics);
see :func:`fakequant.suite.rules.speed_metric`. Under shared load, 5 rounds of base against candidate alone called a
byte-identical copy "10% slower (p = 0.004)": the spread between rounds was never compared with what identical
files show.

Both models are measured in the same run on purpose (never against a cached baseline): on a shared machine the
load of the moment moves every number, and only interleaving cancels it.
"""

from __future__ import annotations

import itertools
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
# who is timed in a round: the original, the candidate, and the original again (the A/A pair's second half)
ROLES = ("baseline", "candidate", "again")
ORDERS = tuple(itertools.permutations(ROLES))  # round i runs ORDERS[i % 6]


def _per_metric() -> dict[str, list[float]]:
    return {m: [] for m in METRICS}


@dataclass
class Samples:
    baseline: dict[str, list[float]] = field(default_factory=_per_metric)
    candidate: dict[str, list[float]] = field(default_factory=_per_metric)
    again: dict[str, list[float]] = field(default_factory=_per_metric)  # the original's second timing per round
    orders: list[list[str]] = field(default_factory=list)

    def store(self, who: str) -> dict[str, list[float]]:
        return {"baseline": self.baseline, "candidate": self.candidate, "again": self.again}[who]


def summarize(samples: Samples, rounds: int, tolerance: float, alpha: float, measured_by: str) -> dict[str, Any]:
    """The "speed" artifact of the shared contract. Three metrics are tested at once, so each is held to
    ``alpha / 3`` (Bonferroni): otherwise an identical file would "fail" about one run in seven."""
    per_metric = alpha / len(METRICS)
    metrics = {m: {"unit": unit, **speed_metric(samples.baseline[m], samples.candidate[m], samples.again[m],
                                                higher_better=higher, tolerance=tolerance, alpha=per_metric)}
               for m, (unit, higher) in METRICS.items()}
    return {"rounds": rounds, "tolerance": tolerance, "alpha": alpha, "alpha_per_metric": per_metric,
            "test": "candidate-vs-original slowdowns against original-vs-original (A/A) ones per round: "
                    "Mann-Whitney U, one-sided, Bonferroni over the 3 metrics",
            "orders": samples.orders, "measured_by": measured_by, "metrics": metrics,
            "status": str(speed_status(metrics.values()))}


def measure_round(paths: dict[str, Path], settings: Any, samples: Samples, round_index: int) -> None:
    """One round, in a fresh Python process: the original, the candidate and the original again, each loaded, timed,
    then the same prompt and greedy generation, in the order ``ORDERS[round_index % 6]``.

    A child process because the suite's own process is not a neutral place to time in: after the unit tests and
    the quality tests (models kept loaded, large logit arrays) two full `make test` runs measured the original
    model 10% and 27% slower than every candidate, the no-op candidate with identical weights included, while
    runs of the speed test alone showed both within 3%. A clean process per round gives both models the same
    conditions."""
    order = list(ORDERS[round_index % len(ORDERS)])
    where = {**paths, "again": paths["baseline"]}
    job = {"settings": settings.to_json(), "models": [[who, str(where[who])] for who in order]}
    proc = subprocess.run([sys.executable, "-m", "fakequant.runtime.speed", json.dumps(job)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ModelRuntimeError(f"speed round {round_index + 1}: {last}")
    for who, values in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        for metric in METRICS:
            samples.store(who)[metric].append(values[metric])
    samples.orders.append(order)


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
    """Run ``rounds`` interleaved rounds (a multiple of 6 gives every model every position equally often), through
    pytest-benchmark's ``pedantic`` when it is active.

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
