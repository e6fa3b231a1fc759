"""The go/no-go decision of one experiment, from the check outcomes the suite recorded.

Rules (issue 5; thresholds live in criteria.toml and are applied by the suite when it records each outcome):

- **STOP**: a must-pass check, the perplexity check, a numerical check or a conversation check failed.
- **INCONCLUSIVE**: the fake quantization changed no value, a check is inconclusive or could not run (error), or a
  check the decision needs was never measured.
- **CAUTION**: a check is within the acceptable bound but outside the ideal one, or the candidate is significantly
  slower (speed alone never stops an experiment).
- **GO**: everything else.

Model limitations (the baseline fails a check too) are reported as notes, never blamed on the quantization.
Reasons are the checks' own one-line reasons (measured value, its uncertainty, the threshold), prefixed with the
check's id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fakequant.suite.outcomes import CheckOutcome, ExperimentData
from fakequant.suite.vocab import Decision, Status

# Categories whose failure stops an experiment; speed failures only caution.
STOPPING = ("must_pass", "perplexity", "numerical", "conversation")
PRIORITY = (*STOPPING, "speed")
# Categories without which a GO would be a claim nobody measured (unless the experiment declares fewer checks).
REQUIRED = ("must_pass", "numerical", "perplexity", "conversation")
DEFAULT_IDEAL = 0.01
DEFAULT_ACCEPTABLE = 0.05
Z95 = 1.959964


@dataclass
class Verdict:
    experiment: str
    decision: Decision
    reasons: list[str]  # why this decision, most important first
    headline: str  # one short line for the terminal and the index
    expected: Decision | None = None  # negative controls: the decision the experiment was designed to reach
    notes: list[str] = field(default_factory=list)  # reported, but not what decided it

    @property
    def matched(self) -> bool | None:
        return None if self.expected is None else self.expected == self.decision

    def to_json(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "decision": str(self.decision), "reasons": list(self.reasons),
                "headline": self.headline, "expected": None if self.expected is None else str(self.expected),
                "matched": self.matched, "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        expected = data.get("expected")
        return cls(experiment=str(data["experiment"]), decision=Decision(data["decision"]),
                   reasons=[str(r) for r in data.get("reasons") or []], headline=str(data.get("headline") or ""),
                   expected=Decision(expected) if expected else None,
                   notes=[str(n) for n in data.get("notes") or []])


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _line(text: Any) -> str:
    """Reasons are one line whatever a check wrote."""
    return " ".join(str(text).split())


def _reason(outcome: CheckOutcome) -> str:
    return f"{outcome.check}: {_line(outcome.reason) or outcome.status}"


@dataclass
class NoOp:
    changed: int
    total: int
    format: str


def no_op(data: ExperimentData) -> NoOp | None:
    """The fake quantization changed nothing: the flag of the numerical analysis, or zero changed values in it."""
    analysis = _dict(data.artifacts.get("numerical_analysis"))
    tensors = [t for t in analysis.get("tensors") or [] if isinstance(t, dict)]
    try:
        changed = sum(int(t.get("changed") or 0) for t in tensors)
        total = sum(int(t.get("n") or 0) for t in tensors)
    except (TypeError, ValueError):
        return None
    recipe = _dict(analysis.get("recipe")) or _dict(_dict(data.artifacts.get("experiment")).get("recipe"))
    fmt = str(recipe.get("format") or "the target format")
    if analysis.get("noop") is True or (tensors and changed == 0):
        return NoOp(changed, total, fmt)
    return None


def expected_decision(data: ExperimentData) -> tuple[Decision | None, str | None]:
    raw = _dict(data.artifacts.get("experiment")).get("expect")
    if raw in (None, ""):
        return None, None
    try:
        return Decision(str(raw).upper()), None
    except ValueError:
        return None, f"experiment.expect = {raw!r} is not one of {', '.join(d.value for d in Decision)}; ignored"


def chunks_to_resolve(comparison: dict[str, Any], acceptable: float = DEFAULT_ACCEPTABLE) -> int | None:
    """How many chunks would put the 95% interval of the perplexity increase on one side of the acceptable bound.

    The standard error of mean ln(PPL(Q)/PPL(base)) shrinks as 1/sqrt(chunks).
    """
    try:
        ratio = float(comparison["ln_ppl_ratio"])
        se = float(comparison["ln_ppl_ratio_se"])
        chunks = int(comparison["chunks"])
    except (KeyError, TypeError, ValueError):
        return None
    gap = abs(ratio - math.log1p(acceptable))
    if not (se > 0 and chunks > 0 and math.isfinite(se) and math.isfinite(ratio)) or gap == 0:
        return None
    return max(chunks + 1, math.ceil(chunks * (Z95 * se / gap) ** 2))


def decide(data: ExperimentData) -> Verdict:
    # Most telling first: the reasons and the headline follow this order.
    outcomes = sorted(data.outcomes, key=lambda o: PRIORITY.index(o.category) if o.category in PRIORITY else 99)
    by_status: dict[Status, list[CheckOutcome]] = {s: [o for o in outcomes if o.status == s] for s in Status}
    stop = [_reason(o) for o in by_status[Status.FAIL] if o.category in STOPPING]
    slow = [f"{_reason(o)} (speed alone never stops an experiment)"
            for o in by_status[Status.FAIL] if o.category not in STOPPING]

    inconclusive: list[str] = []
    noop = no_op(data)
    if noop:
        inconclusive.append(f"numerical: {noop.changed}/{noop.total} values changed (already representable in "
                            f"{noop.format}); the candidate is the original, so no check can tell anything — "
                            "choose a format or tensors that change values")
    comparison = _dict(data.artifacts.get("perplexity_comparison"))
    for o in by_status[Status.INCONCLUSIVE]:
        if o.category == "speed":
            continue
        text = _reason(o)
        if o.category == "perplexity" and "chunk" not in text:
            acceptable = _dict(_dict(data.artifacts.get("experiment")).get("thresholds")).get("ppl_increase_acceptable")
            needed = chunks_to_resolve(comparison, float(acceptable) if isinstance(acceptable, int | float)
                                       else DEFAULT_ACCEPTABLE)
            if needed:
                text += f"; about {needed} chunks (now {comparison.get('chunks')}) would resolve it"
        inconclusive.append(text)
    inconclusive += [f"{o.check} could not run: {_line(o.reason)}" for o in by_status[Status.ERROR]]
    measured = {o.category for o in outcomes}
    declared = _dict(data.artifacts.get("experiment")).get("checks")
    wanted = [c for c in REQUIRED if not isinstance(declared, list) or c in declared]
    missing = [c for c in wanted if c not in measured]
    if missing and not noop:
        inconclusive.append(f"not measured: {', '.join(missing)} (run the experiment's full test set, "
                            "e.g. pytest -k <experiment>)")

    caution = [_reason(o) for o in by_status[Status.CAUTION]] + slow
    notes = [f"model limitation, not the quantization's: {_reason(o)}" for o in by_status[Status.LIMITATION]]
    notes += [_reason(o) for o in by_status[Status.INCONCLUSIVE] if o.category == "speed"]

    if stop:
        decision, reasons, rest = Decision.STOP, stop, inconclusive + caution
    elif inconclusive:
        decision, reasons, rest = Decision.INCONCLUSIVE, inconclusive, caution
    elif caution:
        decision, reasons, rest = Decision.CAUTION, caution, []
    else:
        passed = len(by_status[Status.PASS])
        decision, reasons, rest = Decision.GO, [f"all {passed} checks pass"], []
        reasons += [_reason(o) for o in outcomes if o.category == "perplexity"]

    expected, expect_problem = expected_decision(data)
    if expect_problem:
        notes.append(expect_problem)
    return Verdict(data.experiment, decision, reasons, _headline(decision, reasons, noop, outcomes), expected,
                   notes=rest + notes)


def _headline(decision: Decision, reasons: list[str], noop: NoOp | None, outcomes: list[CheckOutcome]) -> str:
    if decision == Decision.INCONCLUSIVE and noop:
        return f"{noop.changed}/{noop.total} values changed (already representable in {noop.format})"
    if decision == Decision.GO:
        ppl = [o for o in outcomes if o.category == "perplexity"]
        head = reasons[0]
        return f"{head}; {_line(ppl[0].reason)}" if ppl else head
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return reasons[0] + more
