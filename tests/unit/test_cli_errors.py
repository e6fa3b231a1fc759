"""Every user mistake at the command line: one line on stderr naming the file and the problem, exit status 2, no
traceback, within a few seconds (and, for model files, within a capped address space).

Each case runs ``python -m fakequant ...`` as a subprocess, the way a user or CI would.
"""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fakequant.gguf.check import read_layout
from fakequant.gguf.synthetic import write_tiny_gguf

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = Path.home() / ".cache" / "fakequant" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TIME_LIMIT_S = 20  # "a few seconds" on a quiet machine; generous for a shared 2-core CI runner
MODEL_MEMORY_CAP = 3 << 30  # address space for commands that only parse a model file


def fakequant(*args: str, cwd: Path, memory_cap: int | None = None) -> tuple[int, str, str, float]:
    def limit() -> None:
        if memory_cap is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))

    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "fakequant", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start


def assert_one_line_error(command: str, result: tuple[int, str, str, float], *fragments: str) -> str:
    rc, _out, err, elapsed = result
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"fakequant {command}: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.1f} s"
    return line


# --- model files (fakequant inspect; quantize and ppl share the same check) ------------------------------------------
def _tensor_records(path: Path) -> list[tuple[str, int]]:
    """(name, offset of its record in the tensor table) for a valid file."""
    info = read_layout(path)
    pos = info.fields[-1].end
    records = []
    for t in info.tensors:
        records.append((t.name, pos))
        pos += 8 + len(t.name.encode()) + 4 + 8 * len(t.shape) + 4 + 8
    return records


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _cut(path: Path, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)


def _type_at(path: Path, index: int) -> int:
    name, pos = _tensor_records(path)[index]
    n_dims = struct.unpack_from("<I", path.read_bytes(), pos + 8 + len(name))[0]
    return pos + 8 + len(name) + 4 + 8 * n_dims


def _mid_kv(path: Path) -> int:
    field = read_layout(path).fields[-1]  # fakequant_test.strings, an array of strings
    return (field.start + field.end) // 2


def _mid_tensor_table(path: Path) -> int:
    info = read_layout(path)
    return (info.fields[-1].end + info.header_end) // 2


MODEL_CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "empty": (lambda p: _cut(p, 0), ["empty file (0 bytes)"]),
    "wrong_magic": (lambda p: _patch(p, 0, b"PK\x03\x04"), ["not a GGUF file (magic b'PK\\x03\\x04'"]),
    "version_1": (lambda p: _patch(p, 4, struct.pack("<I", 1)), ["unsupported GGUF version 1 (supported: 2 and 3)"]),
    "truncated_header": (lambda p: _cut(p, 13), ["truncated in the header"]),
    "truncated_kv": (lambda p: _cut(p, _mid_kv(p)), ["truncated in the key/value section (key 12 of 12"]),
    "truncated_tensor_table": (lambda p: _cut(p, _mid_tensor_table(p)), ["truncated in the tensor table (tensor "]),
    "truncated_data": (lambda p: _cut(p, p.stat().st_size - 10), ["data ends at byte", "past the end of the file"]),
    "tensor_count_2_63": (lambda p: _patch(p, 8, struct.pack("<Q", 2**63)),
                          ["tensor count 9223372036854775808 is impossible for a "]),
    "string_length_2_60": (lambda p: _patch(p, 24 + 8 + len("general.architecture") + 4, struct.pack("<Q", 2**60)),
                           [f"'general.architecture': string length {2**60} is impossible"]),
    "offset_past_end": (lambda p: _patch(p, _type_at(p, -1) + 4, struct.pack("<Q", 2**40)),
                        ["tensor 'output_norm.weight' data ends at byte", "past the end of the file"]),
    "duplicate_names": (lambda p: p.write_bytes(p.read_bytes().replace(b"blk.0.attn_k.weight", b"blk.0.attn_q.weight",
                                                                       1)),
                        ["duplicate tensor name 'blk.0.attn_q.weight'"]),
    "unknown_type": (lambda p: _patch(p, _type_at(p, 3), struct.pack("<I", 99)), ["unknown tensor type 99"]),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_bad_model_file(tmp_path: Path, case: str) -> None:
    path = write_tiny_gguf(tmp_path / "model.gguf")
    damage, fragments = MODEL_CASES[case]
    damage(path)
    result = fakequant("inspect", str(path), cwd=tmp_path, memory_cap=MODEL_MEMORY_CAP)
    assert_one_line_error("inspect", result, f"{path}: ", *fragments)


def test_missing_model(tmp_path: Path) -> None:
    result = fakequant("inspect", "nope.gguf", cwd=tmp_path)
    assert_one_line_error("inspect", result, "nope.gguf: no such file")


def test_model_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").mkdir()
    result = fakequant("inspect", "model.gguf", cwd=tmp_path)
    assert_one_line_error("inspect", result, "model.gguf: is a directory")


def test_unreadable_model(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file; tests/unit/test_gguf_check.py::test_unreadable covers it as user nobody")
    path = write_tiny_gguf(tmp_path / "model.gguf")
    path.chmod(0)
    result = fakequant("inspect", str(path), cwd=tmp_path)
    assert_one_line_error("inspect", result, f"{path}: cannot read (Permission denied)")


def test_bad_model_for_quantize(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**63, 0))
    result = fakequant("quantize", str(path), "out.gguf", "--tensor", "x", "--format", "bf16", cwd=tmp_path,
                       memory_cap=MODEL_MEMORY_CAP)
    assert_one_line_error("quantize", result, f"{path}: tensor count 9223372036854775808 is impossible")
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"default model not fetched ({DEFAULT_MODEL})")
@pytest.mark.parametrize("command", ["ppl", "compare", "compare_placebo"])
def test_truncated_model_for_scoring(tmp_path: Path, command: str) -> None:
    """ppl and compare hand user paths to llama.cpp: the structural check names the damage before it loads."""
    cut = tmp_path / "cut.gguf"
    shutil.copyfile(DEFAULT_MODEL, cut)
    _cut(cut, cut.stat().st_size - 10)  # a download that stopped 10 bytes short
    (tmp_path / "corpus.txt").write_text("The quick brown fox jumps over the lazy dog. " * 400)
    models = {"ppl": [str(cut)], "compare": [str(DEFAULT_MODEL), str(cut)],
              "compare_placebo": [str(DEFAULT_MODEL), str(DEFAULT_MODEL), "--placebo", str(cut)]}[command]
    name = command.split("_")[0]
    result = fakequant(name, *models, "--corpus", "corpus.txt", "--ctx", "512", "--threads", "1", cwd=tmp_path)
    assert_one_line_error(name, result, f"{cut}: tensor ", "data ends at byte", "past the end of the file")


# --- recipes (fakequant quantize) ------------------------------------------------------------------------------------
RECIPE_CASES: dict[str, tuple[list[str], list[str]]] = {
    "unknown_format": (["--tensor", "blk.0.ffn_norm.weight", "--format", "bf61"],
                       ["format 'bf61': unknown", "bf16"]),
    "selection_matches_nothing": (["--tensor", "blk.99.*", "--format", "bf16"],
                                  ["model.gguf: no tensor matches 'blk.99.*'"]),
    "group_size_zero": (["--tensor", "blk.0.ffn_norm.weight", "--format", "int4", "--group-size", "0"],
                        ["group_size 0: must be a positive integer"]),
    "group_size_not_dividing_rows": (["--tensor", "blk.0.ffn_norm.weight", "--format", "int4", "--group-size", "7"],
                                     ["model.gguf: tensor blk.0.ffn_norm.weight: int4 with group size 7"]),
    "epsilon_zero": (["--tensor", "blk.0.ffn_norm.weight", "--format", "bf16", "--epsilon", "0"],
                     ["epsilon 0.0: must be a finite number > 0"]),
    "epsilon_negative": (["--tensor", "blk.0.ffn_norm.weight", "--format", "bf16", "--epsilon=-1e-8"],
                         ["epsilon -1e-08: must be a finite number > 0"]),
    "store_changes_values": (["--tensor", "blk.0.attn_q.weight", "--format", "int8", "--store", "f16"],
                             ["model.gguf: tensor blk.0.attn_q.weight: store f16 would change the int8 values"]),
}


@pytest.mark.parametrize("case", sorted(RECIPE_CASES))
def test_bad_recipe(tmp_path: Path, case: str) -> None:
    write_tiny_gguf(tmp_path / "model.gguf")
    before = (tmp_path / "model.gguf").read_bytes()
    args, fragments = RECIPE_CASES[case]
    result = fakequant("quantize", "model.gguf", "out.gguf", *args, cwd=tmp_path)
    assert_one_line_error("quantize", result, *fragments)
    assert not (tmp_path / "out.gguf").exists()
    assert (tmp_path / "model.gguf").read_bytes() == before


# --- corpora (fakequant ppl) -----------------------------------------------------------------------------------------
CORPUS_CASES: dict[str, tuple[bytes | None, list[str]]] = {
    "missing": (None, ["corpus.txt: no such corpus file"]),
    "empty": (b"", ["corpus.txt: the corpus is empty"]),
    "not_utf8": (b"plain text then \xff\xfe bytes", ["corpus.txt: not UTF-8 text (invalid byte 0xff at offset 16)"]),
    "too_short": (b"A corpus of a dozen words cannot fill two contexts of 512 tokens.",
                  ["corpus.txt: tokenizes to ", "needs at least 1024 (2 x ctx)"]),
}


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"default model not fetched ({DEFAULT_MODEL})")
@pytest.mark.parametrize("case", sorted(CORPUS_CASES))
def test_bad_corpus(tmp_path: Path, case: str) -> None:
    content, fragments = CORPUS_CASES[case]
    if content is not None:
        (tmp_path / "corpus.txt").write_bytes(content)
    result = fakequant("ppl", str(DEFAULT_MODEL), "--corpus", "corpus.txt", "--ctx", "512", "--threads", "1",
                       cwd=tmp_path)
    assert_one_line_error("ppl", result, *fragments)


# --- criteria.toml (fakequant list) ----------------------------------------------------------------------------------
CRITERIA_CASES: dict[str, tuple[Callable[[str], str], list[str]]] = {
    "syntax_error": (lambda t: t.replace("[experiments.layer5]", "[experiments.layer5", 1),
                     ["TOML syntax error", "(at line ", ", column "]),
    "unknown_key": (lambda t: t.replace('format = "bf16"\n', 'format = "bf16"\nformt = "bf16"\n', 1),
                    ["experiments.layer0.formt: unknown key; did you mean 'format'?"]),
    "wrong_type": (lambda t: t.replace("chunks = 10 ", 'chunks = "ten" ', 1),
                   ["defaults.chunks: must be an integer, got a string 'ten'"]),
    "inverted_thresholds": (lambda t: t.replace("ppl_increase_acceptable = 0.05", "ppl_increase_acceptable = 0.005",
                                                1),
                            ["ppl_increase_ideal", "the ideal bound must be the tighter one"]),
    "ambiguous_k": (lambda t: t + '\n[experiments.layer1]\ntensors = ["blk.1.ffn_norm.weight"]\nformat = "bf16"\n',
                    ["experiments.layer1: name 'layer1' is contained in 'layer10'", "`pytest -k layer1`"]),
}


@pytest.mark.parametrize("case", sorted(CRITERIA_CASES))
def test_bad_criteria(tmp_path: Path, case: str) -> None:
    original = (ROOT / "criteria.toml").read_text(encoding="utf-8")
    edit, fragments = CRITERIA_CASES[case]
    edited = edit(original)
    assert edited != original, "the edit no longer applies to criteria.toml; update the case"
    path = tmp_path / "criteria.toml"
    path.write_text(edited, encoding="utf-8")
    result = fakequant("list", "--criteria", str(path), cwd=tmp_path)
    assert_one_line_error("list", result, f"{path}: ", *fragments)


def test_missing_criteria(tmp_path: Path) -> None:
    result = fakequant("list", "--criteria", "nope.toml", cwd=tmp_path)
    assert_one_line_error("list", result, "nope.toml: no such criteria file")


def test_the_shipped_criteria_list_cleanly(tmp_path: Path) -> None:
    """The control: the unedited file lists with exit status 0 and nothing on stderr."""
    shutil.copy(ROOT / "criteria.toml", tmp_path / "criteria.toml")
    rc, out, err, _ = fakequant("list", "--criteria", str(tmp_path / "criteria.toml"), cwd=tmp_path)
    assert (rc, err) == (0, "")
    assert "layer0" in out
