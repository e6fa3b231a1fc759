"""Shared helpers of the benchmarks: run a command as a child and measure it, alternate commands, medians, ratios.

Every measurement is of a whole child process, reaped with :func:`os.wait4`, whose resource usage gives

- wall time (``time.perf_counter`` around start and reap, plus an ``fsync`` of the command's output file when it
  names one, so that a command that leaves dirty pages behind pays for writing them like one that fsyncs),
- peak RSS: GNU time's ``%M`` when ``/usr/bin/time`` exists (its child is forked from a small process; a child
  forked straight from this Python process would report at least this process's RSS, since Linux keeps
  ``ru_maxrss`` across ``exec``), else ``ru_maxrss``,
- bytes written to storage (``ru_oublock`` × 512: Linux counts a page when it is dirtied, so a file written and
  deleted before write-back still counts; tmpfs writes would not count, and :func:`check_disk` refuses tmpfs).

Children run without ``PYTHONDONTWRITEBYTECODE`` (set on this project's build machines): with it every Python
child recompiles fakequant and the test modules from source at each start, which no user's machine does.

Commands of one comparison run alternately (A B, B A, A B, ...) in one process, so drift in the machine's load
hits both sides alike; medians and their ratio are what the tables print.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

GNU_TIME = Path("/usr/bin/time")


class BenchError(RuntimeError):
    """A measured command failed; the message names the command and the tail of its output."""


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    seconds: float
    max_rss: int  # bytes
    written: int  # bytes written to storage by the child and its reaped descendants
    stdout: str
    stderr: str
    cpu_s: float = 0.0  # user + system CPU time of the child and its reaped descendants


def run_measured(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 output: Path | None = None, timeout: float = 3600, ok_codes: tuple[int, ...] = (0,)) -> Run:
    """Run ``cmd`` to completion and measure it; raise :class:`BenchError` when its exit status is not in
    ``ok_codes``.

    stdout/stderr go to temporary files (a pipe would need a reader thread and ``communicate`` reaps the child
    itself, losing its resource usage)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r", prefix="fq-rss-") as rss_file:
        argv = list(map(str, cmd))
        if GNU_TIME.is_file():
            argv = [str(GNU_TIME), "-f", "%M", "-o", rss_file.name, *argv]
        child_env = dict(os.environ if env is None else env)
        child_env.pop("PYTHONDONTWRITEBYTECODE", None)
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=child_env, cwd=cwd, stdin=subprocess.DEVNULL)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if output is not None and Path(output).is_file():
            fsync_file(Path(output))
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        max_rss = _time_rss(rss_file.name) or usage.ru_maxrss * 1024
    if proc.returncode not in ok_codes:
        tail = "\n".join((stderr.strip() or stdout.strip()).splitlines()[-15:])
        raise BenchError(f"`{shlex.join(map(str, cmd))}` exited with status {proc.returncode}:\n{tail}")
    return Run(seconds=seconds, max_rss=max_rss, written=usage.ru_oublock * 512, stdout=stdout,
               stderr=stderr, cpu_s=usage.ru_utime + usage.ru_stime)


def _time_rss(path: str) -> int | None:
    """Peak RSS in bytes from GNU time's output file (its last line; earlier ones may say the command failed)."""
    lines = Path(path).read_text().split()
    return int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else None


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Series:
    """The runs of one command over the rounds, plus any numbers parsed from its output."""

    name: str
    runs: list[Run] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    def add(self, run: Run, **numbers: float) -> None:
        self.runs.append(run)
        for key, value in numbers.items():
            self.extra.setdefault(key, []).append(value)

    @property
    def seconds(self) -> float:
        return median([r.seconds for r in self.runs])

    @property
    def max_rss(self) -> int:
        return max(r.max_rss for r in self.runs)

    @property
    def written(self) -> int:
        return int(median([r.written for r in self.runs]))

    def med(self, key: str) -> float:
        return median(self.extra[key])

    def spread(self) -> str:
        """min-max of the wall times, for judging the noise."""
        times = [r.seconds for r in self.runs]
        return f"{min(times):.2f}-{max(times):.2f}"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def alternate(steps: Mapping[str, Callable[[], Run | tuple[Run, dict[str, float]]]], rounds: int,
              *, between: Callable[[], None] | None = None, log: Callable[[str], None] = print) -> dict[str, Series]:
    """Run every step once per round, the order reversed every other round (A B, B A, ...); return the series.

    A step returns its :class:`Run`, or (run, numbers parsed from its output). ``between`` runs after each step
    (e.g. to delete an output file) and is not timed."""
    series = {name: Series(name) for name in steps}
    names = list(steps)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            got = steps[name]()
            run, numbers = got if isinstance(got, tuple) else (got, {})
            series[name].add(run, **numbers)
            log(f"    round {r + 1}/{rounds} {name:<28} {run.seconds:8.2f} s  rss {mib(run.max_rss):7.1f} MiB  "
                f"written {mib(run.written):8.1f} MiB")
            if between is not None:
                between()
    return series


def mib(n: float) -> float:
    return n / 2**20


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def verdict(value: float, target: float, *, at_most: bool = True) -> str:
    ok = value <= target if at_most else value >= target
    return "met" if ok else "MISSED"


def check_disk(folder: Path) -> str:
    """The filesystem type of ``folder``; written bytes are meaningless on tmpfs, so refuse it."""
    folder = Path(folder).resolve()
    best, fstype = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and (str(folder) + "/").startswith(parts[1].rstrip("/") + "/") and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    if fstype in ("tmpfs", "ramfs"):
        raise BenchError(f"{folder} is on {fstype}: bytes written cannot be measured there; set FAKEQUANT_BENCH_DIR")
    return fstype


def machine() -> dict[str, str]:
    """What the results table records about the machine and the moment."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    load = os.getloadavg()
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{int(mem) / 2**20:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def load_now() -> str:
    return f"{os.getloadavg()[0]:.2f}"
