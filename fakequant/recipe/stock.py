"""llama.cpp's stock mixes of a model, written by the built ``llama-quantize``: what a user gets without fakequant,
and what a recipe of the same file size has to beat. Each mix comes plain (no importance matrix) or with one
(``--imatrix FILE``, as every published K-quant and i-quant GGUF is made; :mod:`fakequant.recipe.imatrix`).

Each mix is cached under ``$FAKEQUANT_HOME/stock/`` keyed by the source's sha256, the mix, the imatrix's sha256
(when one is used) and the llama.cpp version.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fakequant.errors import RecipeError
from fakequant.store.cache import cache_dir, file_sha256, locked, stable_hash
from fakequant.store.tools import llama_cpp_build, tool_path


@dataclass(frozen=True)
class StockMix:
    name: str
    path: Path
    argv: tuple[str, ...]  # the command that wrote it (the tool's path as given)
    imatrix: Path | None = None  # the importance matrix it was made with, if any

    @property
    def command(self) -> str:
        return " ".join(["llama-quantize", *self.argv[1:]])

    @property
    def label(self) -> str:
        """``Q4_K_M`` or ``Q4_K_M+imatrix``."""
        return f"{self.name}+imatrix" if self.imatrix is not None else self.name


def stock_mix(source: Path, mix: str, *, threads: int | None = None, imatrix: Path | None = None) -> StockMix:
    """``source`` quantized by ``llama-quantize --allow-requantize [--imatrix FILE] SRC DST MIX`` (built once, then
    cached)."""
    tool = tool_path("llama-quantize")
    if tool is None:
        raise RecipeError("llama-quantize is not built: run `make tools` (stock mixes are written by it)")
    source = Path(source)
    what = {"source": file_sha256(source), "mix": mix, "llama_cpp": llama_cpp_build()}
    if imatrix is not None:
        imatrix = Path(imatrix)
        if not imatrix.is_file():
            raise RecipeError(f"{imatrix}: no such importance matrix file")
        what["imatrix"] = file_sha256(imatrix)
    key = stable_hash(what)
    out = cache_dir("stock") / f"{source.stem}-{mix}{'-imatrix' if imatrix else ''}-{key}.gguf"
    flags = ("--allow-requantize", *(("--imatrix", str(imatrix)) if imatrix is not None else ()))
    tail = (mix, str(threads or os.cpu_count() or 1))
    with locked(out):
        if not out.exists():
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            proc = subprocess.run([str(tool), *flags, str(source), str(tmp), *tail], capture_output=True, text=True)
            if proc.returncode != 0 or not tmp.exists():
                tmp.unlink(missing_ok=True)
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                label = f"{mix} --imatrix {imatrix}" if imatrix else mix
                raise RecipeError(f"{source}: llama-quantize {label} failed (exit {proc.returncode}): {last[0]}")
            os.replace(tmp, out)
    return StockMix(mix, out, (str(tool), *flags, str(source), str(out), *tail), imatrix)
