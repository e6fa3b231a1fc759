"""recipe.size: bytes per ggml type as ggml itself counts them, and the predicted file size equal to the size of
the file actually written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from fakequant.errors import RecipeError
from fakequant.gguf.check import read_layout
from fakequant.gguf.synthetic import write_tiny_gguf
from fakequant.quant import ggml as ggml_quants
from fakequant.quant.storage import NATIVE_TYPES
from fakequant.recipe.build import build_mix, mix_provenance, mix_recipe
from fakequant.recipe.size import bits_per_weight, is_matrix, predict_file_size, type_nbytes

# bytes per block and values per block, from ggml's block structs (ggml-common.h): e.g. block_q4_0 is an fp16 scale
# and 16 bytes of 4-bit codes for 32 values; block_q4_K two fp16, 12 bytes of scales and 128 of codes for 256
BLOCKS = {"F32": (4, 1), "F16": (2, 1), "BF16": (2, 1), "Q4_0": (18, 32), "Q4_1": (20, 32), "Q5_0": (22, 32),
          "Q5_1": (24, 32), "Q8_0": (34, 32), "MXFP4": (17, 32), "Q2_K": (84, 256), "Q3_K": (110, 256),
          "Q4_K": (144, 256), "Q5_K": (176, 256), "Q6_K": (210, 256),
          # the i-quants (their static_asserts): e.g. block_iq4_xs an fp16 scale, 2 + 4 bytes of sub-block scales
          # and 128 of 4-bit codes for 256; block_iq4_nl an fp16 scale and 16 bytes of codes for 32
          "IQ4_NL": (18, 32), "IQ4_XS": (136, 256), "IQ3_S": (110, 256), "IQ3_XXS": (98, 256), "IQ2_S": (82, 256),
          "IQ2_XS": (74, 256), "IQ2_XXS": (66, 256), "IQ1_M": (56, 256), "IQ1_S": (50, 256)}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))


@pytest.fixture()
def tiny256(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny256.gguf", n_layers=2, dim=256)


@pytest.mark.parametrize("type_name", sorted(BLOCKS))
def test_bytes_per_type_are_ggmls(type_name: str) -> None:
    size, block = BLOCKS[type_name]
    for n_per_row, rows in ((256, 3), (1536, 2), (768, 1)):
        assert type_nbytes(type_name, (n_per_row, rows)) == rows * n_per_row // block * size
        # and what ggml itself says a row takes
        lib = ggml_quants._lib()
        assert type_nbytes(type_name, (n_per_row, rows)) == rows * lib.ggml_row_size(
            int(ggml_quants.ggml_type(type_name)), n_per_row)


def test_every_native_type_has_its_block_size() -> None:
    assert set(NATIVE_TYPES.values()) <= set(BLOCKS)


def test_row_lengths_rule_types_out() -> None:
    with pytest.raises(RecipeError, match=r"^Q4_K: rows of 576 values are not whole blocks of 256$"):
        type_nbytes("Q4_K", (576, 10))
    assert type_nbytes("Q5_0", (576, 10)) == 10 * 18 * 22
    with pytest.raises(RecipeError, match="unknown"):
        type_nbytes("Q7_0", (32, 1))


def test_tensor_sizes_match_a_file_written_by_gguf_py(tiny256: Path) -> None:
    info = read_layout(tiny256)
    reader = {t.name: t for t in GGUFReader(tiny256).tensors}
    assert {t.type_name for t in info.tensors} >= {"F32", "F16", "Q8_0", "Q4_0"}
    for t in info.tensors:
        assert type_nbytes(t.type_name, t.shape) == t.nbytes == int(reader[t.name].n_bytes), t.name


def test_bits_per_weight_counts_the_matrices_only(tiny256: Path) -> None:
    info = read_layout(tiny256)
    matrices = [t for t in info.tensors if is_matrix(t)]
    assert len(matrices) < len(info.tensors)  # the norms are left out
    by_hand = 8 * sum(t.nbytes for t in matrices) / sum(int(np.prod(t.shape)) for t in matrices)
    assert bits_per_weight(info, {}) == pytest.approx(by_hand)
    # every matrix in Q4_0: 18 bytes per 32 values = 4.5 bits
    assert bits_per_weight(info, {t.name: "Q4_0" for t in matrices}) == pytest.approx(4.5)


@pytest.mark.parametrize(("mix", "same_size"), [
    # sizes change: the data section is laid out again, each tensor padded to the alignment
    ({"blk.0.ffn_down.weight": "q4_k", "blk.0.attn_q.weight": "q5_0", "blk.1.attn_v.weight": "q3_k",
      "token_embd.weight": "mxfp4", "blk.1.ffn_up.weight": "q6_k"}, False),
    # F16 -> BF16 keeps every size: the data section is copied as it is
    ({"blk.0.ffn_gate.weight": "bf16", "blk.1.attn_v.weight": "bf16"}, True),
])
@pytest.mark.parametrize("alignment", [None, 64])
def test_predicted_size_is_the_written_size(tmp_path: Path, mix: dict[str, str], same_size: bool,
                                            alignment: int | None) -> None:
    src = write_tiny_gguf(tmp_path / "src.gguf", n_layers=2, dim=256, alignment=alignment)
    info = read_layout(src)
    built = build_mix(src, mix, tmp_path / "mixed.gguf")
    order = [t.name for t in info.tensors if t.name in mix]  # the candidate recipe lists them in file order
    predicted = predict_file_size(info, {n: NATIVE_TYPES[f] for n, f in mix.items()},
                                  mix_provenance(mix_recipe({n: mix[n] for n in order}), built.source_sha256))
    assert built.same_size == same_size
    assert predicted == (tmp_path / "mixed.gguf").stat().st_size == built.output_bytes
    assert predicted != info.file_size  # the provenance alone changes the size
