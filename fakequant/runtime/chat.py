"""Conversation prompts on one model: the answers (one per sample and turn) and the per-token log-probabilities the
fluency check scores them with. Judging the answers is :mod:`fakequant.suite.conversation`'s job."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from fakequant.runtime import llama as runtime
from fakequant.runtime.settings import SamplingParams

if TYPE_CHECKING:
    from fakequant.suite.criteria import Prompt


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
        gen = runtime.chat(model, messages, params).to_json()
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
