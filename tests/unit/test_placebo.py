"""quant.placebo and quant.nudge: one ulp per value (floats) or per block scale (ggml blocks), only in the selected
tensors, deterministic per seed; built, cached and verified like a candidate; and its effect on the real model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

from fakequant.cli import main
from fakequant.errors import RecipeError
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.quant import ggml as ggml_quants
from fakequant.quant.candidate import Recipe
from fakequant.quant.nudge import FLOAT_BITS, SCALE_OFFSETS, ulp_step
from fakequant.quant.placebo import build_placebo, placebo_recipe, twin_of
from fakequant.quant.select import Selection

T = GGMLQuantizationType
TARGET = "blk.0.attn_q.weight"
FLOAT_DTYPES = {"F32": np.dtype(np.float32), "F16": np.dtype(np.float16), "BF16": np.dtype(ml_dtypes.bfloat16)}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _raw(path: Path) -> dict[str, tuple[str, bytes]]:
    """Every tensor's type and bytes, read with gguf-py."""
    return {t.name: (t.tensor_type.name, np.asarray(t.data).view(np.uint8).tobytes()) for t in GGUFReader(path).tensors}


def _model(tmp_path: Path, type_name: str) -> Path:
    # attn_q in the type under test; rows of 256 so that K-quants fit
    return write_tiny_gguf(tmp_path / f"{type_name}.gguf", n_layers=2, dim=256,
                           tensor_types={"attn_q": T[type_name]})


# ----------------------------------------------------------------------------------------------------- nudges


@pytest.mark.parametrize("type_name", [*FLOAT_BITS, *SCALE_OFFSETS])
def test_only_the_selected_tensor_changes_by_one_ulp(tmp_path: Path, type_name: str) -> None:
    src = _model(tmp_path, type_name)
    sha = _sha(src)
    result = build_placebo(src, Selection(names=(TARGET,)), seed=7, dest=tmp_path / "placebo.gguf")
    assert _sha(src) == sha  # the original is never written
    assert result.changed == [TARGET] and result.same_size and not result.noop
    before, after = _raw(src), _raw(tmp_path / "placebo.gguf")
    assert [n for n in before if before[n] != after[n]] == [TARGET]
    assert after[TARGET][0] == before[TARGET][0] == type_name  # own storage type kept
    old, new = (np.frombuffer(before[TARGET][1], np.uint8), np.frombuffer(after[TARGET][1], np.uint8))
    if type_name in FLOAT_DTYPES:
        _check_float_ulps(old.view(FLOAT_DTYPES[type_name]), new.view(FLOAT_DTYPES[type_name]))
    else:
        _check_block_scales(old, new, type_name)
    (stats,) = result.tensors
    assert (stats.source_type, stats.stored_type, stats.format) == (type_name, type_name, "placebo")
    assert 0 < stats.changed <= stats.n and stats.mean_rel > 0
    # the placebo's own size, on the encoding: about one ulp (2^-mantissa bits) of each nudged value or scale
    mant = FLOAT_BITS[type_name][2] if type_name in FLOAT_BITS else 10
    assert stats.extra["nudged"] > 0.9 * (stats.n if type_name in FLOAT_BITS else len(old) // _block(type_name))
    # F16 values and Q6_K scales of this data include fp16 subnormals, whose ulp is a larger share of the value
    coarse = 2.0 if type_name in ("F16", "Q6_K") else 1.0
    assert 2.0 ** -(mant + 1) <= stats.extra["nudge_rel_mean"] <= 2.0 ** -mant * coarse
    if type_name in ("F32", "BF16", "Q4_0", "Q5_0", "Q8_0", "Q3_K"):  # no subnormals, no minimum: every value
        assert stats.max_rel <= 2.0 ** -mant * 1.001  # moves by at most one ulp of itself (or of its d)


def _block(type_name: str) -> int:
    return GGML_QUANT_SIZES[T[type_name]][1]


def _check_float_ulps(old: np.ndarray, new: np.ndarray) -> None:
    wide_old = old.astype(np.float64)
    movable = np.isfinite(wide_old) & (wide_old != 0)
    assert movable.sum() > 0.9 * old.size
    assert np.array_equal(old[~movable].view(np.uint8), new[~movable].view(np.uint8))  # zeros, inf, NaN kept
    if old.dtype == ml_dtypes.bfloat16:  # compare on the bits: one step of the 16-bit pattern
        up_bits, down_bits = old.view(np.uint16) + np.uint16(1), old.view(np.uint16) - np.uint16(1)
        up = np.where(old > 0, up_bits, down_bits).view(old.dtype)
        down = np.where(old > 0, down_bits, up_bits).view(old.dtype)
    else:  # numpy's nextafter works in float32 and float16 themselves
        up, down = np.nextafter(old, old.dtype.type(np.inf)), np.nextafter(old, old.dtype.type(-np.inf))
    moved = new[movable]
    is_up, is_down = moved == up[movable], moved == down[movable]
    assert np.all(is_up | is_down), "a value moved by more (or less) than one ulp"
    assert 0.3 < is_up.mean() < 0.7  # random directions


def _check_block_scales(old: np.ndarray, new: np.ndarray, type_name: str) -> None:
    size, at = GGML_QUANT_SIZES[T[type_name]][1], SCALE_OFFSETS[type_name]
    ob, nb = old.reshape(-1, size), new.reshape(-1, size)
    rest = np.ones(size, bool)
    rest[at:at + 2] = False
    assert np.array_equal(ob[:, rest], nb[:, rest]), "bytes other than the block scale changed"
    d_old = np.ascontiguousarray(ob[:, at:at + 2]).view(np.float16).reshape(-1)
    d_new = np.ascontiguousarray(nb[:, at:at + 2]).view(np.float16).reshape(-1)
    moved = d_old != 0
    assert np.array_equal(d_old[~moved], d_new[~moved])
    up, down = np.nextafter(d_old, np.float16(np.inf)), np.nextafter(d_old, np.float16(-np.inf))
    assert np.all((d_new[moved] == up[moved]) | (d_new[moved] == down[moved]))
    assert np.all(d_new[moved] != d_old[moved])


@pytest.mark.parametrize("type_name", sorted(SCALE_OFFSETS))
def test_scale_offset_is_the_block_scale(type_name: str) -> None:
    """Zeroing the two bytes at the offset leaves only the min part of each block, constant per 16 values (zero
    for types without a min): proof, through ggml's own dequantizer, that those bytes are the scale d."""
    rows = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    blocks = ggml_quants.quantize_rows(rows, type_name.lower())
    size, at = GGML_QUANT_SIZES[T[type_name]][1], SCALE_OFFSETS[type_name]
    flat = blocks.reshape(-1, size).copy()
    flat[:, at:at + 2] = 0
    values = ggml_quants.dequantize_rows(flat, type_name, 256).reshape(-1, 16)
    assert np.ptp(ggml_quants.dequantize_rows(blocks, type_name, 256).reshape(-1, 16), axis=1).min() > 0
    assert np.all(np.ptp(values, axis=1) == 0)
    if type_name in ("Q4_0", "Q5_0", "Q8_0", "Q3_K", "Q6_K"):
        assert np.all(values == 0)


def test_ulp_step_edges() -> None:
    f32 = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, np.finfo(np.float32).max,
                    np.finfo(np.float32).smallest_subnormal, -np.finfo(np.float32).smallest_subnormal], np.float32)
    away = np.ones(f32.size, bool)
    out = ulp_step(f32.view(np.uint32), away, 8, 23).view(np.float32)
    assert np.array_equal(out[:2].view(np.uint32), f32[:2].view(np.uint32))  # ±0 kept, sign and all
    assert out[2] == np.nextafter(np.float32(1), np.float32(2)) and out[3] == -out[2]
    assert np.isposinf(out[4]) and np.isneginf(out[5]) and np.isnan(out[6])
    assert out[7] == np.nextafter(f32[7], np.float32(0))  # never onto inf: the largest value steps down
    toward = ulp_step(f32.view(np.uint32), ~away, 8, 23).view(np.float32)
    assert toward[8] == 2 * f32[8] and toward[9] == 2 * f32[9]  # never onto zero: the smallest steps up
    assert toward[2] == np.nextafter(np.float32(1), np.float32(0))


def test_deterministic_per_seed(tmp_path: Path) -> None:
    src = _model(tmp_path, "Q4_K")
    sel = Selection(names=(TARGET, "blk.*.ffn_norm.weight"))
    a = build_placebo(src, sel, seed=1, dest=tmp_path / "a.gguf")
    b = build_placebo(src, sel, seed=1, dest=tmp_path / "b.gguf")
    c = build_placebo(src, sel, seed=2, dest=tmp_path / "c.gguf")
    assert _sha(a.output) == _sha(b.output)
    ra, rc = _raw(a.output), _raw(c.output)
    assert all(ra[n] != rc[n] for n in a.changed)
    # the seed is part of the recipe, so of the cache key
    cached = build_placebo(src, sel, seed=1)
    assert not cached.reused and _raw(cached.output) == ra
    assert build_placebo(src, sel, seed=1).reused
    assert build_placebo(src, sel, seed=2).output != cached.output


def test_placebo_twin_of_a_recipe_and_errors(tmp_path: Path) -> None:
    recipe = Recipe(Selection(kinds=("ffn_norm",)), "bf16", epsilon=1e-6)
    twin = twin_of(recipe, seed=3)
    assert (twin.format, twin.seed, twin.selection, twin.epsilon) == ("placebo", 3, recipe.selection, 1e-6)
    assert Recipe.from_json(json.loads(json.dumps(twin.to_json()))) == twin
    src = _model(tmp_path, "MXFP4")
    with pytest.raises(RecipeError, match=rf"MXFP4\.gguf: tensor {TARGET}: the placebo nudges only .* not MXFP4$") \
            as err:
        build_placebo(src, Selection(names=(TARGET,)), dest=tmp_path / "never.gguf")
    assert "\n" not in str(err.value) and not (tmp_path / "never.gguf").exists()
    sel = Selection(names=("blk.0.ffn_norm.weight",))
    for bad, message in [(Recipe(sel, "placebo", seed=-1), r"seed -1: must be an integer >= 0"),
                         (Recipe(sel, "placebo", store="f32"), r"placebo: .* no group_size or store"),
                         (Recipe(sel, "bf16", seed=2), r"seed 2: only the placebo takes a seed")]:
        with pytest.raises(RecipeError, match=message):
            bad.validate()
    assert placebo_recipe(sel).seed == 0


def test_cli_placebo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = tmp_path / "placebo.gguf"
    assert main(["placebo", str(src), str(out), "--tensor", "blk.*.ffn_norm.weight", "--seed", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert main(["quantize", str(src), str(tmp_path / "q.gguf"), "--tensor", "blk.*.ffn_norm.weight", "--format",
                 "bf16", "--json"]) == 0
    assert set(data) == set(json.loads(capsys.readouterr().out))  # the same JSON shape as quantize
    assert data["output"] == str(out) and data["noop"] is False
    assert data["recipe"]["format"] == "placebo" and data["recipe"]["seed"] == 5
    assert [t["name"] for t in data["tensors"]] == ["blk.0.ffn_norm.weight", "blk.1.ffn_norm.weight"]
    assert all(t["changed"] == t["n"] == 64 for t in data["tensors"])  # tiny norms hold no zeros

    assert main(["placebo", str(src), str(out), "--tensor", "blk.0.attn_q.weight"]) == 0
    table = capsys.readouterr().out
    assert "blk.0.attn_q.weight" in table and "Q8_0->Q8_0" in table and "same-size rewrite" in table
    assert main(["placebo", str(src), str(out), "--tensor", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no tensor matches 'nope'" in err


# ----------------------------------------------------------------------------------------- the default model



@pytest.mark.slow
def test_placebo_effect_on_the_default_model(tmp_path: Path, default_assets: tuple[Path, Path]) -> None:
    """An F32 ulp of blk.0.ffn_norm moves the output measurably (the quantized matmuls downstream re-round their
    activations); the same nudge of the last block's norm does not."""
    from fakequant.runtime import llama as runtime
    from fakequant.runtime.paired import BaseReference, compare
    from fakequant.runtime.settings import RuntimeSettings

    model, corpus = default_assets
    settings = RuntimeSettings(n_ctx=512, n_batch=512, n_ubatch=512, n_threads=2, flash_attn=False)
    kld = {}
    with runtime.load_model(model, settings) as base:
        ref = BaseReference.build(base, corpus, chunks=3)  # one base pass for both placebos
        for layer in (0, 29):
            placebo = build_placebo(model, Selection(names=(f"blk.{layer}.ffn_norm.weight",)),
                                    dest=tmp_path / f"p{layer}.gguf")
            assert placebo.tensors[0].mean_rel < 1.2e-7  # the placebo's own size: one F32 ulp
            with runtime.load_model(placebo.output, settings) as cand:
                kld[layer] = compare(ref, cand).kld_mean
    print(f"placebo mean KLD: blk.0.ffn_norm {kld[0]:.3g}, blk.29.ffn_norm {kld[29]:.3g}")
    assert kld[0] > 1e-3
    assert kld[29] < 1e-5
