"""A short key for the CPU's instruction sets, for caches of natively built binaries.

The Makefile builds llama-cpp-python with ``GGML_NATIVE=ON``: the wheel pip caches uses every SIMD extension of the
CPU it was built on (AVX-512 where present). CI runners of one label do not all have the same CPU, and a wheel built
on one dies with an illegal instruction on another; so CI keys pip's wheel cache on this (docs/ci.md). Only the
standard library: the workflow runs ``python -m fakequant.store.cpuflags`` before anything is installed.

On Linux the key covers the first processor's ``flags`` (x86) or ``Features`` (ARM) line of ``/proc/cpuinfo``, every
flag, sorted: flags that do not change what the compiler emits only cost a rebuild, a missed one could crash a run.
Elsewhere it falls back to what the platform module tells (machine and processor).
"""

from __future__ import annotations

import hashlib
import platform
import sys
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
FLAG_LINES = ("flags", "features")  # x86, ARM


def cpu_flags(cpuinfo: str) -> list[str]:
    """The sorted, distinct flags of the first processor listed in a ``/proc/cpuinfo`` text (empty if none)."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in FLAG_LINES:
            return sorted(set(value.split()))
    return []


def cpu_key(flags: list[str], machine: str) -> str:
    """16 hex digits of sha256 over the machine and its flags, independent of the flags' order."""
    text = "\n".join([machine, *sorted(set(flags))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def this_cpu_key() -> str:
    try:
        flags = cpu_flags(CPUINFO.read_text(errors="replace"))
    except OSError:  # not Linux
        flags = []
    return cpu_key(flags or [platform.processor()], platform.machine())


if __name__ == "__main__":
    sys.stdout.write(this_cpu_key() + "\n")
