"""llama.cpp's stock mixes of a model, written by the built ``llama-quantize`` (no importance matrix): what a user
gets without fakequant, and what a recipe of the same file size has to beat.

Each mix is cached under ``$FAKEQUANT_HOME/stock/`` keyed by the source's sha256, the mix and the llama.cpp version.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fakequant.errors import RecipeError
from fakequant.store.cache import cache_dir, file_sha256, locked, stable_hash
from fakequant.store.tools import llama_cpp_version, tool_path

# the mixes llama-quantize offers that a Q4-class source is usually compared with, smallest first
STOCK_MIXES = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")


@dataclass(frozen=True)
class StockMix:
    name: str
    path: Path
    argv: tuple[str, ...]  # the command that wrote it (the tool's path as given)

    @property
    def command(self) -> str:
        return " ".join(["llama-quantize", *self.argv[1:]])


def stock_mix(source: Path, mix: str, *, threads: int | None = None) -> StockMix:
    """``source`` quantized by ``llama-quantize --allow-requantize SRC DST MIX`` (built once, then cached)."""
    tool = tool_path("llama-quantize")
    if tool is None:
        raise RecipeError("llama-quantize is not built: run `make tools` (stock mixes are written by it)")
    source = Path(source)
    key = stable_hash({"source": file_sha256(source), "mix": mix, "llama_cpp": llama_cpp_version()})
    out = cache_dir("stock") / f"{source.stem}-{mix}-{key}.gguf"
    argv = (str(tool), "--allow-requantize", str(source), str(out), mix, str(threads or os.cpu_count() or 1))
    with locked(out):
        if not out.exists():
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            proc = subprocess.run([*argv[:3], str(tmp), *argv[4:]], capture_output=True, text=True)
            if proc.returncode != 0 or not tmp.exists():
                tmp.unlink(missing_ok=True)
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                raise RecipeError(f"{source}: llama-quantize {mix} failed (exit {proc.returncode}): {last[0]}")
            os.replace(tmp, out)
    return StockMix(mix, out, argv)
