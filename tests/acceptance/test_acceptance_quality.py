"""The plan's "質量評估": numerical differences, perplexity, conversations — baseline vs candidate.

A candidate whose fake quantization changed no value skips these as INCONCLUSIVE (a skip is not a pass).
"""

from __future__ import annotations

import json

from fakequant.runtime import chat
from fakequant.runtime.paired import compare
from fakequant.suite import conversation as conv
from fakequant.suite import rules
from fakequant.suite.baseline import baseline_cached, baseline_key
from fakequant.suite.outcomes import data_dir, save_artifact
from fakequant.suite.vocab import CONVERSATION, NUMERICAL, PERPLEXITY, Artifact


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


def _baseline_answers(fq_suite, experiment, prompt) -> list[dict]:
    """The original model's answers, computed once per (model sha256, settings, prompt, chat prompt format,
    llama.cpp build) and reused by every experiment and later run."""
    key = baseline_key(experiment.model, None, experiment.settings, prompt=prompt.to_json(),
                       chat_format=chat.PROMPT_FORMAT)
    return baseline_cached("conversation", key,
                           lambda: chat.run_prompt(fq_suite.model(experiment.model, experiment.settings), prompt))


def test_conversation(fq_suite, experiment, candidate, prompt_id, outcome, quality_gate):
    """One prompt on both models; regression = the baseline passes a check the candidate fails."""
    prompt = next(p for p in experiment.prompts if p.id == prompt_id)
    quality_gate(CONVERSATION, "the conversation test")
    base_gens = _baseline_answers(fq_suite, experiment, prompt)
    cand_gens = chat.run_prompt(fq_suite.model(candidate.output, experiment.settings), prompt)

    def scorer(answer: str, prefix: str) -> list[float]:
        return chat.token_logprobs(fq_suite.model(experiment.model, experiment.settings), answer, prefix)

    entry = conv.evaluate(prompt, base_gens, cand_gens, experiment.thresholds, scorer)
    _store_conversation(fq_suite, experiment, entry)
    outcome(f"conversation[{prompt.id}]", CONVERSATION, *conv.ruling(entry))


def _store_conversation(fq_suite, experiment, entry: dict) -> None:
    """Keep the "conversations" artifact a list in the experiment's prompt order (one test writes one entry;
    an experiment's tests run in one process, one after another)."""
    path = data_dir(fq_suite.report_dir, experiment.name) / f"{Artifact.CONVERSATIONS}.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    entries = [e for e in entries if e["id"] != entry["id"]] + [entry]
    order = [p.id for p in experiment.prompts]
    entries.sort(key=lambda e: order.index(e["id"]) if e["id"] in order else len(order))
    save_artifact(fq_suite.report_dir, experiment.name, Artifact.CONVERSATIONS, entries)
