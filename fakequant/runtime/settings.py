"""The one set of runtime settings that every model run uses, and that every result records.

Baseline and candidate always run with the same :class:`RuntimeSettings`; a result without its settings cannot be
compared with anything. Flash attention is OFF by default here, while llama.cpp's own tools turn it on by default:
on SmolLM2 the first 512-token chunk's perplexity differs by 0.6% between the two, more than the user's 1% "ideal"
band leaves room for. Whatever is chosen, it is written into every result.

``repack`` (llama.cpp's "extra buffer types": CPU weight repacking and Intel AMX kernels) is OFF by default, like
``llama-perplexity --no-repack``: on this project's VMs the CPU advertises AMX but the hypervisor does not enable its
tile state, and llama.cpp's AMX path dies with a general protection fault on the first Q4_1 matrix product.

``n_gpu_layers`` (default 0: everything on the CPU) offloads that many layers to the GPU of a GPU build of
llama-cpp-python (``make setup BACKEND=cuda``; -1: all of them). Being a setting, it is the same for baseline,
candidate and placebo, and every report records it beside the build's backend and devices
(:mod:`fakequant.runtime.backend`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fakequant.errors import CriteriaError

# KV cache element types that llama.cpp accepts for --cache-type-k/-v (ggml type names).
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, choices: tuple[str, ...] = (), why: str = "") -> Any:
    """A dataclass field whose limits live on it, for :func:`out_of_bounds`; ``why`` explains a one-sided bound."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "why": why})


def out_of_bounds(f: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` breaks the limits declared on field ``f`` ("must be >= 1, got 0"), or None when it keeps them.
    None always keeps them: it means "unset"."""
    limits = f.metadata
    if value is None or not limits:
        return None
    if limits["choices"]:
        return None if value in limits["choices"] else f"must be one of {', '.join(limits['choices'])}, got {value!r}"
    ge, gt, le, lt = limits["ge"], limits["gt"], limits["le"], limits["lt"]
    if (ge is None or value >= ge) and (gt is None or value > gt) and (le is None or value <= le) \
            and (lt is None or value < lt):
        return None
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else ""
    high = f"{le}]" if le is not None else f"{lt})" if lt is not None else ""
    if low and high:
        return f"must be in {low}, {high}, got {value}"
    side = next(f"{op} {b}" for b, op in ((ge, ">="), (gt, ">"), (le, "<="), (lt, "<")) if b is not None)
    why = f" ({limits['why']})" if limits["why"] else ""
    return f"must be {side}{why}, got {value}"


def check_bounds(obj: Any, what: str) -> None:
    """Raise for the first field of dataclass ``obj`` outside its declared limits: ``settings: n_ctx must be ...``."""
    for f in dataclasses.fields(obj):
        problem = out_of_bounds(f, getattr(obj, f.name))
        if problem:
            raise CriteriaError(f"{what}: {f.name} {problem}")


def _check_fields(cls: type, data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate ``data`` against the dataclass fields of ``cls``; the error names the offending key."""
    if not isinstance(data, Mapping):
        raise CriteriaError(f"{source}: expected a table of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise CriteriaError(f"{source}: unknown key {key!r}; known keys: {', '.join(fields)}")
        kind = fields[key].type
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "int | None": value is None or (isinstance(value, int) and not isinstance(value, bool)),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }.get(str(kind), True)
        if not ok:
            raise CriteriaError(f"{source}: key {key!r} must be {kind}, got {value!r}")
        out[key] = float(value) if kind == "float" else value
    return out


GPU_LAYERS_ENV = "FAKEQUANT_N_GPU_LAYERS"


def gpu_layers_from_env() -> int:
    """The default of ``n_gpu_layers``: ``$FAKEQUANT_N_GPU_LAYERS``, else 0 (CPU only)."""
    value = os.environ.get(GPU_LAYERS_ENV, "").strip() or "0"
    try:
        return int(value)
    except ValueError:
        raise CriteriaError(f"${GPU_LAYERS_ENV}: must be an integer (-1: every layer), got {value!r}") from None


@dataclass(frozen=True)
class RuntimeSettings:
    """How llama.cpp runs a model (context, batches, threads, attention kernel, KV cache, seed)."""

    n_ctx: int = bounded(512, ge=1)
    n_batch: int = bounded(512, ge=1)
    n_ubatch: int = bounded(512, ge=1)
    n_threads: int | None = bounded(None, ge=1)  # None: os.cpu_count(), resolved in to_json() and by the runtime
    flash_attn: bool = False  # llama.cpp's tools default to on; see the module docstring
    type_k: str = bounded("f16", choices=KV_TYPES)
    type_v: str = bounded("f16", choices=KV_TYPES)
    seed: int = 1234
    repack: bool = False  # llama.cpp's extra buffer types (repack, AMX); off = `--no-repack`, see the docstring
    # llama.cpp's -ngl; 0 = CPU only; default from $FAKEQUANT_N_GPU_LAYERS (`make ... BACKEND=cuda` sets -1)
    n_gpu_layers: int = field(default_factory=lambda: gpu_layers_from_env(),
                              metadata=bounded(0, ge=-1, why="-1 offloads every layer").metadata)

    def __post_init__(self) -> None:
        check_bounds(self, "settings")

    @property
    def threads(self) -> int:
        return self.n_threads or os.cpu_count() or 1

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["n_threads"] = self.threads
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str) -> RuntimeSettings:
        return cls(**_check_fields(cls, data, source))


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are chosen during generation. ``temperature == 0`` means greedy (argmax)."""

    max_tokens: int = bounded(32, ge=1)
    temperature: float = bounded(0.0, ge=0)
    top_k: int = 40
    top_p: float = bounded(0.95, gt=0, le=1)
    seed: int = 1234
    repeat_penalty: float = 1.0

    def __post_init__(self) -> None:
        check_bounds(self, "sampling")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str) -> SamplingParams:
        return cls(**_check_fields(cls, data, source))
