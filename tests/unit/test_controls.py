"""Positive controls on tiny GGUFs: each writes exactly the damage it promises, keeps every tensor's type and every
other byte, and passes the build's own verification, so that the suite's check is what catches it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.gguf.layout import read_tensor_bytes, read_tensor_values
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.quant import controls
from fakequant.quant.candidate import Recipe, build_candidate, verify_format
from fakequant.quant.select import Selection
from fakequant.suite import rules
from fakequant.suite.criteria import Thresholds
from fakequant.suite.vocab import Status

T = GGMLQuantizationType
# 32 vocabulary entries (the tiny model's token_embd rows): ids 3, 7 and 20 contain "4", ids 5, 9 and 20 "the"
TOKENS = [f"tok{c}" for c in "abcdefghijklmnopqrstuvwxyzABCDEF"]
TOKENS[3], TOKENS[7], TOKENS[5], TOKENS[9], TOKENS[20] = "4", "Ġ1945", "the", "Ġother", "the4"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


def tiny(tmp_path: Path, embd: GGMLQuantizationType = T.F16, tokens: bool = True) -> Path:
    meta = {"tokenizer.ggml.tokens": TOKENS} if tokens else {}
    return write_tiny_gguf(tmp_path / f"tiny-{embd.name}.gguf", tensor_types={"token_embd": embd},
                           extra_metadata=meta)


def build(src: Path, names: tuple[str, ...], control: str):
    return build_candidate(src, Recipe(Selection(names), f"control:{control}"), src.with_name(f"{control}.gguf"))


@pytest.mark.parametrize(("name", "nans"), [("blk.0.ffn_norm.weight", 1), ("blk.0.attn_v.weight", 1),
                                            ("blk.0.attn_q.weight", 32)])  # F32, F16, Q8_0: its last block
def test_nan_writes_nan_into_the_last_value_or_block_and_the_finite_rule_catches_it(tmp_path, name, nans):
    src = tiny(tmp_path)
    result = build(src, (name,), "nan")
    before, after = read_tensor_values(read_layout(src), name), read_tensor_values(read_layout(result.output), name)
    before, after = before.reshape(-1), after.reshape(-1)
    assert np.isnan(after).sum() == nans and np.isnan(after[-nans:]).all()
    assert np.array_equal(before[:-nans], after[:-nans])
    out, original = read_layout(result.output), read_layout(src)
    assert out.tensor(name).type_name == original.tensor(name).type_name
    new, old = read_tensor_bytes(out, name), read_tensor_bytes(original, name)
    assert sum(a != b for a, b in zip(new, old, strict=True)) <= 4  # one F32 value, or one block's fp16 scale
    assert verify_format(src, result.output, result.changed) == []  # the damage is the value, not the format
    [stats] = result.tensors
    assert (stats.nan_before, stats.nan_after) == (0, nans)
    assert rules.finite(result.tensors, _Clean()).status == Status.FAIL


class _Clean:
    """A short generation with finite logits: what the finite rule reads besides the tensors."""

    nonfinite = None
    prompt_tokens = 1
    token_ids = (1,)


def test_metadata_changes_one_value_that_only_the_format_check_refuses(tmp_path):
    src = tiny(tmp_path)
    result = build(src, ("blk.0.ffn_norm.weight",), "metadata")  # the build verified everything else
    assert result.noop
    out = read_layout(result.output)
    assert out.metadata["general.name"] == "fakequant-tiny" + controls.NAME_SUFFIX
    original = read_layout(src)
    assert all(read_tensor_bytes(out, t.name) == read_tensor_bytes(original, t.name) for t in original.tensors)
    differences = verify_format(src, result.output, result.changed)
    assert differences == ["metadata key general.name: type or value differs (STRING -> STRING)"]
    assert rules.format_check(differences, 1).status == Status.FAIL


@pytest.mark.parametrize("embd", [T.F16, T.Q8_0, T.F32])
@pytest.mark.parametrize(("control", "rows"), [("zero_4", [3, 7, 20]), ("zero_the", [5, 9, 20])])
def test_zero_rows_zeroes_exactly_the_tokens_rows_in_the_tensors_own_type(tmp_path, embd, control, rows):
    src = tiny(tmp_path, embd)
    name = "token_embd.weight"
    result = build(src, (name,), control)
    assert controls.tokens_containing(read_layout(src), controls.ZEROED[control]) == rows
    before, after = read_tensor_values(read_layout(src), name), read_tensor_values(read_layout(result.output), name)
    others = [r for r in range(len(TOKENS)) if r not in rows]
    assert not after[rows].any() and before[rows].any()
    assert np.array_equal(after[others], before[others])
    out = read_layout(result.output)
    assert out.tensor(name).type_name == embd.name
    # every other row keeps its bytes: the rows are zeroed in place, not re-encoded
    row_bytes = out.tensor(name).nbytes // len(TOKENS)
    new, old = read_tensor_bytes(out, name), read_tensor_bytes(read_layout(src), name)
    assert all(new[r * row_bytes:(r + 1) * row_bytes] == old[r * row_bytes:(r + 1) * row_bytes] for r in others)
    # a zeroed value moves by just under 100% of itself: within the acceptable max bound (only beyond it fails)
    [stats] = result.tensors
    assert 0.99 < stats.max_rel < Thresholds().max_rel_diff_acceptable
    # gguf-py's own decoding reads the same zeros
    t = next(t for t in GGUFReader(result.output).tensors if t.name == name)
    assert not dequantize(np.asarray(t.data), t.tensor_type).reshape(len(TOKENS), -1)[rows].any()


@pytest.mark.parametrize(("names", "fmt", "extra", "words"), [
    (("blk.0.attn_k.weight",), "control:nan", {}, "MXFP4 has neither"),
    (("blk.0.ffn_norm.weight",), "control:zero_4", {}, "is not a token embedding"),
    (("blk.0.ffn_norm.weight",), "control:bogus", {}, "unknown control (known: control:nan, control:metadata"),
    (("blk.0.ffn_norm.weight",), "control:nan", {"group_size": 32}, "give it no group_size, store or seed"),
    (("blk.0.ffn_norm.weight",), "control:nan", {"store": "f32"}, "give it no group_size, store or seed"),
])
def test_a_control_that_cannot_apply_is_refused_before_anything_is_written(tmp_path, names, fmt, extra, words):
    src = write_tiny_gguf(tmp_path / "mx.gguf", tensor_types={"attn_k": T.MXFP4},
                          extra_metadata={"tokenizer.ggml.tokens": TOKENS})
    with pytest.raises(RecipeError, match=words.replace("(", r"\(")):
        build_candidate(src, Recipe(Selection(names), fmt, **extra), tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_zero_rows_needs_a_vocabulary(tmp_path):
    src = tiny(tmp_path, tokens=False)
    with pytest.raises(RecipeError, match=r"reads the vocabulary from tokenizer\.ggml\.tokens"):
        build(src, ("token_embd.weight",), "zero_the")
