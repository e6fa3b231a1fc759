"""The plan's "質量評估": numerical differences, perplexity, conversations — baseline vs candidate.

A candidate whose fake quantization changed no value skips these as INCONCLUSIVE (a skip is not a pass).
"""

from __future__ import annotations

import json
import math

from fakequant.runtime.paired import compare
from fakequant.suite import conversation as conv
from fakequant.suite.baseline import baseline_cached, baseline_key
from fakequant.suite.outcomes import save_artifact
from fakequant.suite.plugin import quality_gate
from fakequant.suite.vocab import Status

Z95 = 1.96


def test_numerical(experiment, candidate, outcome):
    """Per changed tensor: mean and max relative difference |a-b|/(|a|+ε) against the plan's bounds."""
    quality_gate(candidate, experiment, "numerical", "the numerical comparison")
    th = experiment.thresholds
    rows = [t for t in candidate.tensors if not t.noop]
    worst_mean = max(rows, key=lambda t: t.mean_rel)
    worst_max = max(rows, key=lambda t: t.max_rel)
    values = {"tensors": len(candidate.tensors), "changed_tensors": len(rows),
              "worst_mean_rel": worst_mean.mean_rel, "worst_mean_rel_tensor": worst_mean.name,
              "worst_max_rel": worst_max.max_rel, "worst_max_rel_tensor": worst_max.name,
              "min_sqnr_db": min(t.sqnr_db for t in rows), "epsilon": experiment.recipe.epsilon}
    text = (f"mean rel diff {worst_mean.mean_rel:.3%} ({worst_mean.name}; ideal < {th.mean_rel_diff:.0%}, "
            f"acceptable < {th.mean_rel_diff_acceptable:.0%}), max rel diff {worst_max.max_rel:.3%} "
            f"({worst_max.name}; ideal < {th.max_rel_diff:.0%}, acceptable < {th.max_rel_diff_acceptable:.0%}), "
            f"over {len(rows)} changed tensor(s)")
    if worst_mean.mean_rel > th.mean_rel_diff_acceptable or worst_max.max_rel > th.max_rel_diff_acceptable:
        status = Status.FAIL
    elif worst_mean.mean_rel > th.mean_rel_diff or worst_max.max_rel > th.max_rel_diff:
        status = Status.CAUTION
    else:
        status = Status.PASS
    outcome("numerical", "numerical", status, text, values)


def perplexity_verdict(ln_ratio: float, se: float, ideal: float, acceptable: float,
                       chunks: int) -> tuple[Status, str, dict]:
    """The contract's rule on the paired Δ ln PPL and its 95% interval."""
    inc = math.expm1(ln_ratio)
    lo, hi = math.expm1(ln_ratio - Z95 * se), math.expm1(ln_ratio + Z95 * se)
    values = {"increase": inc, "increase_low": lo, "increase_high": hi, "ln_ppl_ratio": ln_ratio,
              "ln_ppl_ratio_se": se, "ideal": ideal, "acceptable": acceptable, "chunks": chunks}
    measured = f"perplexity increase {inc:+.3%} (95% CI {lo:+.3%} … {hi:+.3%}, {chunks} chunks)"
    if hi < ideal:
        return Status.PASS, f"{measured} entirely below the ideal bound {ideal:.0%}", values
    if lo > acceptable:
        return Status.FAIL, f"{measured} entirely above the acceptable bound {acceptable:.0%}", values
    if hi < acceptable:
        return Status.CAUTION, (f"{measured} below the acceptable bound {acceptable:.0%} but not surely below the "
                                f"ideal {ideal:.0%}"), values
    # straddles the acceptable bound: more chunks shrink the SE as 1/sqrt(chunks)
    gap = abs(ln_ratio - math.log1p(acceptable))
    need = math.ceil(chunks * (Z95 * se / gap) ** 2) if gap > 0 else None
    values["chunks_to_resolve"] = need
    more = f"about {need} chunks would resolve it" if need else "no number of chunks resolves an effect on the bound"
    return Status.INCONCLUSIVE, f"{measured} straddles the acceptable bound {acceptable:.0%}; {more}", values


def test_perplexity(fq_suite, experiment, candidate, outcome):
    """Paired comparison over identical tokens (Δ ln PPL ± SE, KLD, top-token agreement) with the same settings."""
    quality_gate(candidate, experiment, "perplexity", "the perplexity comparison")
    ref = fq_suite.base_reference(experiment)
    cand = fq_suite.model(candidate.output, experiment.settings)
    result = compare(ref, cand)
    data = result.to_json()
    save_artifact(fq_suite.report_dir, experiment.name, "perplexity_comparison", data)
    th = experiment.thresholds
    status, text, values = perplexity_verdict(data["ln_ppl_ratio"], data["ln_ppl_ratio_se"],
                                              th.ppl_increase_ideal, th.ppl_increase_acceptable, data["chunks"])
    values.update({k: data[k] for k in ("ppl_base", "ppl_q", "kld_mean", "same_top_p") if k in data})
    if data.get("nonfinite"):
        status, text = Status.FAIL, f"NaN/Inf logits in the perplexity pass at {data['nonfinite']}; {text}"
    outcome("perplexity", "perplexity", status, text, values)


def _baseline_answers(fq_suite, experiment, prompt) -> list[dict]:
    """The original model's answers, computed once per (model sha256, settings, prompt, llama.cpp build) and reused
    by every experiment and later run."""
    key = baseline_key(experiment.model, None, experiment.settings, prompt=prompt.to_json())
    return baseline_cached("conversation", key,
                           lambda: conv.run_prompt(fq_suite.model(experiment.model, experiment.settings), prompt))


def test_conversation(fq_suite, experiment, candidate, prompt_id, outcome):
    """One prompt on both models; regression = the baseline passes a check the candidate fails."""
    prompt = next(p for p in experiment.prompts if p.id == prompt_id)
    quality_gate(candidate, experiment, "conversation", "the conversation test")
    base_gens = _baseline_answers(fq_suite, experiment, prompt)
    cand_gens = conv.run_prompt(fq_suite.model(candidate.output, experiment.settings), prompt)

    def scorer(answer: str, prefix: str) -> list[float]:
        return conv.token_logprobs(fq_suite.model(experiment.model, experiment.settings), answer, prefix)

    entry = conv.evaluate(prompt, base_gens, cand_gens, experiment.thresholds, scorer)
    _store_conversation(fq_suite, experiment, entry)
    values = {"exact_match": entry["exact_match"],
              "first_divergence": (entry["first_divergence"] or {}).get("index", "none"),
              "baseline_text": entry["baseline"]["text"], "candidate_text": entry["candidate"]["text"],
              **{f"fluency_{k}": v for k, v in entry["fluency"].items() if v is not None},
              **{f"check_{c['name']}": c["status"] for c in entry["checks"]}}
    outcome(f"conversation[{prompt.id}]", "conversation", entry["status"], conv.reason(entry), values)


def _store_conversation(fq_suite, experiment, entry: dict) -> None:
    """Keep the "conversations" artifact a list in the experiment's prompt order (one test writes one entry;
    an experiment's tests run in one process, one after another)."""
    path = fq_suite.report_dir / experiment.name / ".data" / "conversations.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    entries = [e for e in entries if e["id"] != entry["id"]] + [entry]
    order = [p.id for p in experiment.prompts]
    entries.sort(key=lambda e: order.index(e["id"]) if e["id"] in order else len(order))
    save_artifact(fq_suite.report_dir, experiment.name, "conversations", entries)
