"""Perplexity the way llama.cpp's ``llama-perplexity`` computes it.

The algorithm is that of ``tools/perplexity/perplexity.cpp`` (function ``perplexity``) in the llama.cpp source that
the installed llama-cpp-python was built from:

- the corpus file is read whole, one trailing newline dropped, and tokenized once (BOS added when the vocabulary
  adds one, special tokens not parsed);
- the tokens are cut into ``n_chunk = tokens // n_ctx`` chunks of ``n_ctx``; each chunk is decoded from an empty KV
  cache, its first token replaced by BOS when the vocabulary adds one;
- only the second half is scored: the logits at positions ``n_ctx/2 .. n_ctx-2`` predict tokens
  ``n_ctx/2+1 .. n_ctx-1`` (``n_ctx - 1 - n_ctx/2`` tokens per chunk);
- ``PPL = exp(mean nll)`` and its "±" is ``PPL * sqrt((mean(nll²) - mean(nll)²) / (count - 1))``.

The corpus tokens and the scored logits of a chunk are shared with :mod:`fakequant.runtime.paired`, which compares
two models over identical tokens.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fakequant.errors import CorpusError
from fakequant.runtime.llama import Model, clear_memory, decode, decoded_views
from fakequant.runtime.rowparts import map_row_parts

# --- corpus -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusTokens:
    """The tokens to evaluate: ``n_chunk * n_ctx`` of them, and how many the whole corpus has (None if unknown)."""

    tokens: np.ndarray  # int32, length n_chunk * n_ctx
    n_ctx: int
    n_chunk: int
    corpus_tokens: int | None
    corpus: Path
    first_chunk: int = 0  # the corpus's chunk that ``tokens`` starts at


def read_corpus(corpus: Path) -> str:
    corpus = Path(corpus)
    if not corpus.is_file():
        raise CorpusError(f"{corpus}: no such corpus file")
    data = corpus.read_bytes()
    if not data.strip():
        raise CorpusError(f"{corpus}: the corpus is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{corpus}: not UTF-8 text (invalid byte 0x{data[err.start]:02x} at offset {err.start})"
                          ) from err
    return text[:-1] if text.endswith("\n") else text  # llama.cpp's -f drops one trailing newline


def corpus_tokens(model: Model, corpus: Path, *, chunks: int | None = None, first_chunk: int = 0) -> CorpusTokens:
    """Tokenize ``corpus`` like llama-perplexity and pick the chunks to evaluate: ``chunks`` of them (all by
    default) from chunk ``first_chunk`` on (0: llama-perplexity's own).

    With ``chunks`` given, only a prefix of the text long enough for them is tokenized (a 6 MB corpus takes seconds
    to tokenize whole); a safety margin of tokens before the cut is discarded, so the tokens equal those of the
    whole text's tokenization."""
    n_ctx = model.settings.n_ctx
    if chunks is not None and chunks < 1:
        raise CorpusError(f"{corpus}: chunks must be >= 1, got {chunks}")
    text = read_corpus(corpus)
    margin = 64
    total: int | None = None
    if chunks is None:
        tokens = model.tokenize(text)
        total = len(tokens)
    else:
        need = max(first_chunk + chunks, 2) * n_ctx + margin
        length = need * 8
        while True:
            tokens = model.tokenize(text[:length])
            if length >= len(text):
                total = len(tokens)
                break
            if len(tokens) >= need:
                break
            length *= 2
    available = total if total is not None else len(tokens)
    if available < 2 * n_ctx:
        raise CorpusError(f"{corpus}: tokenizes to {available} tokens; perplexity with a context of {n_ctx} needs "
                          f"at least {2 * n_ctx} (2 x ctx)")
    n_chunk_max = (total // n_ctx - first_chunk) if total is not None else chunks
    n_chunk = n_chunk_max if chunks is None else min(chunks, n_chunk_max)
    if n_chunk < 1:
        raise CorpusError(f"{corpus}: tokenizes to {available} tokens; chunk {first_chunk + 1} of {n_ctx} tokens "
                          f"needs at least {(first_chunk + 1) * n_ctx}")
    arr = np.asarray(tokens[first_chunk * n_ctx:(first_chunk + n_chunk) * n_ctx], dtype=np.int32)
    return CorpusTokens(tokens=arr, n_ctx=n_ctx, n_chunk=n_chunk, corpus_tokens=total, corpus=Path(corpus),
                        first_chunk=first_chunk)


def _chunk_tokens(model: Model, ct: CorpusTokens, i: int) -> np.ndarray:
    toks = ct.tokens[i * ct.n_ctx:(i + 1) * ct.n_ctx].copy()
    if model.add_bos:
        toks[0] = model.bos
    return toks


def scored_logits(model: Model, ct: CorpusTokens, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits predicting the scored tokens of chunk ``i`` (rows), and those tokens."""
    toks = _chunk_tokens(model, ct, i)
    first = ct.n_ctx // 2
    clear_memory(model)
    logits = decode(model, toks.tolist(), first_output=first)
    return logits[:-1], toks[first + 1:]


_LSE_ROWS = 4  # rows per block: a temporary that stays in a core's L2 cache (4 x 49k floats: 0.8 MB), measured fastest


def row_logsumexp(logits: np.ndarray, scratch: np.ndarray | None = None,
                  mins: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: max (float32) and ln Σ exp(logit - max) (float64), as llama.cpp does (expf, double sum); with
    ``mins`` given, each row's min is written there too.

    Computed a block of rows at a time in ``scratch`` (``_LSE_ROWS`` rows of the vocabulary; allocated when not
    given): each row's value is the same as over the whole array (rows are reduced independently), the block is
    read from memory once and its max, min and exp are taken while it is in cache."""
    n = len(logits)
    mx = np.empty(n, dtype=logits.dtype)
    lse = np.empty(n, dtype=np.float64)
    if scratch is None:
        scratch = np.empty((min(_LSE_ROWS, n), logits.shape[1]), dtype=logits.dtype)
    for r in range(0, n, _LSE_ROWS):
        rows = logits[r:r + _LSE_ROWS]
        block, top = scratch[:len(rows)], mx[r:r + _LSE_ROWS]
        np.max(rows, axis=1, out=top)
        if mins is not None:
            np.min(rows, axis=1, out=mins[r:r + _LSE_ROWS])
        np.subtract(rows, top[:, None], out=block)
        np.exp(block, out=block)
        np.log(block.sum(axis=1, dtype=np.float64), out=lse[r:r + _LSE_ROWS])
    return mx, lse


# --- perplexity -------------------------------------------------------------------------------------------------


@dataclass
class PerplexityResult:
    ppl: float
    ppl_se: float
    chunk_ppl: list[float]  # running value after each chunk, as llama-perplexity prints "[i]ppl,"
    chunks: int
    n_ctx: int
    tokens: int  # tokens evaluated (chunks x n_ctx)
    scored_tokens: int
    corpus_tokens: int | None  # whole corpus; None when only the needed prefix was tokenized
    tokens_per_s: float
    seconds: float
    settings: dict[str, Any]
    model: str
    corpus: str
    nonfinite: str | None = None
    nll: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # per scored token

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "nll"}


def _ppl_and_se(nll: np.ndarray) -> tuple[float, float]:
    """llama-perplexity's final estimate: exp(mean) and exp(mean) * sqrt(var / (count - 1))."""
    count = len(nll)
    mean = float(nll.sum() / count)
    var = float((nll * nll).sum() / count) - mean * mean
    ppl = math.exp(mean)
    return ppl, (ppl * math.sqrt(var / (count - 1)) if var > 0 and count > 1 else float("nan"))


class _NoProgress(contextlib.AbstractContextManager):
    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr; without one, tqdm is not even imported."""
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", file=sys.stderr, leave=False)


def _first_nonfinite_rows(rows: np.ndarray, where: str, offset: int) -> str | None:
    """What :func:`~fakequant.runtime.llama.first_nonfinite` says, checked a block of rows at a time (no
    chunk-sized mask); positions count from the chunk's first scored one (``offset`` is that of ``rows[0]``)."""
    for r in range(0, len(rows), _LSE_ROWS):
        block = rows[r:r + _LSE_ROWS]
        if not np.isfinite(block).all():
            row, col = (int(x) for x in np.argwhere(~np.isfinite(block))[0])
            return f"{where}, position {offset + r + row}, token id {col}: {block[row, col]}"
    return None


def _score_rows(rows: np.ndarray, targets: np.ndarray, where: str, offset: int, check: bool,
                scratch: np.ndarray | None = None) -> tuple[np.ndarray, str | None]:
    """The negative log-likelihood of ``targets`` under each row of logits, and (when ``check``) where the rows'
    first non-finite logit is. A NaN makes a row's max NaN and an infinity its max or its min infinite, so only
    rows whose max or min is not finite are searched."""
    mins = np.empty(len(rows), dtype=rows.dtype) if check else None
    mx, lse = row_logsumexp(rows, scratch, mins)
    nonfinite = None
    if mins is not None and not (np.isfinite(mx).all() and np.isfinite(mins).all()):
        nonfinite = _first_nonfinite_rows(rows, where, offset)
    return (mx.astype(np.float64) + lse) - rows[np.arange(len(rows)), targets], nonfinite


def _score_in_parts(rows: np.ndarray, targets: np.ndarray, where: str, offset: int, check: bool,
                    scratch: np.ndarray) -> tuple[np.ndarray, str | None]:
    """:func:`_score_rows` over contiguous slices of the rows, one thread and one ``scratch[k]`` each (as many
    slices as ``scratch`` has; :mod:`fakequant.runtime.rowparts`). The result is that of one call; the first
    non-finite logit is that of the first slice that has one."""
    done = map_row_parts(lambda k, a, b: _score_rows(rows[a:b], targets[a:b], where, offset + a, check, scratch[k]),
                         len(rows), len(scratch))
    return np.concatenate([nll for nll, _ in done]), next((bad for _, bad in done if bad), None)


def scoring_scratch(model: Model) -> np.ndarray:
    """One block of rows for each of the model's threads to score in (see :func:`_score_in_parts`): allocated
    once per run, so the threads allocate nothing large."""
    return np.empty((model.settings.threads, _LSE_ROWS, model.n_vocab), dtype=np.float32)


def chunk_nll(model: Model, ct: CorpusTokens, i: int, scratch: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The negative log-likelihood of chunk ``i``'s scored tokens, and where its first non-finite logit is (None:
    all finite). Read straight from llama.cpp's logits of each decoded batch, never copied: the same numbers as
    :func:`scored_logits` gives, without a chunk-sized copy of them; scored on the threads ``scratch`` is for
    (:func:`scoring_scratch`)."""
    toks = _chunk_tokens(model, ct, i)
    first = ct.n_ctx // 2
    targets = toks[first + 1:]
    clear_memory(model)
    parts: list[np.ndarray] = []
    nonfinite = None
    row = 0
    for view in decoded_views(model, toks.tolist(), first_output=first):
        rows = view[:max(0, min(len(view), len(targets) - row))]  # the last position predicts past the chunk
        if len(rows):
            nll, bad = _score_in_parts(rows, targets[row:row + len(rows)], f"chunk {i + 1}", row,
                                       nonfinite is None, scratch)
            nonfinite = nonfinite or bad
            parts.append(nll)
        row += len(view)
    return np.concatenate(parts), nonfinite


def perplexity(model: Model, corpus: Path, *, chunks: int | None = None, progress: bool = False) -> PerplexityResult:
    ct = corpus_tokens(model, corpus, chunks=chunks)
    nll_parts: list[np.ndarray] = []
    running: list[float] = []
    nonfinite = None
    total_nll = 0.0
    count = 0
    scratch = scoring_scratch(model)
    start = time.perf_counter()
    with progress_bar(ct.n_chunk, f"ppl {model.path.name}", progress) as bar:
        for i in range(ct.n_chunk):
            nll, bad = chunk_nll(model, ct, i, scratch)
            nonfinite = nonfinite or bad
            nll_parts.append(nll)
            total_nll += float(nll.sum())
            count += len(nll)
            running.append(math.exp(total_nll / count))
            bar.update(1)
    seconds = time.perf_counter() - start
    nll = np.concatenate(nll_parts)
    ppl, se = _ppl_and_se(nll)
    return PerplexityResult(
        ppl=ppl, ppl_se=se, chunk_ppl=running, chunks=ct.n_chunk, n_ctx=ct.n_ctx, tokens=ct.n_chunk * ct.n_ctx,
        scored_tokens=count, corpus_tokens=ct.corpus_tokens, tokens_per_s=ct.n_chunk * ct.n_ctx / seconds,
        seconds=seconds, settings=model.settings.to_json(), model=str(model.path), corpus=str(ct.corpus),
        nonfinite=nonfinite, nll=nll)
