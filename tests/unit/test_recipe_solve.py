"""recipe.solve and recipe.plan: the knapsack never exceeds the budget, finds the optimum that brute force finds, and
says when no assignment fits; a recipe's budget in bytes matches the files the assignments make."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakequant.errors import RecipeError
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.recipe.build import build_mix
from fakequant.recipe.groups import KEEP
from fakequant.recipe.plan import MIB, cell_key, choose, load_costs, plan_recipe
from fakequant.recipe.size import predict_file_size
from fakequant.recipe.solve import Infeasible, Option, smallest_size, solve
from fakequant.suite.criteria import load_criteria

options = st.lists(st.tuples(st.integers(0, 1000), st.floats(-1, 1, allow_nan=False)), min_size=1, max_size=4)
instances = st.lists(options, min_size=1, max_size=4)


def _groups(raw: list[list[tuple[int, float]]]) -> dict[str, list[Option]]:
    return {f"g{i}": [Option(f"o{j}", size, cost) for j, (size, cost) in enumerate(opts)]
            for i, opts in enumerate(raw)}


def _brute_force(groups: dict[str, list[Option]], limit: int) -> float | None:
    costs = [sum(o.cost for o in combo) for combo in itertools.product(*groups.values())
             if sum(o.size for o in combo) <= limit]
    return min(costs) if costs else None


@settings(max_examples=150, deadline=None)
@given(raw=instances, limit=st.integers(0, 3000))
def test_solver_finds_the_brute_force_optimum(raw: list[list[tuple[int, float]]], limit: int) -> None:
    groups = _groups(raw)
    best = _brute_force(groups, limit)
    if best is None:
        with pytest.raises(Infeasible) as err:
            solve(groups, limit)
        assert err.value.smallest == smallest_size(groups) > limit
        return
    solution = solve(groups, limit)
    chosen = [next(o for o in groups[g] if o.label == label) for g, label in solution.choice.items()]
    assert list(solution.choice) == list(groups)
    assert solution.size == sum(o.size for o in chosen) <= limit
    assert solution.cost == pytest.approx(sum(o.cost for o in chosen), abs=1e-12)
    scale = max(abs(o.cost) for opts in groups.values() for o in opts) or 1.0
    assert solution.cost <= best + 1e-6 * scale  # the solver's absolute gap, on costs scaled to 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n_groups=st.integers(5, 40))
def test_solver_never_exceeds_the_budget_on_file_sized_instances(data: st.DataObject, n_groups: int) -> None:
    """Sizes of real tensors (up to ~3e7 bytes) where floating-point tolerances are many bytes wide."""
    raw = data.draw(st.lists(st.lists(st.tuples(st.integers(10**6, 3 * 10**7), st.floats(-1e-3, 1e-2)),
                                      min_size=1, max_size=6), min_size=n_groups, max_size=n_groups))
    groups = _groups(raw)
    least = smallest_size(groups)
    most = sum(max(o.size for o in opts) for opts in groups.values())
    limit = data.draw(st.integers(least, most))
    solution = solve(groups, limit)
    assert solution.size == sum(next(o.size for o in groups[g] if o.label == lab) for g, lab in solution.choice.items())
    assert solution.size <= limit


@settings(max_examples=60, deadline=None)
@given(raw=st.lists(options, min_size=1, max_size=3), limit=st.integers(0, 2000))
def test_no_good_cuts_exclude_exactly_the_tried_assignments(raw: list[list[tuple[int, float]]], limit: int) -> None:
    """Solving again and again, each time excluding every assignment returned so far, walks through every
    assignment that fits, each once, cheapest first, then says none is left: a cut that also removed an untried
    assignment would end the walk early, one that let a tried one through would return it twice."""
    groups = _groups(raw)
    fitting = {tuple(o.label for o in combo): sum(o.cost for o in combo)
               for combo in itertools.product(*groups.values()) if sum(o.size for o in combo) <= limit}
    scale = max(abs(o.cost) for opts in groups.values() for o in opts) or 1.0
    tried: list[dict[str, str]] = []
    remaining = dict(fitting)
    while remaining:
        solution = solve(groups, limit, exclude=tried)
        labels = tuple(solution.choice.values())
        assert labels in remaining  # fits, and was not returned before
        assert solution.cost <= min(remaining.values()) + 1e-6 * scale  # the best of those not tried yet
        del remaining[labels]
        tried.append(solution.choice)
    with pytest.raises(Infeasible) as err:
        solve(groups, limit, exclude=tried)
    if fitting:
        assert err.value.exhausted == len(fitting)


def test_an_excluded_assignment_must_name_one_option_of_every_group() -> None:
    groups = {"a": [Option("keep", 1, 0.0), Option("x", 1, 1.0)], "b": [Option("keep", 1, 0.0)]}
    assert solve(groups, 2, exclude=[{"a": "keep", "b": "keep"}]).choice == {"a": "x", "b": "keep"}
    for bad in ({"a": "keep"}, {"a": "y", "b": "keep"}):
        with pytest.raises(RecipeError, match="is not one option for each group"):
            solve(groups, 2, exclude=[bad])


def test_known_instance_and_the_edges() -> None:
    groups = {"a": [Option("keep", 10, 0.0), Option("small", 6, 0.5), Option("big", 16, -0.2)],
              "b": [Option("keep", 10, 0.0), Option("small", 5, 0.1)]}
    assert solve(groups, 100).choice == {"a": "big", "b": "keep"}  # a negative cost is taken when it fits
    assert solve(groups, 20).choice == {"a": "keep", "b": "keep"}
    assert solve(groups, 19).choice == {"a": "keep", "b": "small"}  # the cheaper way down
    assert solve(groups, 11).choice == {"a": "small", "b": "small"} and solve(groups, 11).size == 11
    with pytest.raises(Infeasible) as err:
        solve(groups, 10)
    assert (err.value.limit, err.value.smallest) == (10, 11)
    for bad, words in (({"a": []}, "no option"), ({"a": [Option("x", 1, 0.0), Option("x", 2, 1.0)]}, "twice"),
                       ({"a": [Option("x", 1, math.nan)]}, "not a finite number")):
        with pytest.raises(RecipeError, match=words):
            solve(bad, 100)


# ------------------------------------------------------------------------------- a recipe against a tiny model


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


def _recipe(tmp_path: Path, budget: str, group: str = "kind", formats: str = '"q4_0", "q8_0", "q4_k", "bf16"',
            types: dict | None = None):
    tmp_path.mkdir(exist_ok=True)
    write_tiny_gguf(tmp_path / "tiny.gguf", n_layers=2, dim=256, tensor_types=types or {})
    (tmp_path / "c.txt").write_text("text")
    path = tmp_path / "criteria.toml"
    path.write_text(f'[defaults]\nmodel = "tiny.gguf"\ncorpus = "c.txt"\n[recipes.r]\nkinds = ["token_embd", '
                    f'"attn_q", "ffn_down"]\ngroup = "{group}"\nformats = [{formats}]\n{budget}\n')
    return load_criteria(path, strict=True).recipes["r"]


def test_the_fixed_header_bounds_every_assignment_when_formats_change_different_tensors(tmp_path: Path) -> None:
    # blk.N holds a Q8_0 attn_q and a Q4_0 ffn_down: iq4_nl (the longer name) changes attn_q alone, since it is
    # the size of Q4_0, and q3_k changes both, so q3_k's provenance is the longer one
    probe = plan_recipe(_recipe(tmp_path, "budget_mib = 1", "layer", '"iq4_nl", "q3_k"',
                                {"ffn_down": GGMLQuantizationType.Q4_0}))
    block = next(g for g in probe.groups if g.name == "blk.0")
    assert len(block.types("iq4_nl")) == 1 and len(block.types("q3_k")) == 2
    for combo in itertools.product(*(g.options for g in probe.groups)):
        a = dict(zip([g.name for g in probe.groups], combo, strict=True))
        linear = probe.fixed + sum(probe.size(g, a[g.name]) for g in probe.groups)
        assert linear >= _exact_size(probe, a), a


def _costs(plan, seed: int) -> dict[str, float]:
    import random

    rng = random.Random(seed)
    return {cell_key(g, f): rng.uniform(-0.001, 0.01) for g, f in plan.cells}


def _exact_size(plan, assignment: dict[str, str]) -> int:
    """The size of the recipe's model: the candidate with those formats, or the original when nothing changes."""
    types = {n: t for g in plan.groups for n, t in g.types(assignment[g.name]).items()}
    formats = {t.name: assignment[g.name] for g in plan.groups for t in g.tensors if t.name in types}
    formats = {t.name: formats[t.name] for t in plan.info.tensors if t.name in formats}
    return predict_file_size(plan.info, types, plan.provenance(formats)) if types else plan.info.file_size


@pytest.mark.parametrize("seed", range(3))
def test_recipe_choice_is_the_best_assignment_whose_file_fits(tmp_path: Path, seed: int) -> None:
    probe = plan_recipe(_recipe(tmp_path, "budget_mib = 1"))
    combos = [dict(zip([g.name for g in probe.groups], c, strict=True))
              for c in itertools.product(*(g.options for g in probe.groups))]
    exact = [_exact_size(probe, a) for a in combos]
    widest = sum(map(len, probe.provenance(probe.widest).values()))
    for a, size in zip(combos, exact, strict=True):
        # the knapsack's sizes bound the file's, by at most the padding and the provenance's length the assignment
        # leaves unused (it names only the changed tensors; the original has none)
        linear = probe.fixed + sum(probe.size(g, a[g.name]) for g in probe.groups)
        formats = {t.name: a[g.name] for g in probe.groups for t in g.tensors if a[g.name] != KEEP}
        formats = {t.name: formats[t.name] for t in probe.info.tensors if t.name in formats}
        assert linear - size >= 0
        if formats:  # (keeping everything is the original file, which has no provenance keys at all)
            unused = widest - sum(map(len, probe.provenance(formats).values()))
            assert linear - size < probe.info.alignment + unused
    budget = sorted(exact)[len(exact) * (seed + 1) // 4]
    plan = plan_recipe(_recipe(tmp_path / f"b{seed}", f"budget_mib = {budget / MIB!r}"))
    costs = _costs(plan, seed)
    choice = choose(plan, costs)
    assert choice.file_bytes == _exact_size(plan, choice.assignment) <= plan.limit
    fits = [sum(costs[cell_key(g, o)] for g, o in a.items() if o != KEEP)
            for a, size in zip(combos, exact, strict=True) if size + probe.info.alignment <= plan.limit]
    assert choice.cost <= min(fits) + 1e-12
    # the file the assignment makes has the predicted size
    built = build_mix(plan.recipe.model, choice.formats, tmp_path / "mixed.gguf")
    assert {s.name: s.stored_type for s in built.tensors} == choice.types
    assert built.output_bytes == choice.file_bytes  # a real sha256 is as long as the placeholder


def test_recipe_budget_in_bits_per_weight(tmp_path: Path) -> None:
    plan = plan_recipe(_recipe(tmp_path, "budget_bpw = 10.0"))
    choice = choose(plan, _costs(plan, 0))
    assert choice.bpw <= 10.0
    tight = plan_recipe(_recipe(tmp_path / "t", "budget_bpw = 1.5"))
    with pytest.raises(RecipeError, match=r"^recipes\.r: budget_bpw = 1\.5 is below the smallest average over the "
                                          r"weight matrices this recipe can reach, \d\.\d{4} bits per weight"):
        choose(tight, _costs(tight, 0))


def test_infeasible_budget_names_the_smallest_file(tmp_path: Path) -> None:
    plan = plan_recipe(_recipe(tmp_path, "budget_mib = 0.01"))
    with pytest.raises(RecipeError) as err:
        choose(plan, _costs(plan, 0))
    msg = str(err.value)
    assert msg.startswith("recipes.r: budget_mib = 0.01 is below the smallest file size this recipe can reach, ")
    smallest = {g.name: min(g.options, key=lambda o, g=g: g.nbytes(o)) for g in plan.groups}
    reported = int(re.search(r"\((\d+) bytes, every group in its smallest format\)", msg).group(1))
    assert 0 <= reported - _exact_size(plan, smallest) < plan.info.alignment


def test_costs_must_cover_every_cell(tmp_path: Path) -> None:
    plan = plan_recipe(_recipe(tmp_path, "budget_mib = 1"))
    costs = _costs(plan, 0)
    missing = next(iter(costs))
    del costs[missing]
    with pytest.raises(RecipeError, match=re.escape(f"recipes.r: no cost for cell {missing!r}")):
        choose(plan, costs)


@pytest.mark.parametrize(("text", "words"), [
    ("[1, 2]", "must be a JSON object"),
    ('{"a|q4_0": "x"}', "'a|q4_0': the cost must be a finite number"),
    ('{"a|q4_0": NaN}', "finite number"),
    ("{", "not JSON"),
])
def test_costs_file_mistakes(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "costs.json"
    path.write_text(text)
    with pytest.raises(RecipeError, match=re.escape(words)) as err:
        load_costs(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    path.write_text(json.dumps({"a|q4_0": 1, "b|q8_0": -0.5}))
    assert load_costs(path) == {"a|q4_0": 1.0, "b|q8_0": -0.5}


def test_with_an_importance_matrix_the_predicted_size_is_the_built_file(tmp_path: Path) -> None:
    """The importance matrix is named in the candidate recipe, so in the header: the plan predicts it, the builder
    writes it, the sizes match to the byte, and the matrix changed the quantized bytes."""
    import numpy as np

    from fakequant.gguf.check import read_layout
    from fakequant.gguf.layout import read_tensor_bytes
    from fakequant.quant.importance import write_imatrix
    from fakequant.recipe.imatrix import Imatrix
    from fakequant.store.cache import file_sha256

    recipe = _recipe(tmp_path, "budget_mib = 2")
    rng = np.random.default_rng(0)
    info = read_layout(recipe.model)
    path = write_imatrix(tmp_path / "imatrix.gguf", {
        t.name: (rng.uniform(0.1, 10, t.n_per_row).astype(np.float32), [4.0])
        for t in info.tensors if t.name.endswith(("attn_q.weight", "ffn_down.weight"))})
    imatrix = Imatrix(path, file_sha256(path), 1, 512, (0, 512), "llama-imatrix ...")
    plain, weighted = plan_recipe(recipe), plan_recipe(recipe, imatrix=imatrix)
    costs = {cell_key(g, f): -1.0 if f == "q4_k" else 1.0 for g, f in weighted.cells}  # every group to q4_k
    choice = choose(weighted, costs)
    assert set(choice.assignment.values()) <= {"q4_k", KEEP} and "q4_k" in choice.assignment.values()
    assert choice.file_bytes != choose(plain, costs).file_bytes  # the imatrix's path is in the provenance
    built = build_mix(recipe.model, choice.formats, tmp_path / "weighted.gguf", imatrix=imatrix)
    assert built.output_bytes == choice.file_bytes == (tmp_path / "weighted.gguf").stat().st_size
    other = build_mix(recipe.model, choice.formats, tmp_path / "plain.gguf")
    name = "blk.0.attn_q.weight"
    assert read_tensor_bytes(read_layout(built.output), name) != read_tensor_bytes(read_layout(other.output), name)
