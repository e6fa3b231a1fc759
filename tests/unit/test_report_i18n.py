"""The zh-TW report: its words, the checks' reasons and the decision in Traditional Chinese (no English sentence
left in the decision), the English one as before, and the chat format line of each conversation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fakequant.report import finish_run, html_summary, markdown, sample, terminal_lines
from fakequant.report.i18n import translator
from fakequant.report.reading import template_line
from fakequant.report.sensitivity import CellResult, SensitivityMap, render_markdown
from fakequant.suite.outcomes import data_dir, load_experiment, save_artifact
from fakequant.suite.verdict import decide
from fakequant.suite.vocab import CATEGORIES, MUST_PASS_CHECKS, Artifact, Decision


def _with_template(report_dir: Path, experiment: str, template: str) -> None:
    path = data_dir(report_dir, experiment) / f"{Artifact.CONVERSATIONS}.json"
    convs = json.loads(path.read_text())
    for conv in convs:
        if conv["kind"] == "chat":
            conv["baseline"]["template"] = conv["candidate"]["template"] = template
    save_artifact(report_dir, experiment, Artifact.CONVERSATIONS, convs)


def _render(tmp_path: Path, lang: str, template: str = "plain") -> tuple[str, str]:
    sample.fill(tmp_path, "x", "stop")
    _with_template(tmp_path, "x", template)
    finish_run(tmp_path, ["x"], lang=lang)
    return (tmp_path / "x" / "summary.md").read_text(), (tmp_path / "x" / "conversation_tests.txt").read_text()


def test_template_line_names_each_format() -> None:
    t = translator("en")
    def line(template: object) -> str:
        side = {"template": template} if template else {}
        return "".join(str(getattr(x, "text", x)) for x in template_line(t, {"baseline": side, "candidate": side}))
    assert line("gguf") == "gguf — the model's own template (tokenizer.chat_template)"
    assert line("builtin:chatml") == "builtin:chatml — llama.cpp's built-in template chatml"
    assert line("plain").startswith("plain — plain text, “User: …” / “Assistant:”")
    assert line(None) == "" and line("other") == "other"


def test_the_summary_and_text_file_name_the_chat_format(tmp_path: Path) -> None:
    md, txt = _render(tmp_path, "en")
    assert "**Chat format:** `plain` — plain text" in md
    assert md.count("Chat format:") == 1  # the sample's raw prompts have no chat format
    assert "  chat template: plain\n" in txt


def test_zh_tw_says_the_reasons_in_chinese_and_en_as_before(tmp_path: Path) -> None:
    zh, _ = _render(tmp_path / "zh", "zh-TW", "builtin:chatml")
    en, _ = _render(tmp_path / "en", "en", "builtin:chatml")
    assert "| `perplexity` | 困惑度 | ❌ 失敗 |" in zh and "| `load` | 必要檢查 | ✅ 通過 |" in zh
    assert "| `load` | must\\_pass | ✅ pass |" in en
    assert zh.index("## 決策與理由") < zh.index("- perplexity：困惑度增加 +36.343%（95% 信賴區間 +30.730% … +42.196%")
    assert "- perplexity: perplexity increase +36.343% (95% CI +30.730% … +42.196%, t over 20 chunks) entirely " \
           "above the acceptable bound 5%" in en
    assert "英文原文" not in zh and "**對話格式:** `builtin:chatml` — llama.cpp 內建模板 chatml" in zh
    doc = json.loads((tmp_path / "zh" / "x" / "report.json").read_text())
    assert doc["verdict"]["reasons"][0].startswith("perplexity: perplexity increase +36.343%")  # English kept
    assert doc["verdict"]["messages"]["reasons"][0]["code"] == "verdict.check"
    ppl = next(o for o in doc["outcomes"] if o["check"] == "perplexity")
    assert ppl["reason"].startswith("perplexity increase") and ppl["message"]["code"] == "clauses"


_CODE_SPAN = re.compile(r"`[^`]*`")
# check ids, tensor and file names, commands, numbers, decision words: what stays as it is in every language
_IDS = re.compile(r"[\w.-]*(?:\[[^\]]*\]|_|\.\w)[\w.\[\]-]*|pytest -k \S+|[-+]?\d[\d.,×%e+-]*|\b(?:"
                  + "|".join([*CATEGORIES, *MUST_PASS_CHECKS, *Decision]) + r")\b")
_LATIN_RUN = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]{2,}){3,}")  # four Latin words in a row: an English sentence


def _latin_share(text: str) -> float:
    words = len(re.findall(r"[A-Za-z]{2,}", text))
    chinese = len(re.findall(r"[\u3400-\u9fff]", text)) / 2  # about two characters a word
    return words / (words + chinese) if words + chinese else 0.0


def _decision_part(md: str) -> str:
    """The banner (decision and headline), the control's line and the section of reasons and notes."""
    head = md[md.index("\n") : md.index("\n- **")]
    return head + md[md.index("## 決策與理由") : md.index("## 檢查項目")]


def _english_left(text: str) -> tuple[list[str], float]:
    plain = _IDS.sub(" ", _CODE_SPAN.sub(" ", text.replace("\\", "")))
    return _LATIN_RUN.findall(plain), _latin_share(plain)


@pytest.mark.parametrize("scenario", sample.SCENARIOS)
def test_the_zh_tw_decision_has_no_english_sentence(tmp_path: Path, scenario: str) -> None:
    sample.fill(tmp_path, "x", scenario)
    [verdict] = finish_run(tmp_path, ["x"], lang="zh-TW")
    runs, share = _english_left(_decision_part((tmp_path / "x" / "summary.md").read_text()))
    allowed = 0.4 if scenario == "error" else 0.15  # the crashed check's own exception message is English
    assert not runs and share <= allowed, (runs, share)
    for line in [*terminal_lines([verdict], "zh-TW"), html_summary(tmp_path, ["x"], "zh-TW")]:
        runs, _ = _english_left(re.sub(r"<[^>]+>|\{[^}]*\}", " ", line))
        assert not runs, runs


def test_terminal_and_html_summary_in_english_as_before(tmp_path: Path) -> None:
    sample.fill(tmp_path, "noop", "noop")
    [verdict] = finish_run(tmp_path, ["noop"])
    assert terminal_lines([verdict]) == ["noop  INCONCLUSIVE  0/576 values changed (already representable in bf16)"]
    zh_line = "noop  無法判定 (INCONCLUSIVE)  0/576 個數值改變（已可用 bf16 精確表示）"
    assert terminal_lines([verdict], "zh-TW") == [zh_line]
    assert "<h3>fakequant decisions</h3>" in html_summary(tmp_path, ["noop"])
    zh = html_summary(tmp_path, ["noop"], "zh-TW")
    assert "<h3>fakequant 決策</h3>" in zh and "<th>原因</th>" in zh and "0/576 個數值改變" in zh


def test_a_control_that_did_not_match_says_which_check_and_why_in_both_languages(tmp_path: Path) -> None:
    from fakequant.report.reading import expectation

    sample.fill(tmp_path, "x", "stop")
    experiment = json.loads((data_dir(tmp_path, "x") / f"{Artifact.EXPERIMENT}.json").read_text())
    experiment["expect"] = {"finite": "fail", "perplexity": "fail"}  # finite passed; numerical failed unnamed
    save_artifact(tmp_path, "x", Artifact.EXPERIMENT, experiment)
    [verdict] = finish_run(tmp_path, ["x"], lang="zh-TW")
    assert verdict.matched is False
    line = ("finite（未失敗）；perplexity（已失敗）；非預期的失敗：numerical, conversation[battery], "
            "conversation[english_intro]")
    assert expectation(verdict.to_json(), "zh-TW") == (line, "不符合")
    shown = markdown.escape(line)
    assert f"**正對照，預期失敗的檢查:** {shown} — **不符合**" in (tmp_path / "x" / "summary.md").read_text()
    assert f"(正對照，預期失敗的檢查: {shown} — 不符合)" in (tmp_path / "summary.md").read_text()
    assert expectation(verdict.to_json())[0].startswith("finite (did not fail); perplexity (failed); also failed")
    assert expectation({"decision": "GO", "expected": None}) is None


def test_the_sweep_map_in_zh_tw_and_its_cells_headlines(tmp_path: Path) -> None:
    sample.fill(tmp_path, "x", "caution")
    headline = decide(load_experiment(tmp_path, "x")).headline
    cells = [CellResult("sweep_n_L00_ffn_norm_fp8", 0, "ffn_norm", "fp8", "CAUTION", headline, 0.025, 0.003, 0.02,
                        0.95, 2, 0.0077, 0.024, (0.022, 0.025), True),
             CellResult("sweep_n_L01_ffn_norm_fp8", 1, "ffn_norm", "fp8", "GO", "an old cached headline", 0.001, 0.0004,
                        0.002, 0.97, 2, cached=True)]
    again = [CellResult.from_json(json.loads(json.dumps(c.to_json()))) for c in cells]  # through the cell cache
    smap = SensitivityMap("n", again, {"model": "m.gguf", "chunks": 2})
    zh, en = render_markdown(smap, lang="zh-TW"), render_markdown(smap)
    assert "**看來可以繼續的層（ffn_norm × fp8，每個組合皆為 GO）：1（2 層中的 1 層）；需謹慎（CAUTION）：0。**" in zh
    assert "**Layers that look safe to go on with (ffn_norm × fp8, every cell GO): 1 (1 of 2); go with care " \
           "(CAUTION): 0.**" in en
    assert str(headline) in en and str(headline) not in zh and "| perplexity：困惑度增加 +2.532%（95% 信賴區間" in zh
    body = zh[: zh.index("Δ ln PPL = ")].replace("an old cached headline", "")  # the legend names the formula
    runs, _ = _english_left(body)
    assert not runs, runs
