"""runtime.perplexity, runtime.paired and suite.baseline: corpus checks, the llama.cpp algorithm, the paired
statistics.

The golden numbers of llama.cpp's own tool are checked in test_tools_crosscheck.py; here the algorithm is checked
against an independent straightforward implementation, and the statistics against their textbook formulas.
"""

from __future__ import annotations

import json
import math
import shutil
import threading

import ml_dtypes
import numpy as np
import pytest
from gguf import GGUFReader

from fakequant import cli
from fakequant.errors import CorpusError, ModelRuntimeError
from fakequant.report import plots, text
from fakequant.runtime import llama as runtime
from fakequant.runtime.paired import BaseReference, _mean_se, compare, paired_stats
from fakequant.runtime.perplexity import _score_in_parts, _score_rows, corpus_tokens, perplexity
from fakequant.runtime.settings import RuntimeSettings
from fakequant.store import assets
from fakequant.suite.baseline import baseline_cached, baseline_key, baseline_path

CTX = 256
SETTINGS = RuntimeSettings(n_ctx=CTX, n_batch=CTX, n_ubatch=CTX, n_threads=2)


def write_fp8_candidate(src, dst, pattern=".ffn_norm.weight"):
    """A copy of ``src`` whose F32 tensors named ``blk.*<pattern>`` went through FP8 E4M3 and back."""
    shutil.copyfile(src, dst)
    reader = GGUFReader(dst, "r+")
    changed = 0
    for t in reader.tensors:
        if t.name.startswith("blk.") and t.name.endswith(pattern):
            values = np.array(t.data, dtype=np.float32)
            t.data[...] = values.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
            changed += int((t.data != values).sum())
    reader.data.flush()
    del reader
    assert changed > 0
    return dst


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(assets.corpus_path().read_text()[:30_000] + "\n")
    return path


@pytest.fixture(scope="module")
def base():
    with runtime.load_model(assets.model_path(), SETTINGS) as m:
        yield m


@pytest.fixture(scope="module")
def candidate(tmp_path_factory):
    path = write_fp8_candidate(assets.model_path(), tmp_path_factory.mktemp("cand") / "fp8.gguf")
    with runtime.load_model(path, SETTINGS) as m:
        yield m


# --- corpus -----------------------------------------------------------------------------------------------------


def test_corpus_errors_name_the_file_and_the_problem(base, tmp_path):
    with pytest.raises(CorpusError, match=r"missing\.txt: no such corpus file"):
        perplexity(base, tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(CorpusError, match=r"empty\.txt: the corpus is empty"):
        perplexity(base, tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1\.txt: not UTF-8 text \(invalid byte 0xe9 at offset 3\)"):
        perplexity(base, tmp_path / "latin1.txt")
    (tmp_path / "short.txt").write_text("A short text. " * 20)
    present = len(base.tokenize("A short text. " * 20))
    with pytest.raises(CorpusError, match=rf"short\.txt: tokenizes to {present} tokens; .* needs at least {2 * CTX}"):
        perplexity(base, tmp_path / "short.txt", chunks=1)


def test_prefix_tokenization_equals_whole_text(base, small_corpus):
    whole = corpus_tokens(base, small_corpus)
    part = corpus_tokens(base, small_corpus, chunks=2)
    assert part.n_chunk == 2 and len(part.tokens) == 2 * CTX
    assert whole.corpus_tokens == len(base.tokenize(small_corpus.read_text()[:-1]))
    assert whole.n_chunk == whole.corpus_tokens // CTX
    np.testing.assert_array_equal(part.tokens, whole.tokens[:2 * CTX])


# --- perplexity -------------------------------------------------------------------------------------------------


def naive_perplexity(model, text, n_ctx, n_chunk):
    """Straight from the description of llama-perplexity, through llama-cpp-python's high-level API."""
    with runtime._model_params(use_extra_bufts=False):  # AMX faults on this VM; see fakequant.runtime.settings
        llama = runtime.llama_cpp.Llama(str(model.path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=2,
                                        n_threads_batch=2, logits_all=True, verbose=False)
    tokens = llama.tokenize(text.encode(), add_bos=model.add_bos, special=False)
    nll = []
    for c in range(n_chunk):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        llama.reset()
        llama.eval(chunk)
        scores = np.array(llama.scores[:n_ctx], dtype=np.float64)
        for pos in range(n_ctx // 2, n_ctx - 1):
            row = scores[pos]
            nll.append(-(row[chunk[pos + 1]] - row.max() - math.log(np.exp(row - row.max()).sum())))
    llama.close()
    nll = np.array(nll)
    ppl = math.exp(nll.mean())
    return ppl, ppl * math.sqrt(nll.var() / (len(nll) - 1)), len(nll)


@pytest.fixture(scope="module")
def ppl_base(base, small_corpus):
    return perplexity(base, small_corpus, chunks=3)


def test_perplexity_matches_a_naive_implementation(base, small_corpus, ppl_base):
    want, want_se, count = naive_perplexity(base, small_corpus.read_text()[:-1], CTX, 3)
    assert ppl_base.scored_tokens == count == 3 * (CTX - 1 - CTX // 2)
    assert ppl_base.ppl == pytest.approx(want, rel=1e-4)
    assert ppl_base.ppl_se == pytest.approx(want_se, rel=1e-3)
    assert len(ppl_base.chunk_ppl) == 3 and ppl_base.chunk_ppl[-1] == pytest.approx(ppl_base.ppl, rel=1e-12)
    data = ppl_base.to_json()
    assert {"ppl", "ppl_se", "tokens", "tokens_per_s", "settings"} <= set(data)
    assert data["settings"] == SETTINGS.to_json() and data["settings"]["flash_attn"] is False
    json.dumps(data)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf in a row
def test_scoring_rows_on_threads_gives_the_numbers_and_the_first_nonfinite_logit_of_one_thread():
    rng = np.random.default_rng(7)
    rows = (rng.standard_normal((255, 3000)) * 4).astype(np.float32)
    targets = rng.integers(0, 3000, 255)

    def score(parts: int, check: bool = True) -> tuple[np.ndarray, str | None]:
        return _score_in_parts(rows, targets, "chunk 2", 256, check, np.empty((parts, 4, 3000), np.float32))

    one, none = _score_rows(rows, targets, "chunk 2", 256, True)
    assert none is None
    for parts in (1, 2, 3, 8, 300):
        nll, bad = score(parts)
        assert bad is None and np.array_equal(nll, one)  # each row is reduced alone: bit for bit
    for value, where in ((-np.inf, "-inf"), (np.inf, "inf"), (np.nan, "nan")):  # each alone: min, max, both
        rows[170, 5] = value
        assert score(1)[1] == score(2)[1] == f"chunk 2, position 426, token id 5: {where}"
    rows[200, 9], rows[30, 1] = np.inf, -np.inf
    assert score(1)[1] == score(4)[1] == "chunk 2, position 286, token id 1: -inf"
    assert score(2, check=False)[1] is None
    targets[200] += 3000
    with pytest.raises(IndexError):  # raised on a scoring thread, re-raised to the caller
        score(2)


# --- paired comparison ------------------------------------------------------------------------------------------


def test_paired_stats_follow_their_definitions():
    rng = np.random.default_rng(0)
    nb = rng.gamma(2.0, 1.5, 1000)
    nq = nb + rng.normal(0.01, 0.05, 1000)
    kld = rng.exponential(0.01, 1000)
    dp = np.exp(-nq) - np.exp(-nb)
    same = rng.random(1000) < 0.9
    s = paired_stats(nq, nb, kld, dp, same)
    n = 1000
    assert s["ppl_q"] == pytest.approx(math.exp(nq.mean()))
    assert s["ppl_base_se"] == pytest.approx(math.exp(nb.mean()) * nb.std() / math.sqrt(n - 1))
    diff = nq - nb
    # the SE of the mean paired difference is the SE of ln(PPL(Q)/PPL(base)) (llama.cpp's covariance formula)
    assert s["ln_ppl_ratio"] == pytest.approx(diff.mean())
    assert s["ln_ppl_ratio_se"] == pytest.approx(diff.std() / math.sqrt(n - 1), rel=1e-6)
    assert s["ln_ppl_cor"] == pytest.approx(np.corrcoef(nq, nb)[0, 1], rel=1e-6)
    assert s["kld_median"] == pytest.approx(np.median(kld)) and s["kld_max"] == kld.max()
    assert s["kld_p99"] == pytest.approx(np.quantile(kld, 0.99))
    assert s["dp_rms"] == pytest.approx(math.sqrt((dp ** 2).mean()))
    assert s["same_top_p"] == same.mean()
    assert s["same_top_p_se"] == pytest.approx(math.sqrt(same.mean() * (1 - same.mean()) / (n - 1)))


def test_few_tokens_never_get_a_zero_width_interval():
    """llama.cpp prints an SE of 0 for 10 values or fewer; here the same formula holds down to 2, NaN for one."""
    x = np.array([0.1, 0.3, 0.2, 0.5, 0.4])
    mean, se = _mean_se(x)
    assert mean == pytest.approx(0.3) and se == pytest.approx(x.std() / math.sqrt(4)) and se > 0
    many = np.linspace(0.0, 1.0, 11)
    assert _mean_se(many)[1] == pytest.approx(many.std() / math.sqrt(10))  # llama.cpp's own, unchanged
    assert math.isnan(_mean_se(np.array([0.7]))[1])
    assert _mean_se(np.full(4, 0.2))[1] == 0.0  # identical values: truly no spread
    s = paired_stats(x + 0.01, x, x, x, x > 0.25)  # a constant shift: its ratio is exact, the rest has spread
    assert s["ln_ppl_ratio_se"] == pytest.approx(0.0, abs=1e-7) and s["ppl_q_se"] > 0 and s["kld_se"] > 0


def test_compare_with_itself_is_exactly_nothing(base, small_corpus):
    twin = runtime.load_model(base.path, SETTINGS)
    c = compare(base, twin, small_corpus, chunks=2)
    twin.close()
    assert c.kld_max == pytest.approx(0.0, abs=1e-9) and c.kld_mean == pytest.approx(0.0, abs=1e-9)
    assert c.same_top_p == 1.0 and c.ln_ppl_ratio == 0.0 and c.dp_rms == 0.0
    assert c.ppl_q == c.ppl_base


def test_compare_candidate_agrees_with_two_perplexity_runs(base, candidate, small_corpus, ppl_base, tmp_path):
    c = compare(base, candidate, small_corpus, chunks=3)
    q = perplexity(candidate, small_corpus, chunks=3)
    assert c.ppl_base == pytest.approx(ppl_base.ppl, rel=1e-12)
    assert c.ppl_q == pytest.approx(q.ppl, rel=1e-12)
    assert c.ln_ppl_ratio == pytest.approx(math.log(q.ppl / ppl_base.ppl), abs=1e-12)
    assert 0 < c.kld_mean < 1 and c.kld_min >= -1e-9 and 0.5 < c.same_top_p < 1
    assert c.stats["tokens"] == 3 * (CTX - 1 - CTX // 2) and c.stats["chunks"] == 3
    data = c.to_json()
    for key in ("ppl_base", "ppl_base_se", "ppl_q", "ppl_q_se", "ln_ppl_cor", "ln_ppl_ratio", "ln_ppl_ratio_se",
                "ppl_ratio", "ppl_ratio_se", "ppl_diff", "ppl_diff_se", "kld_mean", "kld_se", "kld_max", "kld_p999",
                "kld_p99", "kld_p90", "kld_median", "kld_p10", "kld_p05", "kld_p01", "kld_min", "dp_mean", "dp_se",
                "dp_rms", "dp_rms_se", "same_top_p", "same_top_p_se", "chunks", "tokens", "settings", "nonfinite"):
        assert key in data, key
    assert len(data["per_chunk"]["ln_ppl_ratio"]) == 3 and sum(data["kld_hist"]["counts"]) == data["tokens"]
    json.dumps(data)
    # the report draws its per-chunk and KLD plots, and lists the chunks, from this very artifact
    drawn = plots.draw_all({"perplexity_comparison": data}, tmp_path)
    assert {plots.CHUNKS, plots.KLD} <= set(drawn)
    listing = text.perplexity_comparison("x", data)
    assert all(f"{p:.4f}" in listing for p in data["per_chunk"]["ppl_q"])
    # the reusable base side gives the same numbers
    ref = BaseReference.build(base, small_corpus, chunks=3)
    assert ref.in_memory
    again = compare(ref, candidate)
    assert again.stats["kld_mean"] == pytest.approx(c.kld_mean, rel=1e-12)
    assert again.stats["same_top_p"] == c.same_top_p
    streamed = BaseReference.build(base, small_corpus, chunks=3, max_bytes=0)
    assert not streamed.in_memory
    assert compare(streamed, candidate).stats["kld_max"] == pytest.approx(c.kld_max, rel=1e-12)


def test_compare_refuses_different_settings(base, small_corpus):
    other = runtime.load_model(base.path, RuntimeSettings(n_ctx=CTX, n_batch=CTX, n_ubatch=CTX, n_threads=1))
    with pytest.raises(ModelRuntimeError, match="settings differ"):
        compare(base, other, small_corpus, chunks=2)
    other.close()


# --- command line -----------------------------------------------------------------------------------------------


def test_cli_ppl_json_and_errors(small_corpus, capsys, ppl_base):
    status = cli.main(["ppl", str(assets.model_path()), "--corpus", str(small_corpus), "--ctx", str(CTX),
                       "--batch", str(CTX), "--threads", "2", "--chunks", "3", "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert out["ppl"] == pytest.approx(ppl_base.ppl, rel=1e-12) and out["tokens"] == 3 * CTX
    assert out["settings"]["flash_attn"] is False and out["settings"]["n_ctx"] == CTX
    status = cli.main(["ppl", str(assets.model_path()), "--corpus", str(small_corpus) + ".nope", "--json"])
    err = capsys.readouterr().err
    assert status == 2 and "no such corpus file" in err and len(err.strip().splitlines()) == 1


# --- baseline cache ---------------------------------------------------------------------------------------------


def test_baseline_cache_hits_misses_and_computes_once(tmp_path, monkeypatch, small_corpus):
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"ppl": 1.5, "n": len(calls)}

    key = baseline_key(assets.model_path(), small_corpus, SETTINGS, chunks=3)
    assert key["settings"] == SETTINGS.to_json() and len(key["model_sha256"]) == 64
    assert baseline_cached("ppl", key, compute) == {"ppl": 1.5, "n": 1}
    assert baseline_cached("ppl", key, compute) == {"ppl": 1.5, "n": 1}
    assert len(calls) == 1 and baseline_path("ppl", key).is_file()
    for changed in ({**key, "chunks": 4}, {**key, "settings": {**key["settings"], "flash_attn": True}},
                    {**key, "corpus_sha256": "0" * 64}):
        baseline_cached("ppl", changed, compute)
    assert len(calls) == 4
    # concurrent workers: computed once, everybody gets the same value
    results = []
    key2 = {**key, "chunks": 99}
    threads = [threading.Thread(target=lambda: results.append(baseline_cached("ppl", key2, compute)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 5 and all(r == results[0] for r in results)
    baseline_path("ppl", key).write_text("{truncated")
    assert baseline_cached("ppl", key, compute)["n"] == 6
