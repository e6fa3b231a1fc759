"""What the acceptance tests measured, kept on disk so that any process can write it and the report can read it.

The suite runs as several pytest processes at times (pytest-xdist), so tests do not hand results to the report in
memory. Each test writes what it measured to ``<report_dir>/<experiment>/.data/``:

- one :class:`CheckOutcome` per check (``outcomes/<check>.json``): the verdict of one check, with its reason;
- named artifacts (``<name>.json``): bigger measurements (numerical analysis, perplexity comparison,
  conversations, speed, provenance) that the report shows in full.

The report step (:mod:`fakequant.report`) reads them back with :func:`load_experiment`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fakequant.i18n import Message
from fakequant.store.cache import write_json
from fakequant.suite.vocab import CATEGORIES, Status


@dataclass
class CheckOutcome:
    experiment: str
    check: str  # stable id, e.g. "load", "perplexity", "conversation[english_intro]"
    category: str  # one of CATEGORIES
    status: Status
    reason: str  # one line: the measured value, its uncertainty and the threshold (English)
    values: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] | None = None  # the reason's code and values (i18n.Message.to_json), for other languages

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown check category {self.category!r}; expected one of {CATEGORIES}")
        self.status = Status(self.status)
        if isinstance(self.reason, Message):
            self.message = self.reason.to_json()
        elif isinstance(self.message, dict):
            self.reason = Message.from_json(self.message, self.reason)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckOutcome:
        return cls(**data)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "_"


def data_dir(report_dir: Path, experiment: str) -> Path:
    return Path(report_dir) / experiment / ".data"


def record_outcome(report_dir: Path, outcome: CheckOutcome) -> None:
    write_json(data_dir(report_dir, outcome.experiment) / "outcomes" / f"{_slug(outcome.check)}.json",
               outcome.to_json())


def save_artifact(report_dir: Path, experiment: str, name: str, data: Any) -> None:
    write_json(data_dir(report_dir, experiment) / f"{_slug(name)}.json", data)


def clear_experiment(report_dir: Path, experiment: str) -> None:
    """Forget what an earlier run recorded for this experiment (called once per run, before its tests)."""
    folder = data_dir(report_dir, experiment)
    if folder.exists():
        for path in sorted(folder.rglob("*.json")):
            path.unlink()


@dataclass
class ExperimentData:
    experiment: str
    outcomes: list[CheckOutcome]
    artifacts: dict[str, Any]


def load_experiment(report_dir: Path, experiment: str) -> ExperimentData:
    folder = data_dir(report_dir, experiment)
    outcomes = [CheckOutcome.from_json(json.loads(p.read_text()))
                for p in sorted((folder / "outcomes").glob("*.json"))]
    artifacts = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    return ExperimentData(experiment, outcomes, artifacts)


def recorded_experiments(report_dir: Path) -> list[str]:
    return sorted(p.parent.parent.name for p in Path(report_dir).glob("*/.data/outcomes"))


def flat_values(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """An outcome's values as flat ``a.b`` keys with scalar values, the way JUnit properties hold them."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_values(v, f"{key}."))
        elif isinstance(v, list | tuple):
            out[key] = ", ".join(str(x) for x in v)
        else:
            out[key] = v
    return out
