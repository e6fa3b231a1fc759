"""recipe.command: the llama-quantize command of a mixed model; run with the built llama-quantize on the default
model, it writes every tensor with the type and bytes fakequant's builder writes. And `fakequant recipe --plan`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from fakequant.cli import main
from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.gguf.layout import read_tensor_bytes
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.recipe.build import build_mix
from fakequant.recipe.command import FALLBACK_BASE, pattern, quantize_command
from fakequant.recipe.size import is_matrix

REPO = Path(__file__).resolve().parents[2]


def test_pins_every_matrix_not_in_the_base_type(tmp_path: Path) -> None:
    info = read_layout(write_tiny_gguf(tmp_path / "tiny.gguf", n_layers=3, dim=64))
    # the tiny model: per block 3 Q8_0 matrices (attn_q, attn_output, ffn_down), 2 Q4_0, 2 F16; token_embd F16
    command = quantize_command(info, {"blk.0.attn_q.weight": "Q4_0", "blk.1.ffn_up.weight": "Q8_0"})
    assert command.base == "Q8_0"
    final = {t.name: t.type_name for t in info.tensors if is_matrix(t)}
    final.update({"blk.0.attn_q.weight": "Q4_0", "blk.1.ffn_up.weight": "Q8_0"})
    assert dict(command.pins) == {n: t for n, t in final.items() if t != "Q8_0"}
    assert "blk.1.ffn_up.weight" not in dict(command.pins)  # changed to the base type: --pure gives it that
    lines = command.tensor_types().splitlines()
    assert lines[0] == r"^token_embd\.weight$=f16" and r"^blk\.0\.attn_q\.weight$=q4_0" in lines
    names = [t.name for t in info.tensors]
    for line in lines:  # each pattern, read as the regex it is, names exactly one tensor
        regex, _, _ = line.rpartition("=")
        assert len([n for n in names if re.search(regex, n)]) == 1, line
    assert re.search(pattern("output.weight"), "blk.0.attn_output.weight") is None
    assert command.argv(Path("in.gguf"), Path("out.gguf"), Path("t.txt"), tool="/bin/q", threads=2) == [
        "/bin/q", "--allow-requantize", "--pure", "--tensor-type-file", "t.txt", "in.gguf", "out.gguf", "Q8_0", "2"]
    with pytest.raises(RecipeError, match=r"'blk\.0\.ffn_norm\.weight' is not a weight matrix"):
        quantize_command(info, {"blk.0.ffn_norm.weight": "Q8_0"})


def test_base_is_a_quantized_file_type(tmp_path: Path) -> None:
    # every matrix in F16: llama-quantize ignores the patterns with an unquantized base, so the base is Q8_0
    from gguf import GGMLQuantizationType as T

    types = {k: T.F16 for k in ("token_embd", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_gate",
                                "ffn_down")}
    info = read_layout(write_tiny_gguf(tmp_path / "f16.gguf", n_layers=1, dim=64, tensor_types=types))
    command = quantize_command(info, {})
    assert command.base == FALLBACK_BASE and all(t == "F16" for _, t in command.pins)
    assert len(command.pins) == sum(is_matrix(t) for t in info.tensors)


# ------------------------------------------------------------------------ against llama-quantize, real model



# every native format once, on ffn rows of 1536 (ffn_down: the K-quants) and 576; and enough small attention
# matrices in Q5_0 (106 of the 211) that the base type is Q5_0, not the source's Q4_1: the command then pins the
# kept Q4_1 tensors and token_embd (Q8_0) to their own types, and leaves the Q5_0 ones to --pure
MIX = {
    **{f"blk.{i}.{k}.weight": "q5_0" for i in range(30) for k in ("attn_k", "attn_v", "attn_q")},
    **{f"blk.{i}.attn_output.weight": "q5_0" for i in range(16)},
    "blk.0.ffn_down.weight": "q4_k", "blk.1.ffn_down.weight": "q6_k", "blk.2.ffn_down.weight": "q2_k",
    "blk.3.ffn_down.weight": "q3_k", "blk.4.ffn_down.weight": "q5_k", "blk.5.ffn_up.weight": "q8_0",
    "blk.6.ffn_gate.weight": "bf16", "blk.7.ffn_up.weight": "fp16", "blk.8.ffn_gate.weight": "mxfp4",
    "blk.9.ffn_up.weight": "q5_1", "blk.10.ffn_gate.weight": "q4_0",
}


@pytest.mark.slow
@pytest.mark.needs_tools
def test_command_reproduces_the_mixed_model_byte_for_byte(tmp_path: Path, quantize_reference: tuple[Path, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    src, tool = quantize_reference
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))
    ours = build_mix(src, MIX, tmp_path / "ours.gguf")
    info = read_layout(src)
    command = quantize_command(info, {s.name: s.stored_type for s in ours.tensors})
    pins = dict(command.pins)
    assert command.base == "Q5_0" and pins["token_embd.weight"] == "Q8_0" and pins["blk.29.ffn_up.weight"] == "Q4_1"
    assert "blk.0.attn_k.weight" not in pins
    types_file = tmp_path / "tensor_types.txt"
    types_file.write_text(command.tensor_types())
    ref = tmp_path / "ref.gguf"
    proc = subprocess.run(command.argv(src, ref, types_file, tool=tool, threads=2), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = read_layout(tmp_path / "ours.gguf"), read_layout(ref)
    assert sorted(t.name for t in a.tensors) == sorted(t.name for t in b.tensors)  # llama-quantize sorts them
    changed = 0
    for t in a.tensors:
        assert b.tensor(t.name).type_name == t.type_name, t.name
        assert read_tensor_bytes(b, t.name) == read_tensor_bytes(a, t.name), f"{t.name}: bytes differ"
        changed += t.type_name != info.tensor(t.name).type_name
    assert changed == len(MIX)


# the same with an importance matrix from the built llama-imatrix (1 chunk): every format of MIX again, and every
# i-quant, on the rows each allows (ffn_down: 1536, the 256-block ones; 576: iq4_nl), token_embd (no entry in the
# matrix: quantized without, on both sides) included
IMATRIX_MIX = {
    **MIX, "token_embd.weight": "iq4_nl", "blk.11.ffn_up.weight": "iq4_nl",
    **{f"blk.{12 + i}.ffn_down.weight": f for i, f in enumerate(
        ("iq4_xs", "iq3_s", "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s"))},
}


@pytest.mark.slow
@pytest.mark.needs_tools
def test_command_with_imatrix_reproduces_the_model_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 quantize_reference: tuple[Path, Path],
                                                                 default_imatrix: Path) -> None:
    from fakequant.gguf.layout import read_tensor_values
    from fakequant.quant import ggml
    from fakequant.quant.candidate import MIX as MIX_FORMAT
    from fakequant.quant.candidate import Recipe, build_candidate
    from fakequant.quant.importance import load_imatrix
    from fakequant.quant.select import Selection

    src, tool = quantize_reference
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))
    pairs = tuple(IMATRIX_MIX.items())
    recipe = Recipe(Selection(names=tuple(name for name, _ in pairs)), MIX_FORMAT, mix=pairs,
                    imatrix=str(default_imatrix))
    ours = build_candidate(src, recipe, tmp_path / "ours.gguf")
    info = read_layout(src)
    command = quantize_command(info, {t.name: t.stored_type for t in ours.tensors}, imatrix=default_imatrix)
    types_file = tmp_path / "tensor_types.txt"
    types_file.write_text(command.tensor_types())
    argv = command.argv(src, tmp_path / "ref.gguf", types_file, tool=tool, threads=2)
    assert argv[1:4] == ["--allow-requantize", "--imatrix", str(default_imatrix)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = read_layout(tmp_path / "ours.gguf"), read_layout(tmp_path / "ref.gguf")
    assert sorted(t.name for t in a.tensors) == sorted(t.name for t in b.tensors)
    for t in a.tensors:
        assert b.tensor(t.name).type_name == t.type_name, t.name
        assert read_tensor_bytes(b, t.name) == read_tensor_bytes(a, t.name), f"{t.name}: bytes differ"
    assert sum(t.type_name != info.tensor(t.name).type_name for t in a.tensors) == len(IMATRIX_MIX)
    # and the importance did decide the bytes: without it, the same tensor quantizes to others
    name = "blk.10.ffn_gate.weight"
    values = read_tensor_values(info, name).reshape(-1, info.tensor(name).n_per_row)
    assert ggml.quantize_rows(values, "q4_0").tobytes() != read_tensor_bytes(a, name)
    assert ggml.quantize_rows(values, "q4_0", load_imatrix(default_imatrix)[name]).tobytes() == \
        read_tensor_bytes(a, name)


# ------------------------------------------------------------------------------------ fakequant recipe --plan


def test_cli_plan_and_costs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))
    write_tiny_gguf(tmp_path / "tiny.gguf", n_layers=2, dim=256)
    (tmp_path / "c.txt").write_text("text")
    criteria = tmp_path / "criteria.toml"
    criteria.write_text('[defaults]\nmodel = "tiny.gguf"\ncorpus = "c.txt"\n[recipes.mix]\nkinds = ["attn_q", '
                        '"ffn_down"]\ngroup = "kind"\nformats = ["q4_0", "q4_k", "q8_0"]\nbudget_bpw = 9\n'
                        'imatrix = false\n')  # the full run below then fails at loading the model
    assert main(["recipe", "mix", "--plan", "--criteria", str(criteria)]) == 0
    out = capsys.readouterr().out
    assert "recipe mix: 2 groups (kind), 4 cells to measure; budget_bpw = 9" in out  # both are Q8_0 already
    # two 256 × 256 matrices: 2 × 2048 blocks of 34 bytes (Q8_0) or 18 (Q4_0, and Q4_K: 144 per 256)
    assert re.search(r"^attn_q +2 +Q8_0 0\.133 +0\.070 +0\.070 +-$", out, re.M), out
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"attn_q|q4_0": 0.01, "attn_q|q4_k": 0.02, "ffn_down|q4_0": 0.03,
                                 "ffn_down|q4_k": 0.001}))
    assert main(["recipe", "mix", "--plan", "--costs", str(costs), "--criteria", str(criteria)]) == 0
    out = capsys.readouterr().out
    assert "  attn_q: keep\n  ffn_down: q4_k\n" in out, out
    assert "--tensor-type-file tensor_types.txt" in out and r"^blk\.0\.ffn_down\.weight$=q4_k" in out
    assert main(["recipe", "mix", "--criteria", str(criteria)]) == 2
    assert "could not load" in capsys.readouterr().err  # no --plan: the full run, and the tiny file is no model
    assert main(["recipe", "mixx", "--plan", "--criteria", str(criteria)]) == 2
    err = capsys.readouterr().err
    assert "no [recipes.mixx] table; did you mean 'mix'?" in err and err.count("\n") == 1


def test_shipped_recipe_measures_at_most_40_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cell is a perplexity pass on 2 cores: the example recipe stays small."""
    from fakequant.recipe.plan import plan_recipe
    from fakequant.store.assets import DEFAULT_CORPUS, DEFAULT_MODEL, cached_path
    from fakequant.suite.criteria import load_criteria

    if not (cached_path(DEFAULT_MODEL).is_file() and cached_path(DEFAULT_CORPUS).is_file()):
        pytest.skip("default model or corpus not fetched; run `fakequant fetch`")
    for recipe in load_criteria(REPO / "criteria.toml", strict=True).recipes.values():
        plan = plan_recipe(recipe)
        assert 0 < len(plan.cells) <= 40, recipe.name
        assert plan.fixed + sum(min(plan.size(g, o) for o in g.options) for g in plan.groups) <= plan.limit
