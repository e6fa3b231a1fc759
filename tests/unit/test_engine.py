"""The engine end to end: tiny GGUF round trips checked with gguf-py, storage rules, errors, the candidate cache,
the CLI, and the real default model (no-op detection, and a candidate that llama.cpp loads and runs)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from fakequant.cli import main
from fakequant.errors import GGUFFormatError, RecipeError
from fakequant.gguf import compare as gguf_compare
from fakequant.gguf import write as gguf_write
from fakequant.gguf.check import read_layout
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.quant.candidate import Recipe, build_candidate, verify_format
from fakequant.quant.formats import round_trip
from fakequant.quant.select import Selection

T = GGMLQuantizationType


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    return write_tiny_gguf(tmp_path / "src" / "tiny.gguf")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _values(reader: GGUFReader, name: str) -> tuple[str, np.ndarray]:
    t = next(t for t in reader.tensors if t.name == name)
    return t.tensor_type.name, dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)


@pytest.mark.parametrize(("selection", "fmt", "stored"), [
    (Selection(kinds=("ffn_norm",)), "bf16", {"F32"}),  # F32 source stays F32
    (Selection(names=("blk.0.attn_v.weight",)), "fp8_e4m3", {"F16"}),  # F16 source, fp8 values fit in F16
    (Selection(names=("blk.1.ffn_gate.weight",)), "int8", {"F32"}),  # F16 source, int8 values do not fit F16
    (Selection(names=("blk.*.attn_q.weight",)), "q4_0", {"Q4_0"}),  # matrices go native: Q8_0 source -> Q4_0
    (Selection(layers="1"), "int4", {"F32"}),  # int4 scales are float32: not F16 values
    (Selection(names=("blk.0.ffn_up.weight",)), "mxfp4", {"MXFP4"}),
])
def test_tiny_round_trip(tiny: Path, tmp_path: Path, selection: Selection, fmt: str, stored: set[str]) -> None:
    sha_before = _sha(tiny)
    out = tmp_path / "out" / "cand.gguf"
    result = build_candidate(tiny, Recipe(selection, fmt), out)
    assert _sha(tiny) == sha_before  # the original is never written
    assert result.output == out and out.is_file() and result.source_sha256 == sha_before
    assert {t.stored_type for t in result.tensors} == stored
    assert sorted(os.listdir(out.parent)) == ["cand.gguf"]  # no temporaries left behind
    changed = {t.name for t in result.tensors}

    orig, cand = GGUFReader(tiny), GGUFReader(out)  # independent reader
    assert [t.name for t in orig.tensors] == [t.name for t in cand.tensors]
    for o, c in zip(orig.tensors, cand.tensors, strict=True):
        assert list(o.shape) == list(c.shape)
        if o.name in changed:
            _, before = _values(orig, o.name)
            stored_type, after = _values(cand, o.name)
            expected = round_trip(before, fmt)
            assert np.array_equal(after.reshape(expected.shape), expected), o.name
            stats = next(t for t in result.tensors if t.name == o.name)
            assert stats.changed == int(np.count_nonzero(expected != before)) and stats.n == before.size
            assert stats.stored_type == stored_type and stats.source_type == o.tensor_type.name
        else:
            assert c.tensor_type == o.tensor_type
            assert np.asarray(c.data).tobytes() == np.asarray(o.data).tobytes(), o.name
    for key, field in orig.fields.items():
        if not key.startswith("GGUF."):
            assert cand.fields[key].types == field.types
            assert [bytes(p) for p in cand.fields[key].parts] == [bytes(p) for p in field.parts], key
    recipe = json.loads(bytes(cand.fields["fakequant.recipe"].parts[-1]).decode())
    assert recipe["format"] == fmt
    assert bytes(cand.fields["fakequant.source_sha256"].parts[-1]).decode() == sha_before
    assert verify_format(tiny, out, changed) == []
    assert verify_format(tiny, out, set()) != []  # the changed tensors do differ


def test_k_quant_and_bf16_sources(tmp_path: Path) -> None:
    src = write_tiny_gguf(tmp_path / "k.gguf", n_layers=1, dim=256,
                          tensor_types={"attn_q": T.Q4_K, "ffn_down": T.Q6_K, "attn_norm": T.BF16})
    out = tmp_path / "c.gguf"
    result = build_candidate(src, Recipe(Selection(names=("blk.0.attn_q.weight", "blk.0.attn_norm.weight")),
                                         "fp8_e4m3"), out)
    by_name = {t.name: t for t in result.tensors}
    assert (by_name["blk.0.attn_q.weight"].source_type, by_name["blk.0.attn_q.weight"].stored_type) == ("Q4_K", "F32")
    # fp8_e4m3 values all exist in bf16, so a BF16 source keeps its type (and its size)
    assert (by_name["blk.0.attn_norm.weight"].source_type, by_name["blk.0.attn_norm.weight"].stored_type) == \
        ("BF16", "BF16")
    orig, cand = GGUFReader(src), GGUFReader(out)
    for name in by_name:
        _, before = _values(orig, name)
        _, after = _values(cand, name)
        assert np.array_equal(after.reshape(-1), round_trip(before, "fp8_e4m3").reshape(-1))
    q6 = build_candidate(src, Recipe(Selection(names=("blk.0.ffn_down.weight",)), "q4_k"), tmp_path / "q.gguf")
    assert q6.tensors[0].changed > 0 and q6.tensors[0].sqnr_db > 15


def test_numbers_json_shape(tiny: Path, tmp_path: Path) -> None:
    result = build_candidate(tiny, Recipe(Selection(kinds=("ffn_norm",)), "fp8_e4m3", epsilon=1e-6),
                             tmp_path / "c.gguf")
    data = json.loads(json.dumps(result.to_json()))
    assert {"output", "source", "source_sha256", "recipe", "noop", "tensors"} <= set(data)
    assert data["noop"] is False and data["recipe"]["epsilon"] == 1e-6
    for t in data["tensors"]:
        assert {"name", "n", "changed", "max_abs", "mean_abs", "max_rel", "mean_rel", "sqnr_db", "noop"} <= set(t)
        assert t["n"] == 64 and 0 < t["changed"] <= 64


def test_store_option(tiny: Path, tmp_path: Path) -> None:
    sel = Selection(names=("blk.0.attn_q.weight",))  # Q8_0 source
    fp8 = build_candidate(tiny, Recipe(sel, "fp8_e4m3", store="f16"), tmp_path / "a.gguf")
    assert fp8.tensors[0].stored_type == "F16" and not fp8.same_size
    with pytest.raises(RecipeError, match=r"blk.0.attn_q.weight: store f16 would change the int8 values"):
        build_candidate(tiny, Recipe(sel, "int8", store="f16"), tmp_path / "b.gguf")
    assert not (tmp_path / "b.gguf").exists()


@pytest.mark.parametrize(("recipe", "message"), [
    (Recipe(Selection(names=("blk.0.ffn_nrom.weight",)), "bf16"), r"closest: blk.0.ffn_norm.weight"),
    (Recipe(Selection(names=("blk.0.ffn_norm.weight",)), "bf61"), r"did you mean.*bf16"),
    (Recipe(Selection(names=("blk.0.attn_q.weight",)), "q4_k"), r"multiple of 256, this row has 64"),
    (Recipe(Selection(names=("blk.0.attn_q.weight",)), "int4", group_size=48), r"multiple of 48"),
    (Recipe(Selection(names=("blk.0.attn_q.weight",)), "int8", group_size=16), r"only int4"),
    (Recipe(Selection(names=("blk.0.attn_q.weight",)), "int8", epsilon=0.0), r"epsilon"),
    (Recipe(Selection(names=("blk.0.attn_q.weight",)), "int8", store="bf16"), r"store 'bf16'"),
    (Recipe(Selection(), "int8"), r"names no tensors"),
])
def test_recipe_errors(tiny: Path, tmp_path: Path, recipe: Recipe, message: str) -> None:
    with pytest.raises(RecipeError, match=message) as err:
        build_candidate(tiny, recipe, tmp_path / "never.gguf")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "never.gguf").exists()


def test_destination_is_source_refused(tiny: Path, tmp_path: Path) -> None:
    recipe = Recipe(Selection(kinds=("ffn_norm",)), "bf16")
    sha = _sha(tiny)
    with pytest.raises(RecipeError, match="source model itself"):
        build_candidate(tiny, recipe, tiny)
    link = tmp_path / "hardlink.gguf"
    os.link(tiny, link)
    with pytest.raises(RecipeError, match="source model itself"):
        build_candidate(tiny, recipe, link)
    assert _sha(tiny) == sha


def test_interrupted_build_leaves_nothing(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = gguf_write.write_gguf

    def dies_after_writing(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_write, "write_gguf", dies_after_writing)
    dest = tmp_path / "out" / "c.gguf"
    with pytest.raises(KeyboardInterrupt):
        build_candidate(tiny, Recipe(Selection(kinds=("ffn_norm",)), "bf16"), dest)
    assert list(dest.parent.iterdir()) == []


def test_failed_verification_publishes_nothing(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_compare, "compare_layouts", lambda *a, **k: ["tensor x: data differs"])
    dest = tmp_path / "c.gguf"
    with pytest.raises(GGUFFormatError, match=r"c\.gguf: the written copy failed verification: tensor x"):
        build_candidate(tiny, Recipe(Selection(kinds=("ffn_norm",)), "bf16"), dest)
    assert not dest.exists()


def test_cache_builds_once_and_reuses(tiny: Path) -> None:
    recipe = Recipe(Selection(kinds=("attn_norm",)), "fp8_e5m2")
    first = build_candidate(tiny, recipe)
    assert not first.reused and first.output.parent.name == "candidates"
    mtime = first.output.stat().st_mtime_ns
    second = build_candidate(tiny, recipe)
    assert second.reused and second.output == first.output and second.output.stat().st_mtime_ns == mtime
    assert second.to_json()["tensors"] == first.to_json()["tensors"]
    other = build_candidate(tiny, Recipe(Selection(kinds=("attn_norm",)), "fp8_e4m3"))
    assert other.output != first.output
    # a killed build leaves a temporary; the next build of the same candidate clears it and rebuilds
    first.output.with_suffix(".json").unlink()
    leftover = first.output.parent / f".{first.output.name}.tmp-killed"
    leftover.write_bytes(b"half")
    rebuilt = build_candidate(tiny, recipe)
    assert not rebuilt.reused and not leftover.exists() and rebuilt.output == first.output


@pytest.mark.parametrize("placebo", [False, True])
def test_an_upgrade_of_llama_cpp_python_builds_again(tiny: Path, monkeypatch: pytest.MonkeyPatch,
                                                     placebo: bool) -> None:
    """ggml's quantizer, in llama-cpp-python's libggml-base, writes a q-format candidate's bytes: a candidate of one
    version or kernels is never taken for another's. The placebo twin shares the candidate's cache and key."""
    from fakequant.quant.placebo import twin_of

    recipe = Recipe(Selection(names=("blk.*.attn_q.weight",)), "q4_0")
    recipe = twin_of(recipe) if placebo else recipe
    first = build_candidate(tiny, recipe)
    assert build_candidate(tiny, recipe).reused
    monkeypatch.setattr("fakequant.quant.candidate.llama_cpp_build", lambda: "99.0.0 CPU : AVX512 = 1")
    upgraded = build_candidate(tiny, recipe)
    assert not upgraded.reused and upgraded.output != first.output and first.output.is_file()
    assert build_candidate(tiny, recipe).reused


def _build_in_child(args: tuple[str, str]) -> tuple[bool, str, str]:
    home, source = args
    os.environ["FAKEQUANT_HOME"] = home
    result = build_candidate(Path(source), Recipe(Selection(layers="all"), "int4"))
    return result.reused, str(result.output), _sha(result.output)


def test_concurrent_builds_make_one_candidate(tiny: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_build_in_child, [(os.environ["FAKEQUANT_HOME"], str(tiny))] * 2)
    assert sorted(r[0] for r in results) == [False, True]  # one built, the other reused it
    assert results[0][1:] == results[1][1:]
    blocks = {t.name for t in read_layout(tiny).tensors if t.name.startswith("blk.")}
    assert verify_format(tiny, Path(results[0][1]), blocks) == []


def test_cli_quantize_and_inspect(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.gguf"
    assert main(["quantize", str(tiny), str(out), "--tensor", "blk.*.ffn_norm.weight", "--format", "bf16",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output"] == str(out) and data["noop"] is False
    assert [t["name"] for t in data["tensors"]] == ["blk.0.ffn_norm.weight", "blk.1.ffn_norm.weight"]

    assert main(["quantize", str(tiny), str(out), "--tensor", "blk.0.attn_q.weight", "--format", "q4_0"]) == 0
    table = capsys.readouterr().out
    assert "blk.0.attn_q.weight" in table and "Q8_0->Q4_0" in table and "size-changing rewrite" in table

    assert main(["quantize", str(tiny), str(out), "--tensor", "nope", "--format", "bf16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no tensor matches 'nope'" in err and str(tiny) in err

    assert main(["inspect", str(out), "--tensor", "blk.0.attn_q.weight", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in info["tensors"]] == ["blk.0.attn_q.weight"]
    assert info["tensors"][0]["type"] == "Q4_0" and info["tensors"][0]["shape"] == [64, 64]
    assert json.loads(info["metadata"]["fakequant.recipe"]["value"])["format"] == "q4_0"
    assert main(["inspect", str(tiny)]) == 0
    text = capsys.readouterr().out
    assert "general.architecture (string) = 'llama'" in text and "blk.1.ffn_down.weight" in text


# ------------------------------------------------------------------------------------------- the default model


@pytest.fixture(scope="module")
def smollm2() -> Path:
    from fakequant.store.assets import DEFAULT_MODEL
    from fakequant.store.cache import cache_root

    path = cache_root() / DEFAULT_MODEL.folder / DEFAULT_MODEL.name
    if not path.is_file():
        pytest.skip(f"default model not fetched ({path}); run `fakequant fetch model`")
    return path


def test_smollm2_ffn_norm_bf16_is_a_noop(smollm2: Path, tmp_path: Path) -> None:
    result = build_candidate(smollm2, Recipe(Selection(names=("blk.0.ffn_norm.weight",)), "bf16"),
                             tmp_path / "bf16.gguf")
    (stats,) = result.tensors
    assert result.noop and stats.noop and (stats.changed, stats.n) == (0, 576)
    assert stats.max_abs == 0.0 and stats.source_type == stats.stored_type == "F32"
    assert result.same_size


@pytest.mark.slow
def test_smollm2_fp8_candidate_loads_and_generates(smollm2: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp
    import llama_cpp.llama_cpp as lowlevel

    result = build_candidate(smollm2, Recipe(Selection(names=("blk.0.ffn_norm.weight",)), "fp8_e4m3"),
                             tmp_path / "fp8.gguf")
    assert not result.noop and result.tensors[0].changed > 0 and result.same_size
    # No weight repacking (like fakequant.runtime.llama's default): AMX kernels fault on this project's VMs.
    default_params = lowlevel.llama_model_default_params

    def params():  # type: ignore[no-untyped-def]
        p = default_params()
        p.use_extra_bufts = False
        return p

    monkeypatch.setattr(lowlevel, "llama_model_default_params", params)
    # One thread: on a busy 2-core machine ggml's spinning worker threads make 2 threads ~14x slower (measured).
    llm = llama_cpp.Llama(model_path=str(result.output), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False,
                          seed=1)
    try:
        out = llm("The capital of France is", max_tokens=8, temperature=0.0)
    finally:
        llm.close()
    text = out["choices"][0]["text"]
    assert out["usage"]["completion_tokens"] >= 1
    assert "Paris" in text  # greedy answer of the original model; one fp8 norm must not break it
