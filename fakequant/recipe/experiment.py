"""A recipe's pick as an ordinary suite experiment, ``recipe_<name>`` (``pytest --recipe NAME``).

``fakequant recipe NAME`` records each assignment it sends to the suite (:func:`record_pick`: the candidate recipe,
with the importance matrix, and what the description says of it) under ``$FAKEQUANT_HOME/recipe-picks/``, keyed by
the recipe's table and the model's sha256; the experiment is the pick recorded last. Nothing is measured or solved
here: without a pick for this very recipe and model the experiment is an error that says to run
``fakequant recipe NAME`` first, so a pytest run never starts an hour of measurement, and the suite tests the model
the recipe built (the same candidate recipe, so the same file in the candidate cache).

The experiment's recipe is the mixed form of :class:`~fakequant.quant.candidate.Recipe` (format ``"mix"``): the
suite builds it through the candidate cache, with its placebo twin (the same tensors, one ulp each), like any
candidate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fakequant.errors import RecipeError
from fakequant.quant.candidate import Recipe
from fakequant.recipe.groups import KEEP
from fakequant.recipe.plan import Choice
from fakequant.store.cache import cache_dir, file_sha256, locked, stable_hash, write_json
from fakequant.suite.criteria.types import Experiment, MixRecipe
from fakequant.suite.vocab import CATEGORIES, NUMERICAL

PREFIX = "recipe_"
# Not the numerical check: its bounds are about BF16/FP8 rounding (a value moved by under 1% on average), and a real
# 4-bit requantization moves values by far more than that by design; its effect is judged where it shows, on
# perplexity and conversations.
RECIPE_CHECKS = tuple(c for c in CATEGORIES if c != NUMERICAL)


def experiment_name(recipe: str) -> str:
    return f"{PREFIX}{recipe}"


def pick_path(recipe: MixRecipe) -> Path:
    key = stable_hash({"recipe": recipe.to_json(), "model": file_sha256(recipe.model)})
    return cache_dir("recipe-picks") / f"{recipe.name}-{key}.json"


def record_pick(recipe: MixRecipe, choice: Choice, candidate: Recipe, attempt: int) -> Path:
    """Record ``choice`` (built as ``candidate``) as the assignment the suite tests next for ``recipe``."""
    if all(option == KEEP for option in choice.assignment.values()):
        raise RecipeError(f"{recipe.source}: within its budget every group keeps its type: the recipe's model is the "
                          "original, there is nothing to test")
    path = pick_path(recipe)
    kept = sum(option == KEEP for option in choice.assignment.values())
    with locked(path):
        write_json(path, {"candidate": candidate.to_json(), "attempt": attempt, "assignment": choice.assignment,
                          "groups_changed": len(choice.assignment) - kept, "groups_kept": kept,
                          "tensors": len(choice.formats), "bpw": choice.bpw, "file_bytes": choice.file_bytes})
    return path


def load_pick(recipe: MixRecipe) -> dict[str, Any]:
    path = pick_path(recipe)
    try:
        data = json.loads(path.read_text())
        data["candidate"] = Recipe.from_json(data["candidate"]).validate()
    except FileNotFoundError:
        raise RecipeError(f"{recipe.source}: no assignment picked for this recipe and model yet; run "
                          f"`fakequant recipe {recipe.name}` first") from None
    except (OSError, ValueError, KeyError, TypeError, RecipeError) as err:
        raise RecipeError(f"{path}: the recorded pick of {recipe.source} is unreadable ({err}); run "
                          f"`fakequant recipe {recipe.name}` again") from None
    return data


def recipe_experiment(recipe: MixRecipe) -> Experiment:
    """``recipe_<name>``: the recipe's pick, through must-pass, perplexity, conversations and speed with the recipe's
    own prompts, thresholds, settings, chunks and model, its perplexity on ``chunks`` chunks from the start of the
    evaluation slice (its corpus). RecipeError (one line) when nothing was picked for
    this recipe and model."""
    from fakequant.recipe.slices import recipe_slices

    pick = load_pick(recipe)
    description = recipe.description or f"recipe {recipe.name}"
    # perplexity on the evaluation slice: never on the text the importance matrix or the assignment came from
    evaluation = recipe_slices(recipe).evaluation
    return Experiment(
        name=experiment_name(recipe.name),
        description=f"{description} (try {pick['attempt']}, the best assignment within its budget not tried before: "
                    f"{pick['groups_changed']} group(s) changed, {pick['groups_kept']} kept, {pick['tensors']} "
                    f"tensors, {pick['bpw']:.3f} bits per weight)",
        recipe=pick["candidate"], thresholds=recipe.thresholds, settings=recipe.settings, chunks=recipe.chunks,
        first_chunk=evaluation.first_chunk, prompts=recipe.prompts, model=recipe.model, corpus=evaluation.corpus,
        checks=RECIPE_CHECKS, source=recipe.source, markers=(experiment_name(recipe.name),))
