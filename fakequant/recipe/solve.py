"""One option per group, the lowest total cost within a size limit: a multiple-choice knapsack, solved exactly as an
integer program (scipy.optimize.milp, HiGHS).

Variables x[g, o] in {0, 1}; each group takes exactly one option (sum over o of x[g, o] = 1); the sizes of the chosen
options add up to at most ``limit``; the objective is the sum of their costs. Costs may be negative (an option
measured as better than keeping the tensor, within noise). Sizes are integers (bytes) and are checked exactly on the
chosen options: the solver works in floating point, and a combination that its tolerances let past the limit is
ruled out (that combination only) and the program solved again. The optimum is exact up to the solver's absolute
gap, 1e-6 of the largest |cost|.

A combination is ruled out by a no-good cut: the sum of its options' variables at most (number of groups - 1), so
any other combination, which differs in at least one group, still satisfies it. The same cut excludes the
assignments a caller has already tried (``exclude``), so the next solve gives the next best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from fakequant.errors import RecipeError

_RETRIES = 8  # solves, each after ruling out a combination that overshot the limit by a tolerance


@dataclass(frozen=True)
class Option:
    label: str
    size: int
    cost: float


@dataclass(frozen=True)
class Solution:
    choice: dict[str, str]  # group -> label of the chosen option
    size: int  # sum of the chosen options' sizes
    cost: float  # sum of their costs


class Infeasible(RecipeError):
    """Even the smallest option of every group exceeds the limit, or (``exhausted``: the number of excluded
    assignments) every assignment that fits was excluded."""

    def __init__(self, limit: int, smallest: int, exhausted: int = 0) -> None:
        super().__init__(f"every assignment within limit {limit} is among the {exhausted} excluded" if exhausted
                         else f"limit {limit} is below the smallest total size {smallest}")
        self.limit = limit
        self.smallest = smallest
        self.exhausted = exhausted


def smallest_size(groups: Mapping[str, Sequence[Option]]) -> int:
    return sum(min(o.size for o in options) for options in groups.values())


def solve(groups: Mapping[str, Sequence[Option]], limit: int,
          exclude: Sequence[Mapping[str, str]] = ()) -> Solution:
    """The options (one per group) of least total cost whose sizes add up to at most ``limit``, other than the
    assignments (group -> label) in ``exclude``; Infeasible when nothing else fits."""
    for name, options in groups.items():
        if not options:
            raise RecipeError(f"group {name!r} has no option")
        labels = [o.label for o in options]
        if len(set(labels)) != len(labels):
            raise RecipeError(f"group {name!r} lists an option twice")
        bad = [o for o in options if not math.isfinite(o.cost)]
        if bad:
            raise RecipeError(f"group {name!r}: option {bad[0].label!r} has cost {bad[0].cost!r}, not a finite number")
    smallest = smallest_size(groups)
    if smallest > limit:
        raise Infeasible(limit, smallest)
    if not groups:
        return Solution({}, 0, 0.0)
    flat = [o for options in groups.values() for o in options]
    starts = np.cumsum([0, *(len(options) for options in groups.values())])  # group i owns starts[i]:starts[i+1]
    sizes = np.array([o.size for o in flat], dtype=float)
    costs = np.array([o.cost for o in flat], dtype=float)
    # the solver's gap tolerances are absolute as well as relative: costs of order 1e-4 (mean KLDs) must not drown
    # in them, so they are scaled to order 1 (the optimum does not move)
    scale = float(np.max(np.abs(costs))) or 1.0
    one_each = np.zeros((len(groups), len(flat)))
    for i in range(len(groups)):
        one_each[i, starts[i]:starts[i + 1]] = 1.0
    constraints = [LinearConstraint(one_each, 1, 1), LinearConstraint(sizes[None, :], -np.inf, limit)]
    index = {(name, o.label): int(starts[i]) + k for i, (name, options) in enumerate(groups.items())
             for k, o in enumerate(options)}

    def no_good(picks: Sequence[int]) -> LinearConstraint:
        cut = np.zeros(len(flat))
        cut[list(picks)] = 1.0
        return LinearConstraint(cut[None, :], -np.inf, len(groups) - 1)

    for tried in exclude:
        if set(tried) != set(groups) or any((name, label) not in index for name, label in tried.items()):
            raise RecipeError(f"an excluded assignment {dict(tried)} is not one option for each group")
        constraints.append(no_good([index[(name, label)] for name, label in tried.items()]))
    for _ in range(_RETRIES):
        result = milp(costs / scale, integrality=np.ones(len(flat)), bounds=Bounds(0, 1), constraints=constraints,
                      options={"mip_rel_gap": 0.0})
        if result.x is None:
            if exclude and result.status == 2:  # infeasible: every fitting assignment was excluded
                raise Infeasible(limit, smallest, exhausted=len(exclude))
            raise RecipeError(f"the integer program found no solution within {limit} ({result.message})")
        picks = [int(starts[i] + np.argmax(result.x[starts[i]:starts[i + 1]])) for i in range(len(groups))]
        size = sum(flat[j].size for j in picks)
        if size <= limit:
            return Solution({name: flat[j].label for name, j in zip(groups, picks, strict=True)}, size,
                            sum(flat[j].cost for j in picks))
        # the solver's tolerances let this combination past the limit: rule out exactly it and solve again
        constraints.append(no_good(picks))
    raise RecipeError(f"the integer program kept exceeding the limit {limit} after {_RETRIES} tries")
