"""The importance matrix of a model: ``llama-imatrix`` over a calibration slice of a corpus, and what
``llama-quantize --imatrix`` hands ggml's quantizer from it.

**What is computed** (llama.cpp ``tools/imatrix/imatrix.cpp``, the source the built tool comes from): the corpus is
read whole (one trailing newline dropped, like ``-f`` everywhere) and tokenized once, BOS added when the vocabulary
adds one, special tokens not parsed: the tokenization :mod:`fakequant.runtime.perplexity` uses. Chunk ``i`` is the
tokens ``[i*n_ctx, (i+1)*n_ctx)``, decoded from an empty KV cache with its first token replaced by BOS (when the
vocabulary adds one), and *every* position of it feeds the matrix (not only the scored second half a perplexity pass
uses). ``--chunks K`` takes chunks ``0 .. K-1``, so the calibration tokens are ``[0, K*n_ctx)``
(:attr:`Imatrix.tokens`): a slice that must not be scored must start at ``K*n_ctx`` (chunk ``K``) or later. The
tool refuses a corpus of fewer than ``2*n_ctx`` tokens, whatever ``K``.
For each matrix product with a weight whose name starts with ``blk.`` and at least 16 tokens in the batch it
accumulates, per input column, the sum of the squared activations (``in_sum2``) and the number of tokens
(``counts``; one pair per expert for a MoE tensor). ``token_embd`` and ``output`` get no entry (the default without
``--process-output``, as published imatrix quants are made): llama-quantize quantizes them without importance.

**What llama-quantize uses** from such a file: :func:`load_imatrix` (:mod:`fakequant.quant.importance`).

Cached under ``$FAKEQUANT_HOME/imatrix/`` keyed by the model's and the corpus's sha256, the chunks, every runtime
setting that changes the activations (context, batches, flash attention, KV types, repacking; not the thread count,
which only splits the same products) and the llama.cpp version; written atomically.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fakequant.errors import RecipeError
from fakequant.quant.importance import load_imatrix, reader, tensor_importance
from fakequant.runtime.settings import RuntimeSettings
from fakequant.store.cache import atomic_path, cache_dir, file_sha256, locked, stable_hash
from fakequant.store.tools import llama_cpp_build, tool_path

IMATRIX_VERSION = "1"  # bump when the command or the files written change

__all__ = ["Imatrix", "compute_imatrix", "imatrix_argv", "load_imatrix", "tensor_importance"]


@dataclass(frozen=True)
class Imatrix:
    path: Path
    sha256: str
    chunks: int
    n_ctx: int
    tokens: tuple[int, int]  # the corpus tokens it was computed on, half-open: [0, chunks * n_ctx)
    command: str  # how llama-imatrix was run (the tool's name, the output path being ``path``)


def imatrix_argv(tool: str | Path, model: Path, corpus: Path, out: Path, *, chunks: int,
                 settings: RuntimeSettings) -> list[str]:
    """The llama-imatrix command line for ``chunks`` chunks of ``settings.n_ctx`` tokens with ``settings``."""
    s = settings
    return [str(tool), "-m", str(model), "-f", str(corpus), "-o", str(out), "--output-format", "gguf",
            "-c", str(s.n_ctx), "-b", str(s.n_batch), "-ub", str(s.n_ubatch), "--chunks", str(chunks),
            "-t", str(s.threads), "-tb", str(s.threads), "-fa", "on" if s.flash_attn else "off",
            "-ctk", s.type_k, "-ctv", s.type_v, *([] if s.repack else ["--no-repack"]), "--no-ppl"]


def compute_imatrix(model: Path, corpus: Path, *, chunks: int, settings: RuntimeSettings,
                    log: Callable[[str], None] = print) -> Imatrix:
    """The importance matrix of ``model`` over the first ``chunks`` chunks of ``corpus`` (built once, then cached)."""
    model, corpus = Path(model), Path(corpus)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise RecipeError(f"imatrix chunks {chunks!r}: must be an integer >= 1")
    for path, what in ((model, "model"), (corpus, "corpus")):
        if not path.is_file():
            raise RecipeError(f"{path}: no such {what} file (needed for the importance matrix)")
    tool = tool_path("llama-imatrix")
    if tool is None:
        raise RecipeError("llama-imatrix is not built: run `make tools` (the importance matrix is computed by it)")
    s = settings
    key = stable_hash({"model": file_sha256(model), "corpus": file_sha256(corpus), "chunks": chunks,
                       "n_ctx": s.n_ctx, "n_batch": s.n_batch, "n_ubatch": s.n_ubatch, "flash_attn": s.flash_attn,
                       "type_k": s.type_k, "type_v": s.type_v, "repack": s.repack, "llama_cpp": llama_cpp_build(),
                       "version": IMATRIX_VERSION})
    out = cache_dir("imatrix") / f"{model.stem}-{key}.gguf"
    shown = imatrix_argv("llama-imatrix", model, corpus, out, chunks=chunks, settings=s)
    with locked(out):
        if out.exists():
            log(f"imatrix: {out.name} (cached)")
        else:
            log(f"imatrix: {chunks} chunks of {s.n_ctx} tokens of {corpus.name} through llama-imatrix ...")
            with atomic_path(out) as tmp:
                proc = subprocess.run(imatrix_argv(tool, model, corpus, tmp, chunks=chunks, settings=s),
                                      capture_output=True, text=True)
                if proc.returncode != 0 or tmp.stat().st_size == 0:
                    raise RecipeError(f"{model}: llama-imatrix failed (exit {proc.returncode}): "
                                      f"{_last_error(proc.stderr or proc.stdout)}")
                done = _chunk_count(tmp)
                if done != chunks:
                    raise RecipeError(f"{corpus}: holds {done} chunks of {s.n_ctx} tokens, the importance matrix "
                                      f"needs {chunks}")
    return Imatrix(out, file_sha256(out), chunks, s.n_ctx, (0, chunks * s.n_ctx), " ".join(shown))


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower() or "need" in line]
    return (errors or lines or ["no output"])[-1]


def _chunk_count(path: Path) -> int:
    field = reader(path).get_field("imatrix.chunk_count")
    return int(field.contents()) if field is not None else 0
