"""`fakequant ppl` competes with llama-perplexity on memory and start-up (benchmarks/, ppl_alone): what it imports
to score perplexity is part of its peak RSS, so the libraries only reports and other formats need stay out."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
