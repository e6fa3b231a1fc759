"""fakequant.runtime.chat's prompt formats on real copies of the default model: its own template ("gguf"), a
llama.cpp built-in named in the file ("builtin:chatml"), and none at all ("plain", as in most converted base models),
plus the stop strings the plain format relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_edit import with_chat_template

from fakequant.gguf.check import read_layout
from fakequant.runtime import chat
from fakequant.runtime import llama as runtime
from fakequant.runtime.settings import RuntimeSettings, SamplingParams
from fakequant.suite.criteria import Prompt

DEFAULT_MODEL = Path.home() / ".cache" / "fakequant" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SETTINGS = RuntimeSettings(n_ctx=256, n_batch=256, n_ubatch=256, n_threads=2)
needs_model = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"default model not fetched ({DEFAULT_MODEL})")


def test_plain_dialogue_writes_system_history_and_the_assistant_cue() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi "},
                {"role": "assistant", "content": " Hello! "}, {"role": "user", "content": "2+2?"}]
    assert chat.plain_dialogue(messages) == "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: 2+2?\nAssistant:"


def test_llama_cpp_lists_its_builtin_templates() -> None:
    names = chat.builtin_templates()
    assert {"chatml", "llama3", "gemma", "zephyr"} <= names and "plain" not in names


@pytest.fixture(scope="module")
def no_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = with_chat_template(DEFAULT_MODEL, tmp_path_factory.mktemp("m") / "notemplate.gguf", None)
    assert "tokenizer.chat_template" not in read_layout(path).metadata
    assert len(read_layout(path).fields) == len(read_layout(DEFAULT_MODEL).fields) - 1  # only that key is gone
    return path


@needs_model
def test_a_model_without_template_answers_in_plain_dialogue(no_template: Path) -> None:
    prompt = Prompt(id="m", kind="chat", turns=("What is 2+2?", "And 3+3?"), system="Answer briefly.",
                    params=SamplingParams(max_tokens=40))
    with runtime.load_model(no_template, SETTINGS) as model:
        formatted = chat.format_chat(model, [{"role": "user", "content": "What is 2+2?"}])
        assert formatted.template == "plain" and formatted.text == "User: What is 2+2?\nAssistant:"
        assert formatted.stop == chat.PLAIN_STOP and formatted.add_bos == model.add_bos
        samples = chat.run_prompt(model, prompt)
    assert len(samples) == 1 and len(samples[0]) == 2  # one sample, two turns: no ModelRuntimeError
    for gen in samples[0]:
        assert gen["template"] == "plain" and gen["token_ids"]
        assert "\nUser:" not in gen["text"]  # the model's invented next turn is cut off
        assert gen["stop_reason"] in ("stop", "eog", "length")


@needs_model
def test_a_builtin_template_name_in_the_file_is_written_by_llama_cpp(tmp_path: Path) -> None:
    path = with_chat_template(DEFAULT_MODEL, tmp_path / "chatml.gguf", "chatml")
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "What is 2+2?"}]
    with runtime.load_model(path, SETTINGS) as model:
        formatted = chat.format_chat(model, history)
        gen = chat.chat(model, history, SamplingParams(max_tokens=8))
    # llama.cpp's ChatML, by hand (a Jinja render of the word "chatml" would be the word itself)
    assert formatted.template == "builtin:chatml"
    assert formatted.text == ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                              "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert gen.template == "builtin:chatml" and gen.token_ids


@needs_model
def test_generation_stops_at_a_stop_string_and_cuts_the_text() -> None:
    params = SamplingParams(max_tokens=16)
    with runtime.load_model(DEFAULT_MODEL, SETTINGS) as model:
        tokens = model.tokenize("1, 2, 3, 4, 5,", special=True)
        full = runtime.generate_tokens(model, tokens, params)
        later = model.llama.detokenize(full.token_ids[5:7]).decode()  # a piece from the middle of the answer
        assert later.strip() and later in full.text
        cut = runtime.generate_tokens(model, tokens, params, stop=(later,))
    assert cut.stop_reason == "stop" and cut.text == full.text[:full.text.find(later)]
    assert cut.token_ids == full.token_ids[:len(cut.token_ids)] and len(cut.token_ids) < len(full.token_ids)
