"""Every bound criteria.toml sets can be crossed: for each threshold, an input its rule judges beyond the bound and
one it judges within (a check that cannot fail is a defect). Real format round trips where the bound is numerical."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fakequant.quant.formats import round_trip
from fakequant.quant.stats import compare_tensors
from fakequant.suite import rules
from fakequant.suite.conversation import cjk_ratio, repetition_score
from fakequant.suite.criteria import Thresholds, load_criteria
from fakequant.suite.rules.conversation import battery_test
from fakequant.suite.vocab import Status

REPO = Path(__file__).resolve().parents[2]


def shipped() -> Thresholds:
    crit = load_criteria(REPO / "criteria.toml")
    return next(e.thresholds for e in crit.experiments.values() if not e.sweep)


def norms(tiny: bool = False) -> np.ndarray:
    """Norm-like weights (SmolLM2's are 0.1-0.3); ``tiny``: one of them 2.24e-4, as in blk.10.ffn_norm."""
    values = np.random.default_rng(0).uniform(0.1, 0.3, 576).astype(np.float32)
    if tiny:
        values[7] = 2.24e-4
    return values


def numerical(th: Thresholds, fmt: str, values: np.ndarray, **kw) -> Status:
    stats = compare_tensors("t", values, round_trip(values, fmt, **kw), epsilon=1e-8)
    return rules.numerical([stats], th, 1e-8).status


def changed(th: Thresholds, values: np.ndarray, factor: float) -> Status:
    """The numerical rule on a tensor whose first value was multiplied by ``factor`` (a writer bug, say)."""
    after = values.copy()
    after[0] *= factor
    return rules.numerical([compare_tensors("t", values, after, epsilon=1e-8)], th, 1e-8).status


def perplexity(th: Thresholds, increase: float) -> Status:
    ln = math.log1p(increase)
    per_chunk = [ln + d for d in (-1e-4, 1e-4) * 5]
    return rules.perplexity({"ln_ppl_ratio": ln, "ln_ppl_ratio_se": 1e-5, "chunks": 10,
                             "per_chunk": {"ln_ppl_ratio": per_chunk}}, th).status


def speed(th: Thresholds, slowdown: float) -> str:
    n = th.speed_rounds
    base = [100.0 + 0.1 * i for i in range(n)]
    again = [100.05 + 0.1 * ((i * 3) % n) for i in range(n)]
    cand = [b * (1 - slowdown) for b in base]
    return rules.speed_metric(base, cand, again, higher_better=True, tolerance=th.speed_tolerance,
                              alpha=th.speed_alpha / 3)["status"]


def fluency(th: Thresholds, factor: float) -> bool:
    base = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 1.05, 0.95]
    return rules.fluency_check(base, [x + math.log(factor) for x in base], th.fluency_factor,
                               th.conversation_alpha)[0]


def answers(passes: int) -> list[tuple[bool, str]]:
    return [(True, "ok")] * passes + [(False, "no")] * (5 - passes)


# threshold → (what its rule says within the bound, beyond it): the shipped value is crossable by a real input
CASES: dict[str, Callable[[Thresholds], tuple[object, object]]] = {
    "mean_rel_diff": lambda th: (numerical(th, "bf16", norms()), numerical(th, "fp8_e4m3", norms())),
    "max_rel_diff": lambda th: (numerical(th, "bf16", norms()), numerical(th, "fp8_e5m2", norms())),
    "mean_rel_diff_acceptable": lambda th: (numerical(th, "fp8_e4m3", norms()),
                                            numerical(th, "int4", norms(), group_size=32)),
    # round to nearest moves a value by at most its own magnitude (a flush to zero stays just below 100%, and
    # stays acceptable); a value that changes sign or more than doubles is beyond it
    "max_rel_diff_acceptable": lambda th: (numerical(th, "fp8_e4m3", norms(tiny=True)), changed(th, norms(), -1.0)),
    "ppl_increase_ideal": lambda th: (perplexity(th, 0.5 * th.ppl_increase_ideal),
                                      perplexity(th, 1.5 * th.ppl_increase_ideal)),
    "ppl_increase_acceptable": lambda th: (perplexity(th, 0.9 * th.ppl_increase_acceptable),
                                           perplexity(th, 1.1 * th.ppl_increase_acceptable)),
    "fluency_factor": lambda th: (fluency(th, th.fluency_factor * 0.9), fluency(th, th.fluency_factor * 1.5)),
    # 5 + 5 sampled answers: 5/5 against 0/5 reaches p = 0.004; a 1/5 baseline reaches nothing (no power)
    "conversation_alpha": lambda th: (rules.combine("language", answers(5), answers(4), th.conversation_alpha).status,
                                      rules.combine("language", answers(5), answers(0), th.conversation_alpha).status),
    "repetition_max": lambda th: (repetition_score("The robot woke up and looked at the sky.") <= th.repetition_max,
                                  repetition_score("the the the the the the the the the") <= th.repetition_max),
    "cjk_min_ratio": lambda th: (cjk_ratio("你好，我是一個助手。") >= th.cjk_min_ratio,
                                 cjk_ratio("Hello, I am an assistant, 助手.") >= th.cjk_min_ratio),
    # 3 of 26 passing answers broken by the candidate and by none of its twins: significant against the shipped K
    # twins ((1/5)^3 = 0.008), not against one twin ((1/2)^3 = 0.125)
    "battery_placebos": lambda th: tuple(
        battery_test([True] * 3 + [False] * 23, [[False] * 26] * k, th.conversation_alpha).p_value
        < th.conversation_alpha for k in (th.battery_placebos, 1)),
    "speed_tolerance": lambda th: (speed(th, 0.5 * th.speed_tolerance), speed(th, 2 * th.speed_tolerance)),
    "speed_alpha": lambda th: (speed(th, 0.0), speed(th, 0.3)),
    # the smallest p the shipped rounds can reach is below the per-metric alpha: a slowdown can be called at all
    "speed_rounds": lambda th: (1 / math.comb(2 * th.speed_rounds, th.speed_rounds) < th.speed_alpha / 3,
                                1 / math.comb(2 * 3, 3) < th.speed_alpha / 3),
}
EXPECTED: dict[str, tuple[object, object]] = {
    "mean_rel_diff": (Status.PASS, Status.CAUTION),
    "max_rel_diff": (Status.PASS, Status.CAUTION),
    "mean_rel_diff_acceptable": (Status.CAUTION, Status.FAIL),
    "max_rel_diff_acceptable": (Status.CAUTION, Status.FAIL),
    "ppl_increase_ideal": (Status.PASS, Status.CAUTION),
    "ppl_increase_acceptable": (Status.CAUTION, Status.FAIL),
    "fluency_factor": (True, False),
    "conversation_alpha": (Status.PASS, Status.FAIL),
    "repetition_max": (True, False),
    "cjk_min_ratio": (True, False),
    "battery_placebos": (True, False),
    "speed_tolerance": ("pass", "caution"),
    "speed_alpha": ("pass", "caution"),
    "speed_rounds": (True, False),  # 3 rounds could never call a slowdown: the criteria refuse them
}


def test_every_threshold_has_a_crossing_case():
    assert set(CASES) == set(EXPECTED) == {f.name for f in dataclasses.fields(Thresholds)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_shipped_bound_is_crossed_by_some_input(name):
    assert CASES[name](shipped()) == EXPECTED[name]


def test_a_flush_to_zero_stays_below_one_and_a_sign_flip_crosses_it():
    values = norms(tiny=True)
    stats = compare_tensors("t", values, round_trip(values, "fp8_e4m3"), epsilon=1e-8)
    int8 = compare_tensors("t", values, round_trip(values, "int8"), epsilon=1e-8)
    assert 0.99 < stats.max_rel < 1.0 and int8.max_rel < 1.0
    assert changed(shipped(), norms(), -1.0) is Status.FAIL  # |a - (-a)| / |a| = 2
