"""quant.storage: matrices stored in the format's own ggml type, with the bytes ggml's quantizer (and so
llama-quantize) writes; 1-D tensors and formats without a ggml type keep the value rule."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from fakequant.errors import RecipeError
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.quant import ggml as ggml_quants
from fakequant.quant.candidate import Recipe, build_candidate
from fakequant.quant.formats import imatrix_problem, round_trip
from fakequant.quant.importance import write_imatrix
from fakequant.quant.select import Selection
from fakequant.quant.storage import NATIVE_TYPES

T = GGMLQuantizationType
MATRICES = ("blk.0.ffn_gate.weight", "blk.0.attn_q.weight")  # F16 and Q8_0 sources
NORM = "blk.0.ffn_norm.weight"  # F32[256]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


@pytest.fixture()
def tiny256(tmp_path: Path) -> Path:
    # rows of 256 so that K-quants apply too
    return write_tiny_gguf(tmp_path / "tiny256.gguf", n_layers=1, dim=256)


def _tensor(reader: GGUFReader, name: str) -> tuple[str, np.ndarray, np.ndarray]:
    """(type, raw bytes, float32 values as rows) read with gguf-py, independently of fakequant's reader."""
    t = next(t for t in reader.tensors if t.name == name)
    raw = np.asarray(t.data).view(np.uint8).reshape(-1)
    values = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1, int(t.shape[0]))
    return t.tensor_type.name, raw, values


def _expected_bytes(values: np.ndarray, fmt: str, importance: np.ndarray | None = None) -> np.ndarray:
    if fmt == "bf16":
        return values.astype(ml_dtypes.bfloat16).view(np.uint8).reshape(-1)
    if fmt == "fp16":
        return values.astype(np.float16).view(np.uint8).reshape(-1)
    return ggml_quants.quantize_rows(values, fmt, importance).reshape(-1)


def _imatrix(path: Path, names: tuple[str, ...], n: int = 256) -> tuple[Path, dict[str, np.ndarray]]:
    """A GGUF importance matrix with one entry per name (sums over 5 tokens) and what llama-quantize reads from it."""
    rng = np.random.default_rng(3)
    sums = {name: (rng.random(n) * 5).astype(np.float32) for name in names}
    write_imatrix(path, {name: (s, [5.0]) for name, s in sums.items()})
    return path, {name: (s / np.float32(5)).astype(np.float32) for name, s in sums.items()}


@pytest.mark.parametrize("fmt", sorted(NATIVE_TYPES))
def test_every_ggml_format_is_stored_natively(tiny256: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"{fmt}.gguf"
    if imatrix_problem(fmt, None):  # an i-quant that needs an importance matrix: the matrices get one
        imatrix, importance = _imatrix(tmp_path / "imatrix.gguf", MATRICES)
        with pytest.raises(RecipeError, match=rf"tensor {NORM}: {fmt} needs an importance matrix"):
            build_candidate(tiny256, Recipe(Selection(names=(*MATRICES, NORM)), fmt, imatrix=str(imatrix)), out)
        result = build_candidate(tiny256, Recipe(Selection(names=MATRICES), fmt, imatrix=str(imatrix)), out)
    else:
        importance = {}
        result = build_candidate(tiny256, Recipe(Selection(names=(*MATRICES, NORM)), fmt), out)
    stats = {t.name: t for t in result.tensors}
    orig, cand = GGUFReader(tiny256), GGUFReader(out)
    for name in MATRICES:
        src_type, src_raw, before = _tensor(orig, name)
        stored_type, raw, after = _tensor(cand, name)
        assert stored_type == NATIVE_TYPES[fmt] == stats[name].stored_type, name
        assert stats[name].source_type == src_type
        if src_type == stored_type:  # llama-quantize keeps a tensor already in the target type as it is
            assert np.array_equal(raw, src_raw) and stats[name].noop, name
        else:
            assert np.array_equal(raw, _expected_bytes(before, fmt, importance.get(name))), f"{name}: {fmt} bytes"
            assert stats[name].changed == int(np.count_nonzero(after != before)) > 0, name
    if importance:
        return
    # a norm is never quantized by llama.cpp: it keeps its F32 storage with the format's values
    norm = stats[NORM]
    assert (norm.source_type, norm.stored_type) == ("F32", "F32")
    _, _, before = _tensor(orig, NORM)
    _, _, after = _tensor(cand, NORM)
    assert np.array_equal(after, round_trip(before, fmt))


def test_imatrix_is_part_of_the_candidate_and_its_key(tiny256: Path, tmp_path: Path) -> None:
    sel = Selection(names=MATRICES)
    a, _ = _imatrix(tmp_path / "a.gguf", MATRICES)
    b = tmp_path / "b.gguf"
    write_imatrix(b, {name: (np.ones(256, np.float32), [1.0]) for name in MATRICES})
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(a.read_bytes())
    plain = build_candidate(tiny256, Recipe(sel, "q4_k"))
    with_a = build_candidate(tiny256, Recipe(sel, "q4_k", imatrix=str(a)))
    with_b = build_candidate(tiny256, Recipe(sel, "q4_k", imatrix=str(b)))
    same = build_candidate(tiny256, Recipe(sel, "q4_k", imatrix=str(copy)))  # same content elsewhere: reused
    assert len({plain.output, with_a.output, with_b.output}) == 3 and same.output == with_a.output and same.reused
    assert plain.output.read_bytes() != with_a.output.read_bytes() != with_b.output.read_bytes()
    recipe = Recipe(sel, "q4_k", imatrix=str(a))
    assert Recipe.from_json(recipe.to_json()) == recipe and recipe.to_json()["imatrix"]["sha256"]
    # a tensor without an entry is quantized without importance, as llama-quantize does
    one = tmp_path / "one.gguf"
    write_imatrix(one, {MATRICES[0]: (np.ones(256, np.float32), [1.0])})
    partial = build_candidate(tiny256, Recipe(sel, "q4_k", imatrix=str(one)), tmp_path / "partial.gguf")
    assert _tensor(GGUFReader(partial.output), MATRICES[1])[1].tobytes() == \
        _tensor(GGUFReader(plain.output), MATRICES[1])[1].tobytes()
    for bad, match in ((Recipe(sel, "q4_k", imatrix=str(tmp_path / "none.gguf")), "no such importance matrix"),
                       (Recipe(sel, "int4", imatrix=str(a)), "only formats with a ggml type"),
                       (Recipe(sel, "placebo", imatrix=str(a)), "only formats with a ggml type")):
        with pytest.raises(RecipeError, match=match):
            build_candidate(tiny256, bad)
    wrong = tmp_path / "wrong.gguf"  # an imatrix of another model: entries of another row length
    write_imatrix(wrong, {name: (np.ones(64, np.float32), [1.0]) for name in MATRICES})
    with pytest.raises(RecipeError, match=r"importance of 64 values for rows of 256"):
        build_candidate(tiny256, Recipe(sel, "q4_k", imatrix=str(wrong)))


def test_forced_and_explicit_storage(tiny256: Path, tmp_path: Path) -> None:
    sel = Selection(names=("blk.0.ffn_gate.weight",))  # F16 source
    auto = build_candidate(tiny256, Recipe(sel, "q4_0"), tmp_path / "auto.gguf")
    native = build_candidate(tiny256, Recipe(sel, "q4_0", store="native"), tmp_path / "native.gguf")
    forced = build_candidate(tiny256, Recipe(sel, "q4_0", store="f32"), tmp_path / "f32.gguf")
    assert auto.tensors[0].stored_type == native.tensors[0].stored_type == "Q4_0"
    assert forced.tensors[0].stored_type == "F32"
    # the same values whichever way they are stored
    _, _, a = _tensor(GGUFReader(tmp_path / "auto.gguf"), "blk.0.ffn_gate.weight")
    _, _, f = _tensor(GGUFReader(tmp_path / "f32.gguf"), "blk.0.ffn_gate.weight")
    assert np.array_equal(a, f)
    # formats without a ggml type keep the value rule, and cannot be asked for native storage
    int8 = build_candidate(tiny256, Recipe(sel, "int8"), tmp_path / "int8.gguf")
    assert int8.tensors[0].stored_type == "F32"
    with pytest.raises(RecipeError, match=r"^store native: format int8 has no ggml type") as err:
        build_candidate(tiny256, Recipe(sel, "int8", store="native"), tmp_path / "never.gguf")
    assert "\n" not in str(err.value) and not (tmp_path / "never.gguf").exists()


# ------------------------------------------------------------------------ against llama-quantize, real model


def _bytes_of(reader: GGUFReader, name: str) -> tuple[str, bytes]:
    t = next(t for t in reader.tensors if t.name == name)
    return t.tensor_type.name, np.asarray(t.data).view(np.uint8).tobytes()



@pytest.mark.slow
@pytest.mark.needs_tools
def test_native_candidate_bytes_equal_llama_quantize(tmp_path: Path, quantize_reference: tuple[Path, Path]) -> None:
    """``llama-quantize --tensor-type NAME=q4_k SRC DST Q4_1``: the override applies only when the base ftype is
    a quantized one (llama-quant.cpp checks ``ggml_is_quantized(default_type)`` before looking at overrides; with
    F32/F16/BF16/COPY the tensor is not quantized). Q4_1, the source's own type, keeps everything else as it is."""
    (src, tool), name = quantize_reference, "blk.0.ffn_down.weight"
    ref = tmp_path / "ref.gguf"
    proc = subprocess.run([str(tool), "--allow-requantize", "--tensor-type", r"blk\.0\.ffn_down\.weight=q4_k",
                           str(src), str(ref), "Q4_1", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = build_candidate(src, Recipe(Selection(names=(name,)), "q4_k"), tmp_path / "ours.gguf")
    assert ours.tensors[0].stored_type == "Q4_K"
    ref_type, ref_bytes = _bytes_of(GGUFReader(ref), name)
    our_type, our_bytes = _bytes_of(GGUFReader(tmp_path / "ours.gguf"), name)
    assert ref_type == our_type == "Q4_K"
    assert len(our_bytes) == 1536 // 256 * 144 * 576
    assert our_bytes == ref_bytes, f"{name}: fakequant's Q4_K bytes differ from llama-quantize's"
