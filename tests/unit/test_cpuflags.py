"""The CPU key of CI's wheel cache: another instruction set is another key, the order of the flags is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fakequant.store.cpuflags import cpu_flags, cpu_key

ROOT = Path(__file__).resolve().parents[2]

AVX2 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2
"""
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes sha2 crc32 atomics fphp asimdhp\n"


def test_flags_are_read_from_the_first_processor_for_x86_and_arm():
    assert cpu_flags(AVX2) == ["avx", "avx2", "bmi2", "f16c", "fma", "fpu", "sse", "sse2", "sse4_1", "sse4_2", "ssse3"]
    assert cpu_flags(ARM) == ["aes", "asimd", "asimdhp", "atomics", "crc32", "evtstrm", "fp", "fphp", "sha2"]
    assert cpu_flags("processor\t: 0\n") == []


def test_the_key_changes_with_the_instruction_sets_and_not_with_their_order():
    flags = cpu_flags(AVX2)
    key = cpu_key(flags, "x86_64")
    assert len(key) == 16 and int(key, 16) >= 0
    assert cpu_key(list(reversed(flags)), "x86_64") == key
    assert cpu_key(cpu_flags(AVX2.replace("fpu sse ", "sse fpu ")), "x86_64") == key
    assert cpu_key([*flags, "avx512f", "avx512bw"], "x86_64") != key  # a runner with AVX-512
    assert cpu_key([f for f in flags if f != "avx2"], "x86_64") != key
    assert cpu_key(flags, "aarch64") != key


def test_the_module_prints_the_key_with_nothing_installed():
    """The workflow runs it before `make setup`: the standard library only (-S: no site-packages), from the
    checkout."""
    proc = subprocess.run([sys.executable, "-S", "-m", "fakequant.store.cpuflags"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip()
    assert len(key) == 16 and int(key, 16) >= 0


def test_every_pip_cache_of_the_workflow_is_keyed_on_the_cpu():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "fakequant.yml").read_text())
    # pip's cache is the folder the workflow names (the Makefile's own default would be a folder keyed by its options)
    assert workflow["env"]["PIP_CACHE_DIR"]
    for name, job in workflow["jobs"].items():
        steps = job["steps"]
        caches = [i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("actions/cache")
                  and str(s["with"]["path"]) == "${{ env.PIP_CACHE_DIR }}"]
        assert caches, name
        for i in caches:
            key = steps[i]["with"]["key"]
            assert "${{ steps.cpu.outputs.key }}" in key and "restore-keys" not in steps[i]["with"], name
            cpu = next(j for j, s in enumerate(steps) if s.get("id") == "cpu")
            assert cpu < i and "python -m fakequant.store.cpuflags" in steps[cpu]["run"], name
