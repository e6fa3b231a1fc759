"""The three slices of text a recipe reads, as non-overlapping ranges of chunks of ``n_ctx`` tokens.

- calibration: the importance matrix (``llama-imatrix`` over the first ``calibration_chunks`` chunks of the corpus);
  none when the recipe has ``imatrix = false``;
- selection: the chunks after it, on which every cell is measured and the solver chooses;
- evaluation: the chunks after those, on which every model of the final table is scored (stock mixes included), or
  the first ``evaluation_chunks`` of ``evaluation_corpus`` when the recipe names one.

Choosing and reporting on the same chunks would report the noise the solver exploited as the result; scoring every
model of the table on one slice that neither the importance matrix nor the solver saw keeps the comparison fair.
Chunks are cut as llama-perplexity cuts them (:func:`fakequant.runtime.perplexity.corpus_tokens`), so the token
range of a slice is ``[first_chunk * n_ctx, (first_chunk + chunks) * n_ctx)`` of the corpus's tokenization.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakequant.errors import CorpusError
from fakequant.runtime.llama import Model
from fakequant.runtime.paired import BaseReference
from fakequant.suite.criteria.types import MixRecipe

CALIBRATION, SELECTION, EVALUATION = "calibration", "selection", "evaluation"


@dataclass(frozen=True)
class Slice:
    name: str
    corpus: Path
    first_chunk: int
    chunks: int
    n_ctx: int

    @property
    def end_chunk(self) -> int:
        return self.first_chunk + self.chunks

    @property
    def tokens(self) -> tuple[int, int]:
        """The half-open token range of the corpus's tokenization."""
        return self.first_chunk * self.n_ctx, self.end_chunk * self.n_ctx

    def overlaps(self, other: Slice) -> bool:
        return same_file(self.corpus, other.corpus) and self.first_chunk < other.end_chunk \
            and other.first_chunk < self.end_chunk

    def describe(self) -> str:
        start, end = self.tokens
        return (f"{self.name}: chunks {self.first_chunk}–{self.end_chunk - 1} of {self.corpus.name} "
                f"(tokens [{start}, {end}), {self.chunks} × {self.n_ctx})")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "corpus": str(self.corpus), "first_chunk": self.first_chunk,
                "chunks": self.chunks, "n_ctx": self.n_ctx, "tokens": list(self.tokens)}


@dataclass(frozen=True)
class Slices:
    calibration: Slice | None
    selection: Slice
    evaluation: Slice

    def all(self) -> list[Slice]:
        return [s for s in (self.calibration, self.selection, self.evaluation) if s is not None]

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.all()]


def same_file(a: Path, b: Path) -> bool:
    return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))


def recipe_slices(recipe: MixRecipe) -> Slices:
    """The recipe's slices, one after the other on its corpus (the evaluation on its own corpus when it has one)."""
    n_ctx = recipe.settings.n_ctx
    calibration = Slice(CALIBRATION, recipe.corpus, 0, recipe.calibration_chunks, n_ctx) if recipe.imatrix else None
    start = calibration.end_chunk if calibration else 0
    selection = Slice(SELECTION, recipe.corpus, start, recipe.selection_chunks, n_ctx)
    other = recipe.evaluation_corpus
    if other is not None and not same_file(other, recipe.corpus):
        evaluation = Slice(EVALUATION, other, 0, recipe.evaluation_chunks, n_ctx)
    else:  # no second corpus, or the same file under another name
        evaluation = Slice(EVALUATION, recipe.corpus, selection.end_chunk, recipe.evaluation_chunks, n_ctx)
    slices = Slices(calibration, selection, evaluation)
    parts = slices.all()
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            if a.overlaps(b):  # cannot happen by construction; a check that the construction holds
                raise AssertionError(f"slices {a.describe()} and {b.describe()} overlap")
    return slices


def needed_tokens(slices: Slices, corpus: Path) -> int:
    """Tokens ``corpus`` must have for every slice cut from it."""
    return max((s.tokens[1] for s in slices.all() if same_file(s.corpus, corpus)), default=0)


def reference(base: Model, sl: Slice, slices: Slices, *,
              log: Callable[[str], None] = print) -> BaseReference:
    """The base model scored on ``sl`` (one pass, kept for the comparisons); CorpusError, one line naming the corpus
    and the tokens the slices need, when the corpus is too short for it."""
    need = needed_tokens(slices, sl.corpus)
    ranges = "; ".join(s.describe() for s in slices.all() if same_file(s.corpus, sl.corpus))
    try:
        ref = BaseReference.build(base, sl.corpus, chunks=sl.chunks, first_chunk=sl.first_chunk)
    except CorpusError as err:
        raise CorpusError(f"{sl.corpus}: too short for the recipe's slices, which need {need} tokens ({ranges}): "
                          f"{str(err).removeprefix(f'{sl.corpus}: ')}") from None
    if ref.corpus_tokens.n_chunk < sl.chunks:
        have = ref.corpus_tokens.corpus_tokens
        raise CorpusError(f"{sl.corpus}: tokenizes to {have} tokens; the recipe's slices need {need} ({ranges})")
    log(f"base scored on {sl.describe()}")
    return ref
