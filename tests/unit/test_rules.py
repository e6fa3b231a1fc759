"""Every check's rule on its edges: both sides of each bound, exactly on it, intervals across it."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from fakequant.runtime.chunkstats import t_quantile
from fakequant.suite import rules
from fakequant.suite.criteria import Thresholds
from fakequant.suite.outcomes import CheckOutcome, ExperimentData
from fakequant.suite.rules import CheckResult, Ruling, chunks_to_resolve
from fakequant.suite.verdict import decide
from fakequant.suite.vocab import Artifact, Decision, Status

T = Thresholds()


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


# --- nothing changed ------------------------------------------------------------------------------------------------


def test_no_op_from_the_flag_or_from_zero_changed_values():
    flagged = {"noop": True, "recipe": {"format": "bf16"}, "tensors": [{"n": 576, "changed": 0}]}
    assert rules.no_op(flagged) == rules.NoOp(0, 576, "bf16")
    counted = {"tensors": [{"n": 576, "changed": 0}, {"n": 100, "changed": 0}]}
    assert rules.no_op(counted, {"format": "fp16"}) == rules.NoOp(0, 676, "fp16")
    assert rules.no_op(counted) == rules.NoOp(0, 676, "the target format")


@pytest.mark.parametrize("analysis", [
    {"noop": False, "tensors": [{"n": 576, "changed": 1}]},  # one value changed is enough
    {"tensors": []},  # no tensor: nothing says nothing changed
    {"tensors": [{"n": 576, "changed": "many"}]},  # unreadable
    None,
    [1, 2],
])
def test_no_op_is_none_when_something_changed_or_nothing_says(analysis):
    assert rules.no_op(analysis) is None


# --- must pass ------------------------------------------------------------------------------------------------------


def gen(tokens: list[int], nonfinite: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(token_ids=tokens, text="hi" if tokens else "", nonfinite=nonfinite, prompt_tokens=2,
                           stop_reason="eog")


def stats(name: str = "t", n: int = 10, changed: int = 10, mean_rel: float = 0.0, max_rel: float = 0.0,
          nan: tuple[int, int] = (0, 0), inf: tuple[int, int] = (0, 0)) -> SimpleNamespace:
    return SimpleNamespace(name=name, n=n, changed=changed, noop=changed == 0, mean_rel=mean_rel, max_rel=max_rel,
                           sqnr_db=40.0, nan_before=nan[0], nan_after=nan[1], inf_before=inf[0], inf_after=inf[1])


def test_format_check():
    assert rules.format_check([], 1).status is Status.PASS
    failed = rules.format_check(["shape of a differs", "b"], 1)
    assert failed.status is Status.FAIL and failed.reason.endswith("2 difference(s) from the original's format, "
                                                                   "first: shape of a differs")


def test_load_needs_a_token():
    assert rules.load(gen([1]), 0.1, "Hello").status is Status.PASS
    assert rules.load(gen([]), 0.1, "Hello") == Ruling(Status.FAIL, "quick inference produced no token (stop: eog)",
                                                      {"candidate_load_s": 0.1, "tokens": 0, "text": ""})


def test_finite_fails_only_on_nonfinite_values_the_quantization_brought():
    assert rules.finite([stats(nan=(2, 2))], gen([1])).status is Status.PASS  # already there before
    assert rules.finite([stats(nan=(2, 3))], gen([1])).status is Status.FAIL
    assert rules.finite([stats(inf=(0, 1))], gen([1])).status is Status.FAIL
    assert rules.finite([stats()], gen([1], nonfinite="prompt, position 0")).status is Status.FAIL


def test_original_unchanged():
    model = Path("/m/model.gguf")
    assert rules.original_unchanged(model, "a" * 64, "a" * 64, 0.1).status is Status.PASS
    changed = rules.original_unchanged(model, "a" * 64, "b" * 64, 0.1)
    assert changed.status is Status.FAIL and changed.reason.startswith("/m/model.gguf: sha256 changed")


# --- numerical ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mean_rel", "max_rel", "status"), [
    (below(T.mean_rel_diff), 0.0, Status.PASS),
    (T.mean_rel_diff, 0.0, Status.PASS),  # on the ideal bound: not beyond it
    (above(T.mean_rel_diff), 0.0, Status.CAUTION),
    (T.mean_rel_diff_acceptable, 0.0, Status.CAUTION),
    (above(T.mean_rel_diff_acceptable), 0.0, Status.FAIL),
    (0.0, T.max_rel_diff, Status.PASS),
    (0.0, above(T.max_rel_diff), Status.CAUTION),
    (0.0, T.max_rel_diff_acceptable, Status.CAUTION),
    (0.0, above(T.max_rel_diff_acceptable), Status.FAIL),
])
def test_numerical_bounds(mean_rel, max_rel, status):
    assert rules.numerical([stats(mean_rel=mean_rel, max_rel=max_rel)], T, 1e-8).status is status


def test_numerical_is_decided_by_the_worst_changed_tensor():
    tensors = [stats("a", mean_rel=0.001), stats("b", mean_rel=0.02), stats("c", changed=0)]
    status, reason, values = rules.numerical(tensors, T, 1e-8)
    assert status is Status.CAUTION and "(b;" in reason
    assert values["worst_mean_rel_tensor"] == "b" and (values["tensors"], values["changed_tensors"]) == (3, 2)


def test_numerical_without_a_changed_value_is_inconclusive():
    assert rules.numerical([stats(changed=0)], T, 1e-8).status is Status.INCONCLUSIVE


# --- perplexity -----------------------------------------------------------------------------------------------------


def series(mean: float, se: float, chunks: int) -> list[float]:
    """Per-chunk values with exactly this mean and this standard error over chunks."""
    z = [(-1) ** i * (1 + i % 3) for i in range(chunks)]
    mz = sum(z) / chunks
    sd = math.sqrt(sum((x - mz) ** 2 for x in z) / (chunks - 1))
    return [mean + se * math.sqrt(chunks) * (x - mz) / sd for x in z]


def comparison(ln_ratio: float, se: float, chunks: int = 20, token_se: float | None = None, **extra) -> dict:
    """A comparison whose spread over chunks gives ``se``; llama.cpp's per-token SE is half of it unless given."""
    per_chunk = {"ln_ppl_ratio": series(ln_ratio, se, chunks)} if chunks > 1 else {"ln_ppl_ratio": [ln_ratio]}
    return {"ln_ppl_ratio": ln_ratio, "ln_ppl_ratio_se": se / 2 if token_se is None else token_se, "chunks": chunks,
            "per_chunk": per_chunk, **extra}


def bounds(ideal: float = T.ppl_increase_ideal, acceptable: float = T.ppl_increase_acceptable) -> Thresholds:
    return Thresholds(ppl_increase_ideal=ideal, ppl_increase_acceptable=acceptable)


LN, SE = 0.02, 0.004
IV = rules.ln_ppl_interval(comparison(LN, SE))  # SE over the 20 chunks (to rounding), t quantile of 19 df
INC, LO, HI = rules.increase_interval(LN, IV.se, IV.quantile)


@pytest.mark.parametrize(("ideal", "acceptable", "status"), [
    (above(HI), 0.05, Status.PASS),  # entirely below the ideal bound
    (HI, 0.05, Status.CAUTION),  # its upper end on the ideal bound: not surely below
    (INC, 0.05, Status.CAUTION),  # across the ideal bound, below the acceptable one
    (below(LO), 0.05, Status.CAUTION),  # entirely between the bounds
    (0.001, above(HI), Status.CAUTION),
    (0.001, HI, Status.INCONCLUSIVE),  # upper end on the acceptable bound
    (0.001, INC, Status.INCONCLUSIVE),  # across the acceptable bound
    (0.001, LO, Status.INCONCLUSIVE),  # lower end on the acceptable bound: not surely above
    (0.001, below(LO), Status.FAIL),  # entirely above the acceptable bound
])
def test_perplexity_bounds_on_the_interval(ideal, acceptable, status):
    ruling = rules.perplexity(comparison(LN, SE), bounds(ideal, acceptable))
    assert ruling.status is status
    assert (ruling.values["increase_low"], ruling.values["increase_high"]) == (LO, HI)
    assert IV.se == pytest.approx(SE, rel=1e-12) and IV.quantile == t_quantile(19)


def test_the_decision_interval_is_t_over_chunks_with_the_larger_standard_error():
    chunky = rules.perplexity(comparison(LN, SE, token_se=SE / 3), T).values
    assert chunky["interval_se"] == pytest.approx(SE) and chunky["ln_ppl_ratio_chunk_se"] == pytest.approx(SE)
    assert chunky["ln_ppl_ratio_se"] == SE / 3  # llama.cpp's per-token SE, recorded beside the decision's
    assert (chunky["interval_df"], chunky["interval_t"]) == (19, t_quantile(19))
    # a few chunks can look steadier than their tokens by chance: the per-token SE is then the floor
    tokeny = rules.perplexity(comparison(LN, SE, chunks=4, token_se=3 * SE), T).values
    assert tokeny["interval_se"] == 3 * SE and tokeny["interval_t"] == pytest.approx(3.182446, abs=1e-6)
    assert tokeny["increase_high"] == pytest.approx(math.expm1(LN + 3.182446 * 3 * SE), rel=1e-6)
    # an artifact without the per-chunk series: the per-token SE alone, still with the t quantile of chunks - 1
    old = {"ln_ppl_ratio": LN, "ln_ppl_ratio_se": SE, "chunks": 4}
    assert rules.ln_ppl_interval(old).quantile == t_quantile(3) and rules.ln_ppl_interval(old).se == SE


def test_one_chunk_gives_no_interval_and_no_decision():
    status, reason, values = rules.perplexity(comparison(0.001, 0.0, chunks=1, token_se=0.0001), T)
    assert status is Status.INCONCLUSIVE and reason.endswith("an interval over chunks needs at least 2 chunks")
    assert values["increase_low"] is None and chunks_to_resolve(comparison(0.001, 0.0, chunks=1), 0.05) is None


def half_width(se: float, chunks: int, n: int) -> float:
    """The decision interval's half width at n chunks, the spread between chunks staying as now."""
    return t_quantile(n - 1) * se * math.sqrt(chunks / n)


def test_an_interval_across_the_acceptable_bound_says_how_many_chunks_resolve_it():
    pc = comparison(0.047, 0.012, ppl_base=6.7, kld_mean=0.001)
    status, reason, values = rules.perplexity(pc, T)
    need = chunks_to_resolve(pc, T.ppl_increase_acceptable)
    gap = math.log(1.05) - 0.047
    assert status is Status.INCONCLUSIVE and need is not None
    assert half_width(0.012, 20, need) < gap <= half_width(0.012, 20, need - 1)
    assert values["chunks_to_resolve"] == need and f"about {need} chunks would resolve it" in reason
    assert values["ppl_base"] == 6.7 and values["kld_mean"] == 0.001
    # the verdict repeats the outcome's own count, never a second one
    data = ExperimentData("e", [CheckOutcome("e", "perplexity", "perplexity", status, reason)],
                          {Artifact.PERPLEXITY: pc})
    assert decide(data).reasons[0] == f"perplexity: {reason}"


def test_an_effect_exactly_on_the_acceptable_bound_no_chunk_count_resolves():
    pc = comparison(math.log1p(T.ppl_increase_acceptable), 0.01)
    status, reason, values = rules.perplexity(pc, T)
    assert status is Status.INCONCLUSIVE and values["chunks_to_resolve"] is None
    assert reason.endswith("no number of chunks resolves an effect on the bound")


def test_nonfinite_logits_fail_the_perplexity_check_whatever_the_numbers():
    status, reason, _ = rules.perplexity(comparison(0.0, 0.001, nonfinite="chunk 3, position 7"), T)
    assert status is Status.FAIL and reason.startswith("NaN/Inf logits in the perplexity pass at chunk 3, position 7")


@pytest.mark.parametrize(("ratio", "se", "chunks"), [(0.03, 0.02, 10), (0.07, 0.02, 4), (0.0488, 0.001, 100),
                                                     (0.03, 0.006, 2), (0.0, 0.05, 3)])
def test_chunks_to_resolve_is_the_smallest_count_whose_t_interval_clears_the_bound(ratio, se, chunks):
    needed = chunks_to_resolve(comparison(ratio, se, chunks), 0.05)
    gap = abs(ratio - math.log(1.05))
    assert needed is not None and needed > chunks
    assert half_width(se, chunks, needed) < gap
    if needed > chunks + 1:
        assert half_width(se, chunks, needed - 1) >= gap  # at the new count's own degrees of freedom


def test_chunks_to_resolve_is_more_than_now_and_needs_the_numbers():
    assert chunks_to_resolve(comparison(0.2, 0.001, 20), 0.05) == 21  # already resolved: at least one more chunk
    assert chunks_to_resolve({}, 0.05) is None
    assert chunks_to_resolve(comparison(0.01, 0.0, 4, token_se=0.0), 0.05) is None
    assert chunks_to_resolve(comparison(math.nan, 0.01, 4), 0.05) is None
    assert chunks_to_resolve(comparison(math.log1p(0.05), 0.01, 4), 0.05) is None


# --- conversation ---------------------------------------------------------------------------------------------------


def test_judge_rule():
    assert rules.judge(True, True) is Status.PASS
    assert rules.judge(False, True) is Status.PASS
    assert rules.judge(False, False) is Status.LIMITATION
    assert rules.judge(True, False) is Status.FAIL


@pytest.mark.parametrize(("p", "smallest", "base_ok", "cand_ok", "status"), [
    (0.049, 0.004, True, True, Status.FAIL),  # significantly fewer passes, even with most still passing
    (0.05, 0.004, True, True, Status.PASS),  # p on alpha: not significant
    (0.05, 0.004, True, False, Status.INCONCLUSIVE),  # most fail, fewer passes than the baseline, not significantly
    (0.5, 0.5, False, False, Status.INCONCLUSIVE),  # no power: not a limitation
    (0.5, 0.05, True, True, Status.INCONCLUSIVE),  # smallest reachable p on alpha: no power, not a pass
    (1.0, 1.0, False, False, Status.LIMITATION),  # the baseline never passes: nothing to regress from
])
def test_sampled_check_status(p, smallest, base_ok, cand_ok, status):
    passes = 0 if smallest == 1.0 else 3
    check = CheckResult("language", base_ok, cand_ok, "", samples=5, baseline_passes=passes, candidate_passes=1,
                        p_value=p, alpha=0.05, smallest_p=smallest)
    assert check.status is status


def test_combine_counts_passes_over_seeds():
    base, cand = [(True, "zh")] * 5, [(True, "zh")] + [(False, "en")] * 4
    c = rules.combine("language", base, cand, 0.05)
    assert (c.baseline_passes, c.candidate_passes) == (5, 1) and c.p_value == pytest.approx(0.0238, abs=1e-4)
    assert c.status is Status.FAIL and "sample 2" in c.detail and c.smallest_p == pytest.approx(1 / 252)
    single = rules.combine("language", [(True, "zh")], [(False, "en")], 0.05)
    assert single.samples == 1 and single.status is Status.FAIL
    broken = rules.combine("valid_text", base, [(True, "ok")] * 4 + [(False, "bad")], 0.05)
    assert broken.status is Status.FAIL and broken.detail == "candidate sample 5: bad"


def answers(passes: int, n: int = 5) -> list[tuple[bool, str]]:
    return [(True, "zh")] * passes + [(False, "en")] * (n - passes)


@pytest.mark.parametrize(("base", "smallest"), [(1, 0.5), (2, 10 / 45), (3, 10 / 120)])
def test_a_count_test_that_cannot_detect_a_regression_says_so(base, smallest):
    """5 + 5 answers reach p < 0.05 only from a baseline of 4/5 or 5/5: below that, even 0/5 candidate passes prove
    nothing, so the check is inconclusive whatever the candidate did, never a pass or the model's limitation."""
    for cand in range(6):
        c = rules.combine("language", answers(base), answers(cand), 0.05)
        assert c.smallest_p == pytest.approx(smallest) and c.powerless and c.status is Status.INCONCLUSIVE
        assert f"no power — 5 samples cannot detect a regression from a {base}/5 baseline" in c.detail
        assert c.to_json()["power"] is False
    with_power = rules.combine("language", answers(4), answers(0), 0.05)
    assert with_power.status is Status.FAIL and with_power.p_value == pytest.approx(5 / 210)
    assert not with_power.powerless and with_power.to_json()["power"] is True
    # a looser alpha lends power to the same counts
    assert not rules.combine("language", answers(base), answers(0), smallest * 1.01).powerless


def test_a_baseline_that_never_passes_is_the_models_limitation():
    c = rules.combine("language", answers(0), answers(0), 0.05)
    assert c.status is Status.LIMITATION and not c.powerless


def test_overall_puts_regressions_first():
    assert rules.overall([]) is Status.PASS
    assert rules.overall([Status.PASS, Status.LIMITATION]) is Status.LIMITATION
    assert rules.overall([Status.LIMITATION, Status.INCONCLUSIVE]) is Status.INCONCLUSIVE
    assert rules.overall([Status.INCONCLUSIVE, Status.FAIL, Status.PASS]) is Status.FAIL


def test_fluency_needs_both_the_factor_and_significance():
    base = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0]
    worse = [x + math.log(3) for x in base]  # ×3 perplexity, same spread: significant
    ok, pb, pc, p, _ = rules.fluency_check(base, worse, 2.0, 0.05)
    assert not ok and pc / pb == pytest.approx(3) and p < 0.05
    assert rules.fluency_check(base, worse, pc / pb, 0.05)[0]  # on the factor: not beyond it
    assert rules.fluency_check(base, worse, 2.0, p)[0]  # p on alpha: not significant
    better = rules.fluency_check(worse, base, 1.0, 0.05)
    assert better[0] and better[3] == 1.0  # a more fluent candidate is never tested


# ----------------------------------------------------------------------------------------------- floor and excess


def with_placebo(resolved: bool, chunks: int = 10) -> dict:
    ci = [0.0008, 0.0016] if resolved else [-0.0003, 0.0005]
    return comparison(0.0017, 0.0009, chunks, kld_mean=0.0063,
                      placebo={"kld_mean": 0.0051, "ln_ppl_ratio": -0.0027, "same_top_p": 0.962},
                      excess={"kld_mean": sum(ci) / 2, "kld_mean_ci": ci, "kld_mean_resolved": resolved,
                              "ln_ppl_ratio": 0.0044, "ln_ppl_ratio_ci": [-0.001, 0.0098], "chunks": chunks})


def test_floor_and_excess_tells_a_floor_level_effect_from_a_real_one():
    assert rules.floor_and_excess(comparison(0.001, 0.001)) is None  # no placebo: nothing to tell
    real = rules.floor_and_excess(with_placebo(True))
    floor = rules.floor_and_excess(with_placebo(False))
    assert real is not None and floor is not None
    assert real.resolved and not floor.resolved
    assert "placebo) already moves perplexity by -0.270% and gives KLD 0.0051" in real.reason
    assert "the format adds KLD +0.0012 (95% CI +0.0008 … +0.0016)" in real.reason
    assert "below what this model and runtime resolve at this position" in floor.reason
    assert floor.values["excess_kld_mean_ci"] == [-0.0003, 0.0005] and floor.values["floor_kld_mean"] == 0.0051


def test_perplexity_reason_and_headline_carry_the_floor_without_changing_the_status():
    plain = rules.perplexity(comparison(0.0017, 0.0009, 10), T)
    ruling = rules.perplexity(with_placebo(False), T)
    assert ruling.status is plain.status is Status.PASS  # the user's bounds apply to the total
    assert ruling.reason.startswith(plain.reason) and "(placebo)" in ruling.reason
    assert ruling.values["format_effect_resolved"] is False
    must_pass = [CheckOutcome("e", c, "must_pass", Status.PASS, "ok")
                 for c in ("build", "format", "load", "finite", "original_unchanged")]
    ppl = CheckOutcome("e", "perplexity", "perplexity", ruling.status, ruling.reason, ruling.values)
    data = ExperimentData("e", [*must_pass, ppl],
                          {Artifact.EXPERIMENT: {"checks": ["must_pass", "perplexity"], "prompts": []}})
    assert decide(data).decision == Decision.GO
    assert "below what this model and runtime resolve" in decide(data).headline
    caution = CheckOutcome("e", "numerical", "numerical", Status.CAUTION, "mean rel diff 2.6%")
    data = ExperimentData("e", [*must_pass, caution, ppl],
                          {Artifact.EXPERIMENT: {"checks": ["must_pass", "numerical", "perplexity"], "prompts": []}})
    assert decide(data).decision == Decision.CAUTION
    assert "below the placebo floor's resolution (floor KLD 0.0051" in decide(data).headline
