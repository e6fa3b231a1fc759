"""Positive controls (``expect = {finite = "fail"}`` etc.): every check the control names must fail, and no other.

A named check that fails is a strict xfail (so the suite stays green while proving the check can fail); this test is
what turns the run red when a named check did not fail. Any other check that fails fails its own test.
"""

from __future__ import annotations

from fakequant.suite.outcomes import load_experiment


def _is_control(criteria, name) -> bool:
    exp = criteria.experiments.get(name)
    return exp is not None and bool(exp.expect)


def test_expected_decision(fq_suite, experiment, record_property):
    from fakequant.suite.verdict import decide

    verdict = decide(load_experiment(fq_suite.report_dir, experiment.name))
    record_property("decision", str(verdict.decision))
    record_property("expected_to_fail", ", ".join(experiment.expect))
    assert verdict.expectation is not None, f"{experiment.name}: the recorded experiment names no expected failure"
    record_property("matched", verdict.expectation.matched)
    assert verdict.expectation.matched, (
        f"{experiment.name} is a positive control expected to fail {', '.join(experiment.expect)}, but "
        f"{'; '.join(verdict.expectation.problems())} (decision {verdict.decision}: "
        f"{'; '.join(verdict.reasons[:3]) or verdict.headline})")


test_expected_decision.fakequant_only = _is_control  # parametrized only by experiments that declare `expect`
