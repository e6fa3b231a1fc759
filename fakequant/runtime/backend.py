"""Which ggml backend and devices the installed llama-cpp-python computes on, read from its own libggml.

A CPU build lists one device ("CPU"); a CUDA build (``make setup BACKEND=cuda``) adds one per GPU ("CUDA0", ...).
Results differ between backends (other kernels, other summation orders), so the backend is recorded in every report
and is part of what a cached or recorded result must match. Read through ctypes, without importing llama_cpp (which
loads libllama too): ``fakequant sweep`` asks for it before it runs anything.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path
from typing import Any

# enum ggml_backend_dev_type (ggml-backend.h)
DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


@functools.cache
def _libggml() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib" / "libggml.so"
    if not lib.is_file():
        return None
    g = ctypes.CDLL(str(lib))
    g.ggml_backend_dev_count.restype = ctypes.c_size_t
    g.ggml_backend_dev_get.restype = ctypes.c_void_p
    g.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(g, name).restype = ctypes.c_char_p
        getattr(g, name).argtypes = [ctypes.c_void_p]
    g.ggml_backend_dev_type.restype = ctypes.c_int
    g.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    return g


@functools.cache
def devices() -> tuple[dict[str, str], ...]:
    """The build's devices: name, description (the CPU's or GPU's model) and type; empty without llama-cpp-python."""
    g = _libggml()
    if g is None:
        return ()
    out = []
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        out.append({"name": g.ggml_backend_dev_name(dev).decode(), "description":
                    g.ggml_backend_dev_description(dev).decode(), "type": DEVICE_TYPES.get(g.ggml_backend_dev_type(dev),
                                                                                          "other")})
    return tuple(out)


def backend() -> str:
    """"cpu", or the accelerator backend's name ("cuda" for devices CUDA0, CUDA1, ...); "none" without a build."""
    found = devices()
    accelerated = sorted({d["name"].rstrip("0123456789").lower() for d in found if d["type"] != "cpu"})
    return "+".join(accelerated) if accelerated else ("cpu" if found else "none")


def info() -> dict[str, Any]:
    return {"backend": backend(), "devices": [dict(d) for d in devices()]}


def check_offload(n_gpu_layers: int, model: Path) -> None:
    """A GPU setting on a build without a GPU would silently run on the CPU: refuse it, naming the fix."""
    from fakequant.errors import ModelRuntimeError

    if n_gpu_layers != 0 and backend() in ("cpu", "none"):
        raise ModelRuntimeError(f"{model}: n_gpu_layers = {n_gpu_layers}, but this llama-cpp-python build has no GPU "
                                f"backend (devices: {', '.join(d['name'] for d in devices()) or 'none'}); build one "
                                "with `make setup BACKEND=cuda` or set n_gpu_layers = 0")
