"""The GPU path, as far as a machine without a GPU can check it: the n_gpu_layers setting, the backend every report
records, a GPU setting refused on a CPU build, and the CMake arguments `make ... BACKEND=cuda` builds with."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fakequant.errors import CriteriaError, ModelRuntimeError
from fakequant.runtime import backend
from fakequant.runtime.settings import GPU_LAYERS_ENV, RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]


def test_n_gpu_layers_defaults_to_the_cpu_and_is_bounded(monkeypatch):
    monkeypatch.delenv(GPU_LAYERS_ENV, raising=False)
    assert RuntimeSettings().n_gpu_layers == 0
    assert RuntimeSettings().to_json()["n_gpu_layers"] == 0  # recorded with every result, part of every cache key
    assert RuntimeSettings(n_gpu_layers=-1).n_gpu_layers == -1
    with pytest.raises(CriteriaError, match="n_gpu_layers must be >= -1"):
        RuntimeSettings(n_gpu_layers=-2)
    assert RuntimeSettings.from_mapping({"n_gpu_layers": 12}, source="defaults.settings").n_gpu_layers == 12


def test_the_environment_sets_the_default_and_an_explicit_value_wins(monkeypatch):
    monkeypatch.setenv(GPU_LAYERS_ENV, "-1")
    assert RuntimeSettings().n_gpu_layers == -1
    assert RuntimeSettings.from_mapping({"n_gpu_layers": 0}, source="s").n_gpu_layers == 0
    monkeypatch.setenv(GPU_LAYERS_ENV, "all")
    with pytest.raises(CriteriaError, match=GPU_LAYERS_ENV):
        RuntimeSettings()


def test_a_cpu_build_records_its_cpu_backend_and_refuses_gpu_layers(tmp_path):
    pytest.importorskip("llama_cpp")
    from fakequant.runtime.llama import build_info

    if backend.backend() != "cpu":
        pytest.skip(f"this llama-cpp-python build is {backend.backend()}, not a CPU build")
    info = build_info()
    assert info["backend"] == "cpu"
    assert [d["type"] for d in info["devices"]] == ["cpu"] and info["devices"][0]["name"] == "CPU"
    backend.check_offload(0, tmp_path / "m.gguf")  # the default runs
    with pytest.raises(ModelRuntimeError, match=r"m\.gguf: n_gpu_layers = -1, but .* no GPU backend"):
        backend.check_offload(-1, tmp_path / "m.gguf")


def test_a_recorded_cell_of_another_backend_is_not_taken(monkeypatch):
    from fakequant.suite import sweep

    record = {"recipe": {}, "settings": {}, "chunks": 2, "thresholds": {}, "checks": [],
              "model_sha256": "a", "corpus_sha256": "b", "llama_cpp_python": "0.3.36", "backend": "cpu"}
    assert sweep._comparable(record) != sweep._comparable({**record, "backend": "cuda"})


def _make_n(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CMAKE_ARGS", "MAKEFLAGS", "PIP_CACHE_DIR")}
    return subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, env=env)


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_backend_cuda_builds_for_the_named_architectures_in_a_venv_of_its_own():
    cuda = _make_n("setup", "BACKEND=cuda", "CUDA_ARCHITECTURES=90", "STAMP=/nonexistent/stamp")
    assert cuda.returncode == 0, cuda.stderr
    install = next(line for line in cuda.stdout.splitlines() if "pip install" in line and "-e" in line)
    assert "-DGGML_CUDA=on" in install and "-DCMAKE_CUDA_ARCHITECTURES=90" in install
    assert install.startswith(".venv-cuda/bin/python")  # never the CPU build's .venv
    cpu = _make_n("setup", "STAMP=/nonexistent/stamp")
    install = next(line for line in cpu.stdout.splitlines() if "pip install" in line and "-e" in line)
    assert "GGML_CUDA" not in install and install.startswith(".venv/bin/python")
    wrong = _make_n("setup", "BACKEND=rocm")
    assert wrong.returncode != 0 and "BACKEND must be cpu or cuda" in wrong.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_backend_cuda_without_a_gpu_says_how_to_name_one():
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    done = _make_n("report", "BACKEND=cuda")
    assert done.returncode != 0 and "CUDA_ARCHITECTURES=90" in done.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_the_runtime_and_the_reference_tools_are_built_for_one_instruction_set():
    from fakequant.store.tools import CMAKE_OPTIONS, X86_64_V3, cpu_options

    assert cpu_options("x86_64") == X86_64_V3 and cpu_options("aarch64") == ("-DGGML_NATIVE=ON",)
    install = next(line for line in _make_n("setup", "STAMP=/nonexistent/stamp").stdout.splitlines()
                   if "pip install" in line and "-e" in line)
    options = install.split("# CMAKE_ARGS:")[1].split()
    own = [o for o in options if o.startswith(("-DGGML_NATIVE", "-DGGML_SSE", "-DGGML_AVX", "-DGGML_BMI", "-DGGML_FMA",
                                              "-DGGML_F16C"))]
    assert tuple(own) == cpu_options() and set(cpu_options()) <= set(CMAKE_OPTIONS)  # the Makefile's list = the tools'


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_other_cmake_options_get_their_own_venv_stamp_and_wheel_cache():
    def variables(*args: str) -> dict[str, str]:
        out = _make_n("setup", *args, "-p").stdout
        return {name: line.split(" ", 2)[2] for line in out.splitlines()
                for name in ("STAMP", "BUILD_KEY", "PIP_CACHE_DIR") if line.startswith(f"{name} ")}

    plain, native = variables(), variables("CMAKE_ARGS=-DGGML_NATIVE=ON")
    assert plain["BUILD_KEY"] != native["BUILD_KEY"] and plain["STAMP"] != native["STAMP"]
    assert plain["BUILD_KEY"] in plain["STAMP"] and "$(BUILD_KEY)" in plain["PIP_CACHE_DIR"]  # never a stale wheel
    assert variables() == plain


def test_cache_keys_name_the_kernels_the_build_was_compiled_for():
    import platform

    from fakequant.store.tools import X86_64_V3, cpu_options, llama_cpp_build, llama_cpp_version

    build = llama_cpp_build()
    assert build.startswith(f"{llama_cpp_version()} CPU :")
    if cpu_options(platform.machine()) == X86_64_V3:  # the Makefile's wheel: AVX2's kernels, never AVX-512's or AMX's
        assert "AVX2 = 1" in build and "AVX512" not in build and "AMX" not in build
