"""criteria.toml → typed, validated experiments.

The file has five kinds of tables::

    [defaults]                 model, corpus, chunks, epsilon, checks, prompts, [defaults.settings/thresholds]
    [prompts.<id>]             one conversation test: a raw ``prompt`` or chat ``turns``, sampling, expectations
    [experiments.<name>]       tensors / layers / kinds, format and its options, overrides of the defaults
    [sweeps.<name>]            layers × kinds × formats, expanded into ordinary experiments
                               named ``sweep_<name>_L05_ffn_norm_fp8_e4m3``
    [recipes.<name>]           a mixed-precision recipe: tensors, groups, ggml formats and a size budget

Problems with the file as a whole (TOML syntax, ``[defaults]``, prompts, names that make ``pytest -k`` ambiguous)
raise :class:`~fakequant.errors.CriteriaError` at once: the suite refuses to start. A problem inside one experiment
is kept in :attr:`Criteria.errors` so that only that experiment's tests error and the others still run
(``strict=True`` raises it instead). Every message is one line naming the file and the key.

Modules: ``types`` (what a file becomes), ``parse`` (the tables), ``read`` (values the tables share), ``prompts``,
``sweeps``, ``recipes``, ``names`` (what ``pytest -k`` needs of a name), ``context`` (file and key in every message).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from fakequant.errors import CriteriaError
from fakequant.store import assets
from fakequant.store.textfile import parse_user_file
from fakequant.suite.criteria.parse import parse_criteria
from fakequant.suite.criteria.sweeps import expand_layers, sweep_cell_name
from fakequant.suite.criteria.types import Criteria, Experiment, MixRecipe, Prompt, Thresholds

__all__ = ["Criteria", "Experiment", "MixRecipe", "Prompt", "Thresholds", "expand_layers", "load_criteria",
           "sweep_cell_name"]


def load_criteria(path: str | Path, *, model: str | Path | None = None, corpus: str | Path | None = None,
                  threads: int | None = None, report_dir: str | Path | None = None, report_lang: str | None = None,
                  strict: bool = False) -> Criteria:
    """Read and validate ``path``; command-line overrides win over the file for this run. A pinned default model or
    corpus that an experiment uses is fetched here if it is not in the cache yet."""
    path = Path(path)
    data = parse_user_file(path, CriteriaError, missing="no such criteria file (pass --criteria PATH)",
                           expected="a criteria.toml file", parse=tomllib.loads, invalid=tomllib.TOMLDecodeError,
                           explain=lambda e: f"TOML syntax error: {e}")
    criteria = parse_criteria(data, path, model=model, corpus=corpus, threads=threads, report_dir=report_dir,
                              report_lang=report_lang, strict=strict)
    used = {p for e in (*criteria.experiments.values(), *criteria.recipes.values()) for p in (e.model, e.corpus)}
    for asset in (assets.DEFAULT_MODEL, assets.DEFAULT_CORPUS):
        cached = assets.cached_path(asset)
        # a file there was verified before it was (atomically) put there: not hashed again on every read
        if cached in used and not cached.is_file():
            assets.ensure(asset)
    return criteria
