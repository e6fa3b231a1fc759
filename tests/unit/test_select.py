"""Tensor selection: names, globs, layers, kinds, and helpful errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakequant.errors import RecipeError
from fakequant.gguf.synthetic import tiny_tensor_shapes
from fakequant.quant.select import LayersError, Selection, kind_of, layer_of, parse_layers, select_tensors

NAMES = list(tiny_tensor_shapes(n_layers=12, dim=32))  # llama layout, 12 blocks
SRC = "model.gguf"


def test_exact_name_and_glob() -> None:
    assert select_tensors(NAMES, Selection(names=("blk.0.ffn_norm.weight",)), source=SRC) == ["blk.0.ffn_norm.weight"]
    got = select_tensors(NAMES, Selection(names=("blk.*.ffn_norm.weight",)), source=SRC)
    assert got == [f"blk.{i}.ffn_norm.weight" for i in range(12)]
    both = select_tensors(NAMES, Selection(names=("output_norm.weight", "token_embd.weight")), source=SRC)
    assert both == ["token_embd.weight", "output_norm.weight"]  # file order, not pattern order


def test_layers_and_kinds() -> None:
    sel = Selection(layers="0,5,10-11", kinds=("attn_q", "ffn_down"))
    got = select_tensors(NAMES, sel, source=SRC)
    assert got == [f"blk.{i}.{k}.weight" for i in (0, 5, 10, 11) for k in ("attn_q", "ffn_down")]
    all_layers = select_tensors(NAMES, Selection(layers="all", kinds=("ffn_norm",)), source=SRC)
    assert len(all_layers) == 12
    layer0 = select_tensors(NAMES, Selection(layers="0"), source=SRC)
    assert len(layer0) == 9 and all(n.startswith("blk.0.") for n in layer0)
    # names and layers combine: the glob picks ffn_norm everywhere, the layer range keeps 0-2
    assert select_tensors(NAMES, Selection(names=("blk.*.ffn_norm.weight",), layers="0-2"), source=SRC) == \
        ["blk.0.ffn_norm.weight", "blk.1.ffn_norm.weight", "blk.2.ffn_norm.weight"]


def test_kind_and_layer_of() -> None:
    assert kind_of("blk.13.attn_output.weight") == "attn_output"
    assert kind_of("token_embd.weight") == "token_embd"
    assert layer_of("blk.13.attn_output.weight") == 13
    assert layer_of("output_norm.weight") is None


def test_errors_name_the_closest_real_tensors() -> None:
    with pytest.raises(RecipeError, match=r"model.gguf: no tensor matches 'blk.0.ffn_nrom.weight'; closest: "
                                          r"blk.0.ffn_norm.weight"):
        select_tensors(NAMES, Selection(names=("blk.0.ffn_nrom.weight",)), source=SRC)
    with pytest.raises(RecipeError, match=r"no tensor of kind 'ffn_nrom'; closest kinds: ffn_norm"):
        select_tensors(NAMES, Selection(kinds=("ffn_nrom",)), source=SRC)
    with pytest.raises(RecipeError, match=r"matches no tensor"):
        select_tensors(NAMES, Selection(layers="40-41"), source=SRC)
    with pytest.raises(RecipeError, match="names no tensors"):
        select_tensors(NAMES, Selection(), source=SRC)
    for bad in ("1-", "a", "3-1", "1,,2"):
        with pytest.raises(RecipeError, match="layers"):
            select_tensors(NAMES, Selection(layers=bad), source=SRC)


@settings(max_examples=50, deadline=None)
@given(st.sets(st.integers(0, 60), min_size=1))
def test_parse_layers_round_trips_any_set(layers: set[int]) -> None:
    # write the set as ranges of consecutive numbers, then parse it back
    ordered, parts, start = sorted(layers), [], None
    for i, v in enumerate(ordered):
        start = v if start is None else start
        if i + 1 == len(ordered) or ordered[i + 1] != v + 1:
            parts.append(str(v) if start == v else f"{start}-{v}")
            start = None
    assert parse_layers(",".join(parts)) == sorted(layers)
    assert parse_layers("all") is None


def test_parse_layers_keeps_the_written_order_and_says_what_is_wrong() -> None:
    assert parse_layers("5, 0-2,1") == [5, 0, 1, 2]  # spaces ignored, repeats dropped
    with pytest.raises(LayersError, match=r"src: layers '2-x': expected e.g.") as err:
        parse_layers("2-x", source="src")
    assert err.value.backwards is None
    with pytest.raises(LayersError, match=r"src: layers '1,05-2': range 5-2 runs backwards") as err:
        parse_layers("1,05-2", source="src")
    assert err.value.backwards == "05-2"
