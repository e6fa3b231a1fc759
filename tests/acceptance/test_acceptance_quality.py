"""The plan's "質量評估": numerical differences and perplexity — baseline vs candidate (conversations:
test_conversation.py).

A candidate whose fake quantization changed no value skips these as INCONCLUSIVE (a skip is not a pass).
"""

from __future__ import annotations

from fakequant.runtime.paired import compare
from fakequant.suite import rules
from fakequant.suite.outcomes import save_artifact
from fakequant.suite.vocab import NUMERICAL, PERPLEXITY, Artifact


def test_numerical(experiment, candidate, outcome, quality_gate):
    """Per changed tensor: mean and max relative difference |a-b|/(|a|+ε) against the plan's bounds."""
    quality_gate(NUMERICAL, "the numerical comparison")
    outcome("numerical", NUMERICAL,
            *rules.numerical(candidate.tensors, experiment.thresholds, experiment.recipe.epsilon))


def test_perplexity(fq_suite, experiment, candidate, outcome, quality_gate):
    """Paired comparison over identical tokens (Δ ln PPL ± SE, KLD, top-token agreement) with the same settings;
    the placebo twin is scored in the same pass: the floor of these tensors, and the format's excess over it."""
    quality_gate(PERPLEXITY, "the perplexity comparison")
    ref = fq_suite.base_reference(experiment)
    placebo = fq_suite.placebo(experiment.name)
    cand = fq_suite.model(candidate.output, experiment.settings)
    data = compare(ref, cand, placebo=fq_suite.model(placebo.output, experiment.settings), drift=True).to_json()
    data["placebo_numerical"] = placebo.to_json()  # the placebo's own size, shown beside its effect
    save_artifact(fq_suite.report_dir, experiment.name, Artifact.PERPLEXITY, data)
    outcome("perplexity", PERPLEXITY, *rules.perplexity(data, experiment.thresholds))
