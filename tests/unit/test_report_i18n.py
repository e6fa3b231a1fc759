"""What the report writes around recorded results in zh-TW (categories, the note on English reasons), and the chat
format line of each conversation."""

from __future__ import annotations

import json
from pathlib import Path

from fakequant.report import finish_run, markdown, sample
from fakequant.report.i18n import translator
from fakequant.report.reading import template_line
from fakequant.suite.outcomes import data_dir, save_artifact
from fakequant.suite.vocab import Artifact


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


def test_zh_tw_translates_what_surrounds_the_english_reasons(tmp_path: Path) -> None:
    zh, _ = _render(tmp_path / "zh", "zh-TW", "builtin:chatml")
    en, _ = _render(tmp_path / "en", "en", "builtin:chatml")
    assert "| `perplexity` | Perplexity | ❌ 失敗 |" in zh and "| `load` | 必要檢查 | ✅ 通過 |" in zh
    assert "| `load` | must\\_pass | ✅ pass |" in en
    note = "以下理由與細節由各項檢查自動產生，為英文原文"
    assert zh.index("## 決策與理由") < zh.index(note) < zh.index("- perplexity: perplexity increase")
    assert note not in en and "**對話格式:** `builtin:chatml` — llama.cpp 內建模板 chatml" in zh


def test_a_control_that_did_not_match_says_which_check_and_why_in_both_languages(tmp_path: Path) -> None:
    from fakequant.report.reading import expectation

    sample.fill(tmp_path, "x", "stop")
    experiment = json.loads((data_dir(tmp_path, "x") / f"{Artifact.EXPERIMENT}.json").read_text())
    experiment["expect"] = {"finite": "fail", "perplexity": "fail"}  # finite passed; numerical failed unnamed
    save_artifact(tmp_path, "x", Artifact.EXPERIMENT, experiment)
    [verdict] = finish_run(tmp_path, ["x"], lang="zh-TW")
    assert verdict.matched is False
    line = "finite（未失敗）；perplexity（已失敗）；非預期的失敗：numerical, conversation[english_intro]"
    assert expectation(verdict.to_json(), "zh-TW") == (line, "不符合")
    shown = markdown.escape(line)
    assert f"**正對照，預期失敗的檢查:** {shown} — **不符合**" in (tmp_path / "x" / "summary.md").read_text()
    assert f"(正對照，預期失敗的檢查: {shown} — 不符合)" in (tmp_path / "summary.md").read_text()
    assert expectation(verdict.to_json())[0].startswith("finite (did not fail); perplexity (failed); also failed")
    assert expectation({"decision": "GO", "expected": None}) is None
