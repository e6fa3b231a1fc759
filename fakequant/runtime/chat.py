"""Conversation prompts on one model: the chat prompt's format, the answers (one per sample and turn) and the
per-token log-probabilities the fluency check scores them with. Judging the answers is
:mod:`fakequant.suite.conversation`'s job.

Which format a chat is written in, first that applies (recorded as each answer's ``template``):

- ``gguf``: the model's own ``tokenizer.chat_template`` (Jinja, rendered in jinja2's immutable sandbox: the file is
  untrusted);
- ``builtin:<name>``: a template llama.cpp writes itself (``llama_chat_apply_template``), when the model names one
  of llama.cpp's built-in templates (``tokenizer.chat_template = "chatml"``) or llama.cpp recognises the model
  without one (``llama_model_chat_template(model, NULL)``: a one-off for Mistral-Small-2503, a 40-layer Tekken
  model);
- ``plain``: none of those, as for most converted base models. llama.cpp has no architecture-to-template table
  (one architecture, e.g. ``llama``, carries ChatML, Llama-2, Llama-3 and Zephyr models alike), and the fallback of
  its chat tools, ChatML, puts markers a base model never saw into the prompt. A base model continues text, so it gets
  a plain dialogue, ``User: …`` / ``Assistant:``, and stops at the next ``User:`` line: the shape of llama-cli's
  interactive chat examples with a reverse prompt.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from fakequant.errors import ModelRuntimeError
from fakequant.runtime import llama as runtime
from fakequant.runtime.settings import SamplingParams

if TYPE_CHECKING:
    from fakequant.suite.criteria import Prompt

# Part of the cache key of the original model's answers: change it whenever the prompt text of a chat changes.
PROMPT_FORMAT = "gguf-jinja|builtin|plain-user-assistant"
PLAIN_STOP = ("\nUser:",)


@dataclasses.dataclass(frozen=True)
class ChatPrompt:
    """A chat history written out for one model: the text, how to tokenize it, and where generation stops."""

    template: str  # "gguf", "builtin:<name>" or "plain"
    text: str
    add_bos: bool  # a Jinja template writes its own BOS; llama.cpp's built-in ones and plain text do not
    special: bool = True  # parse special-token text (a template's markers); plain text has none
    stop: tuple[str, ...] = ()


@functools.cache
def builtin_templates() -> frozenset[str]:
    """The names of llama.cpp's built-in chat templates (``llama_chat_builtin_templates``)."""
    n = llama_cpp.llama_chat_builtin_templates((ctypes.c_char_p * 1)(), 0)
    names = (ctypes.c_char_p * max(n, 1))()
    n = llama_cpp.llama_chat_builtin_templates(names, n)
    return frozenset(names[i].decode() for i in range(n) if names[i])


def _check_messages(messages: list[dict[str, str]]) -> None:
    for i, message in enumerate(messages):
        if set(message) - {"role", "content"} or "role" not in message or "content" not in message:
            raise ModelRuntimeError(f"chat message {i}: expected keys 'role' and 'content', got {sorted(message)}")


def _template_source(model: runtime.Model) -> str | None:
    """The GGUF's template, else llama.cpp's own answer for the model (a built-in template's name), else None."""
    source = model.llama.metadata.get("tokenizer.chat_template")
    if source:
        return source
    raw = llama_cpp.llama_model_chat_template(model.llama._model.model, None)
    return raw.decode("utf-8", "replace") if raw else None


def format_chat(model: runtime.Model, messages: list[dict[str, str]]) -> ChatPrompt:
    """``messages`` written out for ``model`` (generation prompt appended), in the first format that applies."""
    _check_messages(messages)
    source = _template_source(model)
    if source and source.strip() in builtin_templates():
        name = source.strip()
        return ChatPrompt(f"builtin:{name}", _apply_builtin(model, name, messages), add_bos=model.add_bos)
    if source:
        return ChatPrompt("gguf", _render_jinja(model, source, messages), add_bos=False)
    return ChatPrompt("plain", plain_dialogue(messages), add_bos=model.add_bos, special=False, stop=PLAIN_STOP)


def _render_jinja(model: runtime.Model, template: str, messages: list[dict[str, str]]) -> str:
    import jinja2
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama = model.llama
    eos = llama._model.token_get_text(llama.token_eos()) if llama.token_eos() >= 0 else ""
    bos = llama._model.token_get_text(llama.token_bos()) if llama.token_bos() >= 0 else ""
    # The template comes from the model file: llama-cpp-python renders it in jinja2's immutable sandbox, which
    # refuses Python internals with SecurityError. Any refusal or template bug is the model's, in one line.
    try:
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        return formatter(messages=messages).prompt
    except (jinja2.TemplateError, ValueError, TypeError, AttributeError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ModelRuntimeError(f"{model.path}: the chat template failed to render: {reason}") from err


def _apply_builtin(model: runtime.Model, name: str, messages: list[dict[str, str]]) -> str:
    history = (llama_cpp.llama_chat_message * len(messages))(
        *(llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages))
    n = llama_cpp.llama_chat_apply_template(name.encode(), history, len(messages), True, None, 0)
    if n < 0:
        raise ModelRuntimeError(f"{model.path}: llama.cpp's built-in chat template {name!r} failed (status {n})")
    buf = ctypes.create_string_buffer(n + 1)
    llama_cpp.llama_chat_apply_template(name.encode(), history, len(messages), True, buf, n + 1)
    return buf.raw[:n].decode("utf-8", "replace")


def plain_dialogue(messages: list[dict[str, str]]) -> str:
    """``System text`` (if any), then ``User: …`` / ``Assistant: …`` lines, ending with ``Assistant:``."""
    lines = []
    for message in messages:
        content = message["content"].strip()
        if message["role"] == "system":
            lines.append(f"{content}\n")
        else:
            lines.append(f"{'User' if message['role'] == 'user' else 'Assistant'}: {content}")
    return "\n".join([*lines, "Assistant:"])


def chat(model: runtime.Model, messages: list[dict[str, str]], params: SamplingParams) -> runtime.Generation:
    """Answer the last turn of a multi-turn ``messages`` history; the answer records the format it was asked in."""
    prompt = format_chat(model, messages)
    tokens = model.tokenize(prompt.text, add_bos=prompt.add_bos, special=prompt.special)
    gen = runtime.generate_tokens(model, tokens, params, stop=prompt.stop)
    gen.template = prompt.template
    return gen


def questions(prompt: Prompt) -> list[str]:
    """What the model is asked, one text per turn (the raw prompt itself for a raw prompt)."""
    return [prompt.prompt] if prompt.kind == "raw" else list(prompt.turns)


def run_prompt(model: runtime.Model, prompt: Prompt) -> list[list[dict[str, Any]]]:
    """One model's answers to ``prompt``: one list per sample (``prompt.samples`` seeds from ``params.seed``) of
    Generation.to_json(), one per turn (one for a raw prompt).

    Chat turns carry the model's own earlier answers as history, as in the plan's interactive ``llama-cli -i``."""
    return [_one_sample(model, prompt, dataclasses.replace(prompt.params, seed=prompt.params.seed + i))
            for i in range(prompt.samples)]


def _one_sample(model: runtime.Model, prompt: Prompt, params: SamplingParams) -> list[dict[str, Any]]:
    if prompt.kind == "raw":
        return [runtime.generate(model, prompt.prompt, params).to_json()]
    messages: list[dict[str, str]] = [{"role": "system", "content": prompt.system}] if prompt.system else []
    out = []
    for turn in prompt.turns:
        messages.append({"role": "user", "content": turn})
        gen = chat(model, messages, params).to_json()
        out.append(gen)
        messages.append({"role": "assistant", "content": gen["text"]})
    return out


def token_logprobs(model: runtime.Model, text: str, prefix: str = "") -> list[float]:
    """ln p(token | everything before it) for each token of ``text`` after ``prefix``, under ``model``.

    ``text`` is tokenized together with its prefix (tokens at the seam belong to ``text``); without BOS and prefix
    the first token has nothing to be predicted from and is not scored. Per token, so that the fluency check can
    tell a real loss of fluency from the spread of two short answers."""
    pre = model.tokenize(prefix, special=True) if prefix else ([model.bos] if model.add_bos else [])
    full = model.tokenize(prefix + text, special=True)
    if full[:len(pre)] != pre:  # the seam merged into one token: keep the prefix's own tokens, then the text's
        full = pre + model.tokenize(text, add_bos=False, special=True)
    start = max(len(pre), 1)
    if len(full) <= start:
        return []
    full = full[-model.settings.n_ctx:] if len(full) > model.settings.n_ctx else full
    start = min(start, len(full) - 1)
    runtime.clear_memory(model)
    logits = runtime.decode(model, full[:-1], first_output=start - 1)
    return runtime.log_softmax_at(logits, np.asarray(full[start:])).tolist()
