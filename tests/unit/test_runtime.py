"""fakequant.runtime.settings, .llama and .chat on the default model: loading, generation, chat, scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fakequant.errors import CriteriaError, GGUFFormatError, ModelRuntimeError
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.runtime import chat
from fakequant.runtime import llama as runtime
from fakequant.runtime.settings import RuntimeSettings, SamplingParams
from fakequant.store import assets

SETTINGS = RuntimeSettings(n_ctx=256, n_batch=256, n_ubatch=256, n_threads=2)


@pytest.fixture(scope="module")
def model():
    with runtime.load_model(assets.model_path(), SETTINGS) as m:
        yield m


# --- settings ---------------------------------------------------------------------------------------------------


def test_settings_defaults_are_recorded_with_flash_attention_off():
    data = RuntimeSettings().to_json()
    assert data["flash_attn"] is False
    assert data["n_ctx"] == 512 and data["n_batch"] == 512 and data["n_ubatch"] == 512
    assert isinstance(data["n_threads"], int) and data["n_threads"] >= 1  # None is resolved to the core count
    assert set(data) >= {"type_k", "type_v", "seed", "repack"}


def test_settings_from_mapping_round_trip_and_errors_name_the_key():
    s = RuntimeSettings.from_mapping({"n_ctx": 256, "flash_attn": True, "n_threads": 2}, source="criteria.toml")
    assert (s.n_ctx, s.flash_attn, s.n_threads) == (256, True, 2)
    assert RuntimeSettings.from_mapping(s.to_json(), source="x") == s
    with pytest.raises(CriteriaError, match=r"criteria.toml: unknown key 'nctx'"):
        RuntimeSettings.from_mapping({"nctx": 256}, source="criteria.toml")
    with pytest.raises(CriteriaError, match=r"'flash_attn' must be bool"):
        RuntimeSettings.from_mapping({"flash_attn": "yes"}, source="criteria.toml")
    with pytest.raises(CriteriaError, match=r"'n_ctx' must be int"):
        RuntimeSettings.from_mapping({"n_ctx": 2.5}, source="criteria.toml")
    with pytest.raises(CriteriaError, match="type_k"):
        RuntimeSettings(type_k="q3_k")
    with pytest.raises(CriteriaError, match="top_p"):
        SamplingParams.from_mapping({"top_p": 0}, source="prompts.a")
    assert SamplingParams.from_mapping({"temperature": 1}, source="p").temperature == 1.0


@pytest.mark.parametrize(("make", "message"), [
    (lambda: RuntimeSettings(n_ubatch=0), "settings: n_ubatch must be >= 1, got 0"),
    (lambda: RuntimeSettings(n_threads=0), "settings: n_threads must be >= 1, got 0"),
    (lambda: RuntimeSettings(type_v="q3_k"), "settings: type_v must be one of f32, f16, bf16, q8_0, q4_0, q4_1, "
                                             "iq4_nl, q5_0, q5_1, got 'q3_k'"),
    (lambda: SamplingParams(max_tokens=0), "sampling: max_tokens must be >= 1, got 0"),
    (lambda: SamplingParams(temperature=-0.5), "sampling: temperature must be >= 0, got -0.5"),
    (lambda: SamplingParams(temperature=float("nan")), "sampling: temperature must be >= 0, got nan"),
    (lambda: SamplingParams(top_p=1.5), "sampling: top_p must be in (0, 1], got 1.5"),
])
def test_limits_declared_on_the_fields_give_one_line(make, message):
    with pytest.raises(CriteriaError) as err:
        make()
    assert str(err.value) == message
    assert RuntimeSettings(n_threads=None).n_threads is None and SamplingParams(top_p=1).top_p == 1


# --- loading ----------------------------------------------------------------------------------------------------


def test_load_is_timed_and_keeps_settings(model):
    assert model.settings == SETTINGS
    assert 0 < model.load_time_s < 60
    assert model.n_vocab == 49152
    assert model.llama.n_ctx() == 256


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(ModelRuntimeError, match=r"nope\.gguf: no such model file"):
        runtime.load_model(tmp_path / "nope.gguf", SETTINGS)


def test_load_checks_the_structure_before_llama_cpp_reads_it(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(GGUFFormatError) as err:
        runtime.load_model(bad, SETTINGS)
    assert str(err.value) == f"{bad}: not a GGUF file (magic b'PK\\x03\\x04', expected b'GGUF')"
    cut = tmp_path / "cut.gguf"
    with open(assets.model_path(), "rb") as fh:
        cut.write_bytes(fh.read(4096))  # a download that stopped early
    with pytest.raises(GGUFFormatError) as err:
        runtime.load_model(cut, SETTINGS)
    assert str(err.value) == f"{cut}: tensor count 272 is impossible for a 4096-byte file"


def test_load_a_sound_gguf_llama_cpp_refuses_gives_its_reason(tmp_path):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")  # well-formed, but no vocabulary: llama.cpp cannot run it
    with pytest.raises(ModelRuntimeError) as err:
        runtime.load_model(tiny, SETTINGS)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tiny}: llama.cpp could not load it: ")


# --- generation -------------------------------------------------------------------------------------------------


def test_greedy_generation_is_the_argmax_and_repeatable(model):
    params = SamplingParams(max_tokens=6)
    g1 = runtime.generate(model, "The capital of France is", params)
    g2 = runtime.generate(model, "The capital of France is", params)
    assert g1.token_ids == g2.token_ids and len(g1.token_ids) == 6
    assert g1.text == model.llama.detokenize(g1.token_ids).decode()
    assert g1.prompt_tokens == len(model.tokenize("The capital of France is"))
    assert g1.prompt_tokens_per_s > 0 and g1.gen_tokens_per_s > 0 and g1.nonfinite is None
    # independent check: each greedy token is the argmax of a fresh full decode of prompt + tokens so far
    prompt = model.tokenize("The capital of France is", special=True)
    for k in range(3):
        runtime.clear_memory(model)
        seq = prompt + g1.token_ids[:k]
        logits = runtime.decode(model, seq, first_output=len(seq) - 1)
        assert int(np.argmax(logits[-1])) == g1.token_ids[k]


def test_seeded_sampling_repeats_with_its_seed(model):
    hot = SamplingParams(max_tokens=12, temperature=1.5, top_k=200, top_p=1.0, seed=7)
    a = runtime.generate(model, "Once upon a time", hot)
    b = runtime.generate(model, "Once upon a time", hot)
    assert a.token_ids == b.token_ids
    others = {tuple(runtime.generate(model, "Once upon a time",
                                     SamplingParams(max_tokens=12, temperature=1.5, top_k=200, top_p=1.0,
                                                    seed=s)).token_ids) for s in (8, 9, 10)}
    assert others - {tuple(a.token_ids)}, "three other seeds all reproduced seed 7's text"


def test_chat_uses_the_models_template_with_history(model):
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "What is 2+2?"}]
    formatted = chat.format_chat(model, history)
    assert formatted.template == "gguf" and not formatted.add_bos and not formatted.stop
    prompt = formatted.text
    # SmolLM2's own template (tokenizer.chat_template in the GGUF), rendered by hand:
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                      "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    tokens = model.tokenize(prompt, add_bos=False, special=True)
    assert tokens[0] == 1  # <|im_start|> parsed as one special token
    g = chat.chat(model, history, SamplingParams(max_tokens=24))
    assert g.prompt_tokens == len(tokens)
    assert g.stop_reason in ("eog", "length") and g.text.strip() and g.template == "gguf"
    with pytest.raises(ModelRuntimeError, match="message 0"):
        chat.chat(model, [{"text": "hi"}], SamplingParams())


def test_prompt_longer_than_context_is_an_error(model):
    with pytest.raises(ModelRuntimeError, match="exceed the context of 256"):
        runtime.generate(model, "word " * 300, SamplingParams(max_tokens=4))


# --- scoring and watching the logits -----------------------------------------------------------------------------


def test_token_logprobs_match_token_by_token_decoding():
    # f32 KV cache, flash attention off. Two independent references: (1) the logits of one batch decode of the whole
    # text, log-softmax by hand in float64 at the positions read off the token lists: the scorer's choice of positions
    # and its arithmetic must match it exactly; (2) one token at a time through the KV cache, which runs other
    # kernels (matrix-vector instead of matrix-matrix): on this project's AVX2 build it differs by 0.10 nats in 21.3
    # (0.5%, measured; on another build it agreed exactly), while a position off by one changes the sum by tens of nats.
    model = runtime.load_model(assets.model_path(), RuntimeSettings(n_ctx=256, n_batch=256, n_ubatch=256,
                                                                     n_threads=2, type_k="f32", type_v="f32"))
    prefix, text = "The capital of France is", " Paris, a city on the Seine."
    logprobs = chat.token_logprobs(model, text, prefix)
    total, count = sum(logprobs), len(logprobs)
    pre = model.tokenize(prefix, special=True)
    full = model.tokenize(prefix + text, special=True)
    assert count == len(full) - len(pre) > 3

    def log_softmax_at(logits: np.ndarray, token: int) -> float:
        logits = logits.astype(np.float64)
        return float(logits[token] - logits.max() - math.log(np.exp(logits - logits.max()).sum()))

    runtime.clear_memory(model)
    batch = runtime.decode(model, full[:-1], first_output=0)
    in_batch = sum(log_softmax_at(batch[i], full[i + 1]) for i in range(len(pre) - 1, len(full) - 1))
    assert total == pytest.approx(in_batch, rel=1e-6)
    runtime.clear_memory(model)
    one_by_one = 0.0
    for i, tok in enumerate(full[:-1]):
        logits = runtime.decode(model, [tok], first_output=0, start_pos=i)[0]
        if i + 1 >= len(pre):
            one_by_one += log_softmax_at(logits, full[i + 1])
    assert total == pytest.approx(one_by_one, rel=0.02)
    shifted = sum(log_softmax_at(batch[i], full[i + 2]) for i in range(len(pre) - 1, len(full) - 2))
    assert abs(shifted - total) > 0.1 * abs(total)  # a position off by one is far outside that tolerance
    assert total < 0
    model.close()


def test_first_nonfinite_reports_position():
    logits = np.zeros((4, 10), dtype=np.float32)
    assert runtime.first_nonfinite(logits, "chunk 1") is None
    logits[2, 7] = np.nan
    logits[3, 1] = np.inf
    where = runtime.first_nonfinite(logits, "chunk 1")
    assert where.startswith("chunk 1, position 2, token id 7")


def test_build_info_names_the_llama_cpp_build():
    info = runtime.build_info()
    assert info["llama_cpp_python"] == "0.3.36"
    assert info["llama_cpp"]
    assert "CPU" in info["system_info"]
