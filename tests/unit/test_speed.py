"""Speed verdicts: fail only when slower than the tolerance AND significant over the rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakequant.runtime.speed import METRICS, Samples, compare_metric, measure, measure_round, reason


def test_noise_is_no_significant_slowdown():
    base = [100.0, 104.0, 97.0, 101.0, 99.0]
    cand = [99.0, 103.0, 98.0, 100.0, 102.0]
    m = compare_metric("gen_tps", base, cand, tolerance=0.10, alpha=0.05)
    assert m["status"] == "pass" and not m["significant"]
    assert "no significant slowdown" in m["verdict"]


def test_significant_slowdown_beyond_tolerance_fails():
    base = [100.0, 101.0, 99.0, 100.5, 100.2]
    cand = [70.0, 71.0, 69.5, 70.2, 70.8]
    m = compare_metric("prompt_tps", base, cand, tolerance=0.10, alpha=0.05)
    assert m["status"] == "fail" and m["significant"] and m["p_value"] < 0.05
    assert abs(m["slowdown"] - 0.298) < 0.01 and "29.9% slower" in m["verdict"]


def test_significant_but_within_tolerance_passes():
    m = compare_metric("gen_tps", [100.0, 100.5, 100.2, 100.1, 100.3], [97.0, 97.1, 97.2, 97.3, 97.4], 0.10, 0.05)
    assert m["status"] == "pass" and m["significant"] and "within the tolerance" in m["verdict"]


def test_large_but_noisy_difference_is_not_significant():
    # a 20% median slowdown that the rounds cannot separate from noise
    m = compare_metric("gen_tps", [100.0, 60.0, 140.0], [80.0, 130.0, 55.0], 0.10, 0.05)
    assert m["status"] == "pass" and not m["significant"]


def test_load_time_direction():
    # for load time, larger is slower
    m = compare_metric("load_s", [0.10, 0.11, 0.10, 0.105, 0.102], [0.20, 0.21, 0.22, 0.20, 0.205], 0.10, 0.05)
    assert m["status"] == "fail" and m["ratio"] > 1.9
    faster = compare_metric("load_s", [0.20, 0.21, 0.22, 0.20, 0.205], [0.10, 0.11, 0.10, 0.105, 0.102], 0.10, 0.05)
    assert faster["status"] == "pass" and faster["slowdown"] < 0


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
    assert "4 interleaved rounds" in reason(out2)


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
