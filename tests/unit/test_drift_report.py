"""The drift section of an experiment's report (md, html, zh-TW), its plot, the terminal table, and the one line
for a comparison whose layers could not be named."""

from __future__ import annotations

import numpy as np

from fakequant.report import drift as drift_report
from fakequant.report import html, markdown, render_experiment
from fakequant.report.document import experiment_blocks
from fakequant.runtime.drift import DriftSeries, HiddenStates, unavailable
from fakequant.suite.vocab import Artifact


def _drift_block() -> dict:
    rows = np.random.default_rng(3).normal(size=(6, 8)).astype(np.float32)
    names = ["l_out-0", "l_out-1", "l_out-2", "result_norm"]
    series = DriftSeries()
    for c in ([0.0, 0.02, 0.03, 0.03], [0.0, 0.025, 0.035, 0.036], [0.0, 0.022, 0.031, 0.032]):
        base = HiddenStates({n: rows.copy() for n in names})
        cand = HiddenStates({n: rows * np.float32(1 + e) for n, e in zip(names, c, strict=True)})
        plac = HiddenStates({n: rows * np.float32(1 + e / 10) for n, e in zip(names, c, strict=True)})
        series.add(base, cand, plac)
    return series.to_json()


def _doc(block: dict) -> dict:
    return {"experiment": "x", "verdict": {"decision": "GO", "headline": "h"}, "outcomes": [], "plots": [],
            "artifacts": {Artifact.PERPLEXITY: {"drift": block, "chunks": 2},
                          Artifact.NUMERICAL: {"tensors": [{"name": "blk.1.ffn_norm.weight", "changed": 3}]}}}


def test_the_section_has_a_row_per_layer_marks_the_changed_block_and_says_where_the_excess_starts():
    block = _drift_block()
    md = markdown.render(experiment_blocks(_doc(block)))
    assert "Where the error enters" in md
    assert md.count("| **l\\_out-1** |") == 1 and "changed here" in md  # blk.1 was changed: its row is marked
    assert "First layer whose excess is resolved above zero: l\\_out-1." in md
    zh = markdown.render(experiment_blocks(_doc(block), "zh-TW"))
    assert "誤差從哪裡進來" in zh and "超出量首次確定大於零的層：l\\_out-1。" in zh


def test_a_comparison_without_named_layers_gets_one_line_and_the_other_sections_stay():
    block = unavailable("the graph names no layer outputs l_out-N (this architecture's graph names them "
                        "differently): no per-layer drift")
    md = markdown.render(experiment_blocks(_doc(block)))
    line = [x.replace("\\_", "_") for x in md.splitlines() if "Drift by layer not measured" in x]
    assert line == ["Drift by layer not measured: the graph names no layer outputs l_out-N (this architecture's "
                    "graph names them differently): no per-layer drift."]
    without = _doc(block)
    del without["artifacts"][Artifact.PERPLEXITY]["drift"]
    rest = [x for x in md.splitlines() if "Drift by layer not measured" not in x and "Where the error enters" not in x]
    assert "\n".join(rest).replace("\n\n\n\n", "\n\n") == markdown.render(experiment_blocks(without)).rstrip("\n")
    assert drift_report.text_lines(block) == [line[0]]


def test_the_plot_is_drawn_into_the_report_and_embedded_in_the_html(tmp_path):
    doc = _doc(_drift_block())
    render_experiment(doc, tmp_path)
    assert drift_report.PLOT in doc["plots"] and (tmp_path / drift_report.PLOT).stat().st_size > 1000
    assert drift_report.PLOT in (tmp_path / "summary.md").read_text()
    assert "data:image/png;base64" in (tmp_path / "summary.html").read_text()
    doc2 = _doc(unavailable("nothing captured"))
    render_experiment(doc2, tmp_path)
    assert drift_report.PLOT not in doc2["plots"] and not (tmp_path / drift_report.PLOT).exists()


def test_the_terminal_table_has_one_line_per_layer():
    lines = drift_report.text_lines(_drift_block())
    assert [x.split()[0] for x in lines[2:6]] == ["l_out-0", "l_out-1", "l_out-2", "result_norm"]
    assert lines[-1].startswith("Largest growth (of the excess): l_out-1")
    assert html.render(experiment_blocks(_doc(_drift_block())), {})  # renders without the plot file too
