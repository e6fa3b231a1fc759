"""Positive controls: damage written into a candidate on purpose, each of a kind that one check family must catch.

They are not formats (nobody fake-quantizes to them), so they stay out of :data:`fakequant.quant.formats.FORMATS`;
criteria.toml names one as ``format = "control:<name>"`` on an experiment whose ``expect`` names the check that must
fail. Every selected tensor keeps its ggml type, as the placebo's do:

- ``control:nan``: the last value of each selected tensor becomes NaN — the finite check. A block type holds no
  single NaN: there the last block's fp16 scale becomes NaN, and with it that block's values (32 in Q8_0). Placed
  last because a NaN in a norm, or in token 0's embedding row, poisons every logit (llama.cpp's greedy sampler then
  picks token 0, end of text, and the quick inference stops at once: the load check fails too); in the last row of a
  tied token embedding it poisons one rarely used token's logit and nothing else.
- ``control:metadata``: ``general.name`` gets :data:`NAME_SUFFIX`; the selected tensors keep their bytes (the
  candidate computes exactly what the original does) — the format check.
- ``control:zero_the`` and ``control:zero_4``: the rows of the selected token embedding (one row per vocabulary
  entry) whose token text contains "the" or "4" become zero, in any ggml type (all-zero bytes are zero values in
  every one of them). A model whose output matrix is its token embedding (tied, as SmolLM2's) then gives those
  tokens a logit of exactly 0 at every position, far below the top ones, and reads them as nothing: it cannot
  predict the many words of English prose that contain "the" — the perplexity check; a greedy answer cannot contain
  the digit 4 — the conversation check that expects it. Each zeroed value moves by just under 100% of itself,
  within the acceptable max bound, and the zeroed rows are a small share of the tensor (SmolLM2: 350 and 1 of
  49152), so the numerical check does not fail.

Why not a small uniform scale of the norms, which would keep every value within a few percent: RMSNorm absorbs it
(every attention and FFN norm and the output norm × 0.96 moved SmolLM2's perplexity by +0.8% over 3 chunks).
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

from fakequant.errors import RecipeError
from fakequant.gguf.codec import FLOAT_TYPES, decode_values, encode_values
from fakequant.gguf.layout import ModelInfo, TensorInfo, read_tensor_bytes
from fakequant.quant.nudge import SCALE_OFFSETS

PREFIX = "control:"
ZEROED = {"zero_the": "the", "zero_4": "4"}  # control -> the text whose tokens it zeroes
NAMES = ("nan", "metadata", *ZEROED)
NAME_KEY = "general.name"
NAME_SUFFIX = " (fakequant control: metadata changed)"
TOKENS_KEY = "tokenizer.ggml.tokens"


def control_of(fmt: str) -> str | None:
    """The control a format string names (``"control:nan"`` → ``"nan"``), None for an ordinary format;
    RecipeError for an unknown control."""
    if not fmt.startswith(PREFIX):
        return None
    name = fmt[len(PREFIX):]
    if name not in NAMES:
        raise RecipeError(f"format {fmt!r}: unknown control (known: {', '.join(PREFIX + n for n in NAMES)})")
    return name


def tensor_problem(control: str, info: ModelInfo, tensor: TensorInfo) -> str | None:
    """Why ``control`` cannot apply to ``tensor``, or None when it can."""
    if control == "nan" and tensor.type_name not in FLOAT_TYPES and tensor.type_name not in SCALE_OFFSETS:
        return f"control:nan writes a NaN value or block scale: {tensor.type_name} has neither (it works on " \
               f"{', '.join([*FLOAT_TYPES, *SCALE_OFFSETS])})"
    if control == "metadata" and not isinstance(info.metadata.get(NAME_KEY), str):
        return f"control:metadata changes the string {NAME_KEY}, which this model lacks"
    if control in ZEROED:
        vocab = info.metadata.get(TOKENS_KEY)
        n_vocab = getattr(vocab, "length", None) or (len(vocab) if isinstance(vocab, list) else None)
        if n_vocab is None:
            return f"control:{control} reads the vocabulary from {TOKENS_KEY}, which this model lacks"
        if len(tensor.shape) != 2 or tensor.n_rows != n_vocab:
            return f"control:{control} zeroes one row per vocabulary entry ({n_vocab}); shape {list(tensor.shape)} " \
                   "is not a token embedding"
    return None


def apply(control: str, info: ModelInfo, name: str) -> bytes:
    """The new bytes of tensor ``name``, in its own ggml type (``control`` as :func:`control_of` returns it)."""
    t = info.tensor(name)
    raw = read_tensor_bytes(info, name)
    if control == "metadata":
        return raw
    if control in ZEROED:
        out = bytearray(raw)
        row_bytes = t.nbytes // t.n_rows
        for row in tokens_containing(info, ZEROED[control]):
            out[row * row_bytes:(row + 1) * row_bytes] = bytes(row_bytes)
        return bytes(out)
    if t.type_name in FLOAT_TYPES:
        values = decode_values(raw, t.type_name, t.shape).reshape(-1)
        values[-1] = np.nan
        return encode_values(values, t.type_name)
    at = t.nbytes - GGML_QUANT_SIZES[GGMLQuantizationType[t.type_name]][1] + SCALE_OFFSETS[t.type_name]
    return raw[:at] + np.float16(np.nan).tobytes() + raw[at + 2:]


def metadata(control: str, info: ModelInfo) -> dict[str, str]:
    """String keys whose value the control changes, with their new values."""
    if control != "metadata":
        return {}
    return {NAME_KEY: f"{info.metadata[NAME_KEY]}{NAME_SUFFIX}"}


def tokens_containing(info: ModelInfo, text: str) -> list[int]:
    """Ids of the vocabulary entries whose text contains ``text`` (read with gguf-py: the layout keeps only a
    preview of long arrays)."""
    field = GGUFReader(info.path).fields[TOKENS_KEY]
    return [i for i, token in enumerate(field.contents()) if text in token]
