"""A one-pass paired comparison of two models over identical tokens: the statistics of
``llama-perplexity --kl-divergence``, computed exactly.

:func:`compare` runs base and candidate over identical tokens chunk by chunk (tokenized and scored as in
:mod:`fakequant.runtime.perplexity`) and reports the statistics of ``llama-perplexity --kl-divergence`` with the same
definitions: llama.cpp stores the base's log-probabilities in 16 bits, clamped 16 nats below the top logit, so its
PPL(base), ln(PPL(Q)/PPL(base)) and KLD carry that quantization; here both distributions are used in full float32
(accumulated in float64) and nothing is written to disk. PPL(Q), "same top p" and Δp involve no stored base values
there and agree with it closely.

For sweeps, :meth:`BaseReference.build` scores the base model once and keeps what the comparison needs in memory;
``compare(reference, candidate)`` then costs one candidate pass.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fakequant.errors import ModelRuntimeError
from fakequant.runtime.chunkstats import excess
from fakequant.runtime.drift import DriftSeries, HiddenStates, LayerCapture, states_bytes, unavailable
from fakequant.runtime.llama import Model, first_nonfinite
from fakequant.runtime.perplexity import CorpusTokens, corpus_tokens, progress_bar, row_logsumexp, scored_logits
from fakequant.runtime.rowparts import map_row_parts

KLD_HIST_EDGES = np.linspace(-10.0, 2.0, 61)  # log10(KLD) bins for plots; values outside go to the end bins


@dataclass
class _BaseChunk:
    """What the comparison needs of the base model on one chunk."""

    logits: np.ndarray  # float32 [scored, n_vocab]
    norm: np.ndarray  # float64 [scored]: max + ln Σ exp(logit - max), so ln p = logit - norm
    nll: np.ndarray  # float64 [scored]
    top: np.ndarray  # int [scored]: argmax
    nonfinite: str | None
    states: HiddenStates | None = None  # per-layer outputs at the scored positions, when drift is captured


def _scored(model: Model, ct: CorpusTokens, i: int,
            capture: LayerCapture | None) -> tuple[np.ndarray, np.ndarray, HiddenStates | None]:
    if capture is None:
        return (*scored_logits(model, ct, i), None)
    return capture.scored(ct, i)


def _base_chunk(model: Model, ct: CorpusTokens, i: int,
                capture: LayerCapture | None = None) -> tuple[_BaseChunk, np.ndarray]:
    logits, targets, states = _scored(model, ct, i, capture)
    mx, lse = row_logsumexp(logits)
    norm = mx.astype(np.float64) + lse
    nll = norm - logits[np.arange(len(targets)), targets]
    return _BaseChunk(logits=logits, norm=norm, nll=nll, top=logits.argmax(axis=1),
                      nonfinite=first_nonfinite(logits, f"chunk {i + 1}"), states=states), targets


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
    With ``drift``, each chunk also keeps the base's layer outputs at the scored positions (counted in
    ``max_bytes``), for ``compare(..., drift=True)``.
    """

    def __init__(self, base: Model, ct: CorpusTokens, chunks: list[_BaseChunk] | None):
        self.model = base
        self.settings = base.settings
        self.corpus_tokens = ct
        self._chunks = chunks

    @classmethod
    def build(cls, base: Model, corpus: Path, *, chunks: int | None = None, first_chunk: int = 0,
              max_bytes: int = 2 << 30, progress: bool = False, drift: bool = False) -> BaseReference:
        ct = corpus_tokens(base, corpus, chunks=chunks, first_chunk=first_chunk)
        per_chunk = (ct.n_ctx - 1 - ct.n_ctx // 2) * base.n_vocab * 4 + (states_bytes(base, ct) if drift else 0)
        if per_chunk * ct.n_chunk > max_bytes:
            return cls(base, ct, None)
        kept = []
        with contextlib.ExitStack() as stack, progress_bar(ct.n_chunk, f"base {base.path.name}", progress) as bar:
            capture = stack.enter_context(LayerCapture(base)) if drift else None
            for i in range(ct.n_chunk):
                kept.append(_base_chunk(base, ct, i, capture)[0])
                bar.update(1)
        return cls(base, ct, kept)

    @property
    def in_memory(self) -> bool:
        return self._chunks is not None

    def chunk(self, i: int, capture: LayerCapture | None = None) -> _BaseChunk:
        if self._chunks is not None:
            return self._chunks[i]
        return _base_chunk(self.model, self.corpus_tokens, i, capture)[0]

    @property
    def holds_states(self) -> bool:
        return self._chunks is not None and all(c.states is not None for c in self._chunks)


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
    drift: dict[str, Any] | None = None  # per-layer drift of the hidden state (runtime.drift), when asked
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
                "seconds": self.seconds, **({"placebo": self.placebo, "excess": self.excess} if self.placebo else {}),
                **({"drift": self.drift} if self.drift is not None else {})}


_KLD_ROWS = 8


def _token_stats(base: _BaseChunk, q_logits: np.ndarray, targets: np.ndarray, parts: int) -> dict[str, np.ndarray]:
    """Per scored token: nll of both, KL(base || Q), Δp = p_Q(tok) - p_base(tok), same argmax; over ``parts``
    slices of the rows at once (:mod:`fakequant.runtime.rowparts`: every value is a row's own)."""
    done = map_row_parts(lambda _, a, b: _token_stats_rows(base, q_logits, targets, a, b), len(targets), parts)
    return {key: np.concatenate([d[key] for d in done]) for key in done[0]}


def _token_stats_rows(base: _BaseChunk, q_logits: np.ndarray, targets: np.ndarray, a: int,
                      b: int) -> dict[str, np.ndarray]:
    """:func:`_token_stats` of rows ``a:b``."""
    q_logits, targets = q_logits[a:b], targets[a:b]
    base_logits, base_norm, base_nll = base.logits[a:b], base.norm[a:b], base.nll[a:b]
    mx, lse = row_logsumexp(q_logits)
    norm_q = mx.astype(np.float64) + lse
    nll_q = norm_q - q_logits[np.arange(len(targets)), targets]
    # KL = Σ p_b (ln p_b - ln p_q) = Σ p_b (l_b - l_q) - (norm_b - norm_q) Σ p_b, in float64 throughout, a few
    # rows at a time: the float64 temporaries stay in cache (measured 0.15-0.25 s → 0.09 s per 255-row chunk of a
    # 49152-token vocabulary, identical results)
    kld = np.empty(len(targets))
    for start in range(0, len(targets), _KLD_ROWS):
        block = slice(start, start + _KLD_ROWS)
        lb = base_logits[block].astype(np.float64)
        diff = lb - q_logits[block]
        lb -= base_norm[block, None]
        np.exp(lb, out=lb)  # p_b
        kld[block] = np.einsum("ij,ij->i", lb, diff) - (base_norm[block] - norm_q[block]) * lb.sum(axis=1)
    return {"nll_q": nll_q, "nll_b": base_nll, "kld": kld, "dp": np.exp(-nll_q) - np.exp(-base_nll),
            "same_top": (q_logits.argmax(axis=1) == base.top[a:b])}


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    """llama.cpp's mean_and_uncertainty for more than 10 values. For 10 or fewer llama.cpp prints an SE of 0, a
    zero-width interval that claims certainty; here the same formula holds down to 2 values, and one value has no SE
    (NaN). Decisions never rest on this per-token SE alone (see :func:`.chunkstats.paired_interval`)."""
    n = len(values)
    mean = float(values.sum() / n)
    if n < 2:
        return mean, math.nan
    var = float((values * values).sum() / n) - mean * mean
    return mean, (math.sqrt(var / (n - 1)) if var > 0 else 0.0)


def paired_stats(nll_q: np.ndarray, nll_b: np.ndarray, kld: np.ndarray, dp: np.ndarray,
                 same_top: np.ndarray) -> dict[str, Any]:
    """The summary block of ``llama-perplexity --kl-divergence``, from per-token values (formulas of its
    kl_divergence())."""
    n = len(nll_q)
    lq, lq_se = _mean_se(nll_q)
    lb, lb_se = _mean_se(nll_b)
    # llama.cpp's covariance (it sets it to 0 below 10 values, where it also zeroes the SEs; see _mean_se)
    cov = (float((nll_q * nll_b).sum() / n) - lq * lb) / (n - 1) if n >= 2 else math.nan
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
        "same_top_p": same, "same_top_p_se": math.sqrt(same * (1 - same) / (n - 1)) if n > 1 else math.nan,
        "tokens": n,
    }
    return out


def compare(base: Model | BaseReference, candidate: Model, corpus: Path | None = None, *,
            chunks: int | None = None, progress: bool = False, placebo: Model | None = None,
            drift: bool = False) -> PairedComparison:
    """Paired comparison of ``candidate`` against ``base`` over identical tokens, in one pass, nothing on disk.

    ``base`` is a loaded model (scored chunk by chunk beside the candidate) or a :class:`BaseReference` built
    earlier (then ``corpus``/``chunks`` must be left out or match it). With a ``placebo`` (the same tensors nudged
    by one ulp), it is scored in the same pass against the same base: the result's ``placebo`` block is the floor
    any change of those tensors produces, and ``excess`` is the candidate beyond it, paired per chunk. With
    ``drift``, each model's layer outputs are captured at the scored positions in the same pass and the result's
    ``drift`` block holds their per-layer drift from the base (:mod:`fakequant.runtime.drift`)."""
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
        base_held = ref.holds_states
    else:
        if corpus is None:
            raise ModelRuntimeError(f"{base.path}: compare() needs a corpus")
        base_model = base
        ct = corpus_tokens(base, corpus, chunks=chunks)

        def get_base(i: int, capture: LayerCapture | None = None) -> _BaseChunk:
            return _base_chunk(base_model, ct, i, capture)[0]

        base_held = False

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
    series = DriftSeries() if drift else None
    drift_block = None
    start = time.perf_counter()
    with contextlib.ExitStack() as stack, progress_bar(ct.n_chunk, f"compare {candidate.path.name}", progress) as bar:
        caps: dict[str, LayerCapture | None] = {"base": None, "candidate": None, "placebo": None}
        if drift:
            try:
                for who, m in (("base", None if base_held else base_model), ("candidate", candidate),
                               ("placebo", placebo)):
                    caps[who] = stack.enter_context(LayerCapture(m)) if m is not None else None
            except (OSError, ModelRuntimeError) as err:  # no drift, everything else as without it
                caps = dict.fromkeys(caps)
                series, drift_block = None, unavailable(f"the layer outputs could not be captured: {err}")
        for i in range(ct.n_chunk):
            b = get_base(i, caps["base"])
            q_logits, targets, q_states = _scored(candidate, ct, i, caps["candidate"])
            nonfinite = nonfinite or (f"base: {b.nonfinite}" if b.nonfinite else None) or _nonfinite(
                "candidate", q_logits, i)
            cand.add(_token_stats(b, q_logits, targets, candidate.settings.threads))
            p_states = None
            if plac is not None:
                p_logits, _, p_states = _scored(placebo, ct, i, caps["placebo"])
                nonfinite = nonfinite or _nonfinite("placebo", p_logits, i)
                plac.add(_token_stats(b, p_logits, targets, candidate.settings.threads))
                same_as_placebo.append(q_logits.argmax(axis=1) == p_logits.argmax(axis=1))
            if series is not None and q_states is not None:
                b_states = b.states if b.states is not None else caps["base"].scored(ct, i)[2] if caps["base"] \
                    else None
                if b_states is not None:
                    series.add(b_states, q_states, p_states)
            bar.update(1)
    seconds = time.perf_counter() - start
    if series is not None:
        drift_block = series.to_json()
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
        drift=drift_block, nll_base=arrays["nll_b"], nll_q=arrays["nll_q"], kld=arrays["kld"])


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
