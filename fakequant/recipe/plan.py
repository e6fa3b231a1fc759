"""A recipe against a model: its groups, its budget in bytes, and, given a cost for every cell, the assignment the
solver picks, with the size of the file it makes.

The budget is linear in the options, so the knapsack sees it exactly:

- ``budget_mib``: the file. A tensor's bytes count rounded up to the alignment (every tensor starts at a multiple of
  it and the file ends at one); the header counts as fixed, at its largest over the assignments (the provenance
  is the candidate recipe, which names each changed tensor and its format, so its length moves with them);
- ``budget_bpw``: the weight matrices' bytes, limited to ``budget_bpw / 8`` bytes per value.

Costs come per cell, ``"<group>|<format>"`` (e.g. ``"blk.5.attn_q|q4_0"``: the excess mean KLD of that group in
that format); keeping a group costs 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.gguf.layout import ModelInfo, align
from fakequant.gguf.write import build_header
from fakequant.recipe.build import SHA_PLACEHOLDER, imatrix_path, mix_provenance, mix_recipe
from fakequant.recipe.groups import KEEP, Group, cells, plan_groups
from fakequant.recipe.imatrix import Imatrix
from fakequant.recipe.size import bits_per_weight, is_matrix, matrix_bytes, predict_file_size
from fakequant.recipe.solve import Infeasible, Option, solve
from fakequant.store.textfile import parse_user_file
from fakequant.suite.criteria.types import MixRecipe

MIB = 1 << 20
__all__ = ["MIB", "SHA_PLACEHOLDER", "Choice", "Plan", "cell_key", "choose", "load_costs", "plan_recipe"]


def cell_key(group: str, fmt: str) -> str:
    return f"{group}|{fmt}"


@dataclass(frozen=True)
class Plan:
    recipe: MixRecipe
    info: ModelInfo
    groups: tuple[Group, ...]
    imatrix: Imatrix | None = None  # the importance matrix the tensors are quantized with (recipe/build.py)

    @property
    def cells(self) -> list[tuple[str, str]]:
        return cells(self.groups)

    @property
    def budget(self) -> str:
        if self.recipe.budget_mib is not None:
            return f"budget_mib = {self.recipe.budget_mib:g}"
        return f"budget_bpw = {self.recipe.budget_bpw:g}"

    @property
    def values(self) -> int:
        """Values in the weight matrices: what bits per weight divide by."""
        return matrix_bytes(self.info, {})[1]

    @property
    def limit(self) -> int:
        """The budget in bytes: of the file (budget_mib) or of the weight matrices (budget_bpw)."""
        if self.recipe.budget_mib is not None:
            return math.floor(self.recipe.budget_mib * MIB)
        assert self.recipe.budget_bpw is not None
        return math.floor(self.recipe.budget_bpw * self.values / 8)

    def measure(self, nbytes: int) -> str:
        """``nbytes`` of the budget's measure in the budget's own unit."""
        if self.recipe.budget_mib is not None:
            return f"{nbytes / MIB:.3f} MiB"
        return f"{8 * nbytes / self.values:.4f} bits per weight"

    def size(self, group: Group, option: str) -> int:
        """What ``option`` adds to the budget's measure."""
        return group.nbytes(option, self.info.alignment if self.recipe.budget_mib is not None else 1)

    @property
    def fixed(self) -> int:
        """The budget's measure outside the groups: the header (at its largest) and the other tensors, or the
        other weight matrices."""
        inside = {t.name for g in self.groups for t in g.tensors}
        if self.recipe.budget_bpw is not None:
            return sum(t.nbytes for t in self.info.tensors if is_matrix(t) and t.name not in inside)
        header = build_header(self.info, self.provenance(self.widest), {}, [t.offset for t in self.info.tensors])
        return len(header) + sum(align(t.nbytes, self.info.alignment) for t in self.info.tensors
                                 if t.name not in inside)


    @property
    def widest(self) -> dict[str, str]:
        """The formats of the longest provenance: every group changed, each to the format whose entries in it are
        the longest (it names each changed tensor with its format, so a short name that changes more tensors can
        outgrow a long one; the groups' entries add up, so the longest per group make the longest whole; a kept
        group's tensors are not named at all)."""
        widest: dict[str, str] = {}
        for g in self.groups:
            if g.formats:
                fmt = max(g.formats, key=lambda f, g=g: self._length({n: f for n in g.types(f)}))
                widest |= {n: fmt for n in g.types(fmt)}
        return {t.name: widest[t.name] for t in self.info.tensors if t.name in widest}

    def _length(self, formats: dict[str, str]) -> int:
        return sum(len(k.encode()) + len(v.encode()) for k, v in self.provenance(formats).items())

    def provenance(self, formats: dict[str, str]) -> dict[str, str]:
        """The provenance keys of the model in which the tensors ``formats`` names have those formats."""
        return mix_provenance(mix_recipe(formats, self.imatrix), SHA_PLACEHOLDER) if formats else {}


def plan_recipe(recipe: MixRecipe, info: ModelInfo | None = None, imatrix: Imatrix | None = None) -> Plan:
    """``recipe``'s groups on its model (read from ``recipe.model`` unless given); ``imatrix``: the importance matrix
    the recipe's model is built with."""
    info = info if info is not None else read_layout(recipe.model)
    groups = plan_groups(info, recipe.selection, recipe.formats, recipe.group,
                         source=f"{recipe.source} (model {info.path.name})", imatrix=imatrix_path(imatrix))
    return Plan(recipe, info, tuple(groups), imatrix)


@dataclass(frozen=True)
class Choice:
    assignment: dict[str, str]  # group -> its option (a format, or "keep")
    formats: dict[str, str]  # changed tensor -> format, in file order
    types: dict[str, str]  # changed tensor -> ggml type, in file order
    cost: float  # sum of the chosen cells' costs: the predicted total
    file_bytes: int  # the size of the file the candidate builder writes for it
    bpw: float  # bits per weight over the weight matrices


def choose(plan: Plan, costs: Mapping[str, float], exclude: Sequence[Mapping[str, str]] = ()) -> Choice:
    """The assignment of least total cost within the budget, other than those in ``exclude`` (assignments tried
    already); RecipeError naming the budget and the smallest achievable size when none fits, or saying that every
    assignment within it was tried, or naming the first cell without a cost."""
    where = plan.recipe.source
    options: dict[str, list[Option]] = {}
    for g in plan.groups:
        options[g.name] = [Option(KEEP, plan.size(g, KEEP), 0.0)]
        for fmt in g.formats:
            key = cell_key(g.name, fmt)
            if key not in costs:
                raise RecipeError(f"{where}: no cost for cell {key!r}")
            options[g.name].append(Option(fmt, plan.size(g, fmt), float(costs[key])))
    fixed = plan.fixed
    try:
        solution = solve(options, plan.limit - fixed, exclude)
    except Infeasible as err:
        if err.exhausted:
            raise RecipeError(f"{where}: every assignment within {plan.budget} was tried already "
                              f"({err.exhausted})") from None
        least = fixed + err.smallest
        what = "file size" if plan.recipe.budget_mib is not None else "average over the weight matrices"
        raise RecipeError(f"{where}: {plan.budget} is below the smallest {what} this recipe can reach, "
                          f"{plan.measure(least)} ({least} bytes, every group in its smallest format)") from None
    formats: dict[str, str] = {}
    types: dict[str, str] = {}
    for g in plan.groups:
        option = solution.choice[g.name]
        for name, type_name in g.types(option).items():
            formats[name], types[name] = option, type_name
    order = [t.name for t in plan.info.tensors if t.name in types]
    return Choice(assignment=solution.choice, formats={n: formats[n] for n in order},
                  types={n: types[n] for n in order}, cost=solution.cost,
                  # every group kept: the recipe's model is the original file itself
                  file_bytes=predict_file_size(plan.info, types, plan.provenance({n: formats[n] for n in order}))
                  if types else plan.info.file_size,
                  bpw=bits_per_weight(plan.info, types))


def load_costs(path: Path) -> dict[str, float]:
    """A JSON object mapping ``"<group>|<format>"`` to a finite number, e.g. the excess mean KLD of each cell."""
    data = parse_user_file(Path(path), RecipeError, missing="no such costs file", expected="a JSON file of costs",
                           parse=json.loads, invalid=json.JSONDecodeError, explain=lambda e: f"not JSON: {e}")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: must be a JSON object mapping \"<group>|<format>\" to a cost")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RecipeError(f"{path}: {key!r}: the cost must be a finite number, got {value!r}")
    return {key: float(value) for key, value in data.items()}
