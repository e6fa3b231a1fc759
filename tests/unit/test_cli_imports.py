"""`fakequant ppl` competes with llama-perplexity on memory and start-up (benchmarks/, ppl_alone): what it imports
to score perplexity is part of its peak RSS, so the libraries only reports and other formats need stay out."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakequant import cli

# importlib.metadata (1.7 MiB of RSS) and filelock (0.7 MiB): a scoring command asks for no package version and
# takes no lock, so they are imported where a version or a lock is asked for
HEAVY = ("matplotlib", "ml_dtypes", "tqdm", "fakequant.report", "importlib.metadata", "filelock")


@pytest.mark.parametrize("module", ["fakequant.cli", "fakequant.cli.score"])
def test_the_scoring_commands_import_no_report_or_plotting_library(module):
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_the_probe_sees_a_heavy_import():  # the check above can fail: a module that does import one is seen
    probe = f"import sys, fakequant.report; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "matplotlib" in done.stdout.split()


def test_the_parser_imports_no_numerical_or_model_library():
    # every command starts by parsing its arguments: gguf-py (and numpy under it) and llama-cpp-python are the
    # imports of the command that needs them, not of the parser
    probe = "import sys, fakequant.cli; print(' '.join(m for m in ('numpy', 'gguf', 'llama_cpp') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not Path("/proc/self/task").is_dir(),
                    reason="needs 2 cores and Linux's /proc to count threads")
def test_the_scoring_commands_load_numpy_without_its_blas_thread_pool(tmp_path):
    # numpy's OpenBLAS starts a spinning thread per core at import; ppl and compare call no BLAS routine
    probe = ("import os, sys; from fakequant import cli; cli.main(sys.argv[1:]); "
             "print(os.environ.get('OPENBLAS_NUM_THREADS'), len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    missing = str(tmp_path / "missing.gguf")
    seen = {}
    for argv in (["ppl", missing, "--corpus", missing], ["inspect", missing]):
        done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env)
        assert done.returncode == 0 and "missing.gguf" in done.stderr  # the command ran and failed on the file
        seen[argv[0]] = done.stdout.split()
    assert seen["ppl"] == ["1", "1"]  # the main thread alone, numpy loaded
    assert seen["inspect"][0] == "None" and int(seen["inspect"][1]) > 1


def test_only_the_console_process_freezes_the_objects_of_its_imports(tmp_path):
    # frozen objects are never collected: right for a process that ends with its command, wrong for a caller
    missing = str(tmp_path / "missing.gguf")
    before = gc.get_freeze_count()
    assert cli.main(["inspect", missing]) == 2
    assert gc.get_freeze_count() == before
    probe = ("import atexit, gc, sys; from fakequant import cli; "
             "atexit.register(lambda: print(gc.get_freeze_count() > 0)); "
             f"sys.argv = ['fakequant', 'inspect', {missing!r}]; cli.run()")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (done.returncode, done.stdout.split()) == (2, ["True"]) and "missing.gguf" in done.stderr
