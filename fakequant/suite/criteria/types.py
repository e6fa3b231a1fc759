"""The typed result of reading criteria.toml: thresholds, conversation prompts, experiments, the whole file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakequant.errors import CriteriaError
from fakequant.quant.select import Selection
from fakequant.runtime.settings import RuntimeSettings, SamplingParams, bounded
from fakequant.suite.vocab import CATEGORIES

# how a recipe's tensors form the groups that each get one format: one (layer, kind), one kind across the selected
# layers, or one layer's selected kinds; a tensor outside the blocks (token_embd, output) is always its own group
GROUPINGS = ("cell", "kind", "layer")


@dataclass(frozen=True)
class Thresholds:
    """Go/no-go bounds. Relative values: 0.01 = 1%. Defaults are the user's plan."""

    mean_rel_diff: float = bounded(0.01, ge=0)  # ideal bound on mean |a-b|/(|a|+ε) per changed tensor (plan: < 1%)
    max_rel_diff: float = bounded(0.10, ge=0)  # ideal bound on max |a-b|/(|a|+ε) (plan: < 10%)
    mean_rel_diff_acceptable: float = bounded(0.05, ge=0)  # beyond ideal but within these: CAUTION; beyond: fail
    # beyond it some value moved by more than half its own magnitude (a flush to zero moves it by all of it). Not 1.0:
    # round-to-nearest moves a value by at most its own magnitude (int4/int8/fp8 flush to zero: just below 1.0)
    max_rel_diff_acceptable: float = bounded(1.0, ge=0)
    ppl_increase_ideal: float = bounded(0.01, ge=0)  # plan: < 1% ideal
    ppl_increase_acceptable: float = bounded(0.05, ge=0)  # plan: < 5% acceptable
    # the candidate answer's fluency PPL may be at most this × the baseline answer's
    fluency_factor: float = bounded(1.5, ge=1, why="a factor on the baseline's own fluency")
    # significance level: fluency per token, and pass counts of sampled answers
    conversation_alpha: float = bounded(0.05, gt=0, lt=1)
    # share of the answer made of its most repeated n-gram beyond which it is degenerate
    repetition_max: float = bounded(0.5, ge=0)
    cjk_min_ratio: float = bounded(0.2, ge=0)  # share of CJK among letters for an answer to count as Chinese
    # a slowdown beyond 10% that also exceeds the run's own A/A noise, significantly, is a CAUTION (never a failure)
    speed_tolerance: float = bounded(0.10, ge=0)
    speed_alpha: float = bounded(0.05, gt=0, lt=1)  # significance level of the speed test (split over 3 metrics)
    # interleaved rounds, each timing the original twice and the candidate once; 6 puts every model in every position
    # equally often. n rounds reach p = 1/C(2n, n) at best: 4 give 0.014, below 0.05 / 3 metrics; 3 give 0.05
    speed_rounds: int = bounded(6, ge=4, why="fewer rounds cannot reach p < 0.05 / 3")
    # placebo twins (seeds 0 … K-1) answering the conversation battery beside the candidate: with 4, two prompts that
    # no twin breaks are already a significant regression (p = 1/25); the perplexity pass's twin is seed 0
    battery_placebos: int = bounded(4, ge=1, why="the battery compares the candidate with its placebo twins")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# (ideal, acceptable) bounds of one measure: the ideal one must be the tighter
IDEAL_PAIRS = (("ppl_increase_ideal", "ppl_increase_acceptable"), ("mean_rel_diff", "mean_rel_diff_acceptable"),
               ("max_rel_diff", "max_rel_diff_acceptable"))


@dataclass(frozen=True)
class Prompt:
    """One conversation test. ``kind == "raw"``: ``prompt`` is completed as is (the plan's ``llama-cli --prompt``);
    ``kind == "chat"``: ``turns`` are the user's messages, each answered through the model's chat template with the
    model's own earlier answers as history (the plan's interactive test)."""

    id: str
    kind: str
    prompt: str | None = None
    turns: tuple[str, ...] = ()
    system: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    contains: tuple[str, ...] = ()  # every one must appear in the answer (case-insensitive)
    contains_any: tuple[str, ...] = ()  # at least one must appear
    language: str = "auto"  # "auto" (that of the question), "en", "zh", or "any"
    samples: int = 1  # answers per model, seeds seed, seed+1, ...: a sampled answer is judged over several

    @property
    def question(self) -> str:
        return self.prompt if self.kind == "raw" else self.turns[0]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["params"] = self.params.to_json()
        data["turns"] = list(self.turns)
        data["contains"] = list(self.contains)
        data["contains_any"] = list(self.contains_any)
        return data


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    recipe: Any  # quant.candidate.Recipe (imported lazily: reading criteria must not need the engine's numpy work)
    thresholds: Thresholds
    settings: RuntimeSettings
    chunks: int
    prompts: tuple[Prompt, ...]
    model: Path
    corpus: Path
    checks: tuple[str, ...] = CATEGORIES
    expect: tuple[str, ...] = ()  # a positive control: the checks (ids or categories) that must fail
    source: str = ""  # "experiments.layer0" or "sweeps.<name>"
    sweep: str | None = None
    markers: tuple[str, ...] = ()
    # the corpus's chunk the perplexity check starts at: 0 for experiments (llama-perplexity's own chunks); a
    # recipe's try starts at its evaluation slice, so it is never scored on the text its model was calibrated or
    # chosen on
    first_chunk: int = 0

    def to_json(self) -> dict[str, Any]:
        """The "experiment" artifact of the shared contract."""
        return {
            "name": self.name,
            "description": self.description,
            "recipe": self.recipe.to_json(),
            "thresholds": self.thresholds.to_json(),
            "settings": self.settings.to_json(),
            "chunks": self.chunks,
            "first_chunk": self.first_chunk,
            "model": str(self.model),
            "corpus": str(self.corpus),
            "checks": list(self.checks),
            "prompts": [p.to_json() for p in self.prompts],
            "expect": {k: "fail" for k in self.expect} or None,
            "source": self.source,
            "sweep": self.sweep,
        }


@dataclass(frozen=True)
class MixRecipe:
    """[recipes.<name>]: which tensors may change (a selection of matrices, grouped by ``group``), the ggml formats
    each group may take (keeping its type is always allowed), and exactly one budget: the file size in MiB, or the
    average bits per weight over the weight matrices (every tensor of two or more dimensions)."""

    name: str
    description: str
    selection: Selection
    formats: tuple[str, ...]
    group: str
    budget_mib: float | None
    budget_bpw: float | None
    thresholds: Thresholds
    settings: RuntimeSettings
    chunks: int
    prompts: tuple[Prompt, ...]
    model: Path
    corpus: Path
    source: str  # "recipes.<name>": the key in criteria.toml, for messages
    # the three slices of text, in chunks of n_ctx tokens, one after the other (recipe/slices.py): the importance
    # matrix's calibration, the cells' selection, and the evaluation of every model in the final table
    imatrix: bool = True  # false: no importance matrix, no calibration slice
    calibration_chunks: int = 8
    selection_chunks: int = 4
    evaluation_chunks: int = 8
    evaluation_corpus: Path | None = None  # the evaluation slice from its start instead of after the selection
    max_tries: int = 3  # assignments that go through the suite before the recipe says none passed
    # ``chunks`` (as experiments have it) is the suite's perplexity check of the chosen model

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "selection": self.selection.to_json(),
            "formats": list(self.formats),
            "group": self.group,
            "budget_mib": self.budget_mib,
            "budget_bpw": self.budget_bpw,
            "thresholds": self.thresholds.to_json(),
            "settings": self.settings.to_json(),
            "chunks": self.chunks,
            "prompts": [p.to_json() for p in self.prompts],
            "model": str(self.model),
            "corpus": str(self.corpus),
            "source": self.source,
            "imatrix": self.imatrix,
            "calibration_chunks": self.calibration_chunks,
            "selection_chunks": self.selection_chunks,
            "evaluation_chunks": self.evaluation_chunks,
            "evaluation_corpus": None if self.evaluation_corpus is None else str(self.evaluation_corpus),
            "max_tries": self.max_tries,
        }


@dataclass
class Criteria:
    path: Path
    experiments: dict[str, Experiment]  # valid experiments, in file order (sweep cells after experiments)
    errors: dict[str, CriteriaError]  # experiment name → why it cannot run
    sweeps: dict[str, tuple[str, ...]]  # sweep name → its cells' experiment names
    report_dir: Path
    report_lang: str
    recipes: dict[str, MixRecipe] = field(default_factory=dict)  # valid [recipes.<name>], in file order
    recipe_errors: dict[str, CriteriaError] = field(default_factory=dict)  # recipe name → why it cannot run

    @property
    def names(self) -> list[str]:
        """Every experiment name, valid or not, in file order."""
        return list(dict.fromkeys([*self.experiments, *self.errors]))
