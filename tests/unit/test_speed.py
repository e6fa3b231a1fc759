"""Speed measurement: interleaved rounds in child processes, through pytest-benchmark or without it (the verdict on
the numbers is tested in test_rules.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakequant.runtime.speed import METRICS, Samples, measure, measure_round
from fakequant.suite import rules
from fakequant.suite.vocab import Status


class FakeBenchmark:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.extra_info: dict = {}
        self.pedantic_rounds = None

    def pedantic(self, target, rounds, iterations, warmup_rounds):
        self.pedantic_rounds = rounds
        for _ in range(rounds):
            target()


def fake_round(paths, settings, samples: Samples, i: int) -> None:
    samples.baseline["load_s"].append(0.1 + 0.001 * i)
    samples.candidate["load_s"].append(0.1 + 0.001 * i)
    for store, tps in ((samples.baseline, 100.0), (samples.candidate, 50.0)):
        store["prompt_tps"].append(tps + i)
        store["gen_tps"].append(tps + i)


def test_measure_through_benchmark_and_without_it():
    bench = FakeBenchmark(enabled=True)
    out = measure(Path("a"), Path("b"), None, rounds=5, tolerance=0.1, alpha=0.05, benchmark=bench,
                  round_fn=fake_round)
    assert bench.pedantic_rounds == 5 and out["measured_by"].startswith("pytest-benchmark")
    assert out["metrics"]["gen_tps"]["status"] == "fail" and out["status"] == "fail"
    assert out["metrics"]["load_s"]["status"] == "pass"
    assert bench.extra_info["gen_tps"]["candidate_median"] == 52.0
    off = FakeBenchmark(enabled=False)
    out2 = measure(Path("a"), Path("b"), None, rounds=4, tolerance=0.1, alpha=0.05, benchmark=off,
                   round_fn=fake_round)
    assert off.pedantic_rounds is None and "own loop" in out2["measured_by"]
    assert out2["alpha_per_metric"] == 0.05 / 3
    assert len(out2["metrics"]["prompt_tps"]["baseline"]["values"]) == 4
    ruling = rules.speed(out)
    assert ruling.status is Status.FAIL and ruling.values["gen_tps.status"] == "fail"
    assert "4 interleaved rounds" in rules.speed(out2).reason


def test_a_round_runs_in_a_child_and_names_a_model_that_fails(tmp_path):
    from fakequant.errors import ModelRuntimeError
    from fakequant.runtime.settings import RuntimeSettings
    from fakequant.store import assets

    model = assets.model_path()
    samples = Samples()
    measure_round({"baseline": model, "candidate": model}, RuntimeSettings(n_threads=2), samples, 1)
    assert all(len(samples.baseline[m]) == len(samples.candidate[m]) == 1 for m in METRICS)
    assert samples.candidate["gen_tps"][0] > 0
    with pytest.raises(ModelRuntimeError, match=r"speed round 1: .*missing\.gguf"):
        measure_round({"baseline": model, "candidate": tmp_path / "missing.gguf"}, RuntimeSettings(n_threads=2),
                      Samples(), 0)
