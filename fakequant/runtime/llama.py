"""Running a GGUF through llama-cpp-python: load (structure checked first, then timed), generate (with stop
strings), and raw logits for perplexity and scoring. Chat formats live in :mod:`fakequant.runtime.chat`.

Everything runs with one :class:`~fakequant.runtime.settings.RuntimeSettings`, recorded in each result.
Decoding goes through llama.cpp's own batch API (``llama_decode``) rather than ``Llama.eval`` so that only the
positions we score produce logits (the way ``llama-perplexity`` asks for them) and nothing is copied twice. Timings
come from llama.cpp's own counters (``llama_perf_context``), the ones ``llama-cli`` and ``llama-bench`` print.

llama.cpp logs through a callback; we keep its recent lines in memory (printing them only when
``FAKEQUANT_LLAMA_LOG=1``) so that a failed load can say llama.cpp's reason in one line.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as llama_lowlevel
import numpy as np
from llama_cpp import _internals

from fakequant.errors import ModelRuntimeError
from fakequant.gguf.checked import check_once
from fakequant.runtime.backend import check_offload
from fakequant.runtime.backend import info as backend_info
from fakequant.runtime.settings import RuntimeSettings, SamplingParams

GGML_TYPES = {
    "f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16, "bf16": 30, "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0, "q4_1": llama_cpp.GGML_TYPE_Q4_1, "iq4_nl": llama_cpp.GGML_TYPE_IQ4_NL,
    "q5_0": llama_cpp.GGML_TYPE_Q5_0, "q5_1": llama_cpp.GGML_TYPE_Q5_1,
}

# --- llama.cpp's log -------------------------------------------------------------------------------------------

_LOG: collections.deque[tuple[int, str]] = collections.deque(maxlen=200)
_ECHO_LOG = os.environ.get("FAKEQUANT_LLAMA_LOG", "") not in ("", "0")


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    message = text.decode("utf-8", "replace")
    _LOG.append((level, message))
    if _ECHO_LOG:
        print(message, end="", file=sys.stderr, flush=True)


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def _last_error(since: int) -> str:
    """llama.cpp's most telling log line since index ``since``: its last error, else its last warning/line."""
    lines = list(_LOG)[since:]
    for wanted in (3, 2):  # GGML_LOG_LEVEL_ERROR, GGML_LOG_LEVEL_WARN
        found = [text.strip() for level, text in lines if level == wanted and text.strip()]
        if found:
            return found[-1]
    rest = [text.strip() for _, text in lines if text.strip()]
    return rest[-1] if rest else "no reason given"


# --- models -----------------------------------------------------------------------------------------------------


@dataclass
class Model:
    """A loaded model and the settings it runs with. ``llama`` is the llama_cpp.Llama object."""

    path: Path
    settings: RuntimeSettings
    load_time_s: float
    llama: llama_cpp.Llama = field(repr=False)
    _batch: Any = field(default=None, repr=False)
    _ctx: Any = field(default=None, repr=False)  # another context on the same weights (see callback_context)

    @property
    def ctx(self) -> Any:
        return self._ctx if self._ctx is not None else self.llama._ctx.ctx

    @property
    def vocab(self) -> Any:
        return self.llama._model.vocab

    @property
    def n_vocab(self) -> int:
        return self.llama.n_vocab()

    @property
    def add_bos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))

    @property
    def bos(self) -> int:
        return int(llama_cpp.llama_vocab_bos(self.vocab))

    def tokenize(self, text: str, *, add_bos: bool | None = None, special: bool = False) -> list[int]:
        """Tokens of ``text``; BOS first when the vocabulary adds one (``add_bos=None``), like common_tokenize."""
        add = self.add_bos if add_bos is None else add_bos
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add, special=special)

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        self.llama.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _model_params(**overrides: Any) -> Iterator[None]:
    """Llama() offers no argument for some llama_model_params fields (use_extra_bufts); it builds them from
    llama_model_default_params(), so hand it defaults with our overrides for the duration of one load."""
    original = llama_lowlevel.llama_model_default_params

    def patched() -> Any:
        params = original()
        for key, value in overrides.items():
            setattr(params, key, value)
        return params

    with _PARAMS_LOCK:
        llama_lowlevel.llama_model_default_params = patched
        try:
            yield
        finally:
            llama_lowlevel.llama_model_default_params = original


def load_model(path: Path, settings: RuntimeSettings) -> Model:
    """Load ``path`` with ``settings``; the load is timed. A structurally broken GGUF raises GGUFFormatError naming
    the problem; any other failure names the file and llama.cpp's reason."""
    path = Path(path)
    if not path.is_file():
        raise ModelRuntimeError(f"{path}: no such model file")
    # llama.cpp trusts the header's counts and offsets; the bounded walk names a damaged file in one line instead
    # (remembered per file identity, so loading an unchanged model again does not walk it). Not part of the load time.
    check_once(path)
    check_offload(settings.n_gpu_layers, path)
    since = len(_LOG)
    start = time.perf_counter()
    try:
        with _model_params(use_extra_bufts=settings.repack):
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=settings.n_ctx,
                n_batch=settings.n_batch,
                n_ubatch=settings.n_ubatch,
                n_threads=settings.threads,
                n_threads_batch=settings.threads,
                flash_attn=settings.flash_attn,
                type_k=GGML_TYPES[settings.type_k],
                type_v=GGML_TYPES[settings.type_v],
                seed=settings.seed,
                n_gpu_layers=settings.n_gpu_layers,
                logits_all=False,
                verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as err:
        raise ModelRuntimeError(f"{path}: llama.cpp could not load it: {_last_error(since)} ({err})") from err
    load_time = time.perf_counter() - start
    return Model(path=path, settings=settings, load_time_s=load_time, llama=llama)


@contextlib.contextmanager
def callback_context(model: Model, callback: Any) -> Iterator[Model]:
    """``model`` on a second llama.cpp context over the same loaded weights, with the same context parameters and
    the scheduler's eval callback ``callback`` (a ``ggml_backend_sched_eval_callback``, kept referenced by the
    caller): llama.cpp offers no way to set it on an existing context. The view must not be closed; the context is
    freed on exit."""
    params = type(model.llama.context_params).from_buffer_copy(model.llama.context_params)
    params.cb_eval = callback
    params.cb_eval_user_data = None
    since = len(_LOG)
    ctx = llama_cpp.llama_init_from_model(model.llama._model.model, params)
    if not ctx:
        raise ModelRuntimeError(f"{model.path}: llama.cpp could not create a second context: {_last_error(since)}")
    view = dataclasses.replace(model, _batch=None, _ctx=ctx)
    try:
        yield view
    finally:
        if view._batch is not None:
            view._batch.close()
        llama_cpp.llama_free(ctx)


# --- decoding ---------------------------------------------------------------------------------------------------


def _batch(model: Model) -> Any:
    if model._batch is None:
        model._batch = _internals.LlamaBatch(n_tokens=model.settings.n_batch, embd=0, n_seq_max=1, verbose=False)
    return model._batch.batch


def clear_memory(model: Model) -> None:
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(model.ctx), True)
    model.llama.n_tokens = 0  # keep the high-level object's idea of the KV cache in step


def decode(model: Model, tokens: Sequence[int], *, first_output: int, start_pos: int = 0) -> np.ndarray:
    """Decode ``tokens`` at positions ``start_pos...`` (sequence 0, after what the KV cache holds) in batches of
    ``n_batch``; return a float32 copy of the logits of every position ``>= first_output`` (index into ``tokens``),
    shape ``(len(tokens) - first_output, n_vocab)``.

    ``llama-perplexity`` asks for logits exactly this way (``need_logits = pos >= first``), so the same kernels run.
    """
    out = np.empty((max(len(tokens) - first_output, 0), model.n_vocab), dtype=np.float32)
    filled = 0
    for view in decoded_views(model, tokens, first_output=first_output, start_pos=start_pos):
        out[filled:filled + len(view)] = view
        filled += len(view)
    return out


def decoded_views(model: Model, tokens: Sequence[int], *, first_output: int,
                  start_pos: int = 0) -> Iterator[np.ndarray]:
    """:func:`decode` without the copy: after each ``llama_decode`` of a batch, a read-only view of llama.cpp's own
    logits of that batch's positions ``>= first_output`` (skipped when it has none). A view is valid only until the
    generator goes on: use it, or copy it, before asking for the next."""
    n = len(tokens)
    n_batch = model.settings.n_batch
    n_vocab = model.n_vocab
    batch = _batch(model)
    for b0 in range(0, n, n_batch):
        size = min(n_batch, n - b0)
        n_outputs = 0
        batch.n_tokens = size
        for k in range(size):
            i = b0 + k
            want = i >= first_output
            batch.token[k] = tokens[i]
            batch.pos[k] = start_pos + i
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = 0
            batch.logits[k] = want
            n_outputs += want
        rc = llama_cpp.llama_decode(model.ctx, batch)
        if rc != 0:
            raise ModelRuntimeError(f"{model.path}: llama_decode failed with status {rc} at token {b0}")
        if n_outputs:
            view = np.ctypeslib.as_array(llama_cpp.llama_get_logits(model.ctx), shape=(n_outputs, n_vocab))
            view.flags.writeable = False
            yield view


def first_nonfinite(logits: np.ndarray, where: str) -> str | None:
    """``None`` when every logit is finite, else a description of the first NaN/Inf (row = position)."""
    finite = np.isfinite(logits)
    if finite.all():
        return None
    row, col = np.argwhere(~finite)[0][:2] if logits.ndim == 2 else (0, int(np.argmax(~finite)))
    return f"{where}, position {int(row)}, token id {int(col)}: {logits[row, col] if logits.ndim == 2 else ''}"


# --- generation -------------------------------------------------------------------------------------------------


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    prompt_tokens_per_s: float
    gen_tokens_per_s: float
    nonfinite: str | None = None  # where the first NaN/Inf logit appeared
    stop_reason: str = "length"  # "eog" (end-of-generation token), "stop" (a stop string) or "length" (max_tokens)
    prompt_ms: float = 0.0
    gen_ms: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    template: str | None = None  # the chat prompt's format ("gguf", "builtin:<name>", "plain"); None for raw text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _sampler(model: Model, params: SamplingParams) -> _internals.LlamaSampler:
    s = _internals.LlamaSampler()
    if params.repeat_penalty != 1.0:
        s.add_penalties(model.n_vocab, 64, params.repeat_penalty, 0.0, 0.0)
    if params.greedy:
        s.add_greedy()
    else:
        # llama.cpp's common sampler order: top-k, top-p, temperature, then draw with a seeded RNG
        s.add_top_k(params.top_k)
        s.add_top_p(params.top_p, 1)
        s.add_temp(params.temperature)
        s.add_dist(params.seed)
    return s


def generate_tokens(model: Model, prompt_tokens: list[int], params: SamplingParams,
                    stop: Sequence[str] = ()) -> Generation:
    """Decode ``prompt_tokens`` from an empty KV cache, then sample up to ``max_tokens`` tokens.

    Generation also ends when the text contains one of ``stop`` (like llama-cli's reverse prompt): ``text`` is cut
    before it, ``token_ids`` keep every sampled token, the stop string's included."""
    if len(prompt_tokens) + params.max_tokens > model.settings.n_ctx:
        raise ModelRuntimeError(f"{model.path}: prompt of {len(prompt_tokens)} tokens + max_tokens "
                                f"{params.max_tokens} exceed the context of {model.settings.n_ctx}")
    if not prompt_tokens:
        raise ModelRuntimeError(f"{model.path}: empty prompt")
    clear_memory(model)
    llama_cpp.llama_perf_context_reset(model.ctx)
    sampler = _sampler(model, params)
    nonfinite = None
    out: list[int] = []
    reason = "length"
    try:
        last = decode(model, prompt_tokens, first_output=len(prompt_tokens) - 1)
        nonfinite = first_nonfinite(last, "prompt")
        pos = len(prompt_tokens)
        for step in range(params.max_tokens):
            token = llama_cpp.llama_sampler_sample(sampler.sampler, model.ctx, -1)
            if llama_cpp.llama_vocab_is_eog(model.vocab, token):
                reason = "eog"
                break
            out.append(int(token))
            if stop and _cut_at_stop(_text(model, out, prompt_tokens), stop) is not None:
                reason = "stop"
                break
            if step == params.max_tokens - 1:
                break
            logits = decode(model, [token], first_output=0, start_pos=pos)
            pos += 1
            if nonfinite is None:
                nonfinite = first_nonfinite(logits, f"generated token {step + 1}")
    finally:
        sampler.close()
    perf = llama_cpp.llama_perf_context(model.ctx)
    text = _text(model, out, prompt_tokens)
    cut = _cut_at_stop(text, stop) if reason == "stop" else None
    text = text if cut is None else text[:cut]
    return Generation(
        text=text, token_ids=out, prompt_tokens=len(prompt_tokens),
        prompt_tokens_per_s=_rate(perf.n_p_eval, perf.t_p_eval_ms), gen_tokens_per_s=_rate(perf.n_eval, perf.t_eval_ms),
        nonfinite=nonfinite, stop_reason=reason, prompt_ms=perf.t_p_eval_ms, gen_ms=perf.t_eval_ms,
        params=params.to_json())


def _text(model: Model, tokens: list[int], prompt_tokens: list[int]) -> str:
    return model.llama.detokenize(tokens, prev_tokens=prompt_tokens).decode("utf-8", "replace")


def _cut_at_stop(text: str, stop: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in ``text``, or None."""
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(found) if found else None


def _rate(n: int, ms: float) -> float:
    return 1000.0 * n / ms if ms > 0 else 0.0


def generate(model: Model, prompt: str, params: SamplingParams) -> Generation:
    """Continue a raw prompt, like ``llama-cli --prompt`` (BOS added when the vocabulary wants it, special tokens
    in the text parsed)."""
    return generate_tokens(model, model.tokenize(prompt, special=True), params)


# --- scoring ----------------------------------------------------------------------------------------------------


def log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ln p(target) for each row of ``logits`` (float64 accumulation, max-shifted like llama.cpp)."""
    mx = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - mx, dtype=np.float64).sum(axis=1)) if logits.size else np.zeros(0)
    picked = logits[np.arange(len(targets)), targets].astype(np.float64)
    return picked - mx[:, 0].astype(np.float64) - lse


def build_info() -> dict[str, Any]:
    """What produced the numbers: llama-cpp-python's version (which pins the vendored llama.cpp source), the
    llama.cpp library version string, its feature line, the ggml backend and its devices."""
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp": llama_cpp.llama_version().decode(),
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        **backend_info(),
    }
