"""Perplexity the way llama.cpp's ``llama-perplexity`` computes it, and a one-pass paired comparison of two models.

The algorithm is that of ``tools/perplexity/perplexity.cpp`` (function ``perplexity``) in the llama.cpp source that
the installed llama-cpp-python was built from:

- the corpus file is read whole, one trailing newline dropped, and tokenized once (BOS added when the vocabulary
  adds one, special tokens not parsed);
- the tokens are cut into ``n_chunk = tokens // n_ctx`` chunks of ``n_ctx``; each chunk is decoded from an empty KV
  cache, its first token replaced by BOS when the vocabulary adds one;
- only the second half is scored: the logits at positions ``n_ctx/2 .. n_ctx-2`` predict tokens
  ``n_ctx/2+1 .. n_ctx-1`` (``n_ctx - 1 - n_ctx/2`` tokens per chunk);
- ``PPL = exp(mean nll)`` and its "±" is ``PPL * sqrt((mean(nll²) - mean(nll)²) / (count - 1))``.

:func:`compare` runs base and candidate over identical tokens chunk by chunk and reports the statistics of
``llama-perplexity --kl-divergence`` with the same definitions, computed exactly: llama.cpp stores the base's
log-probabilities in 16 bits, clamped 16 nats below the top logit, so its PPL(base), ln(PPL(Q)/PPL(base)) and KLD
carry that quantization; here both distributions are used in full float32 (accumulated in float64) and nothing is
written to disk. PPL(Q), "same top p" and Δp involve no stored base values there and agree with it closely.

For sweeps, :meth:`BaseReference.build` scores the base model once and keeps what the comparison needs in memory;
``compare(reference, candidate)`` then costs one candidate pass.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fakequant.errors import CorpusError, ModelRuntimeError
from fakequant.runtime.chunkstats import excess
from fakequant.runtime.llama import Model, clear_memory, decode, first_nonfinite, load_model
from fakequant.runtime.settings import RuntimeSettings

KLD_HIST_EDGES = np.linspace(-10.0, 2.0, 61)  # log10(KLD) bins for plots; values outside go to the end bins


# --- corpus -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusTokens:
    """The tokens to evaluate: ``n_chunk * n_ctx`` of them, and how many the whole corpus has (None if unknown)."""

    tokens: np.ndarray  # int32, length n_chunk * n_ctx
    n_ctx: int
    n_chunk: int
    corpus_tokens: int | None
    corpus: Path


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


def corpus_tokens(model: Model, corpus: Path, *, chunks: int | None = None) -> CorpusTokens:
    """Tokenize ``corpus`` like llama-perplexity and pick the chunks to evaluate.

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
        need = max(chunks, 2) * n_ctx + margin
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
    n_chunk_max = (total // n_ctx) if total is not None else chunks
    n_chunk = n_chunk_max if chunks is None else min(chunks, n_chunk_max)
    arr = np.asarray(tokens[:n_chunk * n_ctx], dtype=np.int32)
    return CorpusTokens(tokens=arr, n_ctx=n_ctx, n_chunk=n_chunk, corpus_tokens=total, corpus=Path(corpus))


def _chunk_tokens(model: Model, ct: CorpusTokens, i: int) -> np.ndarray:
    toks = ct.tokens[i * ct.n_ctx:(i + 1) * ct.n_ctx].copy()
    if model.add_bos:
        toks[0] = model.bos
    return toks


def _scored_logits(model: Model, ct: CorpusTokens, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits predicting the scored tokens of chunk ``i`` (rows), and those tokens."""
    toks = _chunk_tokens(model, ct, i)
    first = ct.n_ctx // 2
    clear_memory(model)
    logits = decode(model, toks.tolist(), first_output=first)
    return logits[:-1], toks[first + 1:]


def _row_logsumexp(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: max (float32) and ln Σ exp(logit - max) (float64), as llama.cpp does (expf, double sum)."""
    mx = logits.max(axis=1)
    shifted = logits - mx[:, None]
    np.exp(shifted, out=shifted)  # in place: one 50 MB temporary per chunk instead of two
    return mx, np.log(shifted.sum(axis=1, dtype=np.float64))


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


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", disable=not enabled, file=sys.stderr, leave=False)


def perplexity(model: Model, corpus: Path, *, chunks: int | None = None, progress: bool = False) -> PerplexityResult:
    ct = corpus_tokens(model, corpus, chunks=chunks)
    nll_parts: list[np.ndarray] = []
    running: list[float] = []
    nonfinite = None
    total_nll = 0.0
    count = 0
    start = time.perf_counter()
    with _progress(ct.n_chunk, f"ppl {model.path.name}", progress) as bar:
        for i in range(ct.n_chunk):
            logits, targets = _scored_logits(model, ct, i)
            if nonfinite is None:
                nonfinite = first_nonfinite(logits, f"chunk {i + 1}")
            mx, lse = _row_logsumexp(logits)
            nll = (mx.astype(np.float64) + lse) - logits[np.arange(len(targets)), targets]
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


# --- paired comparison ------------------------------------------------------------------------------------------


@dataclass
class _BaseChunk:
    """What the comparison needs of the base model on one chunk."""

    logits: np.ndarray  # float32 [scored, n_vocab]
    norm: np.ndarray  # float64 [scored]: max + ln Σ exp(logit - max), so ln p = logit - norm
    nll: np.ndarray  # float64 [scored]
    top: np.ndarray  # int [scored]: argmax
    nonfinite: str | None


def _base_chunk(model: Model, ct: CorpusTokens, i: int) -> tuple[_BaseChunk, np.ndarray]:
    logits, targets = _scored_logits(model, ct, i)
    mx, lse = _row_logsumexp(logits)
    norm = mx.astype(np.float64) + lse
    nll = norm - logits[np.arange(len(targets)), targets]
    return _BaseChunk(logits=logits, norm=norm, nll=nll, top=logits.argmax(axis=1),
                      nonfinite=first_nonfinite(logits, f"chunk {i + 1}")), targets


class BaseReference:
    """The base model's side of :func:`compare`, computed once per process and reused by many candidates.

    Usage in a sweep::

        ref = BaseReference.build(base_model, corpus, chunks=8)      # one base pass
        for cand_path in candidates:
            with load_model(cand_path, base_model.settings) as cand:
                result = compare(ref, cand)                           # one candidate pass each

    The base's scored logits take ``chunks x (n_ctx/2 - 1) x n_vocab x 4`` bytes (50 MB per 512-token chunk on a
    49152-token vocabulary). When that exceeds ``max_bytes``, nothing is kept and the base model (which must then
    stay loaded) is run again beside each candidate: still one pass over identical tokens, no logits on disk.
    """

    def __init__(self, base: Model, ct: CorpusTokens, chunks: list[_BaseChunk] | None):
        self.model = base
        self.settings = base.settings
        self.corpus_tokens = ct
        self._chunks = chunks

    @classmethod
    def build(cls, base: Model, corpus: Path, *, chunks: int | None = None, max_bytes: int = 2 << 30,
              progress: bool = False) -> BaseReference:
        ct = corpus_tokens(base, corpus, chunks=chunks)
        per_chunk = (ct.n_ctx - 1 - ct.n_ctx // 2) * base.n_vocab * 4
        if per_chunk * ct.n_chunk > max_bytes:
            return cls(base, ct, None)
        kept = []
        with _progress(ct.n_chunk, f"base {base.path.name}", progress) as bar:
            for i in range(ct.n_chunk):
                kept.append(_base_chunk(base, ct, i)[0])
                bar.update(1)
        return cls(base, ct, kept)

    @property
    def in_memory(self) -> bool:
        return self._chunks is not None

    def chunk(self, i: int) -> _BaseChunk:
        if self._chunks is not None:
            return self._chunks[i]
        return _base_chunk(self.model, self.corpus_tokens, i)[0]


@dataclass
class PairedComparison:
    """Statistics of ``llama-perplexity --kl-divergence`` (same definitions), computed exactly in one pass."""

    stats: dict[str, Any]
    per_chunk: dict[str, list[float]]
    kld_hist: dict[str, list[float]]
    settings: dict[str, Any]
    base: str
    candidate: str
    corpus: str
    nonfinite: str | None
    seconds: float
    placebo: dict[str, Any] | None = None  # the placebo twin against the base: the floor of these tensors
    excess: dict[str, Any] | None = None  # the candidate beyond the placebo, paired per chunk
    # per scored token, for callers that want more than the summary (not in JSON)
    nll_base: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    nll_q: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    kld: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def __getattr__(self, name: str) -> Any:  # result.kld_mean etc.
        stats = self.__dict__.get("stats", {})
        if name in stats:
            return stats[name]
        raise AttributeError(name)

    def to_json(self) -> dict[str, Any]:
        return {**self.stats, "per_chunk": self.per_chunk, "kld_hist": self.kld_hist, "settings": self.settings,
                "base": self.base, "candidate": self.candidate, "corpus": self.corpus, "nonfinite": self.nonfinite,
                "seconds": self.seconds, **({"placebo": self.placebo, "excess": self.excess} if self.placebo else {})}


_KLD_ROWS = 8


def _token_stats(base: _BaseChunk, q_logits: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per scored token: nll of both, KL(base || Q), Δp = p_Q(tok) - p_base(tok), same argmax."""
    mx, lse = _row_logsumexp(q_logits)
    norm_q = mx.astype(np.float64) + lse
    rows = np.arange(len(targets))
    nll_q = norm_q - q_logits[rows, targets]
    # KL = Σ p_b (ln p_b - ln p_q) = Σ p_b (l_b - l_q) - (norm_b - norm_q) Σ p_b, in float64 throughout, a few
    # rows at a time: the float64 temporaries stay in cache (measured 0.15-0.25 s → 0.09 s per 255-row chunk of a
    # 49152-token vocabulary, identical results)
    kld = np.empty(len(targets))
    for start in range(0, len(targets), _KLD_ROWS):
        block = slice(start, start + _KLD_ROWS)
        lb = base.logits[block].astype(np.float64)
        diff = lb - q_logits[block]
        lb -= base.norm[block, None]
        np.exp(lb, out=lb)  # p_b
        kld[block] = np.einsum("ij,ij->i", lb, diff) - (base.norm[block] - norm_q[block]) * lb.sum(axis=1)
    return {"nll_q": nll_q, "nll_b": base.nll, "kld": kld, "dp": np.exp(-nll_q) - np.exp(-base.nll),
            "same_top": (q_logits.argmax(axis=1) == base.top)}


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    """llama.cpp's mean_and_uncertainty: the SE is 0 for 10 values or fewer."""
    n = len(values)
    mean = float(values.sum() / n)
    var = float((values * values).sum() / n) - mean * mean
    return mean, (math.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0)


def paired_stats(nll_q: np.ndarray, nll_b: np.ndarray, kld: np.ndarray, dp: np.ndarray,
                 same_top: np.ndarray) -> dict[str, Any]:
    """The summary block of ``llama-perplexity --kl-divergence``, from per-token values (formulas of its
    kl_divergence())."""
    n = len(nll_q)
    lq, lq_se = _mean_se(nll_q)
    lb, lb_se = _mean_se(nll_b)
    cov = (float((nll_q * nll_b).sum() / n) - lq * lb) / (n - 1) if n >= 10 else 0.0
    ppl_q, ppl_b = math.exp(lq), math.exp(lb)
    ratio_se = math.sqrt(max(lq_se ** 2 + lb_se ** 2 - 2 * cov, 0.0))
    kld_mean, kld_se = _mean_se(kld)
    dp_mean, dp_se = _mean_se(dp)
    mse, mse_se = _mean_se(dp * dp)
    rms = math.sqrt(mse)
    same = float(same_top.sum() / n)
    ks, ds = np.sort(kld), np.sort(dp)

    def pct(values: np.ndarray, fraction: float) -> float:
        return float(np.percentile(values, 100 * fraction))

    out: dict[str, Any] = {
        "ppl_q": ppl_q, "ppl_q_se": ppl_q * lq_se,
        "ppl_base": ppl_b, "ppl_base_se": ppl_b * lb_se,
        "ln_ppl_cor": cov / (lq_se * lb_se) if lq_se > 0 and lb_se > 0 else float("nan"),
        "ln_ppl_ratio": lq - lb, "ln_ppl_ratio_se": ratio_se,
        "ppl_ratio": math.exp(lq - lb), "ppl_ratio_se": math.exp(lq - lb) * ratio_se,
        "ppl_diff": ppl_q - ppl_b,
        "ppl_diff_se": math.sqrt(max((ppl_q * lq_se) ** 2 + (ppl_b * lb_se) ** 2 - 2 * ppl_q * ppl_b * cov, 0.0)),
        "kld_mean": kld_mean, "kld_se": kld_se, "kld_max": float(ks[-1]),
        "kld_p999": pct(ks, 0.999), "kld_p99": pct(ks, 0.99), "kld_p95": pct(ks, 0.95), "kld_p90": pct(ks, 0.90),
        "kld_median": float(np.median(ks)), "kld_p10": pct(ks, 0.10), "kld_p05": pct(ks, 0.05),
        "kld_p01": pct(ks, 0.01), "kld_p001": pct(ks, 0.001), "kld_min": float(ks[0]),
        "dp_mean": dp_mean, "dp_se": dp_se, "dp_rms": rms, "dp_rms_se": 0.5 / rms * mse_se if rms > 0 else 0.0,
        "dp_max": float(ds[-1]), "dp_p999": pct(ds, 0.999), "dp_p99": pct(ds, 0.99), "dp_p95": pct(ds, 0.95),
        "dp_p90": pct(ds, 0.90), "dp_p75": pct(ds, 0.75), "dp_median": float(np.median(ds)),
        "dp_p25": pct(ds, 0.25), "dp_p10": pct(ds, 0.10), "dp_p05": pct(ds, 0.05), "dp_p01": pct(ds, 0.01),
        "dp_p001": pct(ds, 0.001), "dp_min": float(ds[0]),
        "same_top_p": same, "same_top_p_se": math.sqrt(same * (1 - same) / (n - 1)) if n > 1 else 0.0,
        "tokens": n,
    }
    return out


def compare(base: Model | BaseReference, candidate: Model, corpus: Path | None = None, *,
            chunks: int | None = None, progress: bool = False, placebo: Model | None = None) -> PairedComparison:
    """Paired comparison of ``candidate`` against ``base`` over identical tokens, in one pass, nothing on disk.

    ``base`` is a loaded model (scored chunk by chunk beside the candidate) or a :class:`BaseReference` built
    earlier (then ``corpus``/``chunks`` must be left out or match it). With a ``placebo`` (the same tensors nudged
    by one ulp), it is scored in the same pass against the same base: the result's ``placebo`` block is the floor
    any change of those tensors produces, and ``excess`` is the candidate beyond it, paired per chunk."""
    if isinstance(base, BaseReference):
        ref = base
        if corpus is not None and Path(corpus) != ref.corpus_tokens.corpus:
            raise ModelRuntimeError(f"{corpus}: the base reference was built on {ref.corpus_tokens.corpus}")
        if chunks is not None and chunks != ref.corpus_tokens.n_chunk:
            raise ModelRuntimeError(f"{ref.corpus_tokens.corpus}: the base reference holds "
                                    f"{ref.corpus_tokens.n_chunk} chunks, {chunks} asked")
        base_model = ref.model
        ct = ref.corpus_tokens
        get_base = ref.chunk
    else:
        if corpus is None:
            raise ModelRuntimeError(f"{base.path}: compare() needs a corpus")
        base_model = base
        ct = corpus_tokens(base, corpus, chunks=chunks)

        def get_base(i: int) -> _BaseChunk:
            return _base_chunk(base_model, ct, i)[0]

    for other in (candidate, placebo):
        if other is None:
            continue
        if other.settings != base_model.settings:
            raise ModelRuntimeError(f"{other.path}: runtime settings differ from the base's "
                                    f"({other.settings} vs {base_model.settings}); they must be identical")
        if other.n_vocab != base_model.n_vocab:
            raise ModelRuntimeError(f"{other.path}: vocabulary of {other.n_vocab} tokens, the base has "
                                    f"{base_model.n_vocab}")
    cand = _Series()
    plac = _Series() if placebo is not None else None
    same_as_placebo: list[np.ndarray] = []
    nonfinite = None
    start = time.perf_counter()
    with _progress(ct.n_chunk, f"compare {candidate.path.name}", progress) as bar:
        for i in range(ct.n_chunk):
            b = get_base(i)
            q_logits, targets = _scored_logits(candidate, ct, i)
            nonfinite = nonfinite or (f"base: {b.nonfinite}" if b.nonfinite else None) or _nonfinite(
                "candidate", q_logits, i)
            cand.add(_token_stats(b, q_logits, targets))
            if plac is not None:
                p_logits, _ = _scored_logits(placebo, ct, i)
                nonfinite = nonfinite or _nonfinite("placebo", p_logits, i)
                plac.add(_token_stats(b, p_logits, targets))
                same_as_placebo.append(q_logits.argmax(axis=1) == p_logits.argmax(axis=1))
            bar.update(1)
    seconds = time.perf_counter() - start
    stats = cand.stats(ct)
    stats["tokens_per_s"] = ct.n_chunk * ct.n_ctx / seconds
    arrays = cand.arrays()
    counts, _ = np.histogram(np.log10(np.clip(arrays["kld"], 1e-10, 99.0)), bins=KLD_HIST_EDGES)
    placebo_block = excess_block = None
    if plac is not None:
        placebo_block = {**plac.stats(ct), "per_chunk": plac.per_chunk, "path": str(placebo.path)}
        excess_block = excess(cand.per_chunk, plac.per_chunk,
                              same_top_p=float(np.concatenate(same_as_placebo).mean()))
    return PairedComparison(
        stats=stats, per_chunk=cand.per_chunk,
        kld_hist={"log10_edges": KLD_HIST_EDGES.tolist(), "counts": counts.tolist()},
        settings=base_model.settings.to_json(), base=str(base_model.path), candidate=str(candidate.path),
        corpus=str(ct.corpus), nonfinite=nonfinite, seconds=seconds, placebo=placebo_block, excess=excess_block,
        nll_base=arrays["nll_b"], nll_q=arrays["nll_q"], kld=arrays["kld"])


def _nonfinite(who: str, logits: np.ndarray, i: int) -> str | None:
    where = first_nonfinite(logits, f"chunk {i + 1}")
    return f"{who}: {where}" if where else None


class _Series:
    """Per-token statistics of one model against the base, gathered chunk by chunk."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in ("nll_q", "nll_b", "kld", "dp", "same_top")}
        self.per_chunk: dict[str, list[float]] = {"ppl_base": [], "ppl_q": [], "ln_ppl_ratio": [], "kld_mean": [],
                                                  "same_top_p": []}

    def add(self, s: dict[str, np.ndarray]) -> None:
        for k in self.parts:
            self.parts[k].append(s[k])
        self.per_chunk["ppl_base"].append(math.exp(float(s["nll_b"].mean())))
        self.per_chunk["ppl_q"].append(math.exp(float(s["nll_q"].mean())))
        self.per_chunk["ln_ppl_ratio"].append(float(s["nll_q"].mean() - s["nll_b"].mean()))
        self.per_chunk["kld_mean"].append(float(s["kld"].mean()))
        self.per_chunk["same_top_p"].append(float(s["same_top"].mean()))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.parts.items()}

    def stats(self, ct: CorpusTokens) -> dict[str, Any]:
        a = self.arrays()
        out = paired_stats(a["nll_q"], a["nll_b"], a["kld"], a["dp"], a["same_top"])
        out["chunks"] = ct.n_chunk
        out["n_ctx"] = ct.n_ctx
        return out


# --- command line -----------------------------------------------------------------------------------------------


def settings_from_args(args: argparse.Namespace) -> RuntimeSettings:
    ubatch = args.ubatch if args.ubatch is not None else args.batch
    return RuntimeSettings(n_ctx=args.ctx, n_batch=args.batch, n_ubatch=min(ubatch, args.batch),
                           n_threads=args.threads, flash_attn=args.flash_attn == "on")


def _show_progress(args: argparse.Namespace) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty() and not (args.json and not sys.stdout.isatty())


def cli_ppl(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with load_model(Path(args.model), settings) as model:
        result = perplexity(model, Path(args.corpus), chunks=args.chunks, progress=_show_progress(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"model      {result.model}\ncorpus     {result.corpus}  ({result.chunks} chunks of {result.n_ctx})")
        print(f"settings   {json.dumps(result.settings)}")
        print("running    " + ",".join(f"[{i + 1}]{p:.4f}" for i, p in enumerate(result.chunk_ppl)))
        print(f"PPL        {result.ppl:.4f} +/- {result.ppl_se:.5f}")
        print(f"speed      {result.tokens_per_s:.1f} tokens/s over {result.tokens} tokens")
        if result.nonfinite:
            print(f"NON-FINITE {result.nonfinite}")
    return 0


def cli_compare(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with load_model(Path(args.base), settings) as base, load_model(Path(args.candidate), settings) as cand:
        result = compare(base, cand, Path(args.corpus), chunks=args.chunks, progress=_show_progress(args))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    s = result.stats
    print(f"base       {result.base}\ncandidate  {result.candidate}\ncorpus     {result.corpus}  "
          f"({s['chunks']} chunks of {s['n_ctx']}, {s['tokens']} scored tokens)")
    print(f"settings   {json.dumps(result.settings)}")
    rows = [
        ("Mean PPL(Q)", f"{s['ppl_q']:10.6f} ± {s['ppl_q_se']:10.6f}"),
        ("Mean PPL(base)", f"{s['ppl_base']:10.6f} ± {s['ppl_base_se']:10.6f}"),
        ("Cor(ln(PPL(Q)), ln(PPL(base)))", f"{100 * s['ln_ppl_cor']:6.2f}%"),
        ("Mean ln(PPL(Q)/PPL(base))", f"{s['ln_ppl_ratio']:10.6f} ± {s['ln_ppl_ratio_se']:10.6f}"),
        ("Mean PPL(Q)/PPL(base)", f"{s['ppl_ratio']:10.6f} ± {s['ppl_ratio_se']:10.6f}"),
        ("Mean PPL(Q)-PPL(base)", f"{s['ppl_diff']:10.6f} ± {s['ppl_diff_se']:10.6f}"),
        ("Mean KLD", f"{s['kld_mean']:10.6f} ± {s['kld_se']:10.6f}"),
        ("Maximum / 99.9% / 99% KLD", f"{s['kld_max']:.6f} / {s['kld_p999']:.6f} / {s['kld_p99']:.6f}"),
        ("Median KLD", f"{s['kld_median']:.6f}"),
        ("Mean Δp", f"{100 * s['dp_mean']:6.3f} ± {100 * s['dp_se']:5.3f} %"),
        ("RMS Δp", f"{100 * s['dp_rms']:6.3f} ± {100 * s['dp_rms_se']:5.3f} %"),
        ("Same top p", f"{100 * s['same_top_p']:6.3f} ± {100 * s['same_top_p_se']:5.3f} %"),
    ]
    for name, value in rows:
        print(f"{name:<31}: {value}")
    if result.nonfinite:
        print(f"NON-FINITE {result.nonfinite}")
    return 0
