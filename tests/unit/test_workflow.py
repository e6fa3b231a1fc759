"""The CI workflow consumes exactly what `fakequant list --json` prints.

`.github/workflows/fakequant.yml` reads the listing with jq in its `list` job and fans out over the matrix in its
`experiment` job (`matrix.<key>`). Every jq path it reads must exist in the printed JSON, and the matrix keys the
job uses must be the matrix's keys, no more and no fewer: renaming a key on either side fails here, not in a future
CI run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from fakequant import cli

yaml = pytest.importorskip("yaml")  # PyYAML comes with gguf

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "fakequant.yml"

_JQ_PROGRAM = re.compile(r"\bjq\s+(?:-[a-zA-Z]+\s+)*(?:'([^']*)'|(\.[^\s|'\"]*))")
_PATH = re.compile(r"(?<![\w\])}\"])((?:\.[A-Za-z_]\w*(?:\[\])?)+)")
_MATRIX_REF = re.compile(r"\bmatrix\.([A-Za-z_]\w*)")


def _listing(tmp_path: Path, capsys) -> dict[str, Any]:
    (tmp_path / "model.gguf").write_bytes(b"not read by `list`")
    (tmp_path / "corpus.txt").write_text("text\n")
    criteria = tmp_path / "criteria.toml"
    criteria.write_text("""
[defaults]
model = "model.gguf"
corpus = "corpus.txt"

[experiments.layer5]
tensors = ["blk.5.ffn_norm.weight"]
format = "bf16"

[sweeps.norms]
layers = "0-1"
kinds = ["ffn_norm"]
formats = ["fp8_e4m3"]
""")
    assert cli.main(["list", "--json", f"--criteria={criteria}"]) == 0
    return json.loads(capsys.readouterr().out)


def _jobs() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def jq_programs(job: dict[str, Any]) -> list[str]:
    """The jq programs a job's steps run on experiments.json."""
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    return [m.group(1) or m.group(2) for m in _JQ_PROGRAM.finditer(runs)]


def missing_paths(program: str, data: Any) -> list[str]:
    """The paths of a jq pipeline (``.a.b``, ``.items[] | .name``) that ``data`` lacks; each stage is read against
    what the previous stage's first path led to, as jq does."""
    missing: list[str] = []
    context = data
    for stage in program.split("|"):
        paths = _PATH.findall(stage)
        following = context
        for path in paths:
            value = context
            for key in re.findall(r"\.([A-Za-z_]\w*)(\[\])?", path):
                name, each = key
                if not isinstance(value, dict) or name not in value:
                    missing.append(path)
                    value = None
                    break
                value = value[name]
                if each:
                    value = value[0] if isinstance(value, list) and value else None
            if path is paths[0] and value is not None:
                following = value
        context = following
    return missing


def matrix_keys_used(job: dict[str, Any]) -> set[str]:
    return set(_MATRIX_REF.findall(json.dumps(job)))


def test_the_list_job_reads_only_keys_that_fakequant_list_prints(tmp_path, capsys):
    data = _listing(tmp_path, capsys)
    programs = jq_programs(_jobs()["list"])
    assert ".matrix" in programs  # the job hands the matrix on as printed
    assert any(".experiments[]" in p for p in programs)
    for program in programs:
        assert missing_paths(program, data) == [], f"jq {program!r} reads what `fakequant list --json` lacks"


def test_the_matrix_job_uses_exactly_the_printed_matrix_keys(tmp_path, capsys):
    data = _listing(tmp_path, capsys)
    jobs = _jobs()
    matrix_jobs = [j for j in jobs.values() if "strategy" in j]
    assert len(matrix_jobs) == 1
    job = matrix_jobs[0]
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.list.outputs.matrix) }}"
    assert matrix_keys_used(job) == set(data["matrix"])
    assert data["matrix"]["experiment"] == ["layer5"]  # experiments only: sweep cells run per sweep


def test_a_renamed_key_on_either_side_is_caught(tmp_path, capsys):
    """The checks above can fail: a listing with a key renamed, or a workflow reading another key, is reported."""
    data = _listing(tmp_path, capsys)
    programs = jq_programs(_jobs()["list"])
    renamed = {**data, "jobs": data["matrix"]}
    del renamed["matrix"]
    assert any(missing_paths(p, renamed) for p in programs)
    entries = [{("title" if k == "name" else k): v for k, v in e.items()} for e in data["experiments"]]
    assert any(missing_paths(p, {**data, "experiments": entries}) for p in programs)
    assert missing_paths('.experiments[] | "\\(.nme)"', data) == [".nme"]
    job = next(j for j in _jobs().values() if "strategy" in j)
    other = json.loads(json.dumps(job).replace("matrix.experiment", "matrix.name"))
    assert matrix_keys_used(other) != set(data["matrix"])
