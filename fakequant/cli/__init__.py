"""``fakequant`` (also ``python -m fakequant``): the command line.

The parser lives here; each command lives in a module of this package (model.py: quantize, inspect; score.py: ppl,
compare; suite.py: sweep, list, report, fetch; recipe.py: recipe) that turns the parsed arguments into library calls
and prints the results. A command's module is imported only when that command runs, so ``fakequant inspect`` does not
pay for loading llama.cpp. Every user mistake is a :class:`~fakequant.errors.FakequantError`: one line on stderr,
exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from fakequant.errors import FakequantError
from fakequant.recipe.mixes import STOCK_MIXES
from fakequant.suite.vocab import LANGS

# command -> "module:function"; the function takes the parsed arguments and returns an exit status.
HANDLERS = {
    "quantize": "fakequant.cli.model:cmd_quantize",
    "placebo": "fakequant.cli.model:cmd_placebo",
    "inspect": "fakequant.cli.model:cmd_inspect",
    "ppl": "fakequant.cli.score:cmd_ppl",
    "compare": "fakequant.cli.score:cmd_compare",
    "report": "fakequant.cli.suite:cmd_report",
    "sweep": "fakequant.cli.suite:cmd_sweep",
    "list": "fakequant.cli.suite:cmd_list",
    "fetch": "fakequant.cli.suite:cmd_fetch",
    "recipe": "fakequant.cli.recipe:cmd_recipe",
}


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="UTF-8 text file to score")
    p.add_argument("--ctx", type=int, default=512, help="context size = chunk length in tokens (default 512)")
    p.add_argument("--batch", type=int, default=512, help="logical batch size (default 512)")
    p.add_argument("--ubatch", type=int, default=None, help="physical micro-batch size (default: = batch)")
    p.add_argument("--chunks", type=int, default=None, help="score only the first N chunks (default: all)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--gpu-layers", type=int, default=None, metavar="N",
                   help="layers to offload to the GPU of a GPU build (-1: all; default $FAKEQUANT_N_GPU_LAYERS or 0)")
    p.add_argument("--flash-attn", choices=("on", "off"), default="off",
                   help="flash attention (default off; llama-perplexity's default is on)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal or output is not --json)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fakequant", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("quantize", help="fake-quantize tensors of a GGUF into a new GGUF")
    p.add_argument("src", help="original GGUF (never modified)")
    p.add_argument("dst", help="where to write the fake-quantized GGUF")
    p.add_argument("--tensor", action="append", required=True, metavar="PATTERN",
                   help="tensor name or glob (repeatable), e.g. 'blk.*.ffn_norm.weight'")
    p.add_argument("--format", required=True, help="bf16, fp16, fp8_e4m3, fp8_e5m2, int8, int4, q8_0, q4_k, ...")
    p.add_argument("--group-size", type=int, default=None, help="group size for int4 (default 32)")
    p.add_argument("--store", choices=("native", "f32", "f16"), default=None,
                   help="storage type (default: the format's own ggml type for matrices where it has one, "
                        "else the source type if it holds the values, else f32)")
    p.add_argument("--epsilon", type=float, default=1e-8, help="ε in |a-b|/(|a|+ε) (default 1e-8)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    p = sub.add_parser("placebo", help="write the placebo twin: the same tensors nudged by one ulp, same types")
    p.add_argument("src", help="original GGUF (never modified)")
    p.add_argument("dst", help="where to write the placebo GGUF")
    p.add_argument("--tensor", action="append", required=True, metavar="PATTERN",
                   help="tensor name or glob (repeatable), e.g. 'blk.0.ffn_norm.weight'")
    p.add_argument("--seed", type=int, default=0, help="seed of the nudges' random directions (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    p = sub.add_parser("inspect", help="list a GGUF's metadata and tensors")
    p.add_argument("model")
    p.add_argument("--tensor", action="append", metavar="PATTERN", help="only tensors matching (repeatable)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("ppl", help="perplexity of one model, computed the way llama-perplexity does")
    p.add_argument("model")
    _add_runtime_options(p)

    p = sub.add_parser("compare", help="paired perplexity/KL-divergence comparison of two models in one pass")
    p.add_argument("base")
    p.add_argument("candidate")
    p.add_argument("--placebo", default=None, metavar="PLACEBO",
                   help="a placebo twin of the candidate (`fakequant placebo`), scored in the same pass: adds the "
                        "floor and the candidate's excess over it")
    p.add_argument("--drift", action="store_true",
                   help="also capture every layer's output in the same pass and print its drift from the base, "
                        "by layer (beside the placebo's when there is one)")
    _add_runtime_options(p)

    p = sub.add_parser("report", help="rebuild an experiment's Markdown and HTML from its report.json")
    p.add_argument("report_json")
    p.add_argument("--lang", choices=LANGS, default="en")

    p = sub.add_parser("sweep", help="run a sweep of criteria.toml and draw its sensitivity map")
    p.add_argument("name")
    p.add_argument("-j", "--jobs", type=int, default=1, help="parallel pytest-xdist workers")
    p.add_argument("--criteria", default="criteria.toml")
    p.add_argument("--report-dir", default="reports")
    p.add_argument("--gather", nargs="+", action="extend", default=[], metavar="DIR",
                   help="assemble the map from cells other hosts measured: copy each cell's record from these "
                        "report directories (a local DIR, or SPEC::DIR over an execnet gateway such as "
                        "ssh=user@host//python=PATH::DIR) into --report-dir; nothing is measured, and a cell none "
                        "of them recorded fails the command")

    p = sub.add_parser("recipe", help="a mixed-precision recipe of criteria.toml: measure its cells, solve it within "
                                      "its budget and each stock mix's size, build and score the models")
    p.add_argument("name")
    p.add_argument("--stock", default=",".join(STOCK_MIXES), metavar="MIXES",
                   help="llama-quantize mixes to set beside the recipe, comma-separated (default: %(default)s; "
                        "'' for none)")
    p.add_argument("--report-dir", default=None, help="default: criteria.toml's [report] dir")
    p.add_argument("--plan", action="store_true", help="print the groups, the formats each allows and their sizes")
    p.add_argument("--costs", default=None, metavar="FILE",
                   help="JSON object \"<group>|<format>\" -> cost: also solve, and print the assignment, its "
                        "predicted size and the llama-quantize command")
    p.add_argument("--criteria", default="criteria.toml")

    p = sub.add_parser("list", help="list the experiments (and sweep cells) of criteria.toml")
    p.add_argument("--criteria", default="criteria.toml")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("fetch", help="fetch and verify the default model and corpus")
    p.add_argument("what", nargs="*", metavar="{model,corpus}", help="what to fetch (default: both)")
    return parser


# numpy's OpenBLAS starts a thread per core when numpy is first imported, and each spins for about 0.1 s waiting for
# work, beside the imports and llama.cpp's model load: 25 ms of a short `fakequant ppl` on 2 cores. The scoring
# commands call no BLAS routine.
_NO_BLAS = ("ppl", "compare")


def _import_command(module_name: str, *, freeze: bool) -> Any:
    """A command's module, imported with the cyclic garbage collector paused: numpy, llama-cpp-python and jinja2
    allocate some hundred thousand objects that live as long as the process, and collections among them free
    nothing (6 ms of a 110 ms import). ``freeze`` moves them to the collector's permanent generation, so that no
    later collection looks at them again (another 6 ms of a ``fakequant ppl``): for a process that ends with the
    command, never for a caller of :func:`main` whose own objects would be frozen with them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        module = importlib.import_module(module_name)
        if freeze:
            gc.freeze()
        return module
    finally:
        if was_enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None, *, freeze_imports: bool = False) -> int:
    """Run one command; its exit status. ``freeze_imports``: see :func:`_import_command`."""
    args = build_parser().parse_args(argv)
    module_name, func_name = HANDLERS[args.command].split(":")
    if args.command in _NO_BLAS and "numpy" not in sys.modules:  # only a process that has not loaded numpy yet
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        handler = getattr(_import_command(module_name, freeze=freeze_imports), func_name)
        return int(handler(args) or 0)
    except FakequantError as err:
        print(f"fakequant {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fakequant: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``fakequant`` console command (and ``python -m fakequant``): :func:`main` with its imports frozen, then
    exit without a last garbage collection over every object of the process (25 ms of a ``fakequant ppl`` run).
    atexit handlers still run and files are still flushed and closed."""
    status = main(freeze_imports=True)
    gc.freeze()
    sys.exit(status)
