"""[prompts.<id>]: one conversation test each, a raw ``prompt`` or chat ``turns``, its sampling and expectations."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fakequant.errors import CriteriaError
from fakequant.runtime.settings import SamplingParams
from fakequant.suite.criteria.context import Context
from fakequant.suite.criteria.names import NAME_RE
from fakequant.suite.criteria.types import Prompt

_SAMPLING_KEYS = tuple(f.name for f in dataclasses.fields(SamplingParams))
PROMPT_KEYS = ("prompt", "turns", "system", "contains", "contains_any", "language", "samples", *_SAMPLING_KEYS)
# answers per model for a sampled prompt by default: with 5 seeds each, 5/5 baseline against 1/5 candidate passes is
# a significant regression (one-sided Fisher exact p = 0.024), 5/5 against 2/5 is not (p = 0.083)
SAMPLED_ANSWERS = 5


def parse_prompts(table: Mapping[str, Any], ctx: Context) -> dict[str, Prompt]:
    out: dict[str, Prompt] = {}
    for pid, raw in table.items():
        key = f"prompts.{pid}"
        raw = ctx.table(raw, key)
        ctx.known(raw, PROMPT_KEYS, key)
        if not NAME_RE.fullmatch(pid):
            raise ctx.error(key, f"prompt id {pid!r} must be letters, digits and '_'")
        if pid == "battery":  # conversation[battery] is the battery's check
            raise ctx.error(key, "the prompt id 'battery' names the conversation battery's check; choose another")
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
        sampling = {k: raw[k] for k in raw if k in _SAMPLING_KEYS}
        try:
            params = SamplingParams.from_mapping(sampling, source=f"{ctx.path}: {key}")
        except CriteriaError as err:
            raise ctx.sourced(err, key) from None
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
