"""Sweeps: cell cache (grow a sweep, only new cells run), the pytest command, the sensitivity map and `list --json`.

pytest itself is replaced by a fake runner that records outcomes the way the acceptance suite does, with numbers
derived from the cell's coordinates, so the map can be checked against what was "measured".
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from fakequant.cli import suite as commands
from fakequant.errors import CriteriaError
from fakequant.report.sensitivity import CellResult, SensitivityMap, layer_ranges, write
from fakequant.suite import sweep
from fakequant.suite.criteria import load_criteria
from fakequant.suite.outcomes import CheckOutcome, load_experiment, record_outcome, save_artifact
from fakequant.suite.session import experiment_record

ROOT = Path(__file__).resolve().parents[2]
MUST_PASS = ("build", "format", "load", "finite", "original_unchanged")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


def _criteria(tmp_path: Path, layers: str = "0-2", extra: str = "") -> Path:
    (tmp_path / "model.gguf").write_bytes(b"not really a model")
    (tmp_path / "corpus.txt").write_text("some text\n")
    path = tmp_path / "criteria.toml"
    path.write_text(f"""
[defaults]
model = "model.gguf"
corpus = "corpus.txt"
chunks = 2

[experiments.single5]
layers = "1"
kinds = ["ffn_norm"]
format = "fp8_e4m3"

[sweeps.norms]
layers = "{layers}"
kinds = ["ffn_norm", "attn_norm"]
formats = ["fp8_e4m3"]
{extra}
""")
    return path


def _measured(layer: int, kind: str) -> dict:
    """Deterministic fake numbers: layer 2's attn_norm is the sensitive one."""
    big = layer == 2 and kind == "attn_norm"
    return {"ln_ppl_ratio": 0.08 if big else 0.001 * (layer + 1), "ln_ppl_ratio_se": 0.0005,
            "kld_mean": 0.3 if big else 0.0001 * (layer + 1), "same_top_p": 0.9 if big else 0.995, "chunks": 2}


class FakePytest:
    """Stands in for `python -m pytest --sweep ...`: records each selected cell the way the suite would."""

    def __init__(self, criteria_path: Path, fail: tuple[str, ...] = (), partial: dict[str, str] | None = None,
                 measured=None):
        self.criteria_path = criteria_path
        self.measured = measured or _measured
        self.calls: list[list[str]] = []
        self.fail = fail
        self.partial = partial or {}  # cell → the check whose outcome gets lost (e.g. its test never ran)

    def __call__(self, cmd: list[str], cwd: Path) -> int:
        self.calls.append(cmd)
        selected = cmd[cmd.index("-k") + 1].split(" or ")
        report_dir = Path(next(a for a in cmd if a.startswith("--report-dir=")).split("=", 1)[1])
        crit = load_criteria(self.criteria_path)
        for name in selected:
            exp = crit.experiments[name]
            layer, kind, _ = sweep.cell_coordinates(exp)
            save_artifact(report_dir, name, "experiment", experiment_record(exp))
            if name in self.fail:
                record_outcome(report_dir, CheckOutcome(name, "perplexity", "perplexity", "error", "llama.cpp died"))
                continue
            m = self.measured(layer, kind)
            save_artifact(report_dir, name, "perplexity_comparison", m)
            status = "fail" if m["ln_ppl_ratio"] > math.log1p(0.05) else "pass"
            for check, category, st in [*((c, "must_pass", "pass") for c in MUST_PASS),
                                        ("numerical", "numerical", "pass"), ("perplexity", "perplexity", status)]:
                if self.partial.get(name) != check:
                    record_outcome(report_dir, CheckOutcome(name, check, category, st, "measured"))
        return 0


def _cells_run(call: list[str]) -> list[str]:
    return call[call.index("-k") + 1].split(" or ")


def test_threads_per_worker_never_oversubscribes():
    assert sweep.threads_per_worker(1, cores=2) == 2
    assert sweep.threads_per_worker(2, cores=2) == 1
    assert sweep.threads_per_worker(3, cores=2) == 1
    assert sweep.threads_per_worker(4, cores=16) == 4
    assert sweep.threads_per_worker(3, cores=16) == 5


def test_layer_ranges():
    assert layer_ranges([5, 0, 1, 2, 7, 8, 8]) == "0-2, 5, 7-8"
    assert layer_ranges([]) == ""


def test_sweep_runs_uncached_cells_only_and_grows_cheaply(tmp_path):
    path = _criteria(tmp_path)
    fake = FakePytest(path)
    run = sweep.run_sweep(path, "norms", jobs=2, report_dir=tmp_path / "reports", runner=fake, log=lambda s: None)
    assert len(fake.calls) == 1
    assert sorted(_cells_run(fake.calls[0])) == sorted(load_criteria(path).sweeps["norms"])
    call = fake.calls[0]
    assert call[call.index("--sweep") + 1] == "norms"
    assert call[call.index("-n") + 1] == "2" and "--dist" in call
    assert f"--threads={sweep.threads_per_worker(2)}" in call
    assert "single5" not in call[call.index("-k") + 1]

    # the map holds exactly what the cells recorded
    cell = run.smap.cell(2, "attn_norm", "fp8_e4m3")
    assert cell is not None and cell.ln_ppl_ratio == 0.08 and cell.decision == "STOP"
    assert run.smap.cell(0, "ffn_norm", "fp8_e4m3").decision == "GO"
    assert run.smap.ranked()[0].name == cell.name
    assert run.smap.layer_status() == {0: "GO", 1: "GO", 2: "STOP"}
    saved = json.loads((tmp_path / "reports" / "sweeps" / "norms" / "sensitivity.json").read_text())
    assert saved["layer_status"] == {"0": "GO", "1": "GO", "2": "STOP"}

    # same sweep again: nothing runs, same numbers
    again = sweep.run_sweep(path, "norms", jobs=1, report_dir=tmp_path / "reports", runner=fake, log=lambda s: None)
    assert len(fake.calls) == 1
    assert again.pytest_rc is None
    assert all(c.cached for c in again.smap.cells)
    assert [(c.name, c.ln_ppl_ratio, c.decision) for c in again.smap.cells] == \
        [(c.name, c.ln_ppl_ratio, c.decision) for c in run.smap.cells]

    # grow the sweep by layer 3: only layer 3's cells run
    path = _criteria(tmp_path, layers="0-3")
    fake.criteria_path = path
    grown = sweep.run_sweep(path, "norms", jobs=1, report_dir=tmp_path / "reports", runner=fake, log=lambda s: None)
    assert len(fake.calls) == 2
    assert sorted(_cells_run(fake.calls[1])) == ["sweep_norms_L03_attn_norm_fp8_e4m3",
                                                 "sweep_norms_L03_ffn_norm_fp8_e4m3"]
    assert "-n" not in fake.calls[1]
    assert len(grown.smap.cells) == 8 and grown.smap.meta["timing"]["cells_cached"] == 6


def test_cells_that_could_not_run_are_not_cached(tmp_path):
    path = _criteria(tmp_path, layers="0-1")
    broken = "sweep_norms_L01_ffn_norm_fp8_e4m3"
    fake = FakePytest(path, fail=(broken,))
    run = sweep.run_sweep(path, "norms", report_dir=tmp_path / "reports", runner=fake, log=lambda s: None)
    assert run.smap.cell(1, "ffn_norm", "fp8_e4m3").decision == "INCONCLUSIVE"
    assert run.smap.cell(1, "ffn_norm", "fp8_e4m3").ln_ppl_ratio is None
    fake.fail = ()
    sweep.run_sweep(path, "norms", report_dir=tmp_path / "reports", runner=fake, log=lambda s: None)
    assert _cells_run(fake.calls[1]) == [broken]


def test_a_cell_whose_tests_never_ran_is_an_error_and_the_cli_fails(tmp_path, monkeypatch, capsys):
    path = _criteria(tmp_path, layers="0")
    args = type("A", (), {"criteria": str(path), "name": "norms", "jobs": 1, "report_dir": str(tmp_path / "r"),
                           "gather": []})
    monkeypatch.setattr(sweep, "_run", lambda cmd, cwd: 5)  # pytest ran nothing
    assert commands.cmd_sweep(args) == 1
    smap = SensitivityMap.from_json(json.loads((tmp_path / "r/sweeps/norms/sensitivity.json").read_text()))
    assert {c.decision for c in smap.cells} == {"ERROR"}
    assert "could not be measured" in capsys.readouterr().err


def test_cache_key_follows_what_changes_results(tmp_path):
    path = _criteria(tmp_path, layers="0")
    cells = {e.name: e for e in load_criteria(path).experiments.values()}
    a = cells["sweep_norms_L00_ffn_norm_fp8_e4m3"]
    b = cells["sweep_norms_L00_attn_norm_fp8_e4m3"]
    key_a = sweep.cell_key(a)
    assert key_a != sweep.cell_key(b)
    # threads are measured not to change logits: same key whatever the worker count
    assert sweep.cell_key(load_criteria(path, threads=1).experiments[a.name]) == \
        sweep.cell_key(load_criteria(path, threads=7).experiments[a.name])
    # more chunks, or a different model file, is another measurement
    path.write_text(path.read_text().replace("chunks = 2", "chunks = 3"))
    assert sweep.cell_key(load_criteria(path).experiments[a.name]) != key_a
    path.write_text(path.read_text().replace("chunks = 3", "chunks = 2"))
    assert sweep.cell_key(load_criteria(path).experiments[a.name]) == key_a
    (tmp_path / "model.gguf").write_bytes(b"another model, same size")
    assert sweep.cell_key(load_criteria(path).experiments[a.name]) != key_a


def test_unknown_sweep_names_the_closest(tmp_path):
    path = _criteria(tmp_path)
    with pytest.raises(CriteriaError, match=r"sweeps\.norm: no such sweep; did you mean 'norms'"):
        sweep.run_sweep(path, "norm", runner=FakePytest(path), log=lambda s: None)


def test_list_json_gives_a_matrix_of_experiments_and_the_cells(tmp_path, capsys):
    path = _criteria(tmp_path, layers="0-1")
    args = type("A", (), {"criteria": str(path), "json": True})
    assert commands.cmd_list(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["matrix"] == {"experiment": ["single5"]}
    assert data["sweeps"]["norms"]["cells"] == [
        "sweep_norms_L00_ffn_norm_fp8_e4m3", "sweep_norms_L00_attn_norm_fp8_e4m3",
        "sweep_norms_L01_ffn_norm_fp8_e4m3", "sweep_norms_L01_attn_norm_fp8_e4m3"]
    by_name = {e["name"]: e for e in data["experiments"]}
    assert by_name["single5"]["pytest"] == ["-m", "single5"]
    assert by_name["sweep_norms_L01_attn_norm_fp8_e4m3"]["pytest"] == \
        ["--sweep", "norms", "-k", "sweep_norms_L01_attn_norm_fp8_e4m3"]


def _cell(layer: int, kind: str, decision: str, ratio: float | None = 0.001, kld: float | None = 0.001) -> CellResult:
    return CellResult(f"sweep_t_L{layer:02d}_{kind}_bf16", layer, kind, "bf16", decision, "why",
                      ratio, None if ratio is None else 0.0002, kld, None if kld is None else 0.99, 2)


def test_safe_line_names_only_layers_where_every_cell_is_go():
    smap = SensitivityMap("t", [
        _cell(0, "a", "GO"), _cell(0, "b", "GO"),
        _cell(1, "a", "GO"), _cell(1, "b", "CAUTION"),
        _cell(2, "a", "STOP", 0.2, 0.5), _cell(2, "b", "GO"),
        _cell(3, "a", "GO"), _cell(3, "b", "ERROR", None, None),
        _cell(4, "a", "GO"), _cell(4, "b", "GO"),
    ])
    line = smap.safe_line()
    assert "every cell GO): 0, 4 (2 of 5)" in line
    assert "(CAUTION): 1" in line and "(STOP): 2" in line and "not measured): 3" in line
    assert smap.ranked()[0].name == "sweep_t_L02_a_bf16"
    assert all(c.measured for c in smap.ranked())


def test_outputs_are_written_and_round_trip(tmp_path):
    cells = [_cell(layer, kind, "GO", 0.001 * layer, 0.0001 * (layer + 1)) for layer in range(4) for kind in "ab"]
    smap = SensitivityMap("t", cells, meta={"chunks": 2})
    paths = write(smap, tmp_path)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 5000
    back = SensitivityMap.from_json(json.loads(paths["json"].read_text()))
    assert back.cells == smap.cells
    md = paths["md"].read_text()
    assert "`blk.3.a`" in md.split("## Most sensitive")[1].splitlines()[4]  # rank 1 = highest KLD
    assert "+0.00300 ± 0.00020" in md


def test_github_workflow_fans_out_from_fakequant_list():
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "fakequant.yml").read_text())
    jobs = wf["jobs"]
    list_steps = " ".join(s.get("run", "") for s in jobs["list"]["steps"])
    assert "fakequant list --json" in list_steps
    matrix_job = next(j for j in jobs.values() if "strategy" in j)
    assert "fromJSON" in str(matrix_job["strategy"]["matrix"])
    runs = " ".join(s.get("run", "") for s in matrix_job["steps"])
    assert 'pytest -m "$EXPERIMENT"' in runs and matrix_job["env"]["EXPERIMENT"] == "${{ matrix.experiment }}"
    uploads = [s for s in matrix_job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and "reports/" in str(uploads[0]["with"]["path"])
    for cmd in (s.get("run") for j in jobs.values() for s in j["steps"]):
        if cmd:
            shlex.split(cmd.replace("${{", "").replace("}}", ""), comments=True)  # no unbalanced quotes


def test_results_recorded_by_another_pytest_run_are_adopted_not_rerun(tmp_path):
    """Several hosts ran `pytest --sweep norms` into a shared report dir: `fakequant sweep` only assembles the map."""
    path = _criteria(tmp_path, layers="0-1")
    cells = list(load_criteria(path).sweeps["norms"])
    FakePytest(path)(["pytest", "-k", " or ".join(cells), f"--report-dir={tmp_path / 'shared'}"], tmp_path)

    def must_not_run(cmd, cwd):
        raise AssertionError(f"ran {cmd}")

    run = sweep.run_sweep(path, "norms", report_dir=tmp_path / "shared", runner=must_not_run, log=lambda s: None)
    assert run.smap.meta["timing"]["cells_from_reports"] == 4 and run.pytest_rc is None
    assert run.smap.cell(1, "ffn_norm", "fp8_e4m3").ln_ppl_ratio == _measured(1, "ffn_norm")["ln_ppl_ratio"]

    # recorded with other settings (here: more chunks) → not this cell's result: it runs again
    path.write_text(path.read_text().replace("chunks = 2", "chunks = 3"))
    fake = FakePytest(path)
    sweep.run_sweep(path, "norms", report_dir=tmp_path / "shared", runner=fake, log=lambda s: None)
    assert sorted(_cells_run(fake.calls[0])) == sorted(cells)


def test_recorded_cells_are_adopted_only_for_the_same_model_corpus_and_llama_cpp(tmp_path, monkeypatch):
    """Adoption compares content, not file names: another model under the same name, another corpus, another
    llama-cpp-python, or a record that does not say what it was measured on, is measured again."""
    path = _criteria(tmp_path, layers="0")
    cells = list(load_criteria(path).sweeps["norms"])

    FakePytest(path)(["pytest", "-k", " or ".join(cells), f"--report-dir={tmp_path / 'shared'}"], tmp_path)
    fake = FakePytest(path)
    sweep.run_sweep(path, "norms", report_dir=tmp_path / "shared", runner=fake, log=lambda s: None)
    assert not fake.calls  # the same: adopted
    record = experiment_record(load_criteria(path).experiments[cells[0]])
    assert record["model_sha256"] and record["corpus_sha256"] and record["llama_cpp_python"]
    for change in ("model", "corpus", "version", "old record"):
        FakePytest(path)(["pytest", "-k", " or ".join(cells), f"--report-dir={tmp_path / 'shared'}"], tmp_path)
        if change == "model":
            (tmp_path / "model.gguf").write_bytes(b"another model under the same name")
        elif change == "corpus":
            (tmp_path / "corpus.txt").write_text("another text under the same name\n")
        elif change == "version":
            monkeypatch.setattr("fakequant.suite.session.llama_cpp_build", lambda: "0.0.1")
            monkeypatch.setattr(sweep, "llama_cpp_build", lambda: "0.0.1")
        else:
            for cell in cells:
                data = load_experiment(tmp_path / "shared", cell).artifacts["experiment"]
                del data["model_sha256"]
                save_artifact(tmp_path / "shared", cell, "experiment", data)
            for entry in (tmp_path / "home" / "cells").glob("*.json"):
                entry.unlink()  # as a cell cache would be without this cell
        fake = FakePytest(path)
        sweep.run_sweep(path, "norms", report_dir=tmp_path / "shared", runner=fake, log=lambda s: None)
        assert fake.calls and sorted(_cells_run(fake.calls[0])) == sorted(cells), change


def _collect(tmp_path: Path, *extra: str):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"--criteria={tmp_path / 'criteria.toml'}", f"--report-dir={tmp_path / 'reports'}",
           str(ROOT / "tests" / "acceptance"), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_plain_run_collects_no_sweep_cell_and_sweep_adds_them(tmp_path):
    _criteria(tmp_path, layers="0-1")
    plain = _collect(tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "[single5]" in plain.stdout and "sweep_norms" not in plain.stdout
    swept = _collect(tmp_path, "--sweep", "norms")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    for cell in load_criteria(tmp_path / "criteria.toml").sweeps["norms"]:
        assert f"test_perplexity[{cell}]" in swept.stdout
    wrong = _collect(tmp_path, "--sweep", "nrms")
    assert wrong.returncode != 0 and "--sweep nrms: no [sweeps.nrms]" in wrong.stdout + wrong.stderr


@pytest.mark.parametrize("check", ["numerical", "finite", "original_unchanged"])
def test_cells_missing_an_expected_check_are_not_cached(tmp_path, check):
    """A lost category (numerical) or one lost must-pass check among several (finite): not complete, not cached."""
    path = _criteria(tmp_path, layers="0")
    lost = "sweep_norms_L00_attn_norm_fp8_e4m3"
    fake = FakePytest(path, partial={lost: check})
    run = sweep.run_sweep(path, "norms", report_dir=tmp_path / "reports", runner=fake, log=lambda s: None)
    assert run.smap.cell(0, "attn_norm", "fp8_e4m3").decision == "INCONCLUSIVE"
    assert run.smap.cell(0, "attn_norm", "fp8_e4m3").headline.startswith(f"not measured: {check} ")
    assert run.smap.cell(0, "ffn_norm", "fp8_e4m3").decision == "GO"
    assert sweep.recorded_result(tmp_path / "reports", load_criteria(path).experiments[lost]) is None
    fake.partial = {}
    again = sweep.run_sweep(path, "norms", report_dir=tmp_path / "reports", runner=fake, log=lambda s: None)
    assert _cells_run(fake.calls[1]) == [lost]
    assert again.smap.cell(0, "attn_norm", "fp8_e4m3").decision == "GO"


def test_stale_outcomes_of_another_definition_are_never_taken_for_this_run(tmp_path):
    path = _criteria(tmp_path, layers="0")
    FakePytest(path)(["pytest", "-k", "sweep_norms_L00_ffn_norm_fp8_e4m3", f"--report-dir={tmp_path / 'r'}"],
                     tmp_path)
    path.write_text(path.read_text().replace("chunks = 2", "chunks = 5"))
    run = sweep.run_sweep(path, "norms", report_dir=tmp_path / "r", runner=lambda cmd, cwd: 4, log=lambda s: None)
    stale = run.smap.cell(0, "ffn_norm", "fp8_e4m3")
    assert stale.decision == "ERROR" and stale.ln_ppl_ratio is None and "other settings" in stale.headline
    assert not list((tmp_path / "home" / "cells").glob("*.json"))


def _floored(layer: int, kind: str) -> dict:
    """Layer 0's ffn_norm has the largest total KLD, nearly all of it floor; layer 1's attn_norm has no placebo."""
    total, floor, own, ci = {(0, "ffn_norm"): (0.05, 0.049, 0.001, [0.0008, 0.0012]),
                             (0, "attn_norm"): (0.02, 0.001, 0.019, [0.017, 0.021]),
                             (1, "ffn_norm"): (0.004, 0.0039, 0.0001, [-0.0002, 0.0004])}.get(
                                 (layer, kind), (0.03, None, None, None))
    m = {"ln_ppl_ratio": 0.001, "ln_ppl_ratio_se": 0.0005, "kld_mean": total, "same_top_p": 0.99, "chunks": 2}
    if floor is not None:
        m["placebo"] = {"kld_mean": floor, "ln_ppl_ratio": 0.0009, "same_top_p": 0.99, "chunks": 2}
        m["excess"] = {"kld_mean": own, "kld_mean_ci": ci, "kld_mean_resolved": ci[0] > 0, "ln_ppl_ratio": 1e-4,
                       "ln_ppl_ratio_ci": [-1e-4, 3e-4], "ln_ppl_ratio_resolved": False, "chunks": 2, "level": 0.95}
    return m


def test_cells_rank_by_the_format_s_own_effect_and_carry_the_floor(tmp_path):
    path = _criteria(tmp_path, layers="0-1")
    run = sweep.run_sweep(path, "norms", report_dir=tmp_path / "r", runner=FakePytest(path, measured=_floored),
                          log=lambda s: None)
    assert [(c.layer, c.kind) for c in run.smap.ranked()] == [(0, "attn_norm"), (0, "ffn_norm"), (1, "ffn_norm"),
                                                               (1, "attn_norm")]  # by total: 0 ffn, 1 attn, ...
    own = run.smap.cell(0, "attn_norm", "fp8_e4m3")
    assert (own.placebo_kld_mean, own.excess_kld_mean, own.excess_kld_mean_ci, own.excess_resolved) == \
        (0.001, 0.019, (0.017, 0.021), True)
    bare = run.smap.cell(1, "attn_norm", "fp8_e4m3")
    assert (bare.placebo_kld_mean, bare.excess_kld_mean, bare.excess_kld_mean_ci) == (None, None, None)
    saved = json.loads((tmp_path / "r/sweeps/norms/sensitivity.json").read_text())
    cells = {c["name"]: c for c in saved["cells"]}
    assert cells[own.name]["excess_kld_mean_ci"] == [0.017, 0.021] and cells[own.name]["placebo_kld_mean"] == 0.001
    assert cells[bare.name]["excess_kld_mean"] is None and saved["ranked"][-1] == bare.name
    md = (tmp_path / "r/sweeps/norms/sensitivity.md").read_text()
    rows = md.split("## Most sensitive")[1].split("\n\n")[1].splitlines()[2:]
    assert "`blk.0.attn_norm`" in rows[0] and "| 0.019 [0.017, 0.021] | 0.001 | 0.02 |" in rows[0]
    assert rows[2].count("(not resolved)") == 1 and "no placebo †" in rows[3] and "† measured without a placebo" in md
    # back from the cell cache (a version whose entries carry the floor): the same numbers
    again = sweep.run_sweep(path, "norms", report_dir=tmp_path / "r", runner=FakePytest(path), log=lambda s: None)
    assert [replace(c, cached=False) for c in again.smap.cells] == run.smap.cells


def test_the_map_draws_the_floor_beside_the_excess_and_old_cells_still_load(tmp_path):
    plain = [_cell(layer, kind, "GO") for layer in range(3) for kind in "ab"]
    floored = [replace(c, placebo_kld_mean=0.0008, excess_kld_mean=0.0002, excess_kld_mean_ci=(0.0001, 0.0003),
                       excess_resolved=True) for c in plain]
    widths = []
    for name, cells in (("plain", plain), ("floored", floored)):
        png = write(SensitivityMap("t", cells), tmp_path / name)["png"].read_bytes()
        widths.append(int.from_bytes(png[16:20], "big"))
    assert widths[1] > widths[0]  # one more map: the floor
    old = {k: v for k, v in plain[0].to_json().items() if "placebo" not in k and "excess" not in k}
    assert CellResult.from_json(old) == plain[0] and not plain[0].has_placebo
