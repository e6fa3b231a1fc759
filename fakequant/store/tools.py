"""llama.cpp's reference tools, built from the very source the installed llama-cpp-python was built from.

The cross-check tests and the benchmarks compare fakequant with ``llama-perplexity``, ``llama-bench`` and
``llama-quantize`` (the recipe uses ``llama-imatrix``, the drift check ``llama-eval-callback``). Comparing against a
different llama.cpp would compare two versions, so :func:`build` fetches the source distribution of the installed
llama-cpp-python (same version, from PyPI, via ``pip download``), builds only those targets from its
``vendor/llama.cpp`` and installs the binaries under ``cache_dir("tools")/llama.cpp-<version>-<cpu level>/bin``.
The ``bin`` folder appears in one rename, under a lock, only when all binaries are built: a half-built tree never
looks finished, and a second run costs a directory listing.

``python -m fakequant.store.tools build`` (the Makefile's ``tools`` target) builds them;
``python -m fakequant.store.tools path`` prints where they are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from fakequant.errors import AssetError
from fakequant.store.cache import cache_dir, locked

# llama-imatrix: the importance matrix of the recipe and the stock anchors; llama-eval-callback (an example, hence
# LLAMA_BUILD_EXAMPLES): the per-layer sums the drift capture is checked against.
TOOLS = ("llama-perplexity", "llama-bench", "llama-quantize", "llama-imatrix", "llama-eval-callback")
PACKAGE = "llama-cpp-python"

# The CPU kernels of the Makefile's llama-cpp-python build (its CPU_CMAKE_ARGS): on x86-64 one fixed instruction set
# on every machine, so the tools and the runtime compute the same roundings everywhere; elsewhere this CPU's own.
X86_64_V3 = ("-DGGML_NATIVE=OFF", "-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_BMI2=ON",
             "-DGGML_FMA=ON", "-DGGML_F16C=ON")


def cpu_options(machine: str | None = None) -> tuple[str, ...]:
    """The CMake options that choose the CPU kernels on ``machine`` (default: this one, as ``uname -m`` names it)."""
    return X86_64_V3 if (machine or platform.machine()) in ("x86_64", "AMD64") else ("-DGGML_NATIVE=ON",)


# Static binaries (nothing to find at run time), the CPU kernels of the runtime, and nothing that needs the network
# or extra libraries.
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    *cpu_options(),
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=ON",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_COMMON=ON",
)


def installed_version() -> str:
    version = llama_cpp_version()
    if version is None:
        raise AssetError(f"{PACKAGE}: not installed; run `make setup`")
    return version


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python's version (None: not installed). It pins the vendored llama.cpp source (the
    tools are built from it); cache keys hold :func:`llama_cpp_build`, which adds the kernels it was compiled for."""
    import importlib.metadata  # here: 1.7 MiB of a scoring command's peak RSS, which asks for no version

    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def llama_cpp_build() -> str | None:
    """The installed llama-cpp-python's version and the CPU features its kernels were compiled for (llama.cpp's system
    info line; None: not installed). Two builds of one version with other SIMD kernels round differently, so every
    cache key of something llama.cpp computed holds both."""
    version = llama_cpp_version()
    if version is None:
        return None
    import llama_cpp  # only here: the tools' build and path commands run without loading the library

    return f"{version} {llama_cpp.llama_print_system_info().decode().strip()}"


def tools_home() -> Path:
    """Keyed by the version and the CPU options: tools built for other kernels are never taken for these."""
    level = "x86-64-v3" if cpu_options() == X86_64_V3 else "native"
    return cache_dir("tools") / f"llama.cpp-{installed_version()}-{level}"


def bin_dir() -> Path:
    return tools_home() / "bin"


def tool_path(name: str) -> Path | None:
    """The built binary ``name`` (e.g. ``"llama-perplexity"``), or None when the tools have not been built."""
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}")
    try:
        path = bin_dir() / name
    except AssetError:
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


def build(*, jobs: int | None = None, quiet: bool = False) -> Path:
    """Build the tools if they are not built yet; return their ``bin`` folder. Safe to run concurrently."""
    home = tools_home()
    home.mkdir(parents=True, exist_ok=True)
    final = home / "bin"
    with locked(home):
        if all((final / name).is_file() for name in TOOLS):
            return final
        version = installed_version()
        start = time.monotonic()
        # Source and build folders stay until success, so a retry after a failure rebuilds incrementally
        # (tar keeps the archive's mtimes, so re-extracted unchanged sources are not recompiled).
        work = home / "work"
        source = _fetch_source(version, work, quiet)
        build_dir = work / "build"
        _run(["cmake", "-S", str(source), "-B", str(build_dir), *_generator(), *CMAKE_OPTIONS],
             "cmake configure", quiet)
        _run(["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(jobs or os.cpu_count() or 2),
              "--target", *TOOLS], "cmake build", quiet)
        staging = Path(tempfile.mkdtemp(prefix=".bin.tmp-", dir=home))
        staging.chmod(0o755)  # mkdtemp makes it 0700
        try:
            for name in TOOLS:
                built = build_dir / "bin" / name
                if not built.is_file():
                    raise AssetError(f"{build_dir}: the build did not produce bin/{name}")
                shutil.copy2(built, staging / name)
            (staging / "build.json").write_text(json.dumps({
                "llama_cpp_python": version, "cmake_options": list(CMAKE_OPTIONS),
                "build_seconds": round(time.monotonic() - start, 1)}, indent=2) + "\n")
            if final.exists():  # a partial folder from some older layout: replace it whole
                shutil.rmtree(final)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(work, ignore_errors=True)
        return final


def _generator() -> list[str]:
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def _fetch_source(version: str, tmp: Path, quiet: bool) -> Path:
    """Download the sdist with pip (its HTTP cache makes a repeat fast) and extract only vendor/llama.cpp."""
    shutil.rmtree(tmp / "sdist", ignore_errors=True)
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          "--disable-pip-version-check", "--quiet", "-d", str(tmp / "sdist"), f"{PACKAGE}=={version}"],
         f"{PACKAGE}=={version} source download", quiet)
    sdists = list((tmp / "sdist").glob("*.tar.gz"))
    if len(sdists) != 1:
        raise AssetError(f"{PACKAGE}=={version}: expected one source archive, pip downloaded {len(sdists)}")
    prefix = f"{sdists[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
    with tarfile.open(sdists[0]) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise AssetError(f"{sdists[0].name}: no vendor/llama.cpp inside the source archive")
        tar.extractall(tmp / "src", members=members, filter="data")
    return tmp / "src" / prefix.rstrip("/")


def _run(cmd: list[str], what: str, quiet: bool) -> None:
    if not quiet:
        print(f"fakequant tools: {what}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise AssetError(f"{what}: {cmd[0]} not found; install it (cmake, a C++ compiler)") from err
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-20:]
        print("\n".join(tail), file=sys.stderr)
        last = tail[-1] if tail else "(no output)"
        raise AssetError(f"{what}: `{' '.join(cmd[:3])} ...` failed with status {proc.returncode}: {last}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakequant.store.tools", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "path"))
    parser.add_argument("-j", "--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        if args.action == "build":
            print(build(jobs=args.jobs))
        else:
            missing = [name for name in TOOLS if tool_path(name) is None]
            if missing:
                print(f"not built: {', '.join(missing)}; run `make tools`", file=sys.stderr)
                return 1
            print(bin_dir())
    except AssetError as err:
        print(f"fakequant tools: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
