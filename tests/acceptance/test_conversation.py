"""The plan's "對話質量": its named prompts, and the shipped battery answered beside K placebo twins.

A named prompt is judged on both models' answers (:mod:`fakequant.suite.conversation`); a greedy one the candidate
breaks is answered by the placebo twins too, and alone is a CAUTION. The battery's test over prompts decides a
conversation regression (:mod:`fakequant.suite.battery`). A candidate whose fake quantization changed no value skips
these as INCONCLUSIVE (a skip is not a pass).
"""

from __future__ import annotations

import json

from fakequant.runtime import chat
from fakequant.suite import battery
from fakequant.suite import conversation as conv
from fakequant.suite.baseline import baseline_cached, baseline_key
from fakequant.suite.criteria.battery import load_battery
from fakequant.suite.outcomes import data_dir, save_artifact
from fakequant.suite.vocab import CONVERSATION, Artifact, Status


def _cached_answers(fq_suite, path, settings, prompt) -> list[dict]:
    """A model's answers that are not under test (the original's, a placebo twin's), computed once per (model
    sha256, settings, prompt, chat prompt format, llama.cpp build) and reused by every experiment and later run."""
    key = baseline_key(path, None, settings, prompt=prompt.to_json(), chat_format=chat.PROMPT_FORMAT)
    return baseline_cached("conversation", key, lambda: chat.run_prompt(fq_suite.model(path, settings), prompt))


def test_conversation(fq_suite, experiment, candidate, prompt_id, outcome, quality_gate):
    """One prompt on both models; regression = the baseline passes a check the candidate fails."""
    prompt = next(p for p in experiment.prompts if p.id == prompt_id)
    quality_gate(CONVERSATION, "the conversation test")
    settings = experiment.settings
    base_gens = _cached_answers(fq_suite, experiment.model, settings, prompt)
    cand_gens = chat.run_prompt(fq_suite.model(candidate.output, settings), prompt)

    def scorer(answer: str, prefix: str) -> list[float]:
        return chat.token_logprobs(fq_suite.model(experiment.model, settings), answer, prefix)

    entry = conv.evaluate(prompt, base_gens, cand_gens, experiment.thresholds, scorer)
    if entry["greedy"] and entry["status"] == Status.FAIL:
        seeds = list(range(experiment.thresholds.battery_placebos))
        twins = [fq_suite.placebo(experiment.name, s).output for s in seeds]
        twin_entries = [conv.evaluate(prompt, base_gens, _cached_answers(fq_suite, t, settings, prompt),
                                      experiment.thresholds, scorer) for t in twins]
        entry = conv.with_twins(entry, twin_entries, seeds)
    _store_conversation(fq_suite, experiment, entry)
    outcome(f"conversation[{prompt.id}]", CONVERSATION, *conv.ruling(entry))


def test_conversation_battery(fq_suite, experiment, candidate, outcome, quality_gate):
    """The battery on the original, the candidate and K placebo twins: regression = the candidate breaks
    significantly more of the original's passing answers than the twins do."""
    quality_gate(CONVERSATION, "the conversation battery")
    settings, thresholds = experiment.settings, experiment.thresholds
    prompts = load_battery()
    base = battery.cached_answers(experiment.model, settings, prompts,
                                  lambda: fq_suite.model(experiment.model, settings))
    judged = battery.passing(prompts, base, thresholds)  # only these can break: the others are not answered
    cand_model = fq_suite.model(candidate.output, settings)
    cand = {bp.id: chat.run_prompt(cand_model, bp.prompt) for bp in judged}
    seeds = list(range(thresholds.battery_placebos))
    placebos = []
    for seed in seeds:
        twin = fq_suite.placebo(experiment.name, seed).output
        placebos.append(battery.cached_answers(twin, settings, judged, lambda t=twin: fq_suite.model(t, settings)))
    data = battery.evaluate(prompts, base, cand, placebos, seeds, thresholds)
    save_artifact(fq_suite.report_dir, experiment.name, Artifact.BATTERY, data)
    outcome("conversation[battery]", CONVERSATION, *battery.ruling(data))


def _store_conversation(fq_suite, experiment, entry: dict) -> None:
    """Keep the "conversations" artifact a list in the experiment's prompt order (one test writes one entry;
    an experiment's tests run in one process, one after another)."""
    path = data_dir(fq_suite.report_dir, experiment.name) / f"{Artifact.CONVERSATIONS}.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    entries = [e for e in entries if e["id"] != entry["id"]] + [entry]
    order = [p.id for p in experiment.prompts]
    entries.sort(key=lambda e: order.index(e["id"]) if e["id"] in order else len(order))
    save_artifact(fq_suite.report_dir, experiment.name, Artifact.CONVERSATIONS, entries)
