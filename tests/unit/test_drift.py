"""Per-layer drift of the hidden state: the statistics on synthetic arrays, the capture on a tiny GGUF (graph order,
row mapping across ubatches, logits unchanged), the one-line statement when no layer can be named, and the logits on
the default model with and without capture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fakequant.gguf.synthetic import tiny_values, write_tiny_gguf
from fakequant.runtime import drift, paired
from fakequant.runtime.drift import DriftSeries, HiddenStates, LayerCapture, layer_drift
from fakequant.runtime.llama import load_model
from fakequant.runtime.paired import compare
from fakequant.runtime.perplexity import CorpusTokens, corpus_tokens, scored_logits
from fakequant.runtime.settings import RuntimeSettings

TOKENS = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": [f"tok{i}" for i in range(32)],
          "tokenizer.ggml.merges": ["t o"]}
N_LAYERS, DIM, CTX = 3, 64, 64


# --- statistics ----------------------------------------------------------------------------------------------------

def test_relative_error_and_cosine_of_known_perturbations():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 32)).astype(np.float32)
    rel, cos = layer_drift(base, base * np.float32(1.03))  # a pure scale: 3% off, same direction
    assert rel == pytest.approx(0.03, rel=1e-5) and cos == pytest.approx(1.0, abs=1e-7)
    # an orthogonal push of 10% of each row's norm: relative error 0.1, cosine 1/sqrt(1.01)
    b = base.astype(np.float64)
    noise = rng.normal(size=b.shape)
    noise -= (np.einsum("ij,ij->i", noise, b) / np.einsum("ij,ij->i", b, b))[:, None] * b
    noise *= (0.1 * np.linalg.norm(b, axis=1) / np.linalg.norm(noise, axis=1))[:, None]
    rel, cos = layer_drift(b, b + noise)
    assert rel == pytest.approx(0.1, rel=1e-9) and cos == pytest.approx(1 / math.sqrt(1.01), rel=1e-9)
    assert layer_drift(base, base) == (0.0, pytest.approx(1.0))


def _states(rows: np.ndarray, scales: dict[str, float]) -> HiddenStates:
    return HiddenStates({name: (rows * np.float32(1 + s)).astype(np.float32) for name, s in scales.items()})


def test_excess_interval_first_resolved_and_largest_growth():
    rows = np.random.default_rng(2).normal(size=(8, 16)).astype(np.float32)
    names = ["l_out-0", "l_out-1", "l_out-2", "result_norm"]
    cand_err = [[0.0, 0.010, 0.030, 0.031], [0.0, 0.012, 0.034, 0.035], [0.0, 0.011, 0.029, 0.030]]
    plac_err = [[0.0, 0.001, 0.002, 0.002], [0.0, 0.002, 0.001, 0.002], [0.0, 0.0015, 0.003, 0.003]]
    series = DriftSeries()
    for c, p in zip(cand_err, plac_err, strict=True):
        series.add(_states(rows, dict.fromkeys(names, 0.0)), _states(rows, dict(zip(names, c, strict=True))),
                   _states(rows, dict(zip(names, p, strict=True))))
    out = series.to_json()
    assert [r["name"] for r in out["layers"]] == names and out["chunks"] == 3 and out["positions"] == 8
    diff = np.subtract(cand_err, plac_err)[:, 2]
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / math.sqrt(3)
    exc = out["layers"][2]["excess"]["rel_err"]
    assert exc["mean"] == pytest.approx(diff.mean(), rel=1e-4)
    assert exc["ci"] == pytest.approx([diff.mean() - half, diff.mean() + half], rel=1e-3)
    assert out["layers"][0]["excess"]["rel_err"]["resolved"] is False  # identical: zero, never "resolved"
    assert out["first_resolved"] == "l_out-1"
    assert out["largest_growth"]["layer"] == "l_out-2"  # the excess grows most from block 1 to block 2
    assert out["growth_of"] == "excess" and out["problems"] == []


# --- capture on a tiny GGUF ----------------------------------------------------------------------------------------

@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf", n_layers=N_LAYERS, dim=DIM, extra_metadata=TOKENS)


def _tokens(n_chunk: int = 2) -> CorpusTokens:
    toks = np.random.default_rng(0).integers(0, 32, size=n_chunk * CTX).astype(np.int32)
    return CorpusTokens(tokens=toks, n_ctx=CTX, n_chunk=n_chunk, corpus_tokens=None, corpus=Path("synthetic"))


def _settings(ubatch: int) -> RuntimeSettings:
    return RuntimeSettings(n_ctx=CTX, n_batch=CTX, n_ubatch=ubatch, n_threads=1)


def test_capture_returns_the_layers_in_graph_order_and_never_changes_the_logits(tiny):
    ct = _tokens()
    with load_model(tiny, _settings(16)) as model:  # 4 ubatches per chunk: the rows must be mapped per ubatch
        plain, targets = scored_logits(model, ct, 1)
        with LayerCapture(model) as cap:
            logits, targets2, states = cap.scored(ct, 1)
        again, _ = scored_logits(model, ct, 1)
    assert np.array_equal(plain.view(np.uint32), logits.view(np.uint32))  # bitwise
    assert np.array_equal(plain.view(np.uint32), again.view(np.uint32)) and np.array_equal(targets, targets2)
    assert list(states.layers) == [f"l_out-{i}" for i in range(N_LAYERS)] + ["result_norm"]
    assert states.problems == []
    assert all(a.shape == (CTX - 1 - CTX // 2, DIM) for a in states.layers.values())
    # the final norm is RMSNorm(last block's output) × output_norm.weight, row by row: the rows line up
    h = states.layers[f"l_out-{N_LAYERS - 1}"].astype(np.float64)
    w = tiny_values("output_norm.weight", (DIM,), 0).astype(np.float64)
    want = h / np.sqrt((h * h).mean(axis=1, keepdims=True) + 1e-5) * w
    assert np.allclose(states.layers["result_norm"], want, rtol=1e-4, atol=1e-5)


def test_the_rows_of_each_position_do_not_depend_on_the_ubatch_split(tiny):
    ct = _tokens()
    got = {}
    for ubatch in (16, 64):
        with load_model(tiny, _settings(ubatch)) as model, LayerCapture(model) as cap:
            got[ubatch] = cap.scored(ct, 0)[2]
    for name, rows in got[64].layers.items():
        assert np.allclose(got[16].layers[name], rows, rtol=1e-4, atol=1e-5), name


@pytest.fixture()
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A corpus file whose tokens are :func:`_tokens` (the tiny vocabulary tokenizes no real text)."""
    monkeypatch.setattr(paired, "corpus_tokens", lambda model, path, chunks=None: _tokens(chunks))
    path = tmp_path / "corpus.txt"
    path.write_text("synthetic\n")
    return path


def test_compare_with_drift_on_a_twin_is_zero_and_the_rest_unchanged(tiny, tmp_path, corpus):
    twin = tmp_path / "twin.gguf"
    twin.write_bytes(tiny.read_bytes())
    with load_model(tiny, _settings(CTX)) as base, load_model(twin, _settings(CTX)) as cand:
        plain = compare(base, cand, corpus, chunks=3)
        with_drift = compare(base, cand, corpus, chunks=3, placebo=cand, drift=True)
    assert with_drift.stats["kld_mean"] == plain.stats["kld_mean"] == 0.0
    block = with_drift.to_json()["drift"]
    assert [r["name"] for r in block["layers"]][-1] == "result_norm"
    assert all(r["candidate"]["rel_err"]["mean"] == 0.0 and r["excess"]["rel_err"]["resolved"] is False
               for r in block["layers"])
    assert block["first_resolved"] is None and "unavailable" not in block


def test_a_graph_whose_layers_cannot_be_named_gets_one_line_and_the_rest_is_unaffected(tiny, corpus, monkeypatch):
    with load_model(tiny, _settings(CTX)) as base:
        plain = compare(base, base, corpus, chunks=2)
        monkeypatch.setattr(drift, "LAYER_RE", drift.re.compile(r"^blk_out-(\d+)$"))  # names no node of this graph
        monkeypatch.setattr(drift, "FINAL", "no_such_node")
        result = compare(base, base, corpus, chunks=2, placebo=base, drift=True)
    block = result.to_json()["drift"]
    assert block["unavailable"].startswith("the graph names no layer outputs l_out-N")
    assert block["layers"] == []
    assert result.stats["ppl_q"] == plain.stats["ppl_q"] and result.stats["kld_mean"] == plain.stats["kld_mean"]


# --- the default model ---------------------------------------------------------------------------------------------

def test_capture_never_changes_the_logits_of_the_default_model(default_assets):
    model_path, corpus = default_assets
    settings = RuntimeSettings(n_ctx=128, n_batch=128, n_ubatch=128, n_threads=2)
    with load_model(model_path, settings) as model:
        ct = corpus_tokens(model, corpus, chunks=1)
        plain, _ = scored_logits(model, ct, 0)
        with LayerCapture(model) as cap:
            logits, _, states = cap.scored(ct, 0)
    assert np.array_equal(plain.view(np.uint32), logits.view(np.uint32))
    assert list(states.layers) == [f"l_out-{i}" for i in range(30)] + ["result_norm"] and states.problems == []
