"""Fixtures the unit tests that use the real default model share. Module scope: they are resolved before a test's own
cache isolation (a FAKEQUANT_HOME pointed at a temporary folder) hides the user's cache."""

from __future__ import annotations

from pathlib import Path

import pytest


def _default(what: str) -> Path:
    from fakequant.store.assets import DEFAULT_CORPUS, DEFAULT_MODEL
    from fakequant.store.cache import cache_root

    asset = {"model": DEFAULT_MODEL, "corpus": DEFAULT_CORPUS}[what]
    path = cache_root() / asset.folder / asset.name
    if not path.is_file():
        pytest.skip(f"default {what} not fetched ({path}); run `fakequant fetch {what}`")
    return path


@pytest.fixture(scope="module")
def default_assets() -> tuple[Path, Path]:
    """(default model, default corpus) in the user's cache."""
    return _default("model"), _default("corpus")


@pytest.fixture(scope="module")
def quantize_reference() -> tuple[Path, Path]:
    """(default model, the built llama-quantize) in the user's cache."""
    from fakequant.store.tools import tool_path

    model = _default("model")
    tool = tool_path("llama-quantize")
    if tool is None:
        pytest.skip("llama-quantize not built; run `python -m fakequant.store.tools build` (about 6 minutes)")
    return model, tool


@pytest.fixture()
def tiny64(tmp_path: Path) -> Path:
    """A tiny llama-style GGUF with rows of 64 (ffn_down: 128): whole 32-blocks, no whole 256-blocks."""
    from fakequant.gguf.synthetic import write_tiny_gguf

    return write_tiny_gguf(tmp_path / "tiny64.gguf", n_layers=3, dim=64)


@pytest.fixture(scope="module")
def default_imatrix(quantize_reference: tuple[Path, Path], default_assets: tuple[Path, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An importance matrix of the default model from the built llama-imatrix: 1 chunk of 512 tokens."""
    import subprocess

    from fakequant.recipe.imatrix import imatrix_argv
    from fakequant.runtime.settings import RuntimeSettings
    from fakequant.store.tools import tool_path

    tool = tool_path("llama-imatrix")
    if tool is None:
        pytest.skip("llama-imatrix not built; run `make tools`")
    folder = tmp_path_factory.mktemp("imatrix")
    corpus = folder / "corpus.txt"
    corpus.write_text(default_assets[1].read_text()[:20_000] + "\n")
    out = folder / "imatrix.gguf"
    argv = imatrix_argv(tool, quantize_reference[0], corpus, out, chunks=1, settings=RuntimeSettings(n_threads=2))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    return out
