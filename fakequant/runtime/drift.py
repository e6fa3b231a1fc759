"""Where the error enters: per-layer drift of the hidden state, captured during the paired pass.

llama.cpp's graph names each block's output ``l_out-N`` (the residual stream after block N) and the final norm's
output ``result_norm``, and its scheduler calls an eval callback (``cb_eval`` in llama_context_params, what
``llama-eval-callback`` uses) for every node. :class:`LayerCapture` runs a model on a second context over the same
weights with such a callback: it asks only for those nodes (so the scheduler cuts the graph as little as possible),
and copies out only the rows of the scored positions (the perplexity pass's second half of each chunk). The other
context and the model's own compute the same kernels on the same tokens; a test checks the logits are bitwise equal.

Per chunk and layer, against the base: the relative error ``‖h − h_base‖ / ‖h_base‖`` of each scored position and
the cosine similarity, each averaged over the positions. :class:`DriftSeries` gathers them for the candidate and its
placebo; the excess (candidate minus placebo, paired per chunk) gets a t interval over chunks like the KLD's.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as llama_lowlevel
import numpy as np

from fakequant.runtime.chunkstats import LEVEL, chunk_interval
from fakequant.runtime.llama import Model, callback_context, clear_memory, decode
from fakequant.runtime.perplexity import CorpusTokens, scored_logits

LAYER_RE = re.compile(r"^l_out-(\d+)$")
FINAL = "result_norm"
GGML_TYPE_F32 = 0


class GGMLTensor(ctypes.Structure):
    """``struct ggml_tensor`` of the vendored ggml.h (GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64, GGML_MAX_SRC 10,
    GGML_MAX_NAME 64); :func:`_check_layout` compares it with the library's own accessors on every new context."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


_NAME_OFFSET = GGMLTensor.name.offset
_GGML: ctypes.CDLL | None = None


def _ggml() -> ctypes.CDLL:
    """ggml's base library next to the llama library llama-cpp-python loaded (the same build)."""
    global _GGML
    if _GGML is None:
        found = sorted(Path(llama_lowlevel._base_path).glob("libggml-base.*")) + sorted(
            Path(llama_lowlevel._base_path).glob("ggml-base.*"))
        if not found:
            raise OSError(f"{llama_lowlevel._base_path}: no libggml-base beside libllama")
        lib = ctypes.CDLL(str(found[0]))
        lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        lib.ggml_backend_tensor_get.restype = None
        lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
        lib.ggml_nbytes.restype = ctypes.c_size_t
        lib.ggml_get_name.argtypes = [ctypes.c_void_p]
        lib.ggml_get_name.restype = ctypes.c_char_p
        lib.ggml_nelements.argtypes = [ctypes.c_void_p]
        lib.ggml_nelements.restype = ctypes.c_int64
        _GGML = lib
    return _GGML


def _check_layout(ptr: int, t: GGMLTensor) -> str | None:
    """Why our view of the struct disagrees with the library, or None."""
    lib = _ggml()
    if lib.ggml_get_name(ptr) != t.name:
        return "the tensor's name is not where the ctypes view of struct ggml_tensor puts it"
    if lib.ggml_nelements(ptr) != int(np.prod(list(t.ne))):
        return "the tensor's shape is not where the ctypes view of struct ggml_tensor puts it"
    return None


@dataclass
class HiddenStates:
    """One model's captured rows on one chunk: layer name (graph order) → float32 [positions, n_embd]."""

    layers: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.layers.values())


def wanted(name: str) -> bool:
    return name == FINAL or LAYER_RE.match(name) is not None


class LayerCapture:
    """A model on a second context whose eval callback copies the layer outputs of the kept positions.

    ``with LayerCapture(model) as cap: logits, targets, states = cap.scored(ct, i)``. The callback keeps only the
    rows of positions ``keep`` (index into the decoded tokens): at most (layers + 1) × kept × n_embd floats live."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.n_layer = int(llama_cpp.llama_model_n_layer(model.llama._model.model))
        self._callback = llama_lowlevel.ggml_backend_sched_eval_callback(self._on_node)  # referenced: not GC'd
        self._view: Model | None = None
        self._stack: Any = None
        self._checked = False
        self._reset(0, 0, range(0))

    def __enter__(self) -> LayerCapture:
        self._stack = callback_context(self.model, self._callback)
        self._view = self._stack.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stack is not None:
            self._stack.__exit__(*exc)
        self._stack = self._view = None

    # --- one decode ------------------------------------------------------------------------------------------

    def _reset(self, n_tokens: int, first_output: int, keep: range) -> None:
        s = self.model.settings
        self._ubatches = [(u0, min(u0 + s.n_ubatch, b0 + s.n_batch, n_tokens))
                          for b0 in range(0, n_tokens, s.n_batch)
                          for u0 in range(b0, min(b0 + s.n_batch, n_tokens), s.n_ubatch)]
        self._first = first_output
        self._keep = keep
        self._seen: dict[str, int] = {}
        self._filled: dict[str, int] = {}
        self._states = HiddenStates()

    def decode_plan(self, n_tokens: int, first_output: int, keep: range) -> None:
        """Before a decode of ``n_tokens`` whose logits start at ``first_output``: keep rows of positions ``keep``.
        llama.cpp splits one sequence's batch into consecutive ubatches of ``n_ubatch`` (split_simple); the last
        block and the final norm hold only the output rows."""
        self._reset(n_tokens, first_output, keep)

    def _on_node(self, ptr: int, ask: bool, user_data: Any) -> bool:
        try:
            name = ctypes.string_at(ptr + _NAME_OFFSET).decode("utf-8", "replace")
            if ask:
                return wanted(name)
            if wanted(name):
                self._take(ptr, name)
        except Exception as err:  # never let an exception stop the graph: the logits must come out unchanged
            self._states.problems.append(f"capture failed: {type(err).__name__}: {err}")
        return True  # with ask=False, False would stop the graph's computation

    def _take(self, ptr: int, name: str) -> None:
        t = GGMLTensor.from_address(ptr)
        if not self._checked:
            problem = _check_layout(ptr, t)
            if problem:
                raise RuntimeError(problem)
            self._checked = True
        j = self._seen.get(name, 0)
        self._seen[name] = j + 1
        if j >= len(self._ubatches):
            raise RuntimeError(f"{name} computed {j + 1} times for {len(self._ubatches)} ubatches")
        ne0, ne1 = int(t.ne[0]), int(t.ne[1])
        if t.type != GGML_TYPE_F32 or t.ne[2] != 1 or t.ne[3] != 1 or t.nb[0] != 4 or t.nb[1] != 4 * ne0:
            raise RuntimeError(f"{name} is not a contiguous F32 matrix (type {t.type}, ne {list(t.ne)})")
        u0, u1 = self._ubatches[j]
        out0 = max(u0, self._first)
        if ne1 == u1 - u0:
            row_token0 = u0
        elif ne1 == max(u1 - out0, 0):
            row_token0 = out0
        else:
            raise RuntimeError(f"{name} has {ne1} rows, ubatch {u0}..{u1} has {u1 - u0} tokens, {u1 - out0} outputs")
        lo, hi = max(self._keep.start, row_token0), min(self._keep.stop, row_token0 + ne1)
        if hi <= lo:
            return
        dest = self._states.layers.get(name)
        if dest is None:
            dest = self._states.layers[name] = np.empty((len(self._keep), ne0), dtype=np.float32)
        _ggml().ggml_backend_tensor_get(ptr, dest[lo - self._keep.start:].ctypes.data, (lo - row_token0) * 4 * ne0,
                                        (hi - lo) * 4 * ne0)
        self._filled[name] = self._filled.get(name, 0) + hi - lo

    def finish(self) -> HiddenStates:
        """The states of the last decode, with a line for each layer that was not reached or not complete."""
        states = self._states
        n = len(self._keep)
        for name in [k for k in states.layers if self._filled.get(k, 0) != n]:
            states.problems.append(f"{name}: {self._filled.get(name, 0)} of {n} positions captured")
            del states.layers[name]
        blocks = [k for k in states.layers if LAYER_RE.match(k)]
        if not blocks:
            states.problems.insert(0, "the graph names no layer outputs l_out-N (this architecture's graph names "
                                      "them differently): no per-layer drift")
        else:
            missing = [f"l_out-{i}" for i in range(self.n_layer) if f"l_out-{i}" not in states.layers]
            if missing:
                states.problems.append(f"not reached: {_span(missing)} of {self.n_layer} blocks")
        states.problems = list(dict.fromkeys(states.problems))
        return states

    def decode(self, tokens: Sequence[int], *, first_output: int, keep: range) -> tuple[np.ndarray, HiddenStates]:
        """Decode ``tokens`` from an empty KV cache on the capturing context (logits from ``first_output`` on), and
        the layer outputs at positions ``keep``."""
        assert self._view is not None, "LayerCapture used outside its with-block"
        clear_memory(self._view)
        self.decode_plan(len(tokens), first_output, keep)
        logits = decode(self._view, list(tokens), first_output=first_output)
        return logits, self.finish()

    def scored(self, ct: CorpusTokens, i: int) -> tuple[np.ndarray, np.ndarray, HiddenStates]:
        """:func:`~fakequant.runtime.perplexity.scored_logits` of chunk ``i`` on the capturing context, and the
        layer outputs of the scored positions (``n_ctx/2 .. n_ctx-2``)."""
        assert self._view is not None, "LayerCapture used outside its with-block"
        first = ct.n_ctx // 2
        self.decode_plan(ct.n_ctx, first, range(first, ct.n_ctx - 1))
        logits, targets = scored_logits(self._view, ct, i)
        return logits, targets, self.finish()


def _span(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} … {names[-1]} ({len(names)})"


def states_bytes(model: Model, ct: CorpusTokens) -> int:
    """What one chunk's kept base states take: (blocks + final norm) × scored positions × n_embd × 4 bytes."""
    n_embd = int(llama_cpp.llama_model_n_embd(model.llama._model.model))
    n_layer = int(llama_cpp.llama_model_n_layer(model.llama._model.model))
    return (n_layer + 1) * (ct.n_ctx - 1 - ct.n_ctx // 2) * n_embd * 4


# --- statistics ----------------------------------------------------------------------------------------------------


def layer_drift(base: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(mean relative error ‖o − b‖ / ‖b‖, mean cosine similarity) over the rows (positions), float64. A row whose
    base is all zeros counts as relative error 0 when the other is zero too, else is left out."""
    b = base.astype(np.float64)
    o = other.astype(np.float64)
    nb = np.linalg.norm(b, axis=1)
    no = np.linalg.norm(o, axis=1)
    nd = np.linalg.norm(o - b, axis=1)
    ok = nb > 0
    rel = np.where(ok, nd / np.where(ok, nb, 1.0), 0.0)
    rel = rel[ok | (nd == 0)]
    both = ok & (no > 0)
    cos = np.einsum("ij,ij->i", b[both], o[both]) / (nb[both] * no[both])
    return (float(rel.mean()) if rel.size else float("nan"), float(cos.mean()) if cos.size else float("nan"))


class DriftSeries:
    """Per layer and chunk, the candidate's (and placebo's) drift from the base, gathered chunk by chunk."""

    def __init__(self) -> None:
        self.layers: list[str] = []
        self.values: dict[str, dict[str, dict[str, list[float]]]] = {"candidate": {}, "placebo": {}}
        self.problems: dict[str, list[str]] = {}  # problem → the models that had it
        self.chunks = 0
        self.positions = 0

    def add(self, base: HiddenStates, candidate: HiddenStates, placebo: HiddenStates | None = None) -> None:
        self.chunks += 1
        for who, states in (("base", base), ("candidate", candidate), ("placebo", placebo)):
            for p in states.problems if states is not None else ():
                if who not in self.problems.setdefault(p, []):
                    self.problems[p].append(who)
        for name, b in base.layers.items():
            if name not in self.layers:
                self.layers.append(name)
            self.positions = len(b)
            for who, states in (("candidate", candidate), ("placebo", placebo)):
                if states is None or name not in states.layers:
                    continue
                rel, cos = layer_drift(b, states.layers[name])
                series = self.values[who].setdefault(name, {"rel_err": [], "cos": []})
                series["rel_err"].append(rel)
                series["cos"].append(cos)

    def to_json(self, level: float = LEVEL) -> dict[str, Any]:
        problems = [f"{p} ({', '.join(who)})" for p, who in self.problems.items()]
        out = drift_summary(self.layers, self.values, problems, self.chunks, self.positions, level)
        if "unavailable" in out:
            out["unavailable"] = next((p for p in self.problems if "l_out" in p), out["unavailable"])
        return out


def _iv(values: Sequence[float], level: float) -> dict[str, Any]:
    iv = chunk_interval(values, level)
    return {"mean": iv.mean, "ci": iv.ci(), "resolved": iv.resolved}


def block_index(name: str) -> int | None:
    m = LAYER_RE.match(name)
    return int(m.group(1)) if m else None


def drift_summary(layers: list[str], values: dict[str, dict[str, dict[str, list[float]]]], problems: list[str],
                  chunks: int, positions: int, level: float = LEVEL) -> dict[str, Any]:
    """The report's drift block: per layer the candidate's and placebo's mean relative error and cosine with their
    intervals over chunks, the excess (paired per chunk), the first block whose excess relative error is resolved
    above zero, and the block where the excess (the candidate's drift without a placebo) grows most."""
    out: dict[str, Any] = {"chunks": chunks, "positions": positions, "level": level, "problems": problems,
                           "metric": "per scored position ‖h − h_base‖ / ‖h_base‖ and cos(h, h_base), "
                                     "mean over positions; intervals over chunks (t quantile)"}
    rows = []
    for name in layers:
        row: dict[str, Any] = {"name": name, "block": block_index(name)}
        cand, plac = values["candidate"].get(name), values["placebo"].get(name)
        if cand is None:
            continue
        row["candidate"] = {k: _iv(v, level) for k, v in cand.items()}
        if plac is not None and len(plac["rel_err"]) == len(cand["rel_err"]):
            row["placebo"] = {k: _iv(v, level) for k, v in plac.items()}
            row["excess"] = {k: _iv(np.subtract(cand[k], plac[k]).tolist(), level) for k in cand}
        rows.append(row)
    out["layers"] = rows
    if not any(r["block"] is not None for r in rows):
        out["unavailable"] = next((p for p in problems if "l_out" in p), "no layer outputs were captured")
        return out
    blocks = [r for r in rows if r["block"] is not None]
    key = "excess" if all("excess" in r for r in blocks) else "candidate"
    out["growth_of"] = key
    first = next((r["name"] for r in blocks if key == "excess" and r["excess"]["rel_err"]["ci"]
                  and r["excess"]["rel_err"]["ci"][0] > 0), None)
    out["first_resolved"] = first
    means = [r[key]["rel_err"]["mean"] for r in blocks]
    growth = np.diff([0.0, *means])
    at = int(np.nanargmax(growth)) if np.isfinite(growth).any() else None
    out["largest_growth"] = None if at is None else {"layer": blocks[at]["name"], "by": float(growth[at])}
    return out


def unavailable(reason: str) -> dict[str, Any]:
    """The drift block of a pass that captured nothing (the reason in one line)."""
    return {"unavailable": reason, "layers": [], "problems": [reason]}

