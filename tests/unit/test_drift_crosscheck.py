"""The captured layer outputs against llama.cpp's own ``llama-eval-callback``, built from the same source.

eval-callback decodes a prompt in one batch (logits of the last token only) and prints every graph node with a
``sum = …`` of all its values (a float accumulation, printed with 6 decimals). The same tokens through
:class:`fakequant.runtime.drift.LayerCapture`, with identical settings (context 512, one batch, 2 threads, flash
attention off, no repacking), must give the same sums for every ``l_out-N`` and ``result_norm`` within float
rounding: the capture reads the right tensors, rows and layers.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from fakequant.runtime.drift import LayerCapture
from fakequant.runtime.llama import load_model
from fakequant.runtime.settings import RuntimeSettings
from fakequant.store import tools

pytestmark = pytest.mark.needs_tools

CTX, THREADS = 512, 2
SETTINGS = RuntimeSettings(n_ctx=CTX, n_batch=CTX, n_ubatch=CTX, n_threads=THREADS, flash_attn=False)
HEADER = re.compile(r"common_debug_cb_eval:\s+(\S+) = \((\w+)\)")
SUM = re.compile(r"^\s*sum = (-?[\d.]+|-?nan|-?inf)\s*$")


def tool_sums(text: str) -> dict[str, float]:
    """Node name → the sum eval-callback printed for it (the first time it appears)."""
    out: dict[str, float] = {}
    current = None
    for line in text.splitlines():
        if m := HEADER.search(line):
            current = m.group(1)
        elif (m := SUM.match(line)) and current is not None:
            out.setdefault(current, float(m.group(1)))
            current = None
    return out


def test_captured_layer_outputs_sum_like_llama_eval_callback(default_assets):
    exe = tools.tool_path("llama-eval-callback")
    if exe is None:
        pytest.skip("llama.cpp's llama-eval-callback is not built; run `make tools` "
                    "(python -m fakequant.store.tools build)")
    model_path, corpus = default_assets
    prompt = corpus.read_text()[:400].strip()
    proc = subprocess.run([str(exe), "-m", str(model_path), "-p", prompt, "-c", str(CTX), "-b", str(CTX), "-ub",
                           str(CTX), "-t", str(THREADS), "-fa", "off", "-nr"], capture_output=True, text=True,
                          timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-2000:]
    theirs = tool_sums(text)
    with load_model(model_path, SETTINGS) as model:
        tokens = model.tokenize(prompt, special=True)
        n = len(tokens)
        m = re.search(r"number of input tokens = (\d+)", text)
        assert m and int(m.group(1)) == n, "eval-callback tokenized the prompt differently"
        with LayerCapture(model) as cap:
            _, every = cap.decode(tokens, first_output=n - 1, keep=range(n))  # blocks before the last: all rows
            _, last = cap.decode(tokens, first_output=n - 1, keep=range(n - 1, n))  # the last block's one row
        n_layer = cap.n_layer
    names = [f"l_out-{i}" for i in range(n_layer)] + ["result_norm"]
    compared = 0
    for name in names:
        rows = every.layers.get(name) if name in every.layers else last.layers.get(name)
        assert rows is not None, f"{name} not captured ({every.problems + last.problems})"
        assert name in theirs, f"eval-callback printed no sum for {name}"
        ours = float(rows.astype(np.float64).sum())
        # eval-callback sums in float32 and prints 6 decimals: measured within 1e-6 of the absolute sum here
        bound = 5e-6 * float(np.abs(rows).sum()) + 1e-5
        assert abs(ours - theirs[name]) <= bound, (name, ours, theirs[name], bound)
        compared += 1
    assert compared == n_layer + 1 and every.layers["l_out-0"].shape[0] == n
