"""Golden numbers from llama.cpp's own ``llama-perplexity``, built from the same source as llama-cpp-python.

Identical settings on both sides: context 512, batch 512, 2 threads, flash attention off, no repacking (``-nr``:
AMX faults on this project's VMs, see fakequant.runtime.settings), 4 chunks.

What must agree, and why not everything to 1e-4: llama.cpp's KLD mode stores the base's log-probabilities in 16 bits
clamped 16 nats below the top logit, so its PPL(base), ln ratio and KLD are approximations of what
runtime.paired.compare() computes exactly. PPL(Q) involves no stored values (relative 1e-4); its PPL(base) is
checked against its own plain perplexity of the base (1e-4); "same top p" (1e-3) and mean KLD (relative 5e-3) carry
the 16-bit storage.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from test_perplexity import write_fp8_candidate

from fakequant.runtime import llama as runtime
from fakequant.runtime.paired import compare
from fakequant.runtime.perplexity import perplexity
from fakequant.runtime.settings import RuntimeSettings
from fakequant.store import assets, tools

pytestmark = pytest.mark.needs_tools

CTX, CHUNKS, THREADS = 512, 4, 2
SETTINGS = RuntimeSettings(n_ctx=CTX, n_batch=CTX, n_ubatch=CTX, n_threads=THREADS, flash_attn=False)
COMMON = ["-c", str(CTX), "-b", str(CTX), "-ub", str(CTX), "-t", str(THREADS), "-fa", "off", "-nr",
          "--chunks", str(CHUNKS)]


@pytest.fixture(scope="module")
def llama_perplexity():
    path = tools.tool_path("llama-perplexity")
    if path is None:
        pytest.skip("llama.cpp's llama-perplexity is not built; run `make tools` "
                    "(python -m fakequant.store.tools build)")
    return path


def run_tool(exe, *args: str) -> str:
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    return out


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the tool's output:\n{text[-3000:]}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def work(tmp_path_factory, llama_perplexity):
    d = tmp_path_factory.mktemp("crosscheck")
    corpus = d / "corpus.txt"
    corpus.write_text(assets.corpus_path().read_text()[:40_000] + "\n")
    cand = write_fp8_candidate(assets.model_path(), d / "fp8.gguf")
    base_out = run_tool(llama_perplexity, "-m", str(assets.model_path()), "-f", str(corpus), *COMMON,
                        "--kl-divergence-base", str(d / "base.kld"))
    plain_out = run_tool(llama_perplexity, "-m", str(assets.model_path()), "-f", str(corpus), *COMMON)
    kld_out = run_tool(llama_perplexity, "-m", str(cand), "-f", str(corpus), *COMMON,
                       "--kl-divergence-base", str(d / "base.kld"), "--kl-divergence")
    return {"corpus": corpus, "cand": cand, "base_out": base_out, "plain_out": plain_out, "kld_out": kld_out}


@pytest.fixture(scope="module")
def ours(work):
    with runtime.load_model(assets.model_path(), SETTINGS) as base, runtime.load_model(work["cand"], SETTINGS) as q:
        return {"ppl": perplexity(base, work["corpus"], chunks=CHUNKS),
                "cmp": compare(base, q, work["corpus"], chunks=CHUNKS)}


def test_perplexity_equals_llama_perplexity(work, ours):
    want = number(r"Final estimate: PPL = ([\d.]+) \+/- [\d.]+", work["plain_out"])
    want_se = number(r"Final estimate: PPL = [\d.]+ \+/- ([\d.]+)", work["plain_out"])
    got = ours["ppl"]
    assert got.ppl == pytest.approx(want, rel=1e-4)
    assert got.ppl_se == pytest.approx(want_se, rel=1e-3)  # printed with 5 decimals
    running = [float(x) for x in re.findall(r"\[\d+\]([\d.]+),", work["plain_out"])]
    assert len(running) == CHUNKS
    assert got.chunk_ppl == pytest.approx(running, rel=1e-4)


def test_compare_agrees_with_kl_divergence_mode(work, ours):
    out, c = work["kld_out"], ours["cmp"].stats
    assert c["ppl_q"] == pytest.approx(number(r"Mean PPL\(Q\)\s*:\s*([\d.]+)", out), rel=1e-4)
    # llama.cpp's own exact number for the base is its plain perplexity run; its KLD-mode PPL(base) is 16-bit
    plain = number(r"Final estimate: PPL = ([\d.]+)", work["plain_out"])
    assert c["ppl_base"] == pytest.approx(plain, rel=1e-4)
    assert c["same_top_p"] == pytest.approx(number(r"Same top p:\s*([\d.]+)", out) / 100, abs=1e-3)
    assert c["kld_mean"] == pytest.approx(number(r"Mean\s+KLD:\s*([-\d.]+)", out), rel=5e-3)
    assert c["tokens"] == CHUNKS * (CTX - 1 - CTX // 2)
    # the base pass that wrote the logits file prints the same plain estimate
    assert number(r"Final estimate: PPL = ([\d.]+)", work["base_out"]) == pytest.approx(plain, rel=1e-9)
