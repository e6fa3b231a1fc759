"""Which tensors an experiment touches: exact names, globs, layer lists and tensor kinds.

A tensor is selected when it matches every criterion given: one of ``names`` (exact or glob), a layer in
``layers`` and a kind in ``kinds``. Each name pattern and each kind must match something, and so must the
whole selection; otherwise a :class:`RecipeError` lists the closest real names.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fakequant.errors import RecipeError

_BLOCK = re.compile(r"^blk\.(\d+)\.([^.]+)\.")
LAYERS_RE = re.compile(r"all|\d+(-\d+)?(,\d+(-\d+)?)*")  # a layer list, spaces removed


class LayersError(RecipeError):
    """A layer list that does not parse; ``backwards`` is the range written high to low, when that is the fault."""

    def __init__(self, message: str, backwards: str | None = None) -> None:
        super().__init__(message)
        self.backwards = backwards


@dataclass(frozen=True)
class Selection:
    names: tuple[str, ...] = ()  # exact names or globs, e.g. "blk.*.ffn_norm.weight"
    layers: str | None = None  # "0", "0-2", "0,5,10-12", "all"
    kinds: tuple[str, ...] = ()  # "ffn_norm", "attn_q", ...

    def to_json(self) -> dict:
        return {"names": list(self.names), "layers": self.layers, "kinds": list(self.kinds)}

    def is_empty(self) -> bool:
        return not self.names and self.layers is None and not self.kinds


def is_pattern(name: str) -> bool:
    """Whether a name is a glob (``*``, ``?`` or ``[``) rather than one exact tensor name."""
    return any(c in name for c in "*?[")


def layer_of(name: str) -> int | None:
    m = _BLOCK.match(name)
    return int(m.group(1)) if m else None


def kind_of(name: str) -> str:
    """``blk.3.ffn_norm.weight`` -> ``ffn_norm``; ``token_embd.weight`` -> ``token_embd``."""
    m = _BLOCK.match(name)
    return m.group(2) if m else name.split(".")[0]


def parse_layers(spec: str, *, source: str = "layers") -> list[int] | None:
    """``"0,5,10-12"`` -> [0, 5, 10, 11, 12] in the order written, without repeats; ``"all"`` -> None (every
    block). Spaces are ignored. The one reader of a layer list: criteria.toml's experiments and sweeps use it too."""
    text = str(spec).replace(" ", "")
    if not LAYERS_RE.fullmatch(text):
        raise LayersError(f"{source}: layers {spec!r}: expected e.g. '0', '0-2', '0,5,10-12' or 'all'")
    if text == "all":
        return None
    layers: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise LayersError(f"{source}: layers {spec!r}: range {first}-{last} runs backwards", backwards=part)
        layers.extend(range(first, last + 1))
    return list(dict.fromkeys(layers))


def _closest(word: str, candidates: Sequence[str], n: int = 3) -> str:
    close = difflib.get_close_matches(word, list(dict.fromkeys(candidates)), n=n, cutoff=0.0)
    return ", ".join(close)


def select_tensors(available: Sequence[str], selection: Selection, *, source: str) -> list[str]:
    """The names in ``available`` (in that order) that ``selection`` picks; RecipeError when it picks nothing."""
    if selection.is_empty():
        raise RecipeError(f"{source}: the selection names no tensors (give names, layers or kinds)")
    chosen = list(available)
    if selection.names:
        for pattern in selection.names:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in available):
                raise RecipeError(f"{source}: no tensor matches {pattern!r}; closest: {_closest(pattern, available)}")
        chosen = [n for n in chosen if any(fnmatch.fnmatchcase(n, p) for p in selection.names)]
    if selection.kinds:
        kinds_here = [kind_of(n) for n in available]
        for kind in selection.kinds:
            if kind not in kinds_here:
                raise RecipeError(f"{source}: no tensor of kind {kind!r}; closest kinds: {_closest(kind, kinds_here)}")
        chosen = [n for n in chosen if kind_of(n) in selection.kinds]
    if selection.layers is not None:
        wanted = parse_layers(selection.layers, source=source)
        chosen = [n for n in chosen if layer_of(n) is not None and (wanted is None or layer_of(n) in wanted)]
    if not chosen:
        what = ", ".join(f"{k}={v}" for k, v in selection.to_json().items() if v)
        hint = selection.names[0] if selection.names else (selection.kinds[0] if selection.kinds else "blk.0")
        raise RecipeError(f"{source}: the selection ({what}) matches no tensor; closest: {_closest(hint, available)}")
    return chosen
