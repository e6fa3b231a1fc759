"""The one set of runtime settings that every model run uses, and that every result records.

Baseline and candidate always run with the same :class:`RuntimeSettings`; a result without its settings cannot be
compared with anything. Flash attention is OFF by default here, while llama.cpp's own tools turn it on by default:
on SmolLM2 the first 512-token chunk's perplexity differs by 0.6% between the two, more than the user's 1% "ideal"
band leaves room for. Whatever is chosen, it is written into every result.

``repack`` (llama.cpp's "extra buffer types": CPU weight repacking and Intel AMX kernels) is OFF by default, like
``llama-perplexity --no-repack``: on this project's VMs the CPU advertises AMX but the hypervisor does not enable its
tile state, and llama.cpp's AMX path dies with a general protection fault on the first Q4_1 matrix product.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fakequant.errors import CriteriaError

# KV cache element types that llama.cpp accepts for --cache-type-k/-v (ggml type names).
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


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


@dataclass(frozen=True)
class RuntimeSettings:
    """How llama.cpp runs a model (context, batches, threads, attention kernel, KV cache, seed)."""

    n_ctx: int = 512
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int | None = None  # None: os.cpu_count(), resolved in to_json() and by the runtime
    flash_attn: bool = False  # llama.cpp's tools default to on; see the module docstring
    type_k: str = "f16"
    type_v: str = "f16"
    seed: int = 1234
    repack: bool = False  # llama.cpp's extra buffer types (repack, AMX); off = `--no-repack`, see the docstring

    def __post_init__(self) -> None:
        for name in ("n_ctx", "n_batch", "n_ubatch"):
            if getattr(self, name) < 1:
                raise CriteriaError(f"settings: {name} must be >= 1, got {getattr(self, name)}")
        if self.n_threads is not None and self.n_threads < 1:
            raise CriteriaError(f"settings: n_threads must be >= 1, got {self.n_threads}")
        for name in ("type_k", "type_v"):
            if getattr(self, name) not in KV_TYPES:
                raise CriteriaError(f"settings: {name} must be one of {', '.join(KV_TYPES)}, "
                                    f"got {getattr(self, name)!r}")

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

    max_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    seed: int = 1234
    repeat_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise CriteriaError(f"sampling: max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise CriteriaError(f"sampling: temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise CriteriaError(f"sampling: top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str) -> SamplingParams:
        return cls(**_check_fields(cls, data, source))
