"""[recipes.<name>] in criteria.toml: a valid table becomes a typed MixRecipe; every mistake is one line naming the
file and the key, and stops only that recipe."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fakequant.errors import CriteriaError
from fakequant.suite.criteria import load_criteria

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "c.txt").write_text("text")
    (tmp_path / "other.txt").write_text("other text")
    path = tmp_path / "criteria.toml"
    path.write_text('[defaults]\nmodel = "m.gguf"\ncorpus = "c.txt"\n' + textwrap.dedent(body), encoding="utf-8")
    return path

GOOD = """
[prompts.math]
turns = ["What is 2+2?"]

[experiments.alpha]
tensors = ["blk.0.ffn_norm.weight"]
format = "bf16"

[recipes.mix]
kinds = ["attn_q", "ffn_down"]
layers = "0-3"
formats = ["q4_0", "q8_0", "q4_k"]
budget_mib = 80.5

[recipes.per_kind]
description = "one type per kind"
kinds = ["ffn_up"]
group = "kind"
formats = ["bf16"]
budget_bpw = 5
chunks = 3
settings = { n_ctx = 256 }
imatrix = false
selection_chunks = 6
evaluation_chunks = 5
evaluation_corpus = "other.txt"
max_tries = 1
"""


def test_recipe_tables_become_typed_recipes(tmp_path: Path) -> None:
    crit = load_criteria(write(tmp_path, GOOD))
    assert list(crit.recipes) == ["mix", "per_kind"] and not crit.recipe_errors
    assert list(crit.experiments) == ["alpha"]  # recipes are not experiments
    mix, per_kind = crit.recipes["mix"], crit.recipes["per_kind"]
    assert mix.selection.kinds == ("attn_q", "ffn_down") and mix.selection.layers == "0-3"
    assert mix.formats == ("q4_0", "q8_0", "q4_k") and mix.group == "cell"
    assert (mix.budget_mib, mix.budget_bpw) == (80.5, None)
    assert mix.chunks == 10 and mix.settings.n_ctx == 512 and mix.model == tmp_path / "m.gguf"
    assert [p.id for p in mix.prompts] == ["math"] and mix.source == "recipes.mix"
    assert per_kind.group == "kind" and (per_kind.budget_mib, per_kind.budget_bpw) == (None, 5.0)
    assert per_kind.chunks == 3 and per_kind.settings.n_ctx == 256
    assert per_kind.to_json()["formats"] == ["bf16"] and per_kind.to_json()["budget_bpw"] == 5.0
    # the text slices and the tries: the defaults, and every key set
    assert (mix.imatrix, mix.calibration_chunks, mix.selection_chunks, mix.evaluation_chunks, mix.evaluation_corpus,
            mix.max_tries) == (True, 8, 4, 8, None, 3)
    assert (per_kind.imatrix, per_kind.selection_chunks, per_kind.evaluation_chunks, per_kind.evaluation_corpus,
            per_kind.max_tries) == (False, 6, 5, tmp_path / "other.txt", 1)
    assert per_kind.to_json()["evaluation_corpus"] == str(tmp_path / "other.txt")


@pytest.mark.parametrize(("body", "key", "words"), [
    ("kinds = ['attn_q']\nbudget_mib = 80\n", "recipes.bad.formats", "missing"),
    ("kinds = ['attn_q']\nformats = []\nbudget_mib = 80\n", "recipes.bad.formats", "is empty"),
    ("kinds = ['attn_q']\nformats = 'q4_0'\nbudget_mib = 80\n", "recipes.bad.formats", "array of strings"),
    ("kinds = ['attn_q']\nformats = ['fp8_e4m3']\nbudget_mib = 80\n", "recipes.bad.formats", "has no ggml type"),
    ("kinds = ['attn_q']\nformats = ['int4']\nbudget_mib = 80\n", "recipes.bad.formats", "has no ggml type"),
    ("kinds = ['attn_q']\nformats = ['Q4_0']\nbudget_mib = 80\n", "recipes.bad.formats", "write it as 'q4_0'"),
    ("kinds = ['attn_q']\nformats = ['q4_o']\nbudget_mib = 80\n", "recipes.bad.formats", "did you mean"),
    ("kinds = ['attn_q']\nformats = ['q4_0', 'q8_0', 'q4_0']\nbudget_mib = 80\n", "recipes.bad.formats",
     "'q4_0' is listed twice"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\n", "recipes.bad", "none is given"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nbudget_bpw = 4.5\n", "recipes.bad", "both are given"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 0\n", "recipes.bad.budget_mib", "must be > 0"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_bpw = -1\n", "recipes.bad.budget_bpw", "must be > 0"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_bpw = 80\n", "recipes.bad.budget_bpw", "more than F32"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = '80'\n", "recipes.bad.budget_mib", "must be a number"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\ngroup = 'row'\n", "recipes.bad.group",
     "must be one of cell, kind, layer"),
    ("formats = ['q4_0']\nbudget_mib = 80\n", "recipes.bad", "selects no tensors"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget = 80\n", "recipes.bad.budget", "did you mean"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nchunks = 0\n", "recipes.bad.chunks", "must be >= 1"),
    ("layers = 'x'\nformats = ['q4_0']\nbudget_mib = 80\n", "recipes.bad.layers", "must look like"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nimatrix = 'yes'\n", "recipes.bad.imatrix",
     "true or false"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nselection_chunks = 1\n",
     "recipes.bad.selection_chunks", "must be >= 2"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nevaluation_chunks = 2.5\n",
     "recipes.bad.evaluation_chunks", "must be an integer"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\ncalibration_chunks = 0\n",
     "recipes.bad.calibration_chunks", "must be >= 1"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nmax_tries = 0\n", "recipes.bad.max_tries",
     "must be >= 1 (tries through the suite)"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nimatrix = false\ncalibration_chunks = 4\n",
     "recipes.bad.calibration_chunks", "imatrix = false"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nevaluation_corpus = 'nope.txt'\n",
     "recipes.bad.evaluation_corpus", "does not exist"),
    ("kinds = ['attn_q']\nformats = ['q4_0']\nbudget_mib = 80\nmodel = 'nope.gguf'\n", "recipes.bad.model",
     "does not exist"),
])
def test_recipe_mistakes_stop_only_that_recipe(tmp_path: Path, body: str, key: str, words: str) -> None:
    path = write(tmp_path, GOOD + "\n[recipes.bad]\n" + body)
    crit = load_criteria(path)
    assert list(crit.recipes) == ["mix", "per_kind"] and list(crit.experiments) == ["alpha"]
    msg = str(crit.recipe_errors["bad"])
    assert msg.startswith(f"{path}: {key}") and words in msg and "\n" not in msg, msg
    with pytest.raises(CriteriaError, match=r"recipes\.bad"):
        load_criteria(path, strict=True)


def test_recipe_names_and_tables_are_checked_with_the_file(tmp_path: Path) -> None:
    with pytest.raises(CriteriaError, match=r"recipes\.my-mix: name 'my-mix' must be letters"):
        load_criteria(write(tmp_path, "[recipes.'my-mix']\nkinds = ['a']\nformats = ['q4_0']\nbudget_mib = 1\n"))
    crit = load_criteria(write(tmp_path, "[recipes]\nmix = 3\n"))
    assert "recipes.mix: must be a table" in str(crit.recipe_errors["mix"]) and not crit.recipes


def test_shipped_recipe_is_valid() -> None:
    crit = load_criteria(REPO / "criteria.toml", strict=True)
    assert crit.recipes, "criteria.toml ships an example recipe"
    for recipe in crit.recipes.values():
        assert recipe.formats and (recipe.budget_mib is None) != (recipe.budget_bpw is None)
