"""The go/no-go decision of one experiment, from the check outcomes the suite recorded.

Each check's own status comes from :mod:`fakequant.suite.rules` (thresholds from criteria.toml); from those:

- **STOP**: a must-pass check, the perplexity check, a numerical check or a conversation check failed.
- **INCONCLUSIVE**: the fake quantization changed no value, a check is inconclusive or could not run (error), or a
  check the decision needs was never measured: every check id of :func:`expected_checks` must have an outcome (a
  test that crashed before recording its own gets an error outcome from the plugin; one that never ran has none).
- **CAUTION**: a check is within the acceptable bound but outside the ideal one, or the candidate is significantly
  slower (speed alone never stops an experiment).
- **GO**: everything else.

Model limitations (the baseline fails a check too) are reported as notes, never blamed on the quantization; so are
sampled conversation checks with no power (the original passes them too rarely for any candidate result to show a
regression): they are named as not measurable, never counted as passes, and do not hold up the other checks.
Reasons are the checks' own one-line reasons (measured value, its uncertainty, the threshold), prefixed with the
check's id; each is an :class:`~fakequant.i18n.Message` (its English sentence, with the code and values a report
renders in its own language), and report.json keeps both. A positive control (``expect`` names the checks that
must fail) also carries whether exactly those failed (:mod:`fakequant.suite.expectation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fakequant.i18n import Message, dump_all, load_all, msg
from fakequant.suite.criteria import Thresholds
from fakequant.suite.expectation import Expectation, judge, keys_of
from fakequant.suite.outcomes import CheckOutcome, ExperimentData
from fakequant.suite.rules import NoOp, chunks_to_resolve, no_op
from fakequant.suite.vocab import (
    CHECK_OF_TEST,
    CONVERSATION,
    MUST_PASS,
    NUMERICAL,
    PERPLEXITY,
    SPEED,
    Artifact,
    Decision,
    Status,
)

# Categories whose failure stops an experiment; speed failures only caution.
STOPPING = (MUST_PASS, PERPLEXITY, NUMERICAL, CONVERSATION)
PRIORITY = (*STOPPING, SPEED)


@dataclass
class Verdict:
    experiment: str
    decision: Decision
    reasons: list[str]  # why this decision, most important first
    headline: str  # one short line for the terminal and the index
    expectation: Expectation | None = None  # positive controls: the checks that must fail, and which did
    notes: list[str] = field(default_factory=list)  # reported, but not what decided it

    @property
    def matched(self) -> bool | None:
        return None if self.expectation is None else self.expectation.matched

    def to_json(self) -> dict[str, Any]:
        """The English sentences under their old keys, and under ``messages`` their codes and values (None for a
        sentence without one)."""
        e = self.expectation
        messages = {"reasons": dump_all(self.reasons), "headline": dump_all([self.headline])[0],
                    "notes": dump_all(self.notes)}
        return {"experiment": self.experiment, "decision": str(self.decision), "reasons": list(self.reasons),
                "headline": self.headline, "expected": {k: "fail" for k in e.keys} if e else None,
                "matched": self.matched, "expectation": e.to_json() if e else None, "notes": list(self.notes),
                "messages": messages}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        decision = Decision(data["decision"])
        keys, _ = keys_of(data.get("expected"))
        expectation = Expectation.from_json(dict.fromkeys(keys, "fail"), _dict(data.get("expectation")),
                                            decision) if keys else None
        messages = _dict(data.get("messages"))
        reasons, notes = list(data.get("reasons") or []), list(data.get("notes") or [])
        return cls(experiment=str(data["experiment"]), decision=decision,
                   reasons=load_all(reasons, messages.get("reasons")),
                   headline=load_all([data.get("headline") or ""], [messages.get("headline")])[0],
                   expectation=expectation, notes=load_all(notes, messages.get("notes")))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _line(text: Any) -> str:
    """Reasons are one line whatever a check wrote (a Message is one line already)."""
    return text if isinstance(text, Message) else " ".join(str(text).split())


def _reason(outcome: CheckOutcome) -> Message:
    return msg("verdict.check", check=outcome.check, reason=_line(outcome.reason) or str(outcome.status))


def expected_checks(experiment: Mapping[str, Any]) -> list[str] | None:
    """Every check id a complete run of an experiment records, from its "experiment" artifact: the must-pass ones
    (their tests always run), and those of each declared category, ``conversation[<id>]`` once per prompt. None when
    the artifact does not say which checks and prompts it has: then nobody knows what a complete run is."""
    checks, prompts = experiment.get("checks"), experiment.get("prompts")
    if not isinstance(checks, list) or not isinstance(prompts, list):
        return None
    ids: list[str] = []
    for check, category in CHECK_OF_TEST.values():
        if "{prompt}" in check and category in checks:
            ids += [check.format(prompt=p.get("id")) for p in prompts if isinstance(p, dict)]
        elif category == MUST_PASS or category in checks:
            ids.append(check)
    return ids


def missing_checks(data: ExperimentData) -> list[str] | None:
    """The expected check ids with no outcome in ``data`` (None: the experiment's checks are unknown). A candidate
    that changes no value skips its quality checks: then the must-pass ones are all a complete run records."""
    experiment = _dict(data.artifacts.get(Artifact.EXPERIMENT))
    expected = expected_checks(experiment)
    if expected is None:
        return None
    if no_op(data.artifacts.get(Artifact.NUMERICAL), experiment.get("recipe")):
        must_pass = {check for check, category in CHECK_OF_TEST.values() if category == MUST_PASS}
        expected = [c for c in expected if c in must_pass]
    recorded = {o.check for o in data.outcomes}
    return [c for c in expected if c not in recorded]


def rerun_command(data: ExperimentData) -> str:
    """What measures an experiment again: its whole test set, since a new run clears what an earlier one recorded."""
    experiment = _dict(data.artifacts.get(Artifact.EXPERIMENT))
    sweep, source = experiment.get("sweep"), str(experiment.get("source") or "")
    if sweep:
        return f"pytest --sweep {sweep} -k {data.experiment}"
    if source.startswith("recipes."):  # a recipe's mixed model is collected only when asked for
        return f"pytest --recipe {source.removeprefix('recipes.')} -k {data.experiment}"
    return f"pytest -k {data.experiment}"


def decide(data: ExperimentData) -> Verdict:
    # Most telling first: the reasons and the headline follow this order.
    outcomes = sorted(data.outcomes, key=lambda o: PRIORITY.index(o.category) if o.category in PRIORITY else 99)
    by_status: dict[Status, list[CheckOutcome]] = {s: [o for o in outcomes if o.status == s] for s in Status}
    stop = [_reason(o) for o in by_status[Status.FAIL] if o.category in STOPPING]
    slow = [msg("verdict.speed_never_stops", reason=_reason(o))
            for o in by_status[Status.FAIL] if o.category not in STOPPING]

    inconclusive: list[Message] = []
    experiment = _dict(data.artifacts.get(Artifact.EXPERIMENT))
    noop = no_op(data.artifacts.get(Artifact.NUMERICAL), experiment.get("recipe"))
    if noop:
        inconclusive.append(msg("verdict.noop", changed=noop.changed, total=noop.total, format=noop.format))
    comparison = _dict(data.artifacts.get(Artifact.PERPLEXITY))
    blind = [o for o in by_status[Status.INCONCLUSIVE] if o.category == CONVERSATION and o.values.get("no_power")]
    for o in by_status[Status.INCONCLUSIVE]:
        if o.category == SPEED or o in blind:
            continue
        text = _reason(o)
        if o.category == PERPLEXITY and "chunk" not in text:  # a reason that does not say what would resolve it
            acceptable = _dict(experiment.get("thresholds")).get("ppl_increase_acceptable")
            needed = chunks_to_resolve(comparison, float(acceptable) if isinstance(acceptable, int | float)
                                       else Thresholds.ppl_increase_acceptable)
            if needed:
                text = msg("verdict.more_chunks", text=text, needed=needed, chunks=comparison.get("chunks"))
        inconclusive.append(text)
    inconclusive += [msg("verdict.could_not_run", check=o.check, reason=_line(o.reason))
                     for o in by_status[Status.ERROR]]
    missing = missing_checks(data)
    if missing is None:
        inconclusive.append(msg("verdict.checks_unknown", experiment=data.experiment, artifact=str(Artifact.EXPERIMENT),
                                command=rerun_command(data)))
    elif missing:
        inconclusive.append(msg("verdict.missing", checks=missing, command=rerun_command(data)))

    caution = [_reason(o) for o in by_status[Status.CAUTION]] + slow
    notes = [msg("verdict.limitation", reason=_reason(o)) for o in by_status[Status.LIMITATION]]
    notes += [_reason(o) for o in by_status[Status.INCONCLUSIVE] if o.category == SPEED]
    notes += [msg("verdict.unmeasurable", reason=_reason(o)) for o in blind]

    if stop:
        decision, reasons, rest = Decision.STOP, stop, inconclusive + caution
    elif inconclusive:
        decision, reasons, rest = Decision.INCONCLUSIVE, inconclusive, caution
    elif caution:
        decision, reasons, rest = Decision.CAUTION, caution, []
    else:
        passed = len(by_status[Status.PASS])
        head = (msg("verdict.all_pass_but", passed=passed, count=len(blind), checks=[o.check for o in blind]) if blind
                else msg("verdict.all_pass", passed=passed))
        decision, reasons, rest = Decision.GO, [head], []
        reasons += [_reason(o) for o in outcomes if o.category == PERPLEXITY]

    keys, expect_problem = keys_of(experiment.get("expect"))
    if expect_problem:
        notes.append(expect_problem)
    expectation = judge(keys, outcomes, decision) if keys else None
    return Verdict(data.experiment, decision, reasons, _headline(decision, reasons, noop, outcomes), expectation,
                   notes=rest + notes)


def _headline(decision: Decision, reasons: list[Message], noop: NoOp | None, outcomes: list[CheckOutcome]) -> Message:
    if decision == Decision.INCONCLUSIVE and noop:
        return msg("headline.noop", changed=noop.changed, total=noop.total, format=noop.format)
    ppl = [o for o in outcomes if o.category == PERPLEXITY]
    if decision == Decision.GO:
        head = reasons[0]
        return msg("clauses", parts=[head, _line(ppl[0].reason)]) if ppl else head
    more = msg("headline.more", count=len(reasons) - 1) if len(reasons) > 1 else ""
    said = "(placebo)" in reasons[0]  # a perplexity reason already tells the floor
    return msg("headline.lead", reason=reasons[0], more=more,
               floor=_floor_phrase(ppl[0].values) if ppl and not said else "")


def _floor_phrase(values: dict[str, Any]) -> Message | str:
    """Whether the format's own effect stood out of the floor, for a headline led by another reason."""
    resolved, floor, excess = (values.get(k) for k in ("format_effect_resolved", "floor_kld_mean", "excess_kld_mean"))
    if not isinstance(resolved, bool) or not isinstance(floor, float) or not isinstance(excess, float):
        return ""
    if resolved:
        return msg("headline.floor_resolved", excess=excess, floor=floor)
    return msg("headline.floor_unresolved", excess=excess, floor=floor)
