"""Negative controls (``expect = "STOP"`` etc.): the experiment must reach the decision it was built to reach.

Its failing checks are strict xfails (so the suite stays green while proving it can fail); this test is what turns
the run red when a control does not stop.
"""

from __future__ import annotations

from fakequant.suite.outcomes import load_experiment


def _has_expectation(criteria, name) -> bool:
    exp = criteria.experiments.get(name)
    return exp is not None and exp.expect is not None


def test_expected_decision(fq_suite, experiment, record_property):
    from fakequant.suite.verdict import decide

    verdict = decide(load_experiment(fq_suite.report_dir, experiment.name))
    record_property("decision", str(verdict.decision))
    record_property("expected", experiment.expect)
    reasons = "; ".join(verdict.reasons[:3])
    assert str(verdict.decision) == experiment.expect, (
        f"{experiment.name} is a negative control expected to reach {experiment.expect}, but the suite decided "
        f"{verdict.decision}: {reasons or verdict.headline}")


test_expected_decision.fakequant_only = _has_expectation  # parametrized only by experiments that declare `expect`
