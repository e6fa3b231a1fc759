"""The report's speed table, measured properly: load time, prompt and generation tokens/s of both models over
interleaved rounds; a slowdown fails only when beyond the tolerance AND significant over the rounds."""

from __future__ import annotations

import pytest

from fakequant.runtime import speed
from fakequant.suite import rules
from fakequant.suite.outcomes import save_artifact
from fakequant.suite.vocab import SPEED, Artifact


def test_speed(fq_suite, experiment, candidate, outcome, benchmark):
    if SPEED not in experiment.checks:
        pytest.skip(f"speed is not among {experiment.name}'s checks ({', '.join(experiment.checks)})")
    th = experiment.thresholds
    result = speed.measure(experiment.model, candidate.output, experiment.settings, rounds=th.speed_rounds,
                           tolerance=th.speed_tolerance, alpha=th.speed_alpha, benchmark=benchmark)
    save_artifact(fq_suite.report_dir, experiment.name, Artifact.SPEED, result)
    assert all(len(m["candidate"]["values"]) == th.speed_rounds for m in result["metrics"].values())
    outcome("speed", SPEED, *rules.speed(result))
