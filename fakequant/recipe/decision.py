"""The recipe model's go/no-go decision, made by the suite like any experiment's.

``fakequant recipe NAME`` ends by running ``python -m pytest --recipe NAME -k recipe_NAME tests/acceptance`` (the same
interpreter, in the project's folder, as :mod:`fakequant.suite.sweep` runs a sweep's cells): must-pass, perplexity,
conversations and speed on the chosen mixed model (:mod:`fakequant.recipe.experiment`). The run's JUnit and HTML
reports go beside the recipe's own report, the experiment's report to ``<report dir>/recipe_NAME/``; the decision is
read back from what the tests recorded (:func:`fakequant.suite.outcomes.load_experiment`,
:func:`fakequant.suite.verdict.decide`).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fakequant.i18n import dump_all, msg
from fakequant.quant.candidate import Recipe
from fakequant.recipe.experiment import experiment_name
from fakequant.suite.outcomes import clear_experiment, load_experiment
from fakequant.suite.sweep import project_root
from fakequant.suite.verdict import decide
from fakequant.suite.vocab import Artifact, Decision

Runner = Callable[[list[str], Path], int]


def suite_command(recipe: str, *, criteria_path: Path, report_dir: Path, out_dir: Path, root: Path) -> list[str]:
    """The pytest command that runs ``recipe_<recipe>`` alone."""
    out_dir = Path(out_dir)
    cmd = [sys.executable, "-m", "pytest", "--recipe", recipe, "-k", experiment_name(recipe),
           # `--opt=PATH`, one word: pytest picks its root folder from the path-like words before it knows these
           # options, and a separate path outside the project would make it miss pytest.ini
           f"--criteria={Path(criteria_path).resolve()}", f"--report-dir={Path(report_dir).resolve()}",
           "-p", "no:cacheprovider",
           # the main run's JUnit/HTML stay as they are: this run writes its own beside the recipe's report
           f"--junitxml={(out_dir / 'junit.xml').resolve()}", f"--html={(out_dir / 'report.html').resolve()}"]
    if (root / "tests" / "acceptance").is_dir():
        cmd.append("tests/acceptance")
    return cmd


def _run(cmd: list[str], cwd: Path) -> int:
    return subprocess.run(cmd, cwd=cwd).returncode


def suite_decision(recipe: str, *, criteria_path: Path, report_dir: Path, out_dir: Path, expected: Recipe | None,
                   runner: Runner | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the suite on ``recipe_<recipe>`` and return its decision: ``{"decision", "reasons", "report"}`` (the path
    of the experiment's summary). ``expected``: the mix this process chose; a run that tested another one (the cells
    changed in between) decides nothing."""
    name = experiment_name(recipe)
    report_dir = Path(report_dir)
    # whatever an earlier run recorded must not be read back as this run's decision if this one records nothing
    clear_experiment(report_dir, name)
    root = project_root(criteria_path)
    cmd = suite_command(recipe, criteria_path=criteria_path, report_dir=report_dir, out_dir=out_dir, root=root)
    log("$ " + shlex.join(cmd))
    rc = (runner or _run)(cmd, root)
    report = str(report_dir / name / "summary.md")
    data = load_experiment(report_dir, name)
    if not data.outcomes:
        return {"decision": str(Decision.INCONCLUSIVE), "report": report,
                **said([msg("recipe.no_outcome", name=name, rc=rc, command=shlex.join(cmd), root=str(root))])}
    tested = data.artifacts.get(Artifact.EXPERIMENT)
    tested_recipe = tested.get("recipe") if isinstance(tested, dict) else None
    if expected is not None and tested_recipe is not None and tested_recipe != expected.to_json():
        return {"decision": str(Decision.INCONCLUSIVE), "report": report,
                **said([msg("recipe.other_mix", recipe=recipe)])}
    verdict = decide(data)
    out = {"decision": str(verdict.decision), **said(verdict.reasons), "report": report}
    perplexity = data.artifacts.get(Artifact.PERPLEXITY)
    drift = perplexity.get("drift") if isinstance(perplexity, dict) else None
    if isinstance(drift, dict):  # where the error enters: the statements, not the per-layer table of its report
        out["drift"] = {k: v for k, v in drift.items() if k != "layers"}
    return out


def said(reasons: Sequence[str]) -> dict[str, Any]:
    """A decision's reasons as recipe.json keeps them: the English sentences, and their codes and values."""
    return {"reasons": [str(r) for r in reasons], "messages": {"reasons": dump_all(reasons)}}
