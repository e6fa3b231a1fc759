"""`fakequant ppl` competes with llama-perplexity on memory and start-up (benchmarks/, ppl_alone): what it imports
to score perplexity is part of its peak RSS, so the libraries only reports and other formats need stay out."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "ml_dtypes", "tqdm", "fakequant.report")


@pytest.mark.parametrize("module", ["fakequant.cli", "fakequant.cli.score"])
def test_the_scoring_commands_import_no_report_or_plotting_library(module):
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_the_probe_sees_a_heavy_import():  # the check above can fail: a module that does import one is seen
    probe = f"import sys, fakequant.report; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "matplotlib" in done.stdout.split()
