"""criteria.toml → typed, validated experiments.

The file has four kinds of tables::

    [defaults]                 model, corpus, chunks, epsilon, checks, prompts, [defaults.settings/thresholds]
    [prompts.<id>]             one conversation test: a raw ``prompt`` or chat ``turns``, sampling, expectations
    [experiments.<name>]       tensors / layers / kinds, format and its options, overrides of the defaults
    [sweeps.<name>]            layers × kinds × formats, expanded into ordinary experiments
                               named ``sweep_<name>_L05_ffn_norm_fp8_e4m3``

Problems with the file as a whole (TOML syntax, ``[defaults]``, prompts, names that make ``pytest -k`` ambiguous)
raise :class:`~fakequant.errors.CriteriaError` at once: the suite refuses to start. A problem inside one experiment
is kept in :attr:`Criteria.errors` so that only that experiment's tests error and the others still run
(``strict=True`` raises it instead). Every message is one line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakequant.errors import CriteriaError, FakequantError
from fakequant.runtime.settings import RuntimeSettings, SamplingParams
from fakequant.suite.vocab import CATEGORIES, LANGS, TEST_FILES, TEST_ORDER

SWEEP_CHECKS = ("must_pass", "numerical", "perplexity")  # a sweep cell costs about one perplexity pass
EXPECTABLE = ("GO", "CAUTION", "STOP", "INCONCLUSIVE")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words that appear in every acceptance test id or in tests/unit: an experiment whose name is a substring of one of
# them would make `pytest -k <name>` select tests of other experiments (or the project's own unit tests).
RESERVED_WORDS = ("tests", "acceptance", "unit", *TEST_FILES, *TEST_ORDER, "and", "or", "not")


@dataclass(frozen=True)
class Thresholds:
    """Go/no-go bounds. Relative values: 0.01 = 1%. Defaults are the user's plan."""

    mean_rel_diff: float = 0.01  # ideal bound on mean |a-b|/(|a|+ε) per changed tensor (plan: < 1%)
    max_rel_diff: float = 0.10  # ideal bound on max |a-b|/(|a|+ε) (plan: < 10%)
    mean_rel_diff_acceptable: float = 0.05  # beyond ideal but within these: CAUTION; beyond: fail
    max_rel_diff_acceptable: float = 1.0  # 1.0 = a value flushed to zero
    ppl_increase_ideal: float = 0.01  # plan: < 1% ideal
    ppl_increase_acceptable: float = 0.05  # plan: < 5% acceptable
    fluency_factor: float = 1.5  # candidate answer's fluency PPL may be at most this × the baseline answer's
    conversation_alpha: float = 0.05  # significance level: fluency per token, and pass counts of sampled answers
    repetition_max: float = 0.5  # share of the answer made of its most repeated n-gram beyond which it is degenerate
    cjk_min_ratio: float = 0.2  # share of CJK among letters for an answer to count as Chinese
    speed_tolerance: float = 0.10  # the candidate may be up to 10% slower before a *significant* slowdown fails
    speed_alpha: float = 0.05  # significance level of the speed test
    speed_rounds: int = 5  # interleaved rounds per model

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    expect: str | None = None  # a negative control declares the decision it must reach, e.g. "STOP"
    source: str = ""  # "experiments.layer0" or "sweeps.<name>"
    sweep: str | None = None
    markers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The "experiment" artifact of the shared contract."""
        return {
            "name": self.name,
            "description": self.description,
            "recipe": self.recipe.to_json(),
            "thresholds": self.thresholds.to_json(),
            "settings": self.settings.to_json(),
            "chunks": self.chunks,
            "model": str(self.model),
            "corpus": str(self.corpus),
            "checks": list(self.checks),
            "prompts": [p.to_json() for p in self.prompts],
            "expect": self.expect,
            "source": self.source,
            "sweep": self.sweep,
        }


@dataclass
class Criteria:
    path: Path
    experiments: dict[str, Experiment]  # valid experiments, in file order (sweep cells after experiments)
    errors: dict[str, CriteriaError]  # experiment name → why it cannot run
    sweeps: dict[str, tuple[str, ...]]  # sweep name → its cells' experiment names
    report_dir: Path
    report_lang: str

    @property
    def names(self) -> list[str]:
        """Every experiment name, valid or not, in file order."""
        return list(dict.fromkeys([*self.experiments, *self.errors]))


# ---------------------------------------------------------------------------------------------------------- parsing

_TOP_KEYS = ("defaults", "prompts", "experiments", "sweeps", "report")
_DEFAULT_KEYS = ("model", "corpus", "chunks", "epsilon", "checks", "prompts", "settings", "thresholds")
_EXPERIMENT_KEYS = ("description", "tensors", "layers", "kinds", "format", "group_size", "store", "epsilon",
                    "thresholds", "settings", "chunks", "prompts", "checks", "expect", "model", "corpus")
_SWEEP_KEYS = ("description", "layers", "kinds", "formats", "group_size", "store", "epsilon", "thresholds",
               "settings", "chunks", "prompts", "checks", "model", "corpus")
_PROMPT_KEYS = ("prompt", "turns", "system", "contains", "contains_any", "language", "samples",
                *(f.name for f in dataclasses.fields(SamplingParams)))
_REPORT_KEYS = ("dir", "lang")
# answers per model for a sampled prompt by default: with 5 seeds each, 5/5 baseline against 1/5 candidate passes is
# a significant regression (one-sided Fisher exact p = 0.024), 5/5 against 2/5 is not (p = 0.083)
SAMPLED_ANSWERS = 5


class _Ctx:
    """Where we are in the file, for messages: ``criteria.toml: experiments.layer5.format: ...``."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, key: str, message: str) -> CriteriaError:
        return CriteriaError(f"{self.path}: {key}: {message}")

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a table, got {_type(value)}")
        return value

    def known(self, table: Mapping[str, Any], allowed: tuple[str, ...], key: str) -> None:
        for name in table:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
                raise self.error(f"{key}.{name}" if key else name, f"unknown key{hint}")

    def typed(self, value: Any, kind: str, key: str) -> Any:
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }[kind]
        if not ok:
            raise self.error(key, f"must be {_article(kind)}, got {_type(value)} {value!r}")
        if kind == "float":
            value = float(value)
            if not math.isfinite(value):
                raise self.error(key, f"must be a finite number, got {value!r}")
        return value


def _type(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _article(kind: str) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
            "list[str]": "an array of strings"}[kind]


def load_criteria(path: str | Path, *, model: str | Path | None = None, corpus: str | Path | None = None,
                  threads: int | None = None, report_dir: str | Path | None = None, report_lang: str | None = None,
                  strict: bool = False) -> Criteria:
    """Read and validate ``path``; command-line overrides win over the file for this run."""
    path = Path(path)
    ctx = _Ctx(path)
    if not path.exists():
        raise CriteriaError(f"{path}: no such criteria file (pass --criteria PATH)")
    if path.is_dir():
        raise CriteriaError(f"{path}: is a directory, expected a criteria.toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CriteriaError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise CriteriaError(f"{path}: TOML syntax error: {err}") from None
    except OSError as err:
        raise CriteriaError(f"{path}: cannot read: {err.strerror}") from None
    return parse_criteria(data, ctx, model=model, corpus=corpus, threads=threads, report_dir=report_dir,
                          report_lang=report_lang, strict=strict)


def parse_criteria(data: Mapping[str, Any], ctx: _Ctx, *, model: str | Path | None = None,
                   corpus: str | Path | None = None, threads: int | None = None,
                   report_dir: str | Path | None = None, report_lang: str | None = None,
                   strict: bool = False) -> Criteria:
    ctx.known(data, _TOP_KEYS, "")
    base = ctx.path.resolve().parent
    report = ctx.table(data.get("report", {}), "report")
    ctx.known(report, _REPORT_KEYS, "report")
    lang = report_lang or ctx.typed(report.get("lang", "en"), "str", "report.lang")
    if lang not in LANGS:
        raise ctx.error("report.lang" if report_lang is None else "--report-lang",
                        f"must be one of {', '.join(LANGS)}, got {lang!r}")
    rdir = Path(report_dir) if report_dir is not None else _path(ctx.typed(report.get("dir", "reports"), "str",
                                                                            "report.dir"), base)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise CriteriaError(f"--threads: must be a positive integer, got {threads!r}")

    prompts = _parse_prompts(ctx.table(data.get("prompts", {}), "prompts"), ctx)
    defaults = _parse_defaults(ctx.table(data.get("defaults", {}), "defaults"), ctx, base, prompts,
                               model=model, corpus=corpus, threads=threads)

    experiments: dict[str, Experiment] = {}
    errors: dict[str, CriteriaError] = {}
    sweeps: dict[str, tuple[str, ...]] = {}
    seen: list[tuple[str, str]] = []  # (name, key) in file order, for the -k ambiguity check

    for name, table in ctx.table(data.get("experiments", {}), "experiments").items():
        key = f"experiments.{name}"
        _check_name(name, key, ctx)
        seen.append((name, key))
        try:
            experiments[name] = _parse_experiment(name, ctx.table(table, key), key, ctx, defaults, prompts)
        except FakequantError as err:
            errors[name] = err if isinstance(err, CriteriaError) else ctx.error(key, str(err))

    for sname, table in ctx.table(data.get("sweeps", {}), "sweeps").items():
        key = f"sweeps.{sname}"
        _check_name(sname, key, ctx)
        try:
            cells = _expand_sweep(sname, ctx.table(table, key), key, ctx, defaults, prompts)
        except FakequantError as err:
            # the whole sweep is one entry: its cells cannot be named without a valid definition
            cname = f"sweep_{sname}"
            seen.append((cname, key))
            errors[cname] = err if isinstance(err, CriteriaError) else ctx.error(key, str(err))
            continue
        sweeps[sname] = tuple(cells)
        for cname, cell in cells.items():
            seen.append((cname, key))
            if isinstance(cell, Experiment):
                experiments[cname] = cell
            else:
                errors[cname] = cell

    _check_ambiguity(seen, ctx)
    if strict and errors:
        raise next(iter(errors.values()))
    return Criteria(path=ctx.path, experiments=experiments, errors=errors, sweeps=sweeps, report_dir=rdir,
                    report_lang=lang)


def _path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _check_name(name: str, key: str, ctx: _Ctx) -> None:
    if not NAME_RE.fullmatch(name):
        raise ctx.error(key, f"name {name!r} must be letters, digits and '_' (not starting with a digit), "
                             "so that `pytest -k`/`-m` can select it")


def _check_ambiguity(seen: list[tuple[str, str]], ctx: _Ctx) -> None:
    names = [(n.lower(), n, k) for n, k in seen]
    for low, name, key in names:
        for word in RESERVED_WORDS:
            if low in word:
                raise ctx.error(key, f"name {name!r} is part of {word!r}, which every test id contains: "
                                     f"`pytest -k {name}` would select other tests; choose another name")
    ordered = sorted(names, key=lambda t: len(t[0]))
    for i, (low, name, key) in enumerate(ordered):
        for low2, name2, key2 in ordered[i + 1:]:
            if low in low2:
                raise ctx.error(key2 if low == low2 else key,
                                f"name {name!r} is contained in {name2!r} ({key2}) ignoring case: `pytest -k {name}` "
                                "would run both; rename one")


def _parse_prompts(table: Mapping[str, Any], ctx: _Ctx) -> dict[str, Prompt]:
    out: dict[str, Prompt] = {}
    for pid, raw in table.items():
        key = f"prompts.{pid}"
        raw = ctx.table(raw, key)
        ctx.known(raw, _PROMPT_KEYS, key)
        if not NAME_RE.fullmatch(pid):
            raise ctx.error(key, f"prompt id {pid!r} must be letters, digits and '_'")
        has_prompt, has_turns = "prompt" in raw, "turns" in raw
        if has_prompt == has_turns:
            raise ctx.error(key, "give exactly one of 'prompt' (raw completion) or 'turns' (chat)")
        prompt = turns = None
        if has_prompt:
            prompt = ctx.typed(raw["prompt"], "str", f"{key}.prompt")
            if not prompt.strip():
                raise ctx.error(f"{key}.prompt", "is empty")
        else:
            turns = ctx.typed(raw["turns"], "list[str]", f"{key}.turns")
            if not turns or not all(t.strip() for t in turns):
                raise ctx.error(f"{key}.turns", "must hold at least one non-empty message")
        sampling = {k: raw[k] for k in raw if k in {f.name for f in dataclasses.fields(SamplingParams)}}
        try:
            params = SamplingParams.from_mapping(sampling, source=f"{ctx.path}: {key}")
        except CriteriaError as err:
            raise _sourced(err, ctx, key) from None
        language = ctx.typed(raw.get("language", "auto"), "str", f"{key}.language")
        if language not in ("auto", "en", "zh", "any"):
            raise ctx.error(f"{key}.language", f"must be auto, en, zh or any, got {language!r}")
        samples = ctx.typed(raw.get("samples", 1 if params.greedy else SAMPLED_ANSWERS), "int", f"{key}.samples")
        if samples < 1 or (params.greedy and samples > 1):
            raise ctx.error(f"{key}.samples", f"must be >= 1, and 1 for a greedy prompt (temperature 0 gives the "
                                              f"same answer for every seed), got {samples}")
        out[pid] = Prompt(
            id=pid, kind="raw" if has_prompt else "chat", prompt=prompt, turns=tuple(turns or ()),
            system=ctx.typed(raw["system"], "str", f"{key}.system") if "system" in raw else None,
            params=params,
            contains=tuple(ctx.typed(raw.get("contains", []), "list[str]", f"{key}.contains")),
            contains_any=tuple(ctx.typed(raw.get("contains_any", []), "list[str]", f"{key}.contains_any")),
            language=language, samples=samples,
        )
    return out


def _sourced(err: CriteriaError, ctx: _Ctx, key: str) -> CriteriaError:
    """Settings' own checks say ``settings: n_ctx must be ...``; make sure the file and key are named."""
    msg = str(err)
    return err if msg.startswith(str(ctx.path)) else ctx.error(key, msg)


@dataclass(frozen=True)
class _Defaults:
    model: Path
    corpus: Path
    chunks: int
    epsilon: float
    checks: tuple[str, ...]
    prompts: tuple[str, ...]
    settings: Mapping[str, Any]
    thresholds: Mapping[str, Any]
    model_overridden: bool
    corpus_overridden: bool
    threads: int | None


def _parse_defaults(table: Mapping[str, Any], ctx: _Ctx, base: Path, prompts: Mapping[str, Prompt], *,
                    model: str | Path | None, corpus: str | Path | None, threads: int | None) -> _Defaults:
    ctx.known(table, _DEFAULT_KEYS, "defaults")
    settings = dict(ctx.table(table.get("settings", {}), "defaults.settings"))
    thresholds = dict(ctx.table(table.get("thresholds", {}), "defaults.thresholds"))
    # validate the defaults now: a bad default would break every experiment, so the suite refuses to start
    _settings(settings, {}, ctx, "defaults.settings", threads)
    _thresholds(thresholds, {}, ctx, "defaults.thresholds")
    checks = _checks(table.get("checks", list(CATEGORIES)), ctx, "defaults.checks")
    pids = _prompt_ids(table.get("prompts", list(prompts)), prompts, ctx, "defaults.prompts")
    m = _asset(model if model is not None else table.get("model", "default"), "model", ctx,
               "--model" if model is not None else "defaults.model", base if model is None else Path.cwd())
    c = _asset(corpus if corpus is not None else table.get("corpus", "default"), "corpus", ctx,
               "--corpus" if corpus is not None else "defaults.corpus", base if corpus is None else Path.cwd())
    return _Defaults(model=m, corpus=c, chunks=_chunks(table.get("chunks", 12), ctx, "defaults.chunks"),
                     epsilon=_epsilon(table.get("epsilon", 1e-8), ctx, "defaults.epsilon"), checks=checks,
                     prompts=pids, settings=settings, thresholds=thresholds, model_overridden=model is not None,
                     corpus_overridden=corpus is not None, threads=threads)


def _asset(value: Any, what: str, ctx: _Ctx, key: str, base: Path) -> Path:
    if isinstance(value, Path):
        value = str(value)
    value = ctx.typed(value, "str", key) if key.startswith(("defaults", "experiments", "sweeps")) else value
    if value == "default":
        from fakequant.store import assets  # fetches (once) and verifies the pinned default

        return assets.model_path() if what == "model" else assets.corpus_path()
    p = _path(value, base)
    if not p.exists():
        raise ctx.error(key, f"{what} file {str(p)!r} does not exist")
    if not p.is_file():
        raise ctx.error(key, f"{what} path {str(p)!r} is not a file")
    return p


def _chunks(value: Any, ctx: _Ctx, key: str) -> int:
    value = ctx.typed(value, "int", key)
    if value < 1:
        raise ctx.error(key, f"must be >= 1 (perplexity chunks of n_ctx tokens), got {value}")
    return value


def _epsilon(value: Any, ctx: _Ctx, key: str) -> float:
    value = ctx.typed(value, "float", key)
    if value <= 0:
        raise ctx.error(key, f"ε must be > 0 (it keeps |a-b|/(|a|+ε) finite where a = 0), got {value}")
    return value


def _checks(value: Any, ctx: _Ctx, key: str) -> tuple[str, ...]:
    value = ctx.typed(value, "list[str]", key)
    for item in value:
        if item not in CATEGORIES:
            close = difflib.get_close_matches(item, CATEGORIES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; choose from {', '.join(CATEGORIES)}"
            raise ctx.error(key, f"unknown check {item!r}{hint}")
    if "must_pass" not in value:
        raise ctx.error(key, "'must_pass' cannot be turned off: it is what makes a candidate usable at all")
    return tuple(c for c in CATEGORIES if c in value)


def _prompt_ids(value: Any, prompts: Mapping[str, Prompt], ctx: _Ctx, key: str) -> tuple[str, ...]:
    value = ctx.typed(value, "list[str]", key)
    for pid in value:
        if pid not in prompts:
            close = difflib.get_close_matches(pid, list(prompts), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; defined: {', '.join(prompts) or 'none'}"
            raise ctx.error(key, f"no [prompts.{pid}] table{hint}")
    return tuple(value)


def _settings(defaults: Mapping[str, Any], override: Any, ctx: _Ctx, key: str,
              threads: int | None) -> RuntimeSettings:
    merged = {**defaults, **ctx.table(override, key)}
    if threads is not None:
        merged["n_threads"] = threads
    try:
        return RuntimeSettings.from_mapping(merged, source=f"{ctx.path}: {key}")
    except CriteriaError as err:
        raise _sourced(err, ctx, key) from None


_THRESHOLD_FIELDS = {f.name: f for f in dataclasses.fields(Thresholds)}
_PAIRS = (("ppl_increase_ideal", "ppl_increase_acceptable"), ("mean_rel_diff", "mean_rel_diff_acceptable"),
          ("max_rel_diff", "max_rel_diff_acceptable"))


def _thresholds(defaults: Mapping[str, Any], override: Any, ctx: _Ctx, key: str) -> Thresholds:
    override = ctx.table(override, key)
    ctx.known(override, tuple(_THRESHOLD_FIELDS), key)
    values: dict[str, Any] = {}
    for name, value in {**defaults, **override}.items():
        where = f"{key}.{name}"
        if name not in _THRESHOLD_FIELDS:
            ctx.known({name: value}, tuple(_THRESHOLD_FIELDS), key)
        kind = "int" if _THRESHOLD_FIELDS[name].type == "int" else "float"
        value = ctx.typed(value, kind, where)
        if name == "speed_rounds":
            if value < 2:
                raise ctx.error(where, f"must be >= 2 (a significance test needs rounds), got {value}")
        elif name in ("speed_alpha", "conversation_alpha"):
            if not 0 < value < 1:
                raise ctx.error(where, f"must be in (0, 1), got {value}")
        elif name == "fluency_factor":
            if value < 1:
                raise ctx.error(where, f"must be >= 1 (a factor on the baseline's own fluency), got {value}")
        elif value < 0:
            raise ctx.error(where, f"must be >= 0, got {value}")
        values[name] = value
    result = Thresholds(**values)
    for ideal, acceptable in _PAIRS:
        if getattr(result, ideal) > getattr(result, acceptable):
            raise ctx.error(f"{key}.{ideal}", f"ideal bound {getattr(result, ideal):g} is looser than "
                                              f"{acceptable} = {getattr(result, acceptable):g}; the ideal bound must "
                                              "be the tighter one")
    return result


def _recipe(selection: dict[str, Any], fmt: str, group_size: int | None, store: str | None, epsilon: float,
            ctx: _Ctx, key: str) -> Any:
    from fakequant.quant.candidate import Recipe
    from fakequant.quant.select import Selection

    try:
        recipe = Recipe(selection=Selection(**selection), format=fmt, group_size=group_size, store=store,
                        epsilon=epsilon)
        recipe.validate()
    except FakequantError as err:
        raise ctx.error(key, str(err)) from None
    return recipe


def _common(table: Mapping[str, Any], key: str, ctx: _Ctx, defaults: _Defaults,
            prompts: Mapping[str, Prompt]) -> dict[str, Any]:
    """Keys experiments and sweeps share: overrides of the defaults."""
    base = ctx.path.resolve().parent
    model = defaults.model if defaults.model_overridden or "model" not in table else \
        _asset(table["model"], "model", ctx, f"{key}.model", base)
    corpus = defaults.corpus if defaults.corpus_overridden or "corpus" not in table else \
        _asset(table["corpus"], "corpus", ctx, f"{key}.corpus", base)
    pids = _prompt_ids(table["prompts"], prompts, ctx, f"{key}.prompts") if "prompts" in table else defaults.prompts
    return dict(
        description=ctx.typed(table.get("description", ""), "str", f"{key}.description"),
        thresholds=_thresholds(defaults.thresholds, table.get("thresholds", {}), ctx, f"{key}.thresholds"),
        settings=_settings(defaults.settings, table.get("settings", {}), ctx, f"{key}.settings", defaults.threads),
        chunks=_chunks(table["chunks"], ctx, f"{key}.chunks") if "chunks" in table else defaults.chunks,
        prompts=tuple(prompts[p] for p in pids),
        model=model, corpus=corpus,
    )


def _format_options(table: Mapping[str, Any], key: str, ctx: _Ctx, defaults: _Defaults) -> dict[str, Any]:
    group = ctx.typed(table["group_size"], "int", f"{key}.group_size") if "group_size" in table else None
    if group is not None and group < 1:
        raise ctx.error(f"{key}.group_size", f"must be >= 1, got {group}")
    store = ctx.typed(table["store"], "str", f"{key}.store") if "store" in table else None
    eps = _epsilon(table["epsilon"], ctx, f"{key}.epsilon") if "epsilon" in table else defaults.epsilon
    return dict(group_size=group, store=store, epsilon=eps)


def _layers(value: Any, ctx: _Ctx, key: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        value = ",".join(str(v) for v in value)
    value = ctx.typed(value, "str", key)
    if not re.fullmatch(r"all|\d+(-\d+)?(,\d+(-\d+)?)*", value.replace(" ", "")):
        raise ctx.error(key, f"must look like \"0\", \"0-2\", \"0,5,10-12\" or \"all\", got {value!r}")
    return value.replace(" ", "")


def _parse_experiment(name: str, table: Mapping[str, Any], key: str, ctx: _Ctx, defaults: _Defaults,
                      prompts: Mapping[str, Prompt]) -> Experiment:
    ctx.known(table, _EXPERIMENT_KEYS, key)
    if "format" not in table:
        raise ctx.error(f"{key}.format", "missing: which format to round the tensors through (e.g. \"bf16\")")
    fmt = ctx.typed(table["format"], "str", f"{key}.format")
    selection: dict[str, Any] = {}
    if "tensors" in table:
        selection["names"] = tuple(ctx.typed(table["tensors"], "list[str]", f"{key}.tensors"))
    if "layers" in table:
        selection["layers"] = _layers(table["layers"], ctx, f"{key}.layers")
    if "kinds" in table:
        selection["kinds"] = tuple(ctx.typed(table["kinds"], "list[str]", f"{key}.kinds"))
    if not selection:
        raise ctx.error(key, "selects no tensors: give 'tensors' (names or globs), 'layers' and/or 'kinds'")
    expect = None
    if "expect" in table:
        expect = ctx.typed(table["expect"], "str", f"{key}.expect").upper()
        if expect not in EXPECTABLE:
            raise ctx.error(f"{key}.expect", f"must be one of {', '.join(EXPECTABLE)}, got {table['expect']!r}")
    checks = _checks(table["checks"], ctx, f"{key}.checks") if "checks" in table else defaults.checks
    common = _common(table, key, ctx, defaults, prompts)
    recipe = _recipe(selection, fmt, **_format_options(table, key, ctx, defaults), ctx=ctx, key=key)
    return Experiment(name=name, recipe=recipe, checks=checks, expect=expect, source=key, markers=(name,), **common)


def _expand_sweep(sname: str, table: Mapping[str, Any], key: str, ctx: _Ctx, defaults: _Defaults,
                  prompts: Mapping[str, Prompt]) -> dict[str, Experiment | CriteriaError]:
    ctx.known(table, _SWEEP_KEYS, key)
    for required in ("layers", "kinds", "formats"):
        if required not in table:
            raise ctx.error(f"{key}.{required}", "missing: a sweep is layers × kinds × formats")
    layers = expand_layers(_layers(table["layers"], ctx, f"{key}.layers"), ctx, f"{key}.layers")
    kinds = ctx.typed(table["kinds"], "list[str]", f"{key}.kinds")
    formats = ctx.typed(table["formats"], "list[str]", f"{key}.formats")
    for what, items in (("kinds", kinds), ("formats", formats)):
        if not items:
            raise ctx.error(f"{key}.{what}", "is empty")
        for item in items:
            if not NAME_RE.fullmatch(item):
                raise ctx.error(f"{key}.{what}", f"{item!r} cannot be part of a test name")
    checks = _checks(table["checks"], ctx, f"{key}.checks") if "checks" in table else SWEEP_CHECKS
    common = _common(table, key, ctx, defaults, prompts)
    if "prompts" not in table:
        common["prompts"] = tuple(prompts[p] for p in defaults.prompts)
    options = _format_options(table, key, ctx, defaults)
    width = max(2, len(str(max(layers))))
    cells: dict[str, Experiment | CriteriaError] = {}
    for layer in layers:
        for kind in kinds:
            for fmt in formats:
                cname = sweep_cell_name(sname, layer, kind, fmt, width)
                try:
                    recipe = _recipe({"layers": str(layer), "kinds": (kind,)}, fmt, **options, ctx=ctx, key=key)
                    cells[cname] = Experiment(
                        name=cname, recipe=recipe, checks=checks, source=key, sweep=sname,
                        markers=(f"sweep_{sname}",), **{**common, "description": common["description"] or
                                                        f"sweep {sname}: blk.{layer}.{kind} → {fmt}"})
                except CriteriaError as err:
                    cells[cname] = err
    return cells


def sweep_cell_name(sweep: str, layer: int, kind: str, fmt: str, width: int = 2) -> str:
    return f"sweep_{sweep}_L{layer:0{width}d}_{kind}_{fmt}"


def expand_layers(spec: str, ctx: _Ctx | None = None, key: str = "layers") -> list[int]:
    """"0,5,10-12" → [0, 5, 10, 11, 12]. "all" needs the model, so sweeps must list their layers."""
    if spec == "all":
        if ctx is None:
            raise CriteriaError(f"{key}: 'all' cannot be expanded without the model")
        raise ctx.error(key, "a sweep must list its layers (e.g. \"0-29\"); 'all' is for experiments")
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            msg = f"range {part!r} runs backwards"
            raise ctx.error(key, msg) if ctx else CriteriaError(f"{key}: {msg}")
        out.extend(range(a, b + 1))
    return list(dict.fromkeys(out))
