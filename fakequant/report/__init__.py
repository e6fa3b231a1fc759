"""Reports: from what the suite recorded (:mod:`fakequant.suite.outcomes`) to the files a user reads.

Per experiment, in ``<report_dir>/<experiment>/``: ``report.json`` (everything, the decision included — the one file
the others can be rebuilt from), ``summary.md`` and ``summary.html``, the plan's own ``numerical_analysis.json``,
``conversation_tests.txt`` and ``perplexity_comparison.txt``, and PNG plots. Per run: ``<report_dir>/summary.md``
(an index) and an HTML fragment for pytest-html's summary section.

Layout: reading.py reads report.json into phrases, document.py decides what is said (as blocks), perplexity.py its
perplexity section (the total beside its placebo floor and the format's own excess), markdown.py / html.py say it,
plots.py draws, text.py writes the plain-text files; the English and Traditional Chinese words, the checks' reasons
included, are the catalogs of :mod:`fakequant.i18n`.
A sweep's map: sensitivity.py (cells, ranking, Markdown) and heatmap.py (its PNG).
"""

from __future__ import annotations

import datetime as _dt
import json
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fakequant.errors import FakequantError
from fakequant.i18n import msg
from fakequant.report import document, drift, html, markdown, plots, reading, text
from fakequant.report.blocks import Banner, Block, Cell, Heading, Image, Link, Para, Span, Table
from fakequant.report.i18n import status_text, translator
from fakequant.store.cache import atomic_output, write_json
from fakequant.store.textfile import parse_user_file
from fakequant.suite.outcomes import CheckOutcome, ExperimentData, load_experiment
from fakequant.suite.verdict import Verdict, decide
from fakequant.suite.vocab import Artifact, Decision

SCHEMA = 1
__all__ = ["ReportError", "build_document", "finish_run", "html_summary", "read_report", "render_experiment",
           "terminal_lines"]


class ReportError(FakequantError):
    """A report.json that is missing, unreadable or not a fakequant report."""


def build_document(data: ExperimentData, verdict: Verdict) -> dict[str, Any]:
    """The content of report.json: the verdict, every outcome and every artifact."""
    return {
        "schema": SCHEMA,
        "experiment": data.experiment,
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "verdict": verdict.to_json(),
        "outcomes": [o.to_json() for o in data.outcomes],
        "artifacts": data.artifacts,
        "plots": [],
    }


def _write_text(dest: Path, content: str) -> None:
    with atomic_output(dest, "w") as fh:
        fh.write(content)


def render_experiment(doc: dict[str, Any], folder: Path, lang: str = "en") -> None:
    """Draw the plots and write summary.md, summary.html and the plan's text files from a report.json document."""
    folder = Path(folder)
    artifacts, name = reading.d(doc.get("artifacts")), str(doc.get("experiment", "?"))
    doc["plots"] = plots.draw_all(artifacts, folder) + [p for p in [drift.draw(artifacts, folder)] if p]
    if Artifact.NUMERICAL in artifacts:
        write_json(folder / "numerical_analysis.json", artifacts[Artifact.NUMERICAL])
    _write_text(folder / "conversation_tests.txt", text.conversation_tests(name, artifacts.get(Artifact.CONVERSATIONS)))
    _write_text(folder / "perplexity_comparison.txt",
                text.perplexity_comparison(name, artifacts.get(Artifact.PERPLEXITY)))
    try:
        blocks = document.experiment_blocks(doc, lang)
    except Exception as err:  # a report that crashes at the end of a long run loses it all: say what failed instead
        verdict = reading.d(doc.get("verdict"))
        line = "".join(traceback.format_exception_only(err)).strip().splitlines()[-1]
        blocks = [Heading(1, name), Banner(str(verdict.get("decision", "INCONCLUSIVE")),
                                           [str(verdict.get("headline", ""))]),
                  Para([translator(lang)("render_failed", error=line)])]
    _write_text(folder / "summary.md", markdown.render(blocks))
    images = html.read_images(folder, doc["plots"])
    _write_text(folder / "summary.html", html.page(f"fakequant: {name}", html.render(blocks, images), lang))


def _error_verdict(experiment: str, err: BaseException) -> tuple[ExperimentData, Verdict]:
    reason = msg("verdict.unreadable", error=f"{type(err).__name__}: {err}".splitlines()[0])
    data = ExperimentData(experiment, [], {})
    return data, Verdict(experiment, Decision.INCONCLUSIVE, [reason], reason)


def finish_run(report_dir: Path, experiments: Sequence[str], *, lang: str = "en",
               index: Path | None = None) -> list[Verdict]:
    """Write every per-experiment report and the run's index (``index``, default ``report_dir/summary.md``);
    return the verdicts in the order given."""
    report_dir = Path(report_dir)
    verdicts, docs = [], []
    for experiment in experiments:
        try:
            data = load_experiment(report_dir, experiment)
            verdict = decide(data)
        except (OSError, ValueError, TypeError, KeyError) as err:  # a corrupt .data file must not sink the run
            data, verdict = _error_verdict(experiment, err)
        doc = build_document(data, verdict)
        folder = report_dir / experiment
        render_experiment(doc, folder, lang)
        write_json(folder / "report.json", doc)
        verdicts.append(verdict)
        docs.append(doc)
    index = Path(index) if index else report_dir / "summary.md"
    index.parent.mkdir(parents=True, exist_ok=True)
    up = "../" * len(index.parent.relative_to(report_dir).parts)  # links from the index to each experiment
    _write_text(index, markdown.render(document.index_blocks(docs, lang, up)))
    return verdicts


def terminal_lines(verdicts: Sequence[Verdict], lang: str = "en") -> list[str]:
    """``layer0  INCONCLUSIVE  0/576 values changed (already representable in bf16)``, names and decisions aligned
    (by the width a terminal gives each character: a CJK one takes two columns)."""
    if not verdicts:
        return []
    t = translator(lang)
    words = [status_text(v.decision.value, lang) for v in verdicts]
    name_width = max(len(v.experiment) for v in verdicts)
    word_width = max(12, *(text.columns(w) for w in words))
    lines = []
    for v, word in zip(verdicts, words, strict=True):
        data = v.to_json()
        line = (f"{v.experiment:<{name_width}}  {word}{' ' * (word_width - text.columns(word))}  "
                f"{text.clean(reading.headline(data, lang))}")
        control = reading.expectation(data, lang)
        if control:
            line += t("term_expected", checks=control[0], matched=control[1])
        lines.append(line)
    return lines


def _load_doc(report_dir: Path, experiment: str) -> dict[str, Any]:
    path = Path(report_dir) / experiment / "report.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict):
            return doc
    except (OSError, ValueError):
        pass
    try:  # finish_run has not written it (or it is damaged): decide from the recorded data
        data = load_experiment(Path(report_dir), experiment)
        doc = build_document(data, decide(data))
    except (OSError, ValueError, TypeError, KeyError) as err:
        doc = build_document(*_error_verdict(experiment, err))
    doc["plots"] = []
    return doc


def html_summary(report_dir: Path, experiments: Sequence[str], lang: str = "en") -> str:
    """A fragment for pytest-html's summary: one row per experiment, key numbers, plots embedded as data: URIs."""
    t = translator(lang)
    rows: list[list[Cell]] = []
    thumbs: list[Block] = []
    images: dict[str, bytes] = {}
    for experiment in experiments:
        doc = _load_doc(report_dir, experiment)
        verdict = reading.d(doc.get("verdict"))
        decision = str(verdict.get("decision", "INCONCLUSIVE"))
        control = reading.expectation(verdict, lang)
        expected = t("html_expected", checks=control[0], matched=control[1]) if control else ""
        rows.append([Span(experiment, "code"), [reading.badge(decision, lang), expected],
                     reading.headline(verdict, lang), reading.key_numbers(doc, lang),
                     Link("summary.html", f"{quote(experiment)}/summary.html")])
        names = [p for p in reading.lst(doc.get("plots")) if p in (plots.WEIGHTS, plots.CHUNKS, plots.KLD)]
        found = html.read_images(Path(report_dir) / experiment, names)
        images.update({f"{experiment}/{n}": png for n, png in found.items()})
        if found:
            thumbs += [Para([Span(experiment, "code")]), *(Image(f"{experiment}/{n}", f"{experiment}: {n}")
                                                         for n in names if n in found)]
    header: list[Cell] = [t(f"col_{key}") for key in ("experiment", "decision", "why", "key_numbers", "report")]
    blocks: list[Block] = [Heading(3, t("html_title")), Table(header, rows), *thumbs]
    return html.fragment(html.render(blocks, images))


def read_report(path: Path) -> dict[str, Any]:
    """A report.json written by :func:`finish_run`; its verdict is recomputed only when it lacks one."""
    doc = parse_user_file(path, ReportError, missing="no such file (expected reports/<experiment>/report.json)",
                          expected="a report.json file", parse=json.loads, invalid=json.JSONDecodeError,
                          explain=lambda e: f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})")
    if not isinstance(doc, dict) or not isinstance(doc.get("experiment"), str):
        raise ReportError(f"{path}: not a fakequant report (no \"experiment\" name at the top level)")
    if not isinstance(doc.get("verdict"), dict) or "decision" not in doc["verdict"]:
        try:
            outcomes = [CheckOutcome.from_json(o) for o in reading.lst(doc.get("outcomes"))]
        except (TypeError, ValueError) as err:
            raise ReportError(f"{path}: an entry of \"outcomes\" is not a check outcome ({err})") from None
        data = ExperimentData(doc["experiment"], outcomes, reading.d(doc.get("artifacts")))
        doc["verdict"] = decide(data).to_json()
    return doc
