"""recipe.imatrix and quant.importance: the importance matrix from llama-imatrix, cached; the array llama-quantize
hands ggml for each tensor; the formats a group's rows allow with and without one."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.quant.importance import load_imatrix, tensor_importance, write_imatrix
from fakequant.quant.select import Selection
from fakequant.recipe import imatrix as imatrix_mod
from fakequant.recipe.groups import plan_groups
from fakequant.recipe.imatrix import compute_imatrix
from fakequant.runtime.settings import RuntimeSettings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


# ------------------------------------------------------------------------------------------- reading the file


def test_load_imatrix_divides_as_llama_quantize(tmp_path: Path) -> None:
    sums = np.array([[1.0, 2.0, 3.0, 0.1], [4.0, 8.0, 12.0, 1e-3], [5.0, 5.0, 5.0, 5.0]], np.float32)
    # counts are stored as floats and rounded (std::lround: 2.5 -> 3); a count of 0 gives ones
    path = write_imatrix(tmp_path / "m.gguf", {"blk.0.ffn_down_exps.weight": (sums, [2.5, 4.0, 0.0]),
                                               "blk.0.attn_q.weight": (np.array([3.0, 6.0], np.float32), [3.0])})
    got = load_imatrix(path)
    assert sorted(got) == ["blk.0.attn_q.weight", "blk.0.ffn_down_exps.weight"]
    want = np.concatenate([sums[0] / np.float32(3), sums[1] / np.float32(4), np.ones(4, np.float32)])
    assert got["blk.0.ffn_down_exps.weight"].dtype == np.float32
    assert np.array_equal(got["blk.0.ffn_down_exps.weight"], want)
    assert np.array_equal(got["blk.0.attn_q.weight"], np.array([1.0, 2.0], np.float32))
    # per expert: rows of a 3-D tensor (ggml shape n_per_row, rows, experts) get their expert's slice
    rows = tensor_importance(got, "blk.0.ffn_down_exps.weight", (4, 7, 3))
    assert rows.shape == (3, 4) and np.array_equal(rows[1], want[4:8])
    assert tensor_importance(got, "blk.1.attn_q.weight", (2, 5)) is None  # no entry: quantized without


def test_load_imatrix_refuses_what_llama_quantize_refuses(tmp_path: Path) -> None:
    legacy = tmp_path / "old.dat"
    legacy.write_bytes(b"\x01\x00\x00\x00" + b"\x00" * 32)
    with pytest.raises(RecipeError, match=r"old\.dat: not a GGUF importance matrix.*--output-format|--in-file"):
        load_imatrix(legacy)
    bad = write_imatrix(tmp_path / "nan.gguf", {"blk.0.attn_q.weight": (np.array([np.inf, 1], np.float32), [1.0])})
    with pytest.raises(RecipeError, match=r"nan\.gguf: blk\.0\.attn_q\.weight: .*non-finite"):
        load_imatrix(bad)
    entries = {"blk.0.attn_q.weight": np.ones(64, np.float32), "token_embd.weight": np.ones(64, np.float32)}
    with pytest.raises(RecipeError, match=r"m\.gguf: tensor blk\.0\.attn_q\.weight: importance of 64 values for "
                                          r"rows of 256"):
        tensor_importance(entries, "blk.0.attn_q.weight", (256, 256), source="m.gguf")
    assert tensor_importance(entries, "token_embd.weight", (256, 1000)) is None  # llama-quantize skips it


# ------------------------------------------------------------------------------------ the formats a group allows


def test_groups_offer_i_quants_the_rows_and_the_imatrix_allow(tmp_path: Path) -> None:
    info = read_layout(write_tiny_gguf(tmp_path / "t.gguf", n_layers=2, dim=256))
    sel = Selection(kinds=("attn_q", "ffn_up"))
    fmts = ("iq4_nl", "iq4_xs", "iq3_s", "iq3_xxs", "iq2_xxs")
    plain = {g.name: g.formats for g in plan_groups(info, sel, fmts, "kind", source="r")}
    # ffn_up is Q4_0 in the tiny model: iq4_nl (18 bytes per 32 too) would not make it smaller
    assert plain == {"attn_q": ("iq4_nl", "iq4_xs", "iq3_s"), "ffn_up": ("iq4_xs", "iq3_s")}
    # entries for attn_q only: its group gains the i-quants that need one, ffn_up does not
    path = write_imatrix(tmp_path / "m.gguf", {f"blk.{i}.attn_q.weight": (np.ones(256, np.float32), [1.0])
                                               for i in range(2)})
    with_imatrix = {g.name: g.formats for g in plan_groups(info, sel, fmts, "kind", source="r", imatrix=path)}
    assert with_imatrix == {"attn_q": fmts, "ffn_up": ("iq4_xs", "iq3_s")}
    # rows of 64: whole 32-blocks only, so iq4_nl alone among the i-quants
    small = read_layout(write_tiny_gguf(tmp_path / "s.gguf", n_layers=1, dim=64))
    assert [g.formats for g in plan_groups(small, Selection(kinds=("attn_q",)), fmts, "kind", source="r")] == \
        [("iq4_nl",)]


# ------------------------------------------------------------------- computing it (a stand-in for llama-imatrix)


FAKE_TOOL = """\
    #!{python}
    import os, sys
    sys.path.insert(0, {repo!r})
    import numpy as np
    from fakequant.quant.importance import write_imatrix
    args = sys.argv[1:]
    value = lambda flag: args[args.index(flag) + 1]
    with open(os.environ["FAKE_IMATRIX_LOG"], "a") as log:
        log.write(" ".join(args) + "\\n")
    if os.environ.get("FAKE_IMATRIX_FAIL"):
        print("main: compute_imatrix: you need at least 1024 tokens for a context of 512 tokens", file=sys.stderr)
        print("llama_perf_context_print: load time = 1 ms", file=sys.stderr)
        sys.exit(1)
    chunks = int(os.environ.get("FAKE_IMATRIX_CHUNKS") or value("--chunks"))
    write_imatrix(value("-o"), {{"blk.0.attn_q.weight": (np.ones(64, np.float32) * chunks, [chunks * 512.0])}},
                  chunks=chunks, chunk_size=int(value("-c")))
"""


@pytest.fixture()
def fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tool = tmp_path / "llama-imatrix"
    tool.write_text(textwrap.dedent(FAKE_TOOL).format(python=sys.executable, repo=str(REPO)))
    tool.chmod(0o755)
    monkeypatch.setattr(imatrix_mod, "tool_path", lambda name: tool)
    monkeypatch.setenv("FAKE_IMATRIX_LOG", str(tmp_path / "calls.log"))
    return tmp_path / "calls.log"


def test_compute_imatrix_runs_once_per_key(tmp_path: Path, fake_tool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf", n_layers=1, dim=64)
    corpus = tmp_path / "c.txt"
    corpus.write_text("some text\n")
    s = RuntimeSettings(n_ctx=512, n_batch=512, n_ubatch=512, n_threads=2)
    first = compute_imatrix(model, corpus, chunks=3, settings=s, log=lambda _: None)
    assert first.tokens == (0, 3 * 512) and first.chunks == 3 and first.path.is_file()
    assert np.array_equal(load_imatrix(first.path)["blk.0.attn_q.weight"], np.full(64, 3 / 1536, np.float32))
    call = fake_tool.read_text().splitlines()[0].split()
    assert call[call.index("--chunks") + 1] == "3" and call[call.index("-c") + 1] == "512"
    assert "--no-repack" in call and call[call.index("-fa") + 1] == "off" and "-o" in call
    logged: list[str] = []
    again = compute_imatrix(model, corpus, chunks=3, settings=s, log=logged.append)
    assert again == first and "cached" in logged[0] and len(fake_tool.read_text().splitlines()) == 1
    # every input that changes the matrix is a new one; the thread count is not
    assert compute_imatrix(model, corpus, chunks=3, settings=RuntimeSettings(n_threads=1), log=print).path == first.path
    others = [compute_imatrix(model, corpus, chunks=2, settings=s, log=print),
              compute_imatrix(model, corpus, chunks=3, settings=RuntimeSettings(n_ctx=256, n_batch=256,
                                                                                n_ubatch=256), log=print),
              compute_imatrix(model, corpus, chunks=3, settings=RuntimeSettings(flash_attn=True), log=print)]
    corpus.write_text("other text\n")
    others.append(compute_imatrix(model, corpus, chunks=3, settings=s, log=print))
    assert len({first.path, *(o.path for o in others)}) == 5 and others[1].tokens == (0, 3 * 256)


def test_compute_imatrix_errors_are_one_line(tmp_path: Path, fake_tool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf", n_layers=1, dim=64)
    corpus = tmp_path / "c.txt"
    corpus.write_text("short\n")
    s = RuntimeSettings()
    monkeypatch.setenv("FAKE_IMATRIX_FAIL", "1")
    with pytest.raises(RecipeError, match=r"tiny\.gguf: llama-imatrix failed \(exit 1\): .*you need at least 1024") \
            as err:
        compute_imatrix(model, corpus, chunks=4, settings=s, log=print)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "home" / "imatrix").glob("*.gguf"))  # nothing half-written where it belongs
    monkeypatch.delenv("FAKE_IMATRIX_FAIL")
    monkeypatch.setenv("FAKE_IMATRIX_CHUNKS", "2")  # the corpus held fewer chunks than asked
    with pytest.raises(RecipeError, match=r"c\.txt: holds 2 chunks of 512 tokens, the importance matrix needs 4"):
        compute_imatrix(model, corpus, chunks=4, settings=s, log=print)
    assert not list((tmp_path / "home" / "imatrix").glob("*.gguf"))
    with pytest.raises(RecipeError, match=r"nope\.txt: no such corpus file"):
        compute_imatrix(model, tmp_path / "nope.txt", chunks=1, settings=s, log=print)
    with pytest.raises(RecipeError, match="chunks 0"):
        compute_imatrix(model, corpus, chunks=0, settings=s, log=print)
    monkeypatch.setattr(imatrix_mod, "tool_path", lambda name: None)
    with pytest.raises(RecipeError, match="llama-imatrix is not built: run `make tools`"):
        compute_imatrix(model, corpus, chunks=1, settings=s, log=print)


# ----------------------------------------------------------------------------------- the real tool, real model


@pytest.fixture(scope="module")
def imatrix_tool() -> Path:
    """The built llama-imatrix, found before a test's cache isolation hides the user's cache."""
    from fakequant.store.tools import tool_path

    tool = tool_path("llama-imatrix")
    if tool is None:
        pytest.skip("llama-imatrix not built; run `make tools`")
    return tool


@pytest.mark.needs_tools
def test_llama_imatrix_on_the_default_model(default_assets: tuple[Path, Path], imatrix_tool: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imatrix_mod, "tool_path", lambda name: imatrix_tool)
    model, corpus = default_assets
    text = tmp_path / "corpus.txt"
    text.write_text(corpus.read_text()[:20_000] + "\n")  # a few thousand tokens: 2 chunks of 512 and more
    imx = compute_imatrix(model, text, chunks=1, settings=RuntimeSettings(n_threads=2), log=print)
    assert imx.tokens == (0, 512)
    entries = load_imatrix(imx.path)
    info = read_layout(model)
    blk = [t for t in info.tensors if t.name.startswith("blk.") and len(t.shape) == 2]
    # every block matrix has an entry of its row length, and nothing else has one (token_embd is not collected)
    assert sorted(entries) == sorted(t.name for t in blk)
    for t in blk:
        rows = tensor_importance(entries, t.name, t.shape)
        assert rows.shape == (1, t.n_per_row) and np.all(rows >= 0) and np.any(rows > 0), t.name


@pytest.mark.slow
@pytest.mark.needs_tools
def test_stock_mix_with_an_imatrix(quantize_reference: tuple[Path, Path], default_imatrix: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fakequant.gguf.layout import read_tensor_bytes, read_tensor_values
    from fakequant.quant import ggml
    from fakequant.recipe import stock

    src, tool = quantize_reference
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(stock, "tool_path", lambda name: tool)
    plain = stock.stock_mix(src, "Q4_0", threads=2)
    weighted = stock.stock_mix(src, "Q4_0", threads=2, imatrix=default_imatrix)
    assert weighted.path != plain.path and weighted.label == "Q4_0+imatrix" and plain.label == "Q4_0"
    assert f"llama-quantize --allow-requantize --imatrix {default_imatrix} {src}" in weighted.command
    assert stock.stock_mix(src, "Q4_0", threads=2, imatrix=default_imatrix) == weighted  # cached
    info, a, b = read_layout(src), read_layout(weighted.path), read_layout(plain.path)
    name = "blk.0.attn_q.weight"
    assert a.tensor(name).type_name == b.tensor(name).type_name == "Q4_0"
    values = read_tensor_values(info, name).reshape(-1, info.tensor(name).n_per_row)
    # llama-quantize's bytes are ggml's with exactly the array load_imatrix computes, and not those without it
    weights = load_imatrix(default_imatrix)[name]
    assert read_tensor_bytes(a, name) == ggml.quantize_rows(values, "q4_0", weights).tobytes()
    assert read_tensor_bytes(b, name) == ggml.quantize_rows(values, "q4_0").tobytes() != read_tensor_bytes(a, name)
    with pytest.raises(RecipeError, match=r"nope\.gguf: no such importance matrix file"):
        stock.stock_mix(src, "Q4_0", imatrix=tmp_path / "nope.gguf")
