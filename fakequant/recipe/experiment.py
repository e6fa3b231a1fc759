"""A recipe's chosen mixed model as an ordinary suite experiment, ``recipe_<name>`` (``pytest --recipe NAME``).

The assignment is the one ``fakequant recipe NAME`` picks within the recipe's own budget: the recipe planned on its
model, each cell's cost taken from the cell cache, the same solver. Nothing is measured here: a cell not in the cache
is an error that says to run ``fakequant recipe NAME`` first, so a pytest run never starts an hour of measurement.

The experiment's recipe is the mixed form of :class:`~fakequant.quant.candidate.Recipe` (format ``"mix"``): the
suite builds it through the candidate cache, with its placebo twin (the same tensors, one ulp each), like any
candidate.
"""

from __future__ import annotations

from fakequant.errors import RecipeError
from fakequant.quant.candidate import MIX, Recipe
from fakequant.quant.select import Selection
from fakequant.recipe.groups import KEEP
from fakequant.recipe.measure import cached_cells
from fakequant.recipe.plan import Choice, cell_key, choose, plan_recipe
from fakequant.suite.criteria.types import Experiment, MixRecipe
from fakequant.suite.vocab import CATEGORIES, NUMERICAL

PREFIX = "recipe_"
# Not the numerical check: its bounds are about BF16/FP8 rounding (a value moved by under 1% on average), and a real
# 4-bit requantization moves values by far more than that by design; its effect is judged where it shows, on
# perplexity and conversations.
RECIPE_CHECKS = tuple(c for c in CATEGORIES if c != NUMERICAL)


def experiment_name(recipe: str) -> str:
    return f"{PREFIX}{recipe}"


def chosen(recipe: MixRecipe) -> Choice:
    """The assignment ``fakequant recipe NAME`` chose within the recipe's budget, from the cached cells."""
    plan = plan_recipe(recipe)
    cells, missing = cached_cells(recipe, plan.groups)
    if missing:
        group, fmt = missing[0]
        raise RecipeError(f"{recipe.source}: {len(missing)} of {len(cells) + len(missing)} cells not measured yet "
                          f"(first: {cell_key(group, fmt)}); run `fakequant recipe {recipe.name}` first")
    return choose(plan, {cell_key(g, f): c.cost for (g, f), c in cells.items()})


def mix_recipe(choice: Choice) -> Recipe:
    """The candidate recipe of an assignment: each changed tensor in its chosen format, stored natively."""
    names = tuple(choice.formats)
    return Recipe(Selection(names=names), MIX, mix=tuple(choice.formats.items())).validate()


def recipe_experiment(recipe: MixRecipe) -> Experiment:
    """``recipe_<name>``: the recipe's chosen mixed model, through must-pass, perplexity, conversations and speed with
    the recipe's own prompts, thresholds, settings, chunks, model and corpus. RecipeError (one line) when a cell is
    not cached, the budget cannot be met, or the budget keeps every group as it is (nothing to test)."""
    choice = chosen(recipe)
    if all(option == KEEP for option in choice.assignment.values()):
        raise RecipeError(f"{recipe.source}: within its budget every group keeps its type: the recipe's model is the "
                          "original, there is nothing to test")
    kept = sum(option == KEEP for option in choice.assignment.values())
    description = recipe.description or f"recipe {recipe.name}"
    return Experiment(
        name=experiment_name(recipe.name),
        description=f"{description} (the mix chosen within its budget: {len(choice.assignment) - kept} group(s) "
                    f"changed, {kept} kept, {len(choice.formats)} tensors, {choice.bpw:.3f} bits per weight)",
        recipe=mix_recipe(choice), thresholds=recipe.thresholds, settings=recipe.settings, chunks=recipe.chunks,
        prompts=recipe.prompts, model=recipe.model, corpus=recipe.corpus, checks=RECIPE_CHECKS,
        source=recipe.source, markers=(experiment_name(recipe.name),))
