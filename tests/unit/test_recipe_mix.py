"""The mixed form of a candidate Recipe (format "mix"): what validate refuses, the JSON round trip, and that
the recipe's model is that candidate, built and cached like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.quant.candidate import MIX, BuildResult, Recipe, build_candidate, plan
from fakequant.quant.placebo import twin_of
from fakequant.quant.select import Selection
from fakequant.recipe.build import build_mix

FORMATS = {"token_embd.weight": "q8_0", "blk.0.attn_q.weight": "q4_0", "blk.1.ffn_gate.weight": "q5_1",
           "blk.2.ffn_up.weight": "bf16"}  # in file order


def mix_of(formats: dict[str, str], **kw: object) -> Recipe:
    return Recipe(Selection(names=tuple(formats)), MIX, mix=tuple(formats.items()), **kw)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(("recipe", "message"), [
    (Recipe(Selection(), MIX), r"^mix: names no tensors"),
    (Recipe(Selection(names=("a",)), MIX, mix=[("a", "q4_0")]),  # type: ignore[arg-type]
     r"^mix: must be a tuple of .* got list$"),
    (Recipe(Selection(names=("a",)), MIX, mix=(("a",),)),  # type: ignore[arg-type]
     r"^mix: \('a',\) is not a \(tensor name, ggml format\) pair"),
    (mix_of({"blk.*.attn_q.weight": "q4_0"}), r"^mix: tensor 'blk\.\*\.attn_q\.weight': give an exact tensor name"),
    (mix_of({"a": "int8"}), r"^mix: tensor a: format 'int8' has no ggml type \(those with one: bf16, fp16, "),
    (mix_of({"a": "Q4_0"}), r"^mix: tensor a: format 'Q4_0' has no ggml type"),
    (Recipe(Selection(names=("a", "a")), MIX, mix=(("a", "q4_0"), ("a", "q8_0"))), r"^mix: tensor a is listed twice$"),
    (Recipe(Selection(names=("a",)), MIX, mix=(("a", "q4_0"), ("b", "q8_0"))),
     r"^mix: the selection must name exactly the mix's tensors"),
    (Recipe(Selection(kinds=("attn_q",)), MIX, mix=(("a", "q4_0"),)), r"^mix: the selection must name exactly"),
    (mix_of({"a": "q4_0"}, store="native"), r"^mix: stores each tensor natively in its own format; give it no "),
    (mix_of({"a": "q4_0"}, group_size=32), r"^mix: stores each tensor natively"),
    (mix_of({"a": "q4_0"}, seed=1), r"^mix: stores each tensor natively"),
    (mix_of({"a": "q4_0"}, epsilon=0.0), r"^epsilon 0\.0: must be a finite number > 0$"),
    (Recipe(Selection(names=("a",)), "q4_0", mix=(("a", "q4_0"),)), r"^mix: only format 'mix' takes a mix, not q4_0$"),
])
def test_validate_refuses_a_bad_mix_in_one_line(recipe: Recipe, message: str) -> None:
    with pytest.raises(RecipeError, match=message) as err:
        recipe.validate()
    assert "\n" not in str(err.value)


def test_json_round_trip_carries_the_mix_and_leaves_other_recipes_json_alone() -> None:
    recipe = mix_of(FORMATS, epsilon=1e-6).validate()
    data = json.loads(json.dumps(recipe.to_json()))
    assert data["format"] == "mix" and data["mix"] == [list(p) for p in FORMATS.items()]
    assert Recipe.from_json(data) == recipe
    # every other recipe keeps the JSON (and so the cache key) it had before the mixed form existed
    plain = Recipe(Selection(names=("a",)), "q4_0", store="native")
    assert "mix" not in plain.to_json()
    assert Recipe.from_json(plain.to_json()) == plain


def test_plan_checks_each_tensor_against_its_own_format(tiny64: Path) -> None:
    info = read_layout(tiny64)
    assert plan(info, mix_of(FORMATS)) == list(FORMATS)
    with pytest.raises(RecipeError, match=r"tensor blk\.0\.attn_q\.weight: .*multiple of 256"):
        plan(info, mix_of({"blk.0.attn_q.weight": "q4_k"}))
    with pytest.raises(RecipeError, match=r"tensor blk\.0\.ffn_norm\.weight: is not a matrix; a mix stores only"):
        plan(info, mix_of({"blk.0.ffn_norm.weight": "bf16"}))
    with pytest.raises(RecipeError, match=r"no tensor matches 'blk\.9\.attn_q\.weight'"):
        plan(info, mix_of({"blk.9.attn_q.weight": "q4_0"}))


def test_the_recipes_model_is_the_mixed_candidate_itself_and_is_cached(tiny64: Path) -> None:
    """One builder: the recipe's model (recipe.build.build_mix) is the candidate the suite builds for the same mix,
    the same file in the candidate cache."""
    recipe = mix_of(FORMATS)
    built = build_candidate(tiny64, recipe)
    assert not built.reused
    mixed = build_mix(tiny64, FORMATS)
    assert mixed.reused and mixed.output == built.output and mixed.recipe == recipe
    layout = read_layout(built.output)
    assert {t.name: t.type_name for t in layout.tensors if t.name in FORMATS} == \
        {"token_embd.weight": "Q8_0", "blk.0.attn_q.weight": "Q4_0", "blk.1.ffn_gate.weight": "Q5_1",
         "blk.2.ffn_up.weight": "BF16"}
    assert [(s.name, s.format) for s in built.tensors] == list(FORMATS.items())
    assert json.loads(layout.metadata["fakequant.recipe"])["mix"] == [list(p) for p in FORMATS.items()]
    assert BuildResult.from_json(built.to_json()).recipe == recipe
    other = build_candidate(tiny64, mix_of({**FORMATS, "blk.0.attn_q.weight": "q4_1"}))
    assert other.output != built.output  # the mix is part of the cache key


def test_the_placebo_twin_of_a_mix_nudges_the_same_tensors(tiny64: Path) -> None:
    twin = twin_of(mix_of(FORMATS))
    assert twin.selection == Selection(names=tuple(FORMATS)) and twin.format == "placebo" and twin.mix == ()
    placebo = build_candidate(tiny64, twin)
    assert [s.name for s in placebo.tensors] == list(FORMATS)
    assert all(s.stored_type == s.source_type for s in placebo.tensors)  # each keeps its own type
