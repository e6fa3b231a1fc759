"""A sweep over two hosts gives the one-host map, and assembling it measures nothing.

Two execnet gateways stand for two hosts (``popen//chdir=…//env:FAKEQUANT_HOME=…``, the machinery ``ssh=`` uses):
each has its own working directory (a copy of the suite's files), its own ``$FAKEQUANT_HOME`` (baseline, candidates,
cells: nothing shared) and its own report directory; only the default model and corpus are the same read-only files.
pytest-xdist runs the sweep's cells on them, ``fakequant sweep NAME --gather`` brings the hosts' cells back (one host
over its gateway, one as a copied directory) into a third, empty place and draws the map, with measuring forbidden.
The map must equal, number for number, the one ``fakequant sweep NAME`` draws on one host; a cell lost on a host must
fail the assembly instead of being measured again or silently missing.

Cost: two cells of the default model × 2 chunks of 128 tokens, the base scored once per host and once on the single
host (about half a minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fakequant import cli
from fakequant.suite import sweep

ROOT = Path(__file__).resolve().parents[2]
SWEEP = "hosts"


def _criteria(folder: Path, model: Path, corpus: Path) -> Path:
    path = folder / "criteria.toml"
    path.write_text(f"""
[defaults]
model = "{model}"
corpus = "{corpus}"

[defaults.settings]
n_ctx = 128
n_batch = 128
n_ubatch = 128

[sweeps.{SWEEP}]
layers = "28-29"
kinds = ["ffn_norm"]
formats = ["fp8_e4m3"]
chunks = 2
""")
    return path


def _host(folder: Path) -> Path:
    """A host's working directory: what `make setup` on a clone gives the suite (its pytest files)."""
    folder.mkdir(parents=True)
    for name in ("pytest.ini", "conftest.py"):
        shutil.copy2(ROOT / name, folder / name)
    shutil.copytree(ROOT / "tests" / "acceptance", folder / "tests" / "acceptance")
    (folder / "home").mkdir()
    return folder


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "FAKEQUANT_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}


def _cells(report_dir: Path) -> set[str]:
    return {p.parent.name for p in report_dir.glob(f"sweep_{SWEEP}_*/.data")}


def _map(report_dir: Path) -> list[dict]:
    """The map's cells, without the one field that says where a result came from (measured here, or taken)."""
    data = json.loads((report_dir / "sweeps" / SWEEP / "sensitivity.json").read_text())
    return [{k: v for k, v in cell.items() if k != "cached"} for cell in data["cells"]]


def _forbid_measuring(monkeypatch):
    def measure(cmd, cwd):
        raise AssertionError(f"the assembly measured cells: {cmd}")
    monkeypatch.setattr(sweep, "_run", measure)


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory, default_assets):
    """The sweep run once over two hosts and once on one; returns (criteria, host A, host B, one host's reports)."""
    pytest.importorskip("llama_cpp")
    model, corpus = default_assets
    base = tmp_path_factory.mktemp("hosts")
    criteria = _criteria(base, model, corpus)
    hosts = [_host(base / name) for name in ("host_a", "host_b")]
    controller = _host(base / "controller")
    specs = [f"popen//chdir={h}//env:FAKEQUANT_HOME={h / 'home'}" for h in hosts]
    cmd = [sys.executable, "-m", "pytest", "--sweep", SWEEP, "-m", f"sweep_{SWEEP}",
           "--dist", "loadgroup", "--threads=1", f"--criteria={criteria}", "--report-dir=reports",
           "-p", "no:cacheprovider", "-q", *(a for s in specs for a in ("--tx", s))]
    done = subprocess.run(cmd, cwd=controller, env=_env(controller / "home"), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    one = base / "one_host"
    one.mkdir()
    done = subprocess.run([sys.executable, "-m", "fakequant", "sweep", SWEEP, f"--criteria={criteria}",
                           f"--report-dir={one / 'reports'}"], cwd=ROOT, env=_env(one / "home"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return criteria, hosts[0], hosts[1], one / "reports"


def test_each_host_measured_its_own_cells_into_its_own_places(two_hosts):
    criteria, host_a, host_b, _ = two_hosts
    a, b = _cells(host_a / "reports"), _cells(host_b / "reports")
    expected = set(sweep.load_criteria(criteria).sweeps[SWEEP])
    assert a and b and not a & b and a | b == expected  # both hosts worked, each cell on one of them
    for host in (host_a, host_b):
        assert list((host / "home").glob("candidates/*.gguf")), f"{host.name} built its own candidates"
    assert not _cells(criteria.parent / "controller" / "reports")  # the controller measured nothing


def test_the_gathered_map_equals_the_one_host_map_and_nothing_is_measured(two_hosts, tmp_path, monkeypatch):
    criteria, host_a, host_b, one_host = two_hosts
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))  # no cell cache to lean on
    _forbid_measuring(monkeypatch)
    merged = tmp_path / "reports"
    rc = cli.main(["sweep", SWEEP, f"--criteria={criteria}", f"--report-dir={merged}",
                   "--gather", f"popen//chdir={host_a}::reports", str(host_b / "reports")])
    assert rc == 0
    assembled, reference = _map(merged), _map(one_host)
    assert [c["name"] for c in assembled] == [c["name"] for c in reference] and len(reference) == 2
    assert assembled == reference
    assert all(c["excess_kld_mean"] is not None and c["ln_ppl_ratio_se"] is not None for c in assembled)
    meta = json.loads((merged / "sweeps" / SWEEP / "sensitivity.json").read_text())["meta"]["timing"]
    assert meta["cells_run"] == 0 and meta["cells_from_reports"] == 2
    assert _cells(merged) == _cells(host_a / "reports") | _cells(host_b / "reports")


def test_a_cell_lost_on_a_host_fails_the_assembly_and_is_not_measured(two_hosts, tmp_path, monkeypatch, capsys):
    criteria, host_a, host_b, _ = two_hosts
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))
    _forbid_measuring(monkeypatch)
    partial = tmp_path / "host_b_reports"
    shutil.copytree(host_b / "reports", partial)
    lost = sorted(_cells(partial))[0]
    shutil.rmtree(partial / lost)
    merged = tmp_path / "reports"
    rc = cli.main(["sweep", SWEEP, f"--criteria={criteria}", f"--report-dir={merged}",
                   "--gather", str(host_a / "reports"), str(partial)])
    assert rc == 1
    cells = {c["name"]: c for c in _map(merged)}
    assert len(cells) == 2 and cells[lost]["decision"] == "ERROR"
    assert "not recorded by any gathered host" in cells[lost]["headline"]
    assert all(c["decision"] != "ERROR" for name, c in cells.items() if name != lost)
    assert "could not be measured" in capsys.readouterr().err


def test_a_gather_source_that_is_not_a_directory_is_a_one_line_error(tmp_path, capsys):
    criteria = _criteria(tmp_path, tmp_path / "m.gguf", tmp_path / "c.txt")
    (tmp_path / "m.gguf").write_bytes(b"x")
    (tmp_path / "c.txt").write_text("x")
    rc = cli.main(["sweep", SWEEP, f"--criteria={criteria}", f"--report-dir={tmp_path / 'r'}",
                   "--gather", str(tmp_path / "nowhere")])
    assert rc == 2
    assert "--gather" in capsys.readouterr().err
