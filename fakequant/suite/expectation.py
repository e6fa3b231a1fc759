"""A positive control's expectation: the checks that must fail, and whether exactly those failed.

criteria.toml names them, ``expect = {finite = "fail"}`` or ``expect = {numerical = "fail", perplexity = "fail"}``.
A key is a check id (``build``, ``format``, ``load``, ``finite``, ``original_unchanged``, ``numerical``,
``perplexity``, ``conversation[<prompt id>]``) or a category (``must_pass``, ``conversation``: any of its checks).
Speed cannot be named: it never fails.

The control matches when every key has at least one failing check, no other check failed or could not run, and so
the decision is STOP. In the suite a named check that fails is a strict xfail, any other failure of the control is
an ordinary failure, and ``test_expected_decision`` fails when a named check did not fail: a writer bug that breaks
the format of a control meant to fail perplexity fails the run instead of reading as "STOP, as expected".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fakequant.i18n import Message, dump_all, load_all, msg
from fakequant.suite.vocab import CONVERSATION, MUST_PASS, MUST_PASS_CHECKS, SPEED, Decision, Status

FAIL = "fail"  # the one value a key takes: this check must fail


def conversation_id(prompt_id: str) -> str:
    return f"{CONVERSATION}[{prompt_id}]"


def nameable(checks: Iterable[str], prompt_ids: Iterable[str]) -> tuple[str, ...]:
    """The keys an experiment with these check categories and prompts may name: what it measures and can fail."""
    keys: list[str] = []
    for category in checks:
        if category == SPEED:
            continue
        keys.append(category)
        if category == MUST_PASS:
            keys += MUST_PASS_CHECKS
        elif category == CONVERSATION:
            keys += [*(conversation_id(p) for p in prompt_ids), conversation_id("battery")]
    return tuple(dict.fromkeys(keys))


def names(keys: Iterable[str], check: str, category: str) -> bool:
    """Whether a check (its id and category) is one of the named keys."""
    return any(key in (check, category) for key in keys)


@dataclass(frozen=True)
class Expectation:
    keys: tuple[str, ...]  # what criteria.toml named, in its order
    failed: Mapping[str, tuple[str, ...]]  # key -> the failing checks it covers
    unexpected: tuple[str, ...]  # checks that failed, or could not run (said so: a Message), and no key names
    decision: Decision

    @property
    def missing(self) -> tuple[str, ...]:
        """Named keys without a failing check."""
        return tuple(k for k in self.keys if not self.failed.get(k))

    @property
    def matched(self) -> bool:
        return self.decision == Decision.STOP and not self.missing and not self.unexpected

    def problems(self) -> list[Message]:
        """Why it did not match, one phrase each (empty when it matched)."""
        out = [msg("expect.did_not_fail", key=k) for k in self.missing]
        out += [msg("expect.unexpected", check=c) for c in self.unexpected]
        if not out and self.decision != Decision.STOP:
            out.append(msg("expect.not_stop", decision=str(self.decision)))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"failed": {k: list(v) for k, v in self.failed.items()}, "missing": list(self.missing),
                "unexpected": list(self.unexpected), "unexpected_messages": dump_all(self.unexpected)}

    @classmethod
    def from_json(cls, expect: Mapping[str, Any], data: Mapping[str, Any], decision: Decision) -> Expectation:
        failed = data.get("failed") if isinstance(data.get("failed"), Mapping) else {}
        unexpected = list(data.get("unexpected") or ())
        return cls(tuple(expect), {str(k): tuple(map(str, v)) for k, v in failed.items()},
                   tuple(load_all(unexpected, data.get("unexpected_messages"))), decision)


def judge(keys: Sequence[str], outcomes: Iterable[Any], decision: Decision) -> Expectation:
    """Match the recorded outcomes (``check``, ``category``, ``status``) against the named keys."""
    failed: dict[str, list[str]] = {k: [] for k in keys}
    unexpected: list[str] = []
    for o in outcomes:
        if o.status == Status.ERROR:  # a check that could not run proves nothing, named or not
            unexpected.append(msg("expect.could_not_run", check=o.check))
        elif o.status == Status.FAIL:
            covering = [k for k in keys if k in (o.check, o.category)]
            for k in covering:
                failed[k].append(o.check)
            if not covering:
                unexpected.append(o.check)
    return Expectation(tuple(keys), {k: tuple(v) for k, v in failed.items()}, tuple(unexpected), decision)


def keys_of(raw: Any) -> tuple[tuple[str, ...], Message | None]:
    """The named keys of an ``expect`` as recorded (``{"finite": "fail"}``), and a note when it is not of that form
    (criteria.toml refuses such a value; a hand-edited record is ignored, not trusted)."""
    if raw in (None, "", {}):
        return (), None
    if isinstance(raw, Mapping) and all(isinstance(k, str) and v == FAIL for k, v in raw.items()):
        return tuple(raw), None
    return (), msg("expect.invalid", raw=repr(raw))
