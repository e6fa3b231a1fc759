"""The report's speed table, measured properly: load time, prompt and generation tokens/s of both models over
interleaved rounds that also time the original against itself (A/A). A slowdown beyond the tolerance, beyond the A/A
noise and significant is a CAUTION (the test passes with a warning): speed never fails the suite. A candidate whose
fake quantization changed no value is not timed at all (INCONCLUSIVE, like the quality checks)."""

from __future__ import annotations

from fakequant.runtime import speed
from fakequant.suite import rules
from fakequant.suite.outcomes import save_artifact
from fakequant.suite.vocab import SPEED, Artifact


def test_speed(fq_suite, experiment, candidate, outcome, benchmark, quality_gate):
    quality_gate(SPEED, "the speed comparison")
    th = experiment.thresholds
    result = speed.measure(experiment.model, candidate.output, experiment.settings, rounds=th.speed_rounds,
                           tolerance=th.speed_tolerance, alpha=th.speed_alpha, benchmark=benchmark)
    save_artifact(fq_suite.report_dir, experiment.name, Artifact.SPEED, result)
    assert all(len(m["candidate"]["values"]) == th.speed_rounds for m in result["metrics"].values())
    outcome("speed", SPEED, *rules.speed(result))
