"""Reports from recorded results: files, numbers, partial data, escaping of untrusted strings, the CLI."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from fakequant import cli
from fakequant.report import finish_run, html_summary, markdown, sample, terminal_lines
from fakequant.report.blocks import Span, Table
from fakequant.suite.outcomes import CheckOutcome, data_dir, record_outcome, save_artifact
from fakequant.suite.vocab import Decision

EXPECTED = {"go": Decision.GO, "caution": Decision.CAUTION, "stop": Decision.STOP,
            "inconclusive": Decision.INCONCLUSIVE, "noop": Decision.INCONCLUSIVE, "partial": Decision.INCONCLUSIVE,
            "error": Decision.INCONCLUSIVE, "hostile": Decision.GO}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Every sample scenario recorded and reported once (plots take a few seconds)."""
    report_dir = tmp_path_factory.mktemp("reports")
    for scenario in sample.SCENARIOS:
        sample.fill(report_dir, scenario, scenario)
    sample.fill(report_dir, "hostile", "go", hostile=True)
    verdicts = finish_run(report_dir, list(EXPECTED))
    return report_dir, {v.experiment: v for v in verdicts}


def summary(report_dir: Path, name: str) -> str:
    return (report_dir / name / "summary.md").read_text()


def table_row(md: str, label: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


# --- decisions and files -------------------------------------------------------------------------------------------

def test_each_scenario_reaches_its_decision(run):
    report_dir, verdicts = run
    assert {name: v.decision for name, v in verdicts.items()} == EXPECTED
    for name, decision in EXPECTED.items():
        doc = json.loads((report_dir / name / "report.json").read_text())
        assert doc["verdict"]["decision"] == decision.value
        assert doc["experiment"] == name


def test_every_file_of_the_plan_is_written(run):
    report_dir, _ = run
    folder = report_dir / "go"
    for name in ("summary.md", "summary.html", "report.json", "numerical_analysis.json", "conversation_tests.txt",
                 "perplexity_comparison.txt", "plot_weights.png", "plot_error.png", "plot_chunk_ppl.png",
                 "plot_kld.png"):
        assert (folder / name).is_file(), name
    for png in folder.glob("*.png"):
        assert png.read_bytes().startswith(PNG)
    recorded = json.loads((data_dir(report_dir, "go") / "numerical_analysis.json").read_text())
    assert json.loads((folder / "numerical_analysis.json").read_text()) == recorded


def test_summary_table_carries_uncertainty_and_the_interval(run):
    report_dir, _ = run
    md = summary(report_dir, "go")
    pc = json.loads((data_dir(report_dir, "go") / "perplexity_comparison.json").read_text())
    row = table_row(md, "Perplexity (20 chunks × 512 tokens)")
    assert row[1] == f"{pc['ppl_base']:.4f} ± {pc['ppl_base_se']:.4f}"
    assert row[2] == f"{pc['ppl_q']:.4f} ± {pc['ppl_q_se']:.4f}"
    # the interval the decision uses: over chunks, the larger of the chunk and per-token SE, t quantile
    per_chunk = np.array(pc["per_chunk"]["ln_ppl_ratio"])
    n, r = len(per_chunk), pc["ln_ppl_ratio"]
    se = max(per_chunk.std(ddof=1) / math.sqrt(n), pc["ln_ppl_ratio_se"])
    half = scipy.stats.t.ppf(0.975, n - 1) * se
    lo, hi = math.expm1(r - half), math.expm1(r + half)
    assert row[3] == f"{math.expm1(r) * 100:+.2f}% (95% interval {lo * 100:+.2f}% … {hi * 100:+.2f}%)"
    assert table_row(md, "Paired Δ ln PPL")[3] == f"{r:+.5f} ± {se:.5f}"
    assert table_row(md, "Top-token agreement")[3].endswith("%")
    assert table_row(md, "KL divergence (mean)")[3].endswith("nats")


def test_speed_rows_say_what_the_rule_decided_against_the_a_a_noise(run):
    report_dir, _ = run
    md = summary(report_dir, "go")
    row = table_row(md, "Token generation")
    assert re.match(r"no slowdown beyond the tolerance \(\d+\.\d% (slower|faster) per round, A/A noise \d+\.\d%, "
                    r"p = [\d.]+\)$", row[3]), row[3]
    assert re.match(r"\d+\.\d tok/s \(median of 6, range \d+\.\d–\d+\.\d tok/s\)$", row[1])
    assert table_row(md, "Load time")[1].endswith(" ms)")
    slow = table_row(summary(report_dir, "caution"), "Token generation")[3]  # 20% fewer tokens/s
    assert re.match(r"slower beyond the tolerance and the run's noise \(\d\d\.\d% slower per round", slow), slow


def test_noop_terminal_line_matches_the_issue(run):
    _, verdicts = run
    lines = terminal_lines([verdicts["noop"]])
    assert lines == ["noop  INCONCLUSIVE  0/576 values changed (already representable in bf16)"]


def test_terminal_lines_align_and_report_expectations(run):
    _, verdicts = run
    lines = terminal_lines(list(verdicts.values()))
    column = len("inconclusive") + 2  # the longest name, then two spaces
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines)
    starts = {line[column:].split()[0] for line in lines}
    assert starts == {"GO", "CAUTION", "STOP", "INCONCLUSIVE"}
    assert [line for line in lines if "expected" in line] == [
        next(line for line in lines if line.startswith("stop "))]
    # the named checks in the order the recorded experiment keeps them (its JSON is written with sorted keys)
    assert lines[2].endswith("[expected to fail: conversation (failed); numerical (failed); perplexity (failed) — "
                             "matched]")


def test_stop_summary_names_the_reasons_and_the_expectation(run):
    report_dir, verdicts = run
    md = summary(report_dir, "stop")
    assert "**Decision:** ⛔ STOP" in md
    assert "**Positive control, expected to fail:** conversation (failed); numerical (failed); perplexity (failed) " \
           "— **matched**" in md
    for reason in verdicts["stop"].reasons:
        assert markdown.escape(reason) in md
    assert "model limitation" in md  # the Chinese prompt the baseline also fails
    assert "### chinese\\_intro (raw) — model limitation" in md
    assert "Badge(" not in md and "Span(" not in md


def test_inconclusive_perplexity_says_what_would_resolve_it(run):
    report_dir, verdicts = run
    assert "would resolve it" in verdicts["inconclusive"].reasons[0]
    assert "chunks (now 20) would resolve it" in summary(report_dir, "inconclusive")


def test_provenance_and_settings_are_in_the_summary(run):
    report_dir, _ = run
    md = summary(report_dir, "go")
    assert "`" + "9" * 64 + "`" in md and "`" + "7" * 64 + "`" in md
    assert "llama-cpp-python 0.3.36" in md
    assert "| flash\\_attn | False |" in md
    assert "16 bits" in md  # why the statistics differ from llama.cpp's KLD mode


def test_index_lists_every_experiment_with_a_link(run):
    report_dir, _ = run
    index = (report_dir / "summary.md").read_text()
    for name, decision in EXPECTED.items():
        row = table_row(index, f"`{name}`")
        assert decision.value in row[1]
        assert row[4] == f"[summary.md]({name}/summary.md)"
    assert "0/576 values changed" in table_row(index, "`noop`")[3]


def test_a_sweep_index_goes_beside_its_map_and_leaves_the_run_index_alone(run):
    report_dir, _ = run
    before = (report_dir / "summary.md").read_text()
    finish_run(report_dir, ["go"], index=report_dir / "sweeps" / "norms" / "summary.md")
    assert (report_dir / "summary.md").read_text() == before
    sweep_index = (report_dir / "sweeps" / "norms" / "summary.md").read_text()
    assert table_row(sweep_index, "`go`")[4] == "[summary.md](../../go/summary.md)"


def test_text_files_hold_both_answers_and_every_chunk(run):
    report_dir, _ = run
    convs = json.loads((data_dir(report_dir, "stop") / "conversations.json").read_text())
    txt = (report_dir / "stop" / "conversation_tests.txt").read_text()
    assert convs[0]["baseline"]["text"].splitlines()[0] in txt
    assert convs[0]["candidate"]["text"] in txt
    ppl = (report_dir / "stop" / "perplexity_comparison.txt").read_text()
    assert "Mean PPL(Q)" in ppl and "16 bits" in ppl
    # with a placebo, every chunk also gives the placebo's mean KLD beside the candidate's
    assert len(re.findall(r"^\s+\d+\s+\d+\.\d{4}\s+\d+\.\d{4}\s+\d+\.\d{6}\s+\d+\.\d{6}$", ppl, re.M)) == 20
    old = (report_dir / "error" / "perplexity_comparison.txt").read_text()  # recorded without a placebo
    assert len(re.findall(r"^\s+\d+\s+\d+\.\d{4}\s+\d+\.\d{4}\s+\d+\.\d{6}$", old, re.M)) == 20
    assert "placebo: not measured" in old and "Excess" not in old


# --- partial and broken data ---------------------------------------------------------------------------------------

def test_partial_run_renders_not_measured(run):
    report_dir, _ = run
    md = summary(report_dir, "partial")
    assert table_row(md, "Perplexity")[1:] == ["not measured"] * 3
    assert "could not be rendered" not in md
    assert not list((report_dir / "partial").glob("*.png"))


def test_artifacts_of_the_wrong_shape_do_not_crash(tmp_path):
    record_outcome(tmp_path, CheckOutcome("odd", "load", "must_pass", "pass", "loaded"))
    save_artifact(tmp_path, "odd", "perplexity_comparison", [1, 2, 3])
    save_artifact(tmp_path, "odd", "speed", "oops")
    save_artifact(tmp_path, "odd", "numerical_analysis", {"tensors": [{"name": "t", "histogram": {"edges": [1]}},
                                                                      "junk", {"changed": "many"}]})
    save_artifact(tmp_path, "odd", "conversations", [{"id": "c", "checks": ["x"], "baseline": None}])
    save_artifact(tmp_path, "odd", "provenance", {"packages": "none", "machine": [1]})
    [verdict] = finish_run(tmp_path, ["odd"])
    assert verdict.decision == Decision.INCONCLUSIVE
    md = summary(tmp_path, "odd")
    assert "could not be rendered" not in md
    assert "not measured" in md


def test_a_corrupt_recorded_file_is_inconclusive_not_a_crash(tmp_path):
    sample.fill(tmp_path, "bad", "go")
    (data_dir(tmp_path, "bad") / "outcomes" / "load.json").write_text("{not json")
    [verdict] = finish_run(tmp_path, ["bad"])
    assert verdict.decision == Decision.INCONCLUSIVE
    assert "could not be read" in verdict.reasons[0]
    assert (tmp_path / "bad" / "summary.md").is_file()


def test_a_stale_plot_is_removed_when_its_data_is_gone(tmp_path):
    sample.fill(tmp_path, "e", "go")
    finish_run(tmp_path, ["e"])
    assert (tmp_path / "e" / "plot_kld.png").is_file()
    (data_dir(tmp_path, "e") / "perplexity_comparison.json").unlink()
    finish_run(tmp_path, ["e"])
    assert not (tmp_path / "e" / "plot_kld.png").exists()
    assert "plot_kld.png" not in summary(tmp_path, "e")


# --- untrusted strings (issue 7) -----------------------------------------------------------------------------------

def test_markdown_escape_keeps_text_as_text():
    assert markdown.escape("a|b") == "a\\|b"
    assert markdown.escape("<script>") == "\\<script\\>"
    assert markdown.escape("- item") == "\\- item"
    assert markdown.escape("12. item") == "12\\. item"
    assert markdown.escape("x\ny") == "x<br>y"
    assert markdown.escape("a &lt; b") == "a &amp;lt; b"
    assert markdown.escape("esc\x1b[31m") == "esc\\\\x1b\\[31m"
    assert markdown.code_span("a`b") == "``a`b``"
    assert markdown.code_span("a|b", in_table=True) == "`a\\|b`"


def test_a_table_cell_with_pipes_and_newlines_keeps_its_columns():
    md = markdown.render([Table(["a", "b"], [["x | y\n| z |", Span("p|q`r", "code")]])])
    header, _rule, row = md.strip().splitlines()
    assert len(re.split(r"(?<!\\)\|", row)) == len(re.split(r"(?<!\\)\|", header)) == 4


def test_hostile_strings_do_not_break_the_markdown(run):
    report_dir, _ = run
    md = summary(report_dir, "hostile")
    in_table = False
    for line in md.splitlines():
        if line.startswith("| --- ") or line.startswith("| ---:"):
            in_table = True
            width = len(re.split(r"(?<!\\)\|", line))
        elif line.startswith("|") and in_table:
            assert len(re.split(r"(?<!\\)\|", line)) == width, line
        elif not line.startswith("|"):
            in_table = False
    outside_code = re.sub(r"(?<!\\)(`+).*?\1", "", md)
    assert re.findall(r"(?<!\\)<(?!br>)", outside_code) == []
    assert "<script>" not in outside_code and "\\<script\\>" in outside_code
    assert "\x1b" not in md
    assert not re.search(r"^#+ heading", md, re.M)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _check_html(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    assert "script" not in {tag for tag, _ in parser.tags}
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
        if tag == "a":
            assert not attrs["href"].lower().startswith(("javascript:", "http:", "https:"))
    return parser


def test_hostile_strings_stay_text_in_the_html(run):
    report_dir, _ = run
    parser = _check_html((report_dir / "hostile" / "summary.html").read_text())
    text = "".join(parser.text)
    assert "<script>alert(1)</script>" in text
    assert "<img src=x onerror=alert(1)>" in text


def test_html_summary_is_offline_and_escaped(run):
    report_dir, _ = run
    fragment = html_summary(report_dir, list(EXPECTED))
    parser = _check_html(fragment)
    assert fragment.count("data:image/png;base64,") >= 3 * 6  # weights, chunks, KLD per full experiment
    for decision in ("GO", "CAUTION", "STOP", "INCONCLUSIVE"):
        assert decision in "".join(parser.text)


def test_html_summary_before_finish_run_decides_from_the_data(tmp_path):
    sample.fill(tmp_path, "n", "noop")
    fragment = html_summary(tmp_path, ["n"])
    assert "0/576 values changed (already representable in bf16)" in fragment


# --- languages and the CLI -----------------------------------------------------------------------------------------

def test_zh_tw_summary(tmp_path):
    sample.fill(tmp_path, "layer0", "noop")
    finish_run(tmp_path, ["layer0"], lang="zh-TW")
    md = summary(tmp_path, "layer0")
    assert "## 測試摘要" in md and "| 測試項目 | 原始模型 | Fake Quantized 模型 | 差異 |" in md
    assert "無法判定 (INCONCLUSIVE)" in md
    assert "Summary" not in md


def test_cli_report_rebuilds_from_report_json_alone(tmp_path, capsys):
    sample.fill(tmp_path, "layer0", "stop")
    finish_run(tmp_path, ["layer0"])
    english = (tmp_path / "layer0" / "summary.md").read_text()
    # Only report.json travels (a CI artifact): a fresh folder, no recorded data, no plots.
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / "report.json").write_bytes((tmp_path / "layer0" / "report.json").read_bytes())
    assert cli.main(["report", str(folder / "report.json")]) == 0
    assert (folder / "summary.md").read_text() == english
    assert (folder / "plot_chunk_ppl.png").read_bytes().startswith(PNG)
    assert cli.main(["report", str(folder / "report.json"), "--lang", "zh-TW"]) == 0
    assert "停止 (STOP)" in (folder / "summary.md").read_text()
    assert "STOP" in capsys.readouterr().out


def test_cli_report_recomputes_a_missing_verdict(tmp_path):
    doc = {"experiment": "x", "outcomes": [CheckOutcome("x", "load", "must_pass", "fail", "no load").to_json()]}
    (tmp_path / "report.json").write_text(json.dumps(doc))
    assert cli.main(["report", str(tmp_path / "report.json")]) == 0
    assert "**Decision:** ⛔ STOP" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{oops", "not valid JSON (line 1, column 2"),
    ("[1, 2]", "not a fakequant report"),
    (b"\xff\xfe{}", "not UTF-8"),
    ('{"experiment": "x", "outcomes": [{"bad": 1}]}', "is not a check outcome"),
])
def test_cli_report_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "report.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert cli.main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(path) in err and message in err


def test_noop_says_why_the_quality_checks_are_absent(tmp_path):
    sample.fill(tmp_path, "layer0", "noop")
    for name in ("perplexity_comparison", "conversations", "speed"):
        (data_dir(tmp_path, "layer0") / f"{name}.json").unlink()
    finish_run(tmp_path, ["layer0"])
    md = summary(tmp_path, "layer0")
    section = md.split("## Perplexity and paired comparison", 1)[1].split("##", 1)[0]
    assert "would compare the model with itself" in section
    assert md.count("would compare the model with itself") == 4  # summary, perplexity, conversations, speed

