"""``fakequant recipe NAME --plan``: a recipe's groups, the formats each allows and their sizes; with ``--costs``,
the assignment the solver picks within the budget, its predicted size and the llama-quantize command."""

from __future__ import annotations

import argparse
import difflib
import shlex
from pathlib import Path

from fakequant.errors import CriteriaError, FakequantError
from fakequant.recipe.command import quantize_command
from fakequant.recipe.groups import KEEP
from fakequant.recipe.plan import MIB, Plan, choose, load_costs, plan_recipe
from fakequant.recipe.size import bits_per_weight
from fakequant.store.tools import tool_path
from fakequant.suite.criteria import MixRecipe, load_criteria

TYPES_FILE = "tensor_types.txt"


def cmd_recipe(args: argparse.Namespace) -> int:
    recipe, report_dir = _recipe(args.criteria, args.name, args.report_dir)
    if args.plan or args.costs is not None:
        plan = plan_recipe(recipe)
        _print_plan(plan)
        if args.costs is not None:
            _print_choice(plan, load_costs(Path(args.costs)))
        return 0
    if args.costs is not None:
        raise FakequantError("--costs goes with --plan: a full run measures the costs itself")
    from fakequant.recipe.run import run_recipe

    out = report_dir / "recipes" / recipe.name
    stock = [m.strip().upper() for m in args.stock.split(",") if m.strip()]
    results = run_recipe(recipe, out, stock=stock, criteria_path=Path(args.criteria), report_dir=report_dir)
    for line in summary_lines(results):
        print(line)
    print(f"report: {out / 'recipe.md'} (zh-TW: recipe.zh-TW.md), plot: {out / 'pareto.png'}")
    if (results.get("decision") or {}).get("report"):
        print(f"the suite's report of the chosen model: {results['decision']['report']}")
    return 0


def summary_lines(results: dict) -> list[str]:
    """One line per scored model, smallest first, then the decision."""
    lines = []
    rows = sorted(results["models"], key=lambda m: m.get("file_bytes") or float("inf"))
    for m in rows:
        if m.get("kld_mean") is None:
            lines.append(f"{m['name']:28}  {m.get('note') or 'not measured'}")
            continue
        check = ""
        if m.get("additivity"):
            a = m["additivity"]
            ratio = f"{a['ratio']:.2f}× predicted" if a.get("ratio") is not None else "predicted 0"
            check = f"  measured {ratio} ({'agrees' if a['agrees'] else 'misses'})"
        lines.append(f"{m['name']:28}  {m['file_bytes'] / MIB:8.2f} MiB  KLD {m['kld_mean']:.5f}  "
                     f"Δ ln PPL {m['ln_ppl_ratio']:+.5f}{check}")
    for sl in results.get("slices") or []:
        lines.append(f"{sl['name']} slice: chunks {sl['first_chunk']}–{sl['first_chunk'] + sl['chunks'] - 1} of "
                     f"{Path(sl['corpus']).name}, tokens [{sl['tokens'][0]}, {sl['tokens'][1]})")
    for m in rows:
        bias = m.get("bias")
        if bias and m.get("kind") == "recipe":
            lines.append(f"selection bias {m['name']}: KLD {bias['selection_kld_mean']:.5f} on the selection "
                         f"chunks, {bias['evaluation_kld_mean']:.5f} on the evaluation chunks")
    for t in results.get("tries") or []:
        lines.append(f"try {t['attempt']}: {t.get('name')}: {t.get('decision')} — {'; '.join(t.get('reasons') or [])}")
    decision = results.get("decision") or {}
    passed = results.get("passed")
    lines.append(f"decision: {decision.get('decision')} — {'; '.join(decision.get('reasons') or [])}"
                 + ("" if passed or not results.get("tries") else " (no try passed the suite)"))
    return lines


def _recipe(criteria: str, name: str, report_dir: str | None) -> tuple[MixRecipe, Path]:
    crit = load_criteria(criteria, report_dir=report_dir)
    if name in crit.recipe_errors:
        raise crit.recipe_errors[name]
    if name not in crit.recipes:
        known = list(crit.recipes)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; defined: {', '.join(known) or 'none'}"
        raise CriteriaError(f"{crit.path}: no [recipes.{name}] table{hint}")
    return crit.recipes[name], Path(crit.report_dir)


def _mib(nbytes: int) -> str:
    return f"{nbytes / MIB:.3f}"


def _print_plan(plan: Plan) -> None:
    info, recipe = plan.info, plan.recipe
    print(f"recipe {recipe.name}: {len(plan.groups)} groups ({recipe.group}), {len(plan.cells)} cells to measure; "
          f"{plan.budget}")
    print(f"model {info.path}: {_mib(info.file_size)} MiB, {bits_per_weight(info, {}):.3f} bits per weight over the "
          "weight matrices")
    width = max(len(g.name) for g in plan.groups)
    print(f"{'group':{width}}  tensors  {'keep':>14}  " + "  ".join(f"{f:>8}" for f in recipe.formats) + "  (MiB)")
    for g in plan.groups:
        source = "/".join(sorted({t.type_name for t in g.tensors}))
        cols = [f"{_mib(g.nbytes(f)):>8}" if f in g.formats else f"{'-':>8}" for f in recipe.formats]
        print(f"{g.name:{width}}  {len(g.tensors):7}  {source + ' ' + _mib(g.nbytes(KEEP)):>14}  " + "  ".join(cols))
    least = plan.fixed + sum(min(plan.size(g, o) for o in g.options) for g in plan.groups)
    most = plan.fixed + sum(max(plan.size(g, o) for o in g.options) for g in plan.groups)
    print(f"{plan.budget}: {plan.limit} bytes of {'file' if recipe.budget_mib is not None else 'weight matrices'}; "
          f"reachable {plan.measure(least)} … {plan.measure(most)}")
    print("('-': the format makes no tensor of the group smaller, or the rows of one it would change do not allow it)")


def _print_choice(plan: Plan, costs: dict[str, float]) -> None:
    choice = choose(plan, costs)
    print(f"assignment (predicted total cost {choice.cost:.6g}):")
    for group, option in choice.assignment.items():
        print(f"  {group}: {option}")
    print(f"predicted file {choice.file_bytes} bytes ({_mib(choice.file_bytes)} MiB), {choice.bpw:.4f} bits per "
          "weight over the weight matrices")
    command = quantize_command(plan.info, choice.types)
    tool = tool_path("llama-quantize") or "llama-quantize"
    argv = command.argv(plan.info.path, Path(f"{plan.recipe.name}.gguf"), Path(TYPES_FILE), tool=tool)
    print(f"llama-quantize command ({TYPES_FILE} below):")
    print(f"  {shlex.join(argv)}")
    print(f"{TYPES_FILE}:")
    for line in command.tensor_types().splitlines():
        print(f"  {line}")
