"""The plan's "必須通過" checks: the candidate exists, has the original's format, loads, infers, and is finite.

A failure here stops the experiment whatever the quality numbers say. Parametrized by experiment (``-k layer0``).
"""

from __future__ import annotations

import time

from fakequant.quant.candidate import verify_format
from fakequant.runtime import llama as runtime
from fakequant.runtime.settings import SamplingParams
from fakequant.store.cache import sha256_file
from fakequant.suite.outcomes import save_artifact
from fakequant.suite.vocab import Status

QUICK_PROMPT = "Hello"  # the plan: llama-cli --prompt "Hello" -n 5
QUICK_TOKENS = 5


def test_must_pass_build(fq_suite, experiment, outcome):
    """The recipe applies to the model and the candidate is written (or taken from the engine's cache)."""
    try:
        built = fq_suite.build(experiment.name)
    except Exception as err:  # any failure to build is this check's failure, reported in one line
        outcome("build", "must_pass", Status.FAIL, str(err))
        return
    total = sum(t.n for t in built.tensors)
    changed = sum(t.changed for t in built.tensors)
    assert built.output.is_file() and built.output.resolve() != experiment.model.resolve()
    what = f"no-op: every value already representable in {built.recipe.format}" if built.noop else built.recipe.format
    outcome("build", "must_pass", Status.PASS,
            f"{changed}/{total} values changed in {len(built.tensors)} tensor(s) ({what})",
            {"tensors": len(built.tensors), "values": total, "changed": changed, "noop": built.noop,
             "reused_from_cache": built.reused})


def test_must_pass_format(fq_suite, experiment, candidate, outcome):
    """Same metadata (apart from fakequant.* provenance keys), tensor names, shapes and order; only the selected
    tensors differ."""
    differences = verify_format(experiment.model, candidate.output, candidate.changed)
    save_artifact(fq_suite.report_dir, experiment.name, "format_check",
                  {"ok": not differences, "differences": differences})
    if differences:
        outcome("format", "must_pass", Status.FAIL,
                f"{len(differences)} difference(s) from the original's format, first: {differences[0]}",
                {"differences": len(differences)})
    else:
        outcome("format", "must_pass", Status.PASS,
                f"same format as the original; only the {len(candidate.changed)} selected tensor(s) may differ",
                {"differences": 0, "changed_tensors": len(candidate.changed)})


def test_must_pass_load(fq_suite, experiment, candidate, outcome):
    """Both models load with the same settings, and the candidate turns "Hello" into 5 tokens."""
    base = fq_suite.model(experiment.model, experiment.settings)
    try:
        cand = fq_suite.model(candidate.output, experiment.settings)
        gen = runtime.generate(cand, QUICK_PROMPT, SamplingParams(max_tokens=QUICK_TOKENS, temperature=0.0))
    except Exception as err:  # a load or inference failure is exactly what this check is for
        outcome("load", "must_pass", Status.FAIL, f"{candidate.output.name}: {err}")
        return
    data = {"baseline_load_s": base.load_time_s, "candidate_load_s": cand.load_time_s,
            "quick_inference": {"prompt": QUICK_PROMPT, "text": gen.text, "token_ids": gen.token_ids,
                                "nonfinite": gen.nonfinite}}
    save_artifact(fq_suite.report_dir, experiment.name, "load", data)
    values = {"candidate_load_s": cand.load_time_s, "tokens": len(gen.token_ids), "text": gen.text}
    if not gen.token_ids:
        outcome("load", "must_pass", Status.FAIL, f"quick inference produced no token (stop: {gen.stop_reason})",
                values)
    else:
        outcome("load", "must_pass", Status.PASS,
                f"loaded in {cand.load_time_s:.2f} s; '{QUICK_PROMPT}' → {len(gen.token_ids)} tokens {gen.text!r}",
                values)


def test_must_pass_finite(fq_suite, experiment, candidate, outcome):
    """No NaN/Inf in the candidate's changed weights (the rest is byte-identical, see the format check) nor in its
    logits during a short generation."""
    bad = [t for t in candidate.tensors if t.nan_after or t.inf_after]
    new_bad = [t for t in bad if t.nan_after > t.nan_before or t.inf_after > t.inf_before]
    cand = fq_suite.model(candidate.output, experiment.settings)
    gen = runtime.generate(cand, QUICK_PROMPT, SamplingParams(max_tokens=QUICK_TOKENS, temperature=0.0))
    values = {"tensors_with_nonfinite": len(bad), "logits_nonfinite": gen.nonfinite or "none"}
    if new_bad:
        t = new_bad[0]
        outcome("finite", "must_pass", Status.FAIL,
                f"{t.name}: {t.nan_after} NaN and {t.inf_after} Inf after (before: {t.nan_before} / {t.inf_before})",
                values)
    elif gen.nonfinite:
        outcome("finite", "must_pass", Status.FAIL, f"NaN/Inf logit at {gen.nonfinite}", values)
    else:
        outcome("finite", "must_pass", Status.PASS,
                f"no NaN/Inf in {len(candidate.tensors)} changed tensor(s) nor in the logits of "
                f"{gen.prompt_tokens + len(gen.token_ids)} positions", values)


def test_original_unchanged(fq_suite, experiment, outcome):
    """The user's model is never written: its sha256 after the experiment equals the one before it."""
    before = fq_suite.original_sha[str(experiment.model)]
    start = time.perf_counter()
    after = sha256_file(experiment.model)
    values = {"sha256_before": before, "sha256_after": after, "seconds": time.perf_counter() - start}
    assert before and len(after) == 64
    if after != before:
        outcome("original_unchanged", "must_pass", Status.FAIL,
                f"{experiment.model}: sha256 changed from {before[:16]}… to {after[:16]}…", values)
    else:
        outcome("original_unchanged", "must_pass", Status.PASS,
                f"{experiment.model.name}: sha256 {after[:16]}… unchanged", values)
