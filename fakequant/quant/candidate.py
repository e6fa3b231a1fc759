"""The fake-quantization engine: GGUF in, GGUF out, numbers out.

:func:`build_candidate` takes a source GGUF and a :class:`Recipe` (which tensors, which format), rounds each
selected tensor through the format and back, writes a new GGUF through :mod:`fakequant.gguf.write` (atomic, verified
against the original) and returns a :class:`BuildResult` whose ``to_json()`` is ``numerical_analysis.json``.
The writer underneath, :func:`write_model`, takes one recipe per tensor, so a mixed-precision model is written by
the same code, each tensor in its own ggml type.

Storage of the fake-quantized values (:mod:`fakequant.quant.storage`): a matrix goes into the format's own ggml
type where it has one (BF16, F16, Q8_0 ... Q6_K, MXFP4: the bytes llama-quantize writes), so llama.cpp runs the
kernel the real format would run; other tensors and formats keep their source type when it holds every value,
else F32. ``store = "native"`` asks for the first rule explicitly; ``store = "f32" | "f16"`` forces a type, and is
refused for any tensor whose values it would change.

The placebo twin (format ``"placebo"``, :mod:`fakequant.quant.placebo`) is built by the same loop: each selected
tensor keeps its type and gets a one-ulp nudge of its stored bytes (:mod:`fakequant.quant.nudge`). So are the
positive controls (format ``"control:<name>"``, :mod:`fakequant.quant.controls`): deliberate damage, each tensor in
its own type, and for ``control:metadata`` one metadata value changed (the build's own verification allows that
key; the format check does not).

``Recipe.imatrix`` (a GGUF importance matrix, :mod:`fakequant.quant.importance`) goes to ggml's quantizer for each
tensor it has an entry for, as ``llama-quantize --imatrix`` does; it is part of the cache key by its sha256.

A mixed-precision model is a candidate too (format ``"mix"``): ``mix`` pairs each tensor with its own ggml format,
each stored natively, the selection names exactly those tensors (so its placebo twin is the placebo of the same
tensors), and it is built, cached and verified like any other candidate. It is the recipe's model
(:mod:`fakequant.recipe.build` writes it through :func:`build_candidate`, and the recipe's size accounting predicts
its header from :func:`provenance`).

Without a destination the candidate goes to a content-addressed cache (``candidates/<hash>.gguf`` with its numbers
in ``<hash>.json`` beside it), keyed by the source's sha256, the recipe, :data:`ENGINE_VERSION` and the installed
llama-cpp-python's version (ggml's quantizers and dequantizers, in its libggml-base, write the q-format bytes and
decode every block type for the numbers), built once across processes under a file lock and reused afterwards.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from fakequant import __version__
from fakequant.errors import FakequantError, GGUFFormatError, RecipeError
from fakequant.gguf import compare as gguf_compare
from fakequant.gguf import write as gguf_write
from fakequant.gguf.check import read_layout
from fakequant.gguf.codec import FLOAT_TYPES, GGML_QUANT_TYPES, decode_values, encode_values
from fakequant.gguf.layout import ModelInfo, read_tensor_bytes, read_tensor_values
from fakequant.gguf.write import Replacement
from fakequant.quant import controls, formats, nudge, storage
from fakequant.quant.importance import check_imatrix, importance_rows
from fakequant.quant.nudge import PLACEBO
from fakequant.quant.select import Selection, is_pattern, select_tensors
from fakequant.quant.stats import TensorStats, compare_tensors
from fakequant.store.cache import atomic_path, cache_dir, file_sha256, fsync_early, locked, stable_hash, write_json
from fakequant.store.tools import llama_cpp_build

ENGINE_VERSION = "2"  # bump when the bytes or numbers a recipe produces change
MIX = "mix"  # the format of a mixed-precision model: each tensor in its own native ggml format (``Recipe.mix``)
_ROW_CHUNK_ELEMENTS = 1 << 20  # values per round-trip chunk: bounds the temporaries of a format's round trip

__all__ = ["MIX", "BuildResult", "ModelInfo", "Recipe", "Written", "build_candidate", "check_destination",
           "model_info", "verify_format", "write_model"]


@dataclass(frozen=True)
class Recipe:
    selection: Selection
    format: str
    group_size: int | None = None
    store: str | None = None  # "native" | "f32" | "f16" | None (automatic: native where the format has a ggml type)
    epsilon: float = 1e-8
    seed: int = 0  # placebo only: picks the nudges' directions
    mix: tuple[tuple[str, str], ...] = ()  # format "mix" only: (tensor name, ggml format) pairs
    imatrix: str | None = None  # path of a GGUF importance matrix for ggml's quantizer (llama-quantize --imatrix)

    def validate(self) -> Recipe:
        """Raise RecipeError naming the bad field; return self when everything is valid."""
        if self.format == MIX:
            self._validate_mix()
        elif self.mix:
            raise RecipeError(f"mix: only format {MIX!r} takes a mix, not {self.format}")
        elif self.format == PLACEBO:
            if self.group_size is not None or self.store is not None:
                raise RecipeError("placebo: keeps each tensor's own type; give it no group_size or store")
            if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
                raise RecipeError(f"seed {self.seed!r}: must be an integer >= 0")
        elif controls.control_of(self.format):
            if self.group_size is not None or self.store is not None or self.seed != 0:
                raise RecipeError(f"{self.format}: keeps each tensor's own type; give it no group_size, store or seed")
        else:
            formats.check_format(self.format)
            if self.format not in formats.FORMATS:
                raise RecipeError(f"format {self.format!r}: write it as {formats.check_format(self.format)!r}")
            formats.effective_group_size(self.format, self.group_size)
            storage.check_store(self.format, self.store)
            if self.seed != 0:
                raise RecipeError(f"seed {self.seed!r}: only the placebo takes a seed, not {self.format}")
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
            raise RecipeError(f"epsilon {eps!r}: must be a finite number > 0")
        if self.selection.is_empty():
            raise RecipeError("selection: names no tensors (give names, layers or kinds)")
        if self.imatrix is not None:
            check_imatrix(self.imatrix, self.format == MIX or self.format in storage.NATIVE_TYPES, self.format)
        return self

    def _validate_mix(self) -> None:
        if self.group_size is not None or self.store is not None or self.seed != 0:
            raise RecipeError(f"{MIX}: stores each tensor natively in its own format; give it no group_size, store "
                              "or seed")
        if not isinstance(self.mix, tuple):
            raise RecipeError(f"mix: must be a tuple of (tensor name, ggml format) pairs, got "
                              f"{type(self.mix).__name__}")
        if not self.mix:
            raise RecipeError("mix: names no tensors; give (tensor name, ggml format) pairs")
        for pair in self.mix:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise RecipeError(f"mix: {pair!r} is not a (tensor name, ggml format) pair")
            name, fmt = pair
            if not name or is_pattern(name):
                raise RecipeError(f"mix: tensor {name!r}: give an exact tensor name, not a pattern")
            if fmt not in storage.NATIVE_TYPES:
                raise RecipeError(f"mix: tensor {name}: format {fmt!r} has no ggml type (those with one: "
                                  f"{', '.join(storage.NATIVE_TYPES)})")
        names = tuple(name for name, _ in self.mix)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise RecipeError(f"mix: tensor {repeated[0]} is listed twice")
        # the selection is what the placebo twin and the reports read: it must name exactly the mix's tensors
        if self.selection != Selection(names=names):
            raise RecipeError("mix: the selection must name exactly the mix's tensors, in its order "
                              f"(Selection(names=...)), got {self.selection.to_json()}")

    def to_json(self) -> dict:
        data = {"selection": self.selection.to_json(), "format": self.format, "group_size": self.group_size,
                "store": self.store, "epsilon": self.epsilon, "seed": self.seed}
        if self.format == MIX:  # only then: every other recipe keeps its JSON, so cached candidates keep their keys
            data["mix"] = [list(pair) for pair in self.mix]
        if self.imatrix is not None:  # likewise
            data["imatrix"] = {"path": self.imatrix, "sha256": file_sha256(Path(self.imatrix))}
        return data

    @classmethod
    def from_json(cls, data: dict) -> Recipe:
        sel = data["selection"]
        mix = tuple((str(name), str(fmt)) for name, fmt in data.get("mix") or ())
        imatrix = data["imatrix"]["path"] if data.get("imatrix") else None
        return cls(Selection(tuple(sel["names"]), sel["layers"], tuple(sel["kinds"])), data["format"],
                   data.get("group_size"), data.get("store"), data.get("epsilon", 1e-8), data.get("seed", 0), mix,
                   imatrix)

    def per_tensor(self, names: Collection[str]) -> dict[str, Recipe]:
        """The recipe of each of ``names`` (in that order) for :func:`write_model`: this one for every tensor, or for
        a mix each tensor's own native one."""
        if self.format != MIX:
            return {name: self for name in names}
        own = dict(self.mix)
        return {name: Recipe(Selection(names=(name,)), own[name], store="native", epsilon=self.epsilon,
                             imatrix=self.imatrix) for name in names}


@dataclass
class BuildResult:
    output: Path
    source: Path
    source_sha256: str
    recipe: Recipe
    noop: bool
    tensors: list[TensorStats]
    same_size: bool = True  # the data section kept its layout (copy + patch) rather than being re-streamed
    reused: bool = False  # taken from the candidate cache, not built by this call
    output_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> list[str]:
        return [t.name for t in self.tensors]

    def to_json(self) -> dict:
        return {"output": str(self.output), "source": str(self.source), "source_sha256": self.source_sha256,
                "recipe": self.recipe.to_json(), "noop": self.noop, "same_size": self.same_size,
                "output_bytes": self.output_bytes, "engine_version": ENGINE_VERSION,
                "tensors": [t.to_json() for t in self.tensors]}

    @classmethod
    def from_json(cls, data: dict) -> BuildResult:
        return cls(output=Path(data["output"]), source=Path(data["source"]), source_sha256=data["source_sha256"],
                   recipe=Recipe.from_json(data["recipe"]), noop=data["noop"],
                   tensors=[TensorStats.from_json(t) for t in data["tensors"]], same_size=data["same_size"],
                   output_bytes=data.get("output_bytes", 0))


def model_info(path: Path) -> ModelInfo:
    """Metadata and tensor table (name, type, shape, nbytes, offset) of a GGUF, validated first."""
    return read_layout(Path(path))


def verify_format(original: Path, candidate: Path, changed: Collection[str]) -> list[str]:
    """Human-readable differences beyond the allowed ones (``fakequant.*`` keys, the changed tensors' data and type);
    [] means the candidate has the original's format."""
    return gguf_compare.verify_copy(Path(original), Path(candidate), set(changed))


def provenance(recipe: Recipe, sha: str) -> dict[str, str]:
    return {"fakequant.recipe": json.dumps(recipe.to_json(), sort_keys=True), "fakequant.source_sha256": sha,
            "fakequant.version": f"{__version__}+engine{ENGINE_VERSION}"}


def plan(info: ModelInfo, recipe: Recipe) -> list[str]:
    """The tensors the recipe changes, after checking each can go through the format; RecipeError otherwise."""
    recipe.validate()
    names = select_tensors([t.name for t in info.tensors], recipe.selection, source=str(info.path))
    own = dict(recipe.mix)  # a mix's formats, tensor by tensor
    for name in names:
        t = info.tensor(name)
        has_importance = importance_rows(recipe.imatrix, name, t.shape) is not None
        if t.type_name not in FLOAT_TYPES and t.type_name not in GGML_QUANT_TYPES:
            raise RecipeError(f"{info.path}: tensor {name} is {t.type_name}, not a float or quantized weight")
        control = controls.control_of(recipe.format)
        if recipe.format == PLACEBO:
            problem = nudge.type_problem(t.type_name)
        elif control:
            problem = controls.tensor_problem(control, info, t)
        elif recipe.format == MIX:
            # a 1-D tensor has no native storage (it would keep the value rule): a mix holds matrices only
            problem = "is not a matrix; a mix stores only matrices, each in its ggml type" if len(t.shape) < 2 \
                else formats.row_problem(own[name], t.n_per_row, importance=has_importance, tensor=name)
        else:
            problem = formats.row_problem(recipe.format, t.n_per_row, recipe.group_size, importance=has_importance,
                                          tensor=name)
        if problem:
            raise RecipeError(f"{info.path}: tensor {name}: {problem}")
    return names


def build_candidate(source: Path, recipe: Recipe, dest: Path | None = None) -> BuildResult:
    """Build (or reuse from the cache when ``dest`` is None) the fake-quantized copy of ``source``."""
    source = Path(source)
    info = model_info(source)
    names = plan(info, recipe)
    sha = file_sha256(source)
    if dest is not None:
        return _build(info, names, recipe, check_destination(dest, source), sha)

    keyed = recipe.to_json()
    if recipe.imatrix is not None:  # by its content, wherever the file lies
        keyed["imatrix"] = keyed["imatrix"]["sha256"]
    key = stable_hash({"source_sha256": sha, "recipe": keyed, "engine": ENGINE_VERSION,
                       "llama_cpp_python": llama_cpp_build()})
    out = cache_dir("candidates") / f"{key}.gguf"
    numbers = out.with_suffix(".json")
    with locked(out):
        if out.exists() and numbers.exists():
            try:
                cached = BuildResult.from_json(json.loads(numbers.read_text()))
            except (ValueError, KeyError, TypeError):
                cached = None
            if cached is not None and cached.output_bytes == out.stat().st_size:
                cached.output, cached.source, cached.reused = out, source, True
                return cached
        for leftover in out.parent.glob(f".{out.name}.tmp-*"):  # from a build of this key that was killed
            leftover.unlink(missing_ok=True)
        result = _build(info, names, recipe, out, sha)
        write_json(numbers, result.to_json())
        return result


def check_destination(dest: Path, source: Path) -> Path:
    """``dest`` as a Path, or RecipeError when it is a folder or the source itself (the original is never written)."""
    dest = Path(dest)
    if dest.is_dir():
        raise RecipeError(f"{dest}: is a directory; give the path of the GGUF file to write")
    if dest.exists() and os.path.samefile(dest, source):
        raise RecipeError(f"{dest}: is the source model itself; the original is never written")
    return dest


def _fake_quantize(info: ModelInfo, name: str, recipe: Recipe,
                   spill: IO[bytes]) -> tuple[str, np.ndarray, np.ndarray, dict[str, Any]]:
    """Append tensor ``name``'s new bytes to ``spill``; return (stored type, values before, values stored, extra
    numbers for TensorStats.extra)."""
    t = info.tensor(name)
    before = read_tensor_values(info, name)
    if recipe.format == PLACEBO:
        old = read_tensor_bytes(info, name)
        raw = nudge.nudge_tensor(old, t.type_name, name, recipe.seed)
        spill.write(raw)
        return t.type_name, before, decode_values(raw, t.type_name, t.shape), \
            nudge.nudge_size(old, raw, t.type_name)
    control = controls.control_of(recipe.format)
    if control:
        raw = controls.apply(control, info, name)
        spill.write(raw)
        return t.type_name, before, decode_values(raw, t.type_name, t.shape), {}
    native = storage.native_type(recipe.format, recipe.store, t.shape)
    if native == t.type_name:  # already in the target type: llama-quantize copies such a tensor as it is
        spill.write(read_tensor_bytes(info, name))
        return native, before, before.copy(), {}
    rows = before.reshape(-1, before.shape[-1])
    step = max(1, _ROW_CHUNK_ELEMENTS // max(1, rows.shape[1]))  # row chunks (every format works row by row)
    if native is not None:
        weights = importance_rows(recipe.imatrix, name, t.shape)
        after = storage.write_native(rows, recipe.format, native, weights, spill, step)
        return native, before, after.reshape(before.shape), {}
    after = np.empty_like(rows)
    for start in range(0, rows.shape[0], step):
        after[start:start + step] = formats.round_trip(rows[start:start + step], recipe.format,
                                                       group_size=recipe.group_size)
    stored = storage.value_type(after, t.type_name, recipe.store, recipe.format, f"{info.path}: tensor {name}")
    flat = after.reshape(-1)
    for start in range(0, flat.size, _ROW_CHUNK_ELEMENTS):  # encode in pieces: no second full-size copy
        spill.write(encode_values(flat[start:start + _ROW_CHUNK_ELEMENTS], stored))
    return stored, before, after.reshape(before.shape), {}


def _build(info: ModelInfo, names: list[str], recipe: Recipe, dest: Path, sha: str) -> BuildResult:
    written = write_model(info, recipe.per_tensor(names), dest, provenance(recipe, sha))
    return BuildResult(output=dest, source=info.path, source_sha256=sha, recipe=recipe,
                       noop=all(s.noop for s in written.tensors), tensors=written.tensors,
                       same_size=written.same_size, output_bytes=written.output_bytes)


@dataclass
class Written:
    tensors: list[TensorStats]  # one per changed tensor, in the order of ``recipes``
    same_size: bool  # the data section kept its layout
    output_bytes: int


def write_model(info: ModelInfo, recipes: Mapping[str, Recipe], dest: Path, provenance: dict[str, str]) -> Written:
    """Write ``info``'s model to ``dest`` (atomically, then verified against the original) with each tensor that
    ``recipes`` names rounded through its own recipe and the ``provenance`` keys added; one recipe for many tensors
    is a candidate, one per tensor a mixed-precision model."""
    # A full disk (or a read-only or vanished folder) is the user's to fix: one line, not a traceback.
    try:
        return _write_model(info, recipes, dest, provenance)
    except OSError as err:
        raise FakequantError(f"{dest}: cannot write the model ({err.strerror or err}); "
                             f"nothing was left at the destination") from err


def _write_model(info: ModelInfo, recipes: Mapping[str, Recipe], dest: Path, provenance: dict[str, str]) -> Written:
    stats: list[TensorStats] = []
    replacements: list[Replacement] = []
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp, tempfile.NamedTemporaryFile(prefix=f".{dest.name}.tmp-spill-",
                                                              dir=dest.parent) as spill:
        spill_path = Path(spill.name)
        for name, recipe in recipes.items():
            t = info.tensor(name)
            offset = spill.tell()
            stored, before, after, extra = _fake_quantize(info, name, recipe, spill)
            replacements.append(Replacement(name, stored, spill_path, offset, spill.tell() - offset))
            s = compare_tensors(name, before, after, epsilon=recipe.epsilon, overwrite_inputs=True)
            s.shape, s.source_type, s.stored_type, s.format = t.shape, t.type_name, stored, recipe.format
            s.extra.update(extra)
            stats.append(s)
            del before, after
        spill.flush()
        altered: dict[str, str] = {}  # metadata a positive control changes on purpose
        for control in {controls.control_of(r.format) for r in recipes.values()} - {None}:
            altered |= controls.metadata(control, info)
        same_size = gguf_write.write_gguf(info, tmp, provenance, replacements, altered)
        # Flush the copy to disk while it is being verified (both mostly wait on I/O; fsync releases the GIL).
        syncer = threading.Thread(target=fsync_early, args=(tmp,), daemon=True)
        syncer.start()
        try:
            # Re-open what was written and compare it with the original (walked with every bound and layout check;
            # check=False skips only the UTF-8 decoding of string arrays, copied byte for byte from the original).
            written = read_layout(tmp, check=False)
            problems = gguf_compare.compare_layouts(info, written, set(recipes), allow_type_change=True,
                                                    altered_keys=set(altered))
            problems += gguf_compare.check_replaced(written, replacements)
        finally:
            syncer.join()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise GGUFFormatError(f"{dest}: the written copy failed verification: {problems[0]}{more}")
        size = tmp.stat().st_size
    return Written(tensors=stats, same_size=same_size, output_bytes=size)
