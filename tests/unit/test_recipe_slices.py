"""recipe.slices and recipe.bias: the three slices of text never overlap and follow one another (or the evaluation
comes from its own corpus), the paired pass scores exactly a slice's tokens, a corpus too short is one line naming it
and the tokens needed, and the selection bias's Welch interval is the textbook one."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakequant.errors import CorpusError
from fakequant.recipe.bias import selection_bias, welch
from fakequant.recipe.slices import needed_tokens, recipe_slices, reference
from fakequant.suite.criteria import MixRecipe, load_criteria


def _recipe(tmp_path: Path, extra: str = "") -> MixRecipe:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "c.txt").write_text("text")
    (tmp_path / "e.txt").write_text("other text")
    path = tmp_path / "criteria.toml"
    path.write_text('[defaults]\nmodel = "m.gguf"\ncorpus = "c.txt"\n[recipes.r]\nkinds = ["attn_q"]\n'
                    f'formats = ["q4_0"]\nbudget_mib = 1\n{extra}\n')
    return load_criteria(path).recipes["r"]


@pytest.fixture(scope="module")
def base_recipe(tmp_path_factory: pytest.TempPathFactory) -> MixRecipe:
    return _recipe(tmp_path_factory.mktemp("slices"))


@settings(max_examples=60, deadline=None)
@given(cal=st.integers(1, 50), sel=st.integers(2, 50), ev=st.integers(2, 50), imatrix=st.booleans(),
       n_ctx=st.sampled_from([64, 512, 4096]))
def test_the_slices_never_overlap_and_follow_one_another(base_recipe: MixRecipe, cal: int, sel: int, ev: int,
                                                         imatrix: bool, n_ctx: int) -> None:
    recipe = dataclasses.replace(base_recipe, imatrix=imatrix, calibration_chunks=cal, selection_chunks=sel,
                                 evaluation_chunks=ev, settings=dataclasses.replace(base_recipe.settings, n_ctx=n_ctx))
    slices = recipe_slices(recipe)
    ranges = [s.tokens for s in slices.all()]
    assert [s.name for s in slices.all()] == (["calibration"] if imatrix else []) + ["selection", "evaluation"]
    assert ranges[0][0] == 0  # from the corpus's start, one after the other, no gap, no token twice
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert [e - s for s, e in ranges] == [n * n_ctx for n in ([cal] if imatrix else []) + [sel, ev]]
    tokens = [t for s, e in ranges for t in range(s // n_ctx, e // n_ctx)]  # chunk indices
    assert len(tokens) == len(set(tokens))
    assert needed_tokens(slices, recipe.corpus) == ranges[-1][1]


def test_the_evaluation_corpus_is_read_from_its_start(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, 'evaluation_corpus = "e.txt"\nevaluation_chunks = 3')
    slices = recipe_slices(recipe)
    assert slices.evaluation.corpus == tmp_path / "e.txt" and slices.evaluation.tokens == (0, 3 * 512)
    assert slices.selection.tokens == (8 * 512, 12 * 512)  # after the default 8 calibration chunks
    assert needed_tokens(slices, recipe.corpus) == 12 * 512
    # the corpus itself under another name is no second corpus: the evaluation goes after the selection
    (tmp_path / "same.txt").symlink_to(tmp_path / "c.txt")
    same = recipe_slices(dataclasses.replace(recipe, evaluation_corpus=tmp_path / "same.txt"))
    assert same.evaluation.tokens == (12 * 512, 15 * 512)
    assert [s["tokens"] for s in same.to_json()] == [[0, 4096], [4096, 6144], [6144, 7680]]


@pytest.mark.slow
def test_a_slice_scores_exactly_its_chunks_and_a_short_corpus_says_what_it_needs(
        default_assets: tuple[Path, Path], tmp_path: Path) -> None:
    from fakequant.runtime.llama import load_model
    from fakequant.runtime.perplexity import corpus_tokens

    model, corpus = default_assets
    short = tmp_path / "short.txt"
    short.write_text(corpus.read_text()[:10000])  # about 2200 tokens
    recipe = dataclasses.replace(_recipe(tmp_path), model=model, corpus=short, calibration_chunks=2,
                                 selection_chunks=2, evaluation_chunks=2)
    with load_model(model, dataclasses.replace(recipe.settings, n_ctx=128)) as base:
        whole = corpus_tokens(base, short)
        part = corpus_tokens(base, short, chunks=3, first_chunk=4)
        assert part.first_chunk == 4 and part.n_chunk == 3
        assert part.tokens.tolist() == whole.tokens[4 * 128:7 * 128].tolist()
        with pytest.raises(CorpusError, match=r"short\.txt: tokenizes to \d+ tokens; chunk \d+ of 128 tokens needs"):
            corpus_tokens(base, short, chunks=1, first_chunk=whole.n_chunk)
    slices = recipe_slices(recipe)
    with load_model(model, recipe.settings) as base:
        have = corpus_tokens(base, short).corpus_tokens
        assert have is not None and have < needed_tokens(slices, short) == 6 * 512
        with pytest.raises(CorpusError) as err:
            reference(base, slices.evaluation, slices, log=lambda _: None)
    message = str(err.value)
    assert message.startswith(f"{short}: ") and "need 3072 tokens" in message, message
    assert "calibration: chunks 0–1" in message and "evaluation: chunks 4–5" in message and "\n" not in message


def test_welch_interval_is_scipys() -> None:
    from scipy import stats

    a, b = [0.031, 0.029, 0.035, 0.040, 0.030], [0.020, 0.024, 0.019, 0.022]
    diff, ci = welch(a, b)
    test = stats.ttest_ind(a, b, equal_var=False)
    low, high = test.confidence_interval(0.95)
    assert diff == pytest.approx(sum(a) / 5 - sum(b) / 4)
    # the degrees of freedom are rounded down (a wider, conservative interval): within a few percent of scipy's
    assert ci is not None and ci[0] <= low and ci[1] >= high and (ci[1] - ci[0]) / (high - low) < 1.1
    assert welch([0.1], b)[1] is None and welch([0.1, 0.1], [0.2, 0.2])[1] is None


def test_selection_bias_reports_both_slices_and_the_evaluations_excess() -> None:
    bias = selection_bias([0.010, 0.012, 0.011], [0.015, 0.017, 0.016, 0.018])
    assert bias["selection_kld_mean"] == pytest.approx(0.011) and bias["evaluation_kld_mean"] == pytest.approx(0.0165)
    assert bias["difference"] == pytest.approx(0.0055) and bias["ratio"] == pytest.approx(0.0165 / 0.011)
    assert bias["difference_ci"][0] > 0  # the model did better on the chunks it was chosen on
    assert (bias["selection_chunks"], bias["evaluation_chunks"]) == (3, 4)
