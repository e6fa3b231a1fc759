"""Reading a report.json document that may be partial, and the phrases that more than one part of a report uses.

Every artifact and every key may be absent (a partial run, or a check that errored) and then reads as "not
measured": nothing here raises on missing data. :mod:`fakequant.report.document` arranges these phrases into blocks,
:mod:`fakequant.report.text` writes some as plain text, and the pytest-html summary shows :func:`key_numbers`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from fakequant.report import fmt
from fakequant.report.blocks import Badge, Block, Image, Inline, Para, Span
from fakequant.report.i18n import localized, status_text, translator
from fakequant.suite.rules import no_op
from fakequant.suite.vocab import Artifact


def d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def lst(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class DocContext:
    """The document being read, with the translator and the 'not measured' fallback."""

    def __init__(self, doc: dict[str, Any], lang: str) -> None:
        self.doc = doc
        self.lang = lang
        self.t: Callable[..., str] = translator(lang)
        self.art = d(doc.get("artifacts"))
        self.verdict = d(doc.get("verdict"))

    def na(self, text: str | None) -> str:
        return text if text not in (None, "") else self.t("not_measured")

    def a(self, name: str) -> dict[str, Any]:
        return d(self.art.get(name))

    @property
    def noop(self) -> bool:
        """Nothing changed: the suite skips the quality checks, and the report says why they are absent."""
        return no_op(self.a(Artifact.NUMERICAL)) is not None

    def absent(self) -> Para:
        return Para([self.t("skipped_noop") if self.noop else self.t("not_measured")])


def sentences(verdict: dict[str, Any], key: str, lang: str) -> list[str]:
    """The verdict's ``reasons`` or ``notes`` in ``lang``, each from its recorded code and values (as recorded when it
    has none: a report written before codes existed)."""
    texts = lst(verdict.get(key))
    codes = lst(d(verdict.get("messages")).get(key))
    codes = codes if len(codes) == len(texts) else [None] * len(texts)
    return [localized(text, code, lang) for text, code in zip(texts, codes, strict=True)]


def headline(verdict: dict[str, Any], lang: str) -> str:
    """The verdict's one-line headline in ``lang``."""
    return localized(verdict.get("headline") or "", d(verdict.get("messages")).get("headline"), lang)


def outcome_reason(outcome: dict[str, Any], lang: str) -> str:
    """A recorded check outcome's reason in ``lang``."""
    return localized(outcome.get("reason", ""), outcome.get("message"), lang)


def expectation(verdict: dict[str, Any], lang: str = "en") -> tuple[str, str] | None:
    """A positive control's line: each check it names and whether it failed, the failures it did not name; and the
    word matched / DID NOT MATCH. None for an ordinary experiment."""
    named = verdict.get("expected")
    if not isinstance(named, dict) or not named:
        return None
    t, data = translator(lang), d(verdict.get("expectation"))
    failed = d(data.get("failed"))
    parts = [t("exp_failed" if failed.get(k) else "exp_not_failed", check=k) for k in named]
    unexpected = sentences({"unexpected": data.get("unexpected"),
                            "messages": {"unexpected": data.get("unexpected_messages")}}, "unexpected", lang)
    if unexpected:
        parts.append(t("exp_unexpected", checks=", ".join(unexpected)))
    return t("sentence_join").join(parts), t("matched") if verdict.get("matched") else t("not_matched")


def images(ctx: DocContext, wanted: Sequence[tuple[str, str]]) -> list[Block]:
    """The plots among ``wanted`` (file name, caption key) that were drawn for this report."""
    drawn = set(lst(ctx.doc.get("plots")))
    return [Image(name, ctx.t(key)) for name, key in wanted if name in drawn]


def code(text: Any) -> Span:
    return Span(str(text), "code")


def badge(status: Any, lang: str) -> Badge:
    return Badge(str(status), status_text(str(status), lang))


def status_cell(ctx: DocContext, status: Any) -> Badge | str:
    return badge(status, ctx.lang) if status else ctx.t("not_measured")


def perplexity_difference(ctx: DocContext, pc: dict[str, Any]) -> str | None:
    """The perplexity increase with the interval its decision uses (over chunks, t quantile)."""
    interval = fmt.increase_interval(pc)
    if interval is None:
        return None
    inc, lo, hi = interval
    if lo is None or hi is None:
        return ctx.t("no_ci", mean=fmt.pct(inc))
    return ctx.t("ppl_increase", inc=fmt.pct(inc), lo=fmt.pct(lo), hi=fmt.pct(hi))


def agreement(block: dict[str, Any]) -> str | None:
    """Top-token agreement ± one standard error."""
    agree = fmt.pct(block.get("same_top_p"), 2, signed=False)
    if agree is not None and fmt.number(block.get("same_top_p_se")) is not None:
        agree += f" ± {fmt.pct(block.get('same_top_p_se'), 2, signed=False)}"
    return agree


def placebo_pair(pc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The comparison's placebo and excess blocks, or None when it was run without a placebo (older reports)."""
    placebo, excess = d(pc.get("placebo")), d(pc.get("excess"))
    return (placebo, excess) if placebo and excess else None


def level_text(excess: dict[str, Any]) -> str:
    return fmt.pct(excess.get("level", 0.95), 0, signed=False) or "95%"


def _three(values: list[Any]) -> list[str] | None:
    return fmt.same_scale(values, 3)


def with_ci(t: Callable[..., str], mean: Any, ci: Any, level: str, show: Callable[[list[Any]], list[str] | None]
            = _three) -> str | None:
    """``0.0012 (95% CI 0.0008 … 0.0016)``; the mean alone, said so, when there is no interval (one chunk)."""
    bounds = lst(ci)
    texts = show([mean, *bounds]) if len(bounds) == 2 else None
    if texts is not None:
        return t("ci", mean=texts[0], level=level, lo=texts[1], hi=texts[2])
    alone = show([mean])
    return t("no_ci", mean=alone[0]) if alone else None


def excess_kld(t: Callable[..., str], excess: dict[str, Any]) -> str | None:
    """The format's own mean KLD with its interval over chunks."""
    return with_ci(t, excess.get("kld_mean"), excess.get("kld_mean_ci"), level_text(excess))


def excess_phrase(ctx: DocContext, pc: dict[str, Any]) -> str | None:
    """The excess KLD for the summary table and the key numbers: marked when the interval does not exclude zero,
    "no placebo" for a comparison without one, None without a comparison."""
    if not pc:
        return None
    pair = placebo_pair(pc)
    if pair is None:
        return ctx.t("no_placebo")
    text = excess_kld(ctx.t, pair[1])
    if text is None:
        return ctx.t("not_measured")
    return text if pair[1].get("kld_mean_resolved") is True else ctx.t("below_resolution", value=text)


def speed_cell(ctx: DocContext, side: dict[str, Any], show: Callable[[Any], str | None]) -> str:
    median = show(side.get("median"))
    if median is None:
        return ctx.t("not_measured")
    values = [v for v in lst(side.get("values")) if fmt.number(v) is not None]
    if len(values) < 2:
        return median
    lo, hi = show(min(values, key=float)) or "?", show(max(values, key=float)) or "?"
    unit = " " + hi.split(" ", 1)[1] if " " in hi else ""
    if unit and lo.endswith(unit):  # "117–123 ms", not "117 ms–123 ms"
        lo = lo[: -len(unit)]
    band = ctx.t("median_of", n=len(values), lo=lo, hi=hi)
    return f"{median} ({band})"


def speed_difference(ctx: DocContext, metric: dict[str, Any], with_p: bool = True) -> str:
    """What the speed rule decided for one metric (its ``status``), with the slowdown per round against the run's
    own base-vs-base (A/A) noise that it was judged by."""
    status = str(metric.get("status") or "")
    if not metric or not status:
        return ctx.t("not_measured")
    p = fmt.sig(metric.get("p_value"), 2)
    ptext = f", p = {p}" if p and with_p else ""
    slowdown, noise = fmt.number(metric.get("slowdown")), fmt.number(metric.get("aa_noise"))
    if slowdown is None or noise is None:  # an artifact without the A/A rounds
        return status_text(status, ctx.lang)
    moved = ctx.t("speed_slower_by" if slowdown >= 0 else "speed_faster_by",
                  value=fmt.pct(abs(slowdown), 1, signed=False))
    numbers = ctx.t("speed_numbers", moved=moved, noise=fmt.pct(noise, 1, signed=False)) + ptext
    key = {"caution": "speed_caution", "fail": "speed_caution", "inconclusive": "speed_unresolved"}.get(
        status, "speed_ok")
    return ctx.t(key, numbers=numbers)



SPEED_METRICS = (("load_s", "load_time", fmt.seconds), ("prompt_tps", "prompt_speed", fmt.rate),
                 ("gen_tps", "gen_speed", fmt.rate))


def conversation_counts(convs: list[dict[str, Any]]) -> tuple[int, int, int, int, int]:
    """(checks met by the original, by the candidate, checks, identical answers, conversations)."""
    base = cand = total = 0
    for conv in convs:
        for check in lst(conv.get("checks")):
            check = d(check)
            total += 1
            base += check.get("baseline_ok") is True
            cand += check.get("candidate_ok") is True
    same = sum(1 for c in convs if c.get("exact_match") is True)
    return base, cand, total, same, len(convs)


def key_numbers(doc: dict[str, Any], lang: str = "en") -> str:
    """One cell of key numbers: values changed, perplexity increase ± interval, KLD and the format's own part of it
    (the excess over the placebo), conversations."""
    ctx = DocContext(doc, lang)
    out = []
    tensors = [d(x) for x in lst(ctx.a(Artifact.NUMERICAL).get("tensors"))]
    if tensors:
        changed = sum(int(fmt.number(x.get("changed")) or 0) for x in tensors)
        total = sum(int(fmt.number(x.get("n")) or 0) for x in tensors)
        out.append(ctx.t("key_changed", changed=changed, total=total))
    pc = ctx.a(Artifact.PERPLEXITY)
    diff = perplexity_difference(ctx, pc)
    if diff:
        out.append(ctx.t("key_ppl", diff=diff))
    kld = fmt.sig(pc.get("kld_mean"), 3)
    if kld:
        out.append(ctx.t("key_kld", kld=kld))
    excess = excess_phrase(ctx, pc) if kld else None
    if excess:
        out.append(ctx.t("key_excess", value=excess))
    convs = [d(c) for c in lst(ctx.art.get(Artifact.CONVERSATIONS))]
    if convs:
        out.append(ctx.t("conv_identical", same=conversation_counts(convs)[3], n=len(convs)))
    return ctx.t("clause_join").join(out) or ctx.t("not_measured")


PPL_STATS = (
    ("Mean PPL(Q)", "ppl_q", "ppl_q_se", 4), ("Mean PPL(base)", "ppl_base", "ppl_base_se", 4),
    ("Cor(ln PPL(Q), ln PPL(base))", "ln_ppl_cor", None, 6),
    ("Mean ln(PPL(Q)/PPL(base))", "ln_ppl_ratio", "ln_ppl_ratio_se", 6),
    ("Mean PPL(Q)/PPL(base)", "ppl_ratio", "ppl_ratio_se", 6), ("Mean PPL(Q)-PPL(base)", "ppl_diff", "ppl_diff_se", 6),
    ("Mean KLD (nats)", "kld_mean", "kld_se", 6), ("Maximum KLD", "kld_max", None, 6),
    ("99.9% KLD", "kld_p999", None, 6), ("99.0% KLD", "kld_p99", None, 6), ("90.0% KLD", "kld_p90", None, 6),
    ("Median KLD", "kld_median", None, 6), ("10.0% KLD", "kld_p10", None, 6), ("5.0% KLD", "kld_p05", None, 6),
    ("1.0% KLD", "kld_p01", None, 6), ("Minimum KLD", "kld_min", None, 6),
    ("Mean Δp", "dp_mean", "dp_se", 6), ("RMS Δp", "dp_rms", "dp_rms_se", 6),
    ("Same top p", "same_top_p", "same_top_p_se", 6),
)


def perplexity_lines(pc: dict[str, Any], na: str) -> list[tuple[str, str]]:
    """(statistic, value ± se) in llama-perplexity --kl-divergence's order and naming."""
    out = [(label, fmt.pm(pc.get(key), pc.get(se) if se else None, dec) or na) for label, key, se, dec in PPL_STATS]
    out += [("chunks", fmt.integer(pc.get("chunks")) or na), ("tokens scored", fmt.integer(pc.get("tokens")) or na)]
    if pc.get("nonfinite"):
        out.append(("NaN/Inf", str(pc["nonfinite"])))
    return out


def settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in settings.items())


def flat(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def template_line(t: Callable[..., str], conv: dict[str, Any]) -> list[Inline]:
    """How a conversation's chat was written out (each answer records its ``template``); empty for a raw prompt."""
    names = sorted({str(side["template"]) for side in (d(conv.get("baseline")), d(conv.get("candidate")))
                    if side.get("template")})
    out: list[Inline] = []
    for name in names:
        kind, _, builtin = name.partition(":")
        words = t("template_builtin", name=builtin) if kind == "builtin" else {
            "gguf": t("template_gguf"), "plain": t("template_plain")}.get(kind)
        out += [*(["; "] if out else []), code(name), *([f" — {words}"] if words else [])]
    return out
