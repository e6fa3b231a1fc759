"""recipe.groups and recipe.build: a recipe's groups and the formats their rows allow; the mixed model stores each
chosen tensor in its ggml type with ggml's bytes, leaves every other tensor as it was and never writes the original."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.quant import ggml as ggml_quants
from fakequant.quant.select import Selection
from fakequant.recipe.build import build_mix
from fakequant.recipe.groups import KEEP, cells, plan_groups


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(("grouping", "names"), [
    ("cell", ["blk.0.attn_q", "blk.0.ffn_down", "blk.2.attn_q", "blk.2.ffn_down"]),
    ("kind", ["attn_q", "ffn_down"]),
    ("layer", ["blk.0", "blk.2"]),
])
def test_groups_by_cell_kind_or_layer(tiny64: Path, grouping: str, names: list[str]) -> None:
    info = read_layout(tiny64)
    groups = plan_groups(info, Selection(layers="0,2", kinds=("attn_q", "ffn_down")), ("q4_0",), grouping, source="r")
    assert [g.name for g in groups] == names
    members = sorted(t.name for g in groups for t in g.tensors)
    assert members == sorted(f"blk.{i}.{k}.weight" for i in (0, 2) for k in ("attn_q", "ffn_down"))


def test_formats_a_group_allows(tiny64: Path) -> None:
    info = read_layout(tiny64)
    # attn_q is Q8_0 (q8_0 = keep), ffn_up Q4_0 (q4_0 = keep); rows of 64 allow no K-quant; a format that does
    # not make the group smaller is never offered (bf16 of a Q8_0 or Q4_0 matrix, q8_0 of a Q4_0 one)
    groups = {g.name: g for g in plan_groups(info, Selection(kinds=("attn_q", "ffn_up", "token_embd")),
                                             ("q4_k", "q8_0", "q4_0", "bf16"), "kind", source="r")}
    assert groups["attn_q"].formats == ("q4_0",)
    assert groups["ffn_up"].formats == ()
    assert info.tensor("token_embd.weight").type_name == "F16"
    assert groups["token_embd"].formats == ("q8_0", "q4_0")  # outside the blocks: its own group; bf16 is no smaller
    assert groups["attn_q"].options == (KEEP, "q4_0")
    assert len(cells(list(groups.values()))) == 3
    assert groups["attn_q"].types(KEEP) == {}
    assert groups["attn_q"].nbytes(KEEP) == sum(t.nbytes for t in groups["attn_q"].tensors)
    assert groups["attn_q"].nbytes("q4_0") == 3 * 64 * 64 // 32 * 18
    with pytest.raises(RecipeError, match="'q4_k' is not one of its options"):
        groups["attn_q"].types("q4_k")


def test_a_format_is_a_ceiling_in_a_group_of_mixed_types(tiny64: Path, tmp_path: Path) -> None:
    info = read_layout(tiny64)
    (group,) = plan_groups(info, Selection(layers="1"), ("q5_0", "q4_0", "q8_0", "q6_k"), "layer", source="r")
    kinds = {t.name: t.type_name for t in group.tensors}
    assert sorted(set(kinds.values())) == ["F16", "Q4_0", "Q8_0"]
    # q5_0 moves the Q8_0 and F16 matrices down and leaves the Q4_0 ones (smaller already) byte for byte; q4_0 leaves
    # them too (the same type); q8_0 moves only the F16 ones; q6_k's 256-blocks do not fit rows of 64
    assert group.formats == ("q5_0", "q4_0", "q8_0")
    for fmt, kept in (("q5_0", {"Q4_0"}), ("q4_0", {"Q4_0"}), ("q8_0", {"Q4_0", "Q8_0"})):
        assert set(group.types(fmt)) == {n for n, t in kinds.items() if t not in kept}
        assert set(group.types(fmt).values()) == {fmt.upper()}
    q5_0 = sum(t.n_elements // 32 * 22 if t.type_name != "Q4_0" else t.nbytes for t in group.tensors)
    assert group.nbytes("q5_0") == q5_0
    built = build_mix(tiny64, {n: "q5_0" for n in group.types("q5_0")}, tmp_path / "mix.gguf")
    reader, original = GGUFReader(built.output), GGUFReader(tiny64)
    for name, type_name in kinds.items():
        if type_name == "Q4_0":  # kept: the original bytes
            assert _raw(reader, name)[:2] == _raw(original, name)[:2]
        else:
            assert _raw(reader, name)[0] == "Q5_0"


def test_selections_that_cannot_change(tiny64: Path) -> None:
    info = read_layout(tiny64)
    with pytest.raises(RecipeError, match=r"^r: kind 'ffn_norm' has no weight matrix that llama\.cpp quantizes"):
        plan_groups(info, Selection(kinds=("attn_q", "ffn_norm")), ("q4_0",), "cell", source="r")
    with pytest.raises(RecipeError, match=r"^r: the selection holds no weight matrix"):
        plan_groups(info, Selection(names=("output_norm.weight",)), ("q4_0",), "cell", source="r")
    with pytest.raises(RecipeError, match=r"^r: no tensor of kind 'attn_qq'"):
        plan_groups(info, Selection(kinds=("attn_qq",)), ("q4_0",), "cell", source="r")
    # a layer list alone selects norms too: they are left out, not refused
    groups = plan_groups(info, Selection(layers="1"), ("q4_0",), "cell", source="r")
    assert [g.name for g in groups] == [f"blk.1.{k}" for k in ("attn_q", "attn_k", "attn_v", "attn_output",
                                                                 "ffn_up", "ffn_gate", "ffn_down")]


def _raw(reader: GGUFReader, name: str) -> tuple[str, bytes, np.ndarray]:
    t = next(t for t in reader.tensors if t.name == name)
    values = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1, int(t.shape[0]))
    return t.tensor_type.name, np.asarray(t.data).view(np.uint8).tobytes(), values


def test_mixed_model_has_ggmls_bytes_and_nothing_else_changes(tiny64: Path, tmp_path: Path) -> None:
    mix = {"blk.0.attn_q.weight": "q4_0", "blk.1.ffn_gate.weight": "q5_1", "token_embd.weight": "q8_0",
           "blk.2.ffn_up.weight": "bf16"}
    before = hashlib.sha256(tiny64.read_bytes()).hexdigest()
    out = tmp_path / "mixed.gguf"
    built = build_mix(tiny64, mix, out)
    assert hashlib.sha256(tiny64.read_bytes()).hexdigest() == before  # the original is only read
    stored = {s.name: s.stored_type for s in built.tensors}
    assert stored == {"token_embd.weight": "Q8_0", "blk.0.attn_q.weight": "Q4_0",
                      "blk.1.ffn_gate.weight": "Q5_1", "blk.2.ffn_up.weight": "BF16"}  # file order
    orig, mixed = GGUFReader(tiny64), GGUFReader(out)
    assert [t.name for t in orig.tensors] == [t.name for t in mixed.tensors]
    for t in orig.tensors:
        src_type, src_raw, values = _raw(orig, t.name)
        new_type, new_raw, _ = _raw(mixed, t.name)
        if t.name not in mix:
            assert (new_type, new_raw) == (src_type, src_raw), t.name
        elif new_type == "BF16":  # round to nearest even, as ggml's fp32 -> bf16
            assert new_raw == values.astype(ml_dtypes.bfloat16).tobytes(), t.name
        else:
            assert new_raw == ggml_quants.quantize_rows(values, mix[t.name]).tobytes(), t.name
    meta = json.loads(str(bytes(mixed.fields["fakequant.recipe"].parts[-1]), "utf-8"))
    assert meta["format"] == "mix" and dict(map(tuple, meta["mix"])) == mix  # the candidate recipe it was built from
    assert str(bytes(mixed.fields["fakequant.source_sha256"].parts[-1]), "utf-8") == before


def test_mixed_model_refusals(tiny64: Path, tmp_path: Path) -> None:
    for mix, words in (({"blk.0.ffn_norm.weight": "q4_0"}, "is not a matrix llama.cpp quantizes"),
                       ({"blk.0.attn_q.weight": "q4_k"}, "needs rows whose length is a multiple of 256"),
                       ({"blk.0.attn_q.weight": "int8"}, "format 'int8' has no ggml type"),
                       ({"blk.9.attn_q.weight": "q4_0"}, "no tensor 'blk.9.attn_q.weight'")):
        with pytest.raises(RecipeError, match=words):
            build_mix(tiny64, mix, tmp_path / "x.gguf")
        assert not (tmp_path / "x.gguf").exists()
    with pytest.raises(RecipeError, match="is the source model itself"):
        build_mix(tiny64, {"blk.0.attn_q.weight": "q4_0"}, tiny64)
