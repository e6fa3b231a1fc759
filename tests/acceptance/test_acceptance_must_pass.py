"""The plan's "必須通過" checks: the candidate exists, has the original's format, loads, infers, and is finite.

A failure here stops the experiment whatever the quality numbers say. Parametrized by experiment (``-k layer0``).
"""

from __future__ import annotations

import time

from fakequant.quant.candidate import verify_format
from fakequant.runtime import llama as runtime
from fakequant.runtime.settings import SamplingParams
from fakequant.store.cache import sha256_file
from fakequant.suite import rules
from fakequant.suite.outcomes import save_artifact
from fakequant.suite.vocab import MUST_PASS, Artifact

QUICK_PROMPT = "Hello"  # the plan: llama-cli --prompt "Hello" -n 5
QUICK_TOKENS = 5


def test_must_pass_build(fq_suite, experiment, outcome):
    """The recipe applies to the model and the candidate is written (or taken from the engine's cache)."""
    try:
        built = fq_suite.build(experiment.name)
    except Exception as err:  # any failure to build is this check's failure, reported in one line
        outcome("build", MUST_PASS, *rules.build_failed(err))
        return
    assert built.output.is_file() and built.output.resolve() != experiment.model.resolve()
    noop = rules.no_op(built.to_json()) is not None
    outcome("build", MUST_PASS, *rules.build(built.tensors, built.recipe.format, noop, built.reused))


def test_must_pass_format(fq_suite, experiment, candidate, outcome):
    """Same metadata (apart from fakequant.* provenance keys), tensor names, shapes and order; only the selected
    tensors differ."""
    differences = verify_format(experiment.model, candidate.output, candidate.changed)
    save_artifact(fq_suite.report_dir, experiment.name, Artifact.FORMAT_CHECK,
                  {"ok": not differences, "differences": differences})
    outcome("format", MUST_PASS, *rules.format_check(differences, len(candidate.changed)))


def test_must_pass_load(fq_suite, experiment, candidate, outcome):
    """Both models load with the same settings, and the candidate turns "Hello" into 5 tokens."""
    base = fq_suite.model(experiment.model, experiment.settings)
    try:
        cand = fq_suite.model(candidate.output, experiment.settings)
        gen = runtime.generate(cand, QUICK_PROMPT, SamplingParams(max_tokens=QUICK_TOKENS, temperature=0.0))
    except Exception as err:  # a load or inference failure is exactly what this check is for
        outcome("load", MUST_PASS, *rules.load_failed(candidate.output.name, err))
        return
    data = {"baseline_load_s": base.load_time_s, "candidate_load_s": cand.load_time_s,
            "quick_inference": {"prompt": QUICK_PROMPT, "text": gen.text, "token_ids": gen.token_ids,
                                "nonfinite": gen.nonfinite}}
    save_artifact(fq_suite.report_dir, experiment.name, Artifact.LOAD, data)
    outcome("load", MUST_PASS, *rules.load(gen, cand.load_time_s, QUICK_PROMPT))


def test_must_pass_finite(fq_suite, experiment, candidate, outcome):
    """No NaN/Inf in the candidate's changed weights (the rest is byte-identical, see the format check) nor in its
    logits during a short generation."""
    cand = fq_suite.model(candidate.output, experiment.settings)
    gen = runtime.generate(cand, QUICK_PROMPT, SamplingParams(max_tokens=QUICK_TOKENS, temperature=0.0))
    outcome("finite", MUST_PASS, *rules.finite(candidate.tensors, gen))


def test_original_unchanged(fq_suite, experiment, outcome):
    """The user's model is never written: its sha256 after the experiment equals the one before it."""
    before = fq_suite.original_sha[str(experiment.model)]
    start = time.perf_counter()
    after = sha256_file(experiment.model)
    seconds = time.perf_counter() - start
    assert before and len(after) == 64
    outcome("original_unchanged", MUST_PASS, *rules.original_unchanged(experiment.model, before, after, seconds))
