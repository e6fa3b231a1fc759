"""Reports of the floor (a placebo twin: the same tensors nudged by one ulp) and the format's own effect (the excess
over it): in words, in a table beside the total, in the text file, the plots, the index, in English and zh-TW; and
reports of comparisons recorded without a placebo, which must still render."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from fakequant.report import finish_run, plots, sample
from fakequant.suite.outcomes import data_dir

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """caution: the format's own effect stands out of the floor; go: it does not; error: no placebo was run."""
    report_dir = tmp_path_factory.mktemp("reports")
    for scenario in ("caution", "go", "error"):
        sample.fill(report_dir, scenario, scenario)
    finish_run(report_dir, ["caution", "go", "error"])
    return report_dir


def summary(report_dir: Path, name: str) -> str:
    return (report_dir / name / "summary.md").read_text()


def comparison(report_dir: Path, name: str) -> dict:
    return json.loads((data_dir(report_dir, name) / "perplexity_comparison.json").read_text())


def table_row(md: str, label: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+(?:e[-+]\d+)?", text)]


def _close(text: str, *expected: float) -> bool:
    found = _numbers(text)
    return len(found) >= len(expected) and all(math.isclose(a, b, rel_tol=0.01)
                                               for a, b in zip(found, expected, strict=False))


def test_floor_and_excess_say_which_is_which(run):
    report_dir = run
    md = summary(report_dir, "caution")  # the format's own effect stands out of the floor
    pc = comparison(report_dir, "caution")
    floor, own = pc["placebo"], pc["excess"]
    assert own["kld_mean_resolved"] is True
    sentence = next(line for line in md.splitlines() if line.startswith("A one-ulp nudge of the same tensors"))
    assert _close(sentence.split("already moves perplexity by ")[1], math.expm1(floor["ln_ppl_ratio"]) * 100,
                  floor["kld_mean"])
    assert _close(sentence.split("the format adds KLD ")[1], own["kld_mean"], *own["kld_mean_ci"])
    assert "| Total (candidate vs original) | Floor (placebo vs original) | Excess (candidate beyond placebo) |" in md
    kld = table_row(md, "Mean KLD (nats)")
    assert _close(kld[1], pc["kld_mean"]) and _close(kld[2], floor["kld_mean"])
    assert _close(kld[3], own["kld_mean"], *own["kld_mean_ci"]) and "not resolved" not in kld[3]
    assert _close(table_row(md, "Δ ln PPL")[3], own["ln_ppl_ratio"], *own["ln_ppl_ratio_ci"])
    assert _close(table_row(md, "Perplexity change")[2], math.expm1(floor["ln_ppl_ratio"]) * 100)
    agree = [line for line in md.splitlines() if line.startswith("| Top-token agreement")]
    assert agree[-1].endswith(" (candidate vs placebo) |")  # the first is the summary table's total
    assert "the total is what a user deploying this change gets" in md and "the format's own part" in md
    assert _close(table_row(md, "Format's own effect (KLD beyond the placebo)")[3], own["kld_mean"])
    assert "Size of the placebo itself" in md and "| 576 | 6.0e-08 |" in md  # its numerical analysis travels along
    assert "Size of the placebo itself" not in summary(report_dir, "go")  # and is shown only when it does


def test_an_excess_inside_its_interval_is_below_resolution(run):
    report_dir = run
    md = summary(report_dir, "go")
    assert "the format's own effect is below what this model and runtime can resolve at this position" in md
    assert "the format adds" not in md
    assert table_row(md, "Mean KLD (nats)")[3].endswith(", not resolved")
    assert table_row(md, "Format's own effect (KLD beyond the placebo)")[3].startswith("below resolution: ")
    index = (report_dir / "summary.md").read_text()
    assert "format's own KLD below resolution: " in table_row(index, "`go`")[3]
    assert re.search(r"format's own KLD 0\.\d+ \(95% CI ", table_row(index, "`caution`")[3])
    assert "format's own KLD not measured (no placebo)" in table_row(index, "`error`")[3]


def test_a_comparison_without_a_placebo_says_the_floor_was_not_measured(run, tmp_path):
    report_dir = run
    md = summary(report_dir, "error")  # recorded without a placebo, as older reports are
    assert "Floor not measured" in md and "could not be rendered" not in md
    assert table_row(md, "Format's own effect (KLD beyond the placebo)")[3] == "not measured (no placebo)"
    # the same report with the placebo stripped afterwards, and one with broken placebo blocks: both render
    sample.fill(tmp_path, "old", "caution")
    sample.fill(tmp_path, "odd", "caution")
    for name, change in (("old", lambda pc: pc.pop("placebo")), ("odd", lambda pc: pc.update(
            placebo={"kld_mean": "x", "per_chunk": {"kld_mean": [None]}}, excess={"kld_mean_ci": [1]}))):
        path = data_dir(tmp_path, name) / "perplexity_comparison.json"
        pc = json.loads(path.read_text())
        change(pc)
        path.write_text(json.dumps(pc))
    finish_run(tmp_path, ["old", "odd"])
    old, odd = summary(tmp_path, "old"), summary(tmp_path, "odd")
    assert "Floor not measured" in old and "Mean KLD (nats)" not in old.split("### Every statistic")[0]
    assert "could not be rendered" not in odd and table_row(odd, "Mean KLD (nats)")[2] == "not measured"
    assert (tmp_path / "odd" / "plot_chunk_ppl.png").read_bytes().startswith(PNG)


def test_the_chunk_plot_draws_the_placebo_kld_beside_the_candidate(run, tmp_path, monkeypatch):
    report_dir = run
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, dest: drawn.append(fig))
    for name in ("caution", "error"):
        assert plots.chunk_perplexity(comparison(report_dir, name), tmp_path) == plots.CHUNKS
    labels = [[t.get_text() for t in fig.axes[-1].get_legend().get_texts()] for fig in drawn]
    assert labels == [["candidate", "placebo (floor)"], ["candidate"]]
    heights = [b.get_height() for b in drawn[0].axes[-1].patches]
    pc = comparison(report_dir, "caution")
    assert heights == pytest.approx(pc["per_chunk"]["kld_mean"] + pc["placebo"]["per_chunk"]["kld_mean"])


def test_text_file_gives_the_placebo_and_the_excess(run):
    report_dir = run
    txt = (report_dir / "caution" / "perplexity_comparison.txt").read_text()
    own = comparison(report_dir, "caution")["excess"]
    assert "placebo (the same tensors nudged by one ulp: the floor)" in txt and "Mean PPL(P)" in txt
    line = next(line for line in txt.splitlines() if line.startswith("Excess mean KLD (nats)"))
    assert _close(line, own["kld_mean"], *own["kld_mean_ci"]) and line.endswith(" resolved")
    assert "not resolved (the interval holds 0)" in (report_dir / "go" / "perplexity_comparison.txt").read_text()


def test_zh_tw_floor_and_excess(tmp_path):
    sample.fill(tmp_path, "fp8", "caution")
    sample.fill(tmp_path, "bf16", "go")
    sample.fill(tmp_path, "old", "error")
    finish_run(tmp_path, ["fp8", "bf16", "old"], lang="zh-TW")
    fp8, bf16, old = (summary(tmp_path, n) for n in ("fp8", "bf16", "old"))
    assert "### 基準雜訊與超出量：格式本身的效應" in fp8 and "格式本身在此之外再增加 KLD" in fp8
    assert "| 總效應（Fake Quantized vs 原始） | 基準雜訊（安慰劑 vs 原始） |" in fp8 and "安慰劑本身的改動幅度" in fp8
    assert "低於此模型與執行環境在這個位置所能分辨的程度" in bf16
    assert table_row(bf16, "格式本身的效應（超出安慰劑的 KLD）")[3].startswith("低於可分辨程度：")
    assert "未測量基準雜訊" in old
    for md in (fp8, bf16, old):  # the floor part is all Chinese (the recorded reasons stay English, by design)
        part = md.split("### 基準雜訊與超出量", 1)[1].split("### 全部統計量", 1)[0]
        assert not re.search(r"Floor|Excess|Which is which|not resolved|below resolution|nudge", part), part
