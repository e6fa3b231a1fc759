"""The plan's own plain-text output files: conversation_tests.txt and perplexity_comparison.txt.

Plain text needs no escaping for Markdown or HTML, but a model's answer may contain control characters (an escape
sequence would restyle the terminal of whoever runs ``cat``): those are shown as ``\\xNN``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from fakequant.report import fmt
from fakequant.report.blocks import visible as clean
from fakequant.report.reading import d, level_text, lst, perplexity_lines, placebo_pair


def columns(text: str) -> int:
    """The columns a terminal gives ``text``: two for each wide (CJK) character."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _indent(text: Any, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in (clean(text).splitlines() or [""]))


def conversation_tests(experiment: str, conversations: Any) -> str:
    out = [f"Conversation tests — {experiment}", "=" * 60, ""]
    convs = [d(c) for c in lst(conversations)]
    if not convs:
        out.append("not measured")
    for conv in convs:
        out.append(f"[{clean(conv.get('id', '?'))}] {clean(conv.get('kind', '?'))} — status: "
                   f"{clean(conv.get('status', 'not measured'))}")
        if conv.get("messages"):
            for msg in map(d, lst(conv.get("messages"))):
                out.append(f"  {clean(msg.get('role', '?'))}:")
                out.append(_indent(msg.get("content", "")))
        else:
            out.append("  prompt:")
            out.append(_indent(conv.get("prompt", "")))
        if conv.get("params"):
            out.append(f"  params: {clean(conv['params'])}")
        templates = sorted({str(d(conv.get(s)).get("template")) for s in ("baseline", "candidate")} - {"None"})
        if templates:
            out.append(f"  chat template: {clean(' / '.join(templates))}")
        for side in ("baseline", "candidate"):
            answer = d(conv.get(side))
            out.append(f"  {side} answer ({len(lst(answer.get('token_ids')))} tokens):")
            out.append(_indent(answer.get("text", "not measured")))
        for check in map(d, lst(conv.get("checks"))):
            out.append(f"  check {clean(check.get('name', '?'))}: baseline {check.get('baseline_ok')}, candidate "
                       f"{check.get('candidate_ok')}" + (f" — {clean(check['detail'])}" if check.get("detail") else ""))
        if isinstance(conv.get("exact_match"), bool):
            out.append(f"  exact match: {'yes' if conv['exact_match'] else 'no'}")
        div = d(conv.get("first_divergence"))
        if div:
            out.append(f"  first divergence at token {div.get('index')}: {clean(div.get('baseline_token'))!r} → "
                       f"{clean(div.get('candidate_token'))!r}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def perplexity_comparison(experiment: str, comparison: Any) -> str:
    pc = d(comparison)
    out = [f"Perplexity comparison — {experiment}", "=" * 60, ""]
    if not pc:
        return "\n".join([*out, "not measured"]) + "\n"
    settings = d(pc.get("settings"))
    if settings:
        out.append("settings: " + ", ".join(f"{k}={clean(v)}" for k, v in settings.items()))
    interval = fmt.increase_interval(pc)
    if interval:
        inc, lo, hi = interval
        bounds = (f"95% interval {fmt.pct(lo, 3)} .. {fmt.pct(hi, 3)}, over chunks, t quantile"
                  if lo is not None and hi is not None else "no interval: one chunk")
        out.append(f"perplexity increase: {fmt.pct(inc, 3)} ({bounds})")
    out.append("")
    pair = placebo_pair(pc)
    lines = perplexity_lines(pc, "not measured")
    floor = [(label.replace("(Q)", "(P)"), value) for label, value in perplexity_lines(pair[0], "not measured")] \
        if pair else []
    own = _excess_lines(pair[1]) if pair else []
    width = max(len(label) for label, _ in [*lines, *floor, *own])
    out += [f"{label:<{width}}  {value}" for label, value in lines]
    if pair:
        out += ["", f"placebo (the same tensors nudged by one ulp: the floor): {clean(pair[0].get('path', '?'))}"]
        out += [f"{label:<{width}}  {value}" for label, value in floor]
        out += ["", f"excess over the placebo, paired per chunk ({pair[1].get('chunks', '?')} chunks, "
                f"{level_text(pair[1])} intervals, t quantile): the format's own effect"]
        out += [f"{label:<{width}}  {value}" for label, value in own]
        out += _placebo_size(pc)
    else:
        out += ["", "placebo: not measured (the floor of these tensors is unknown; the excess cannot be given)"]
    out += _per_chunk(pc, pair[0] if pair else {})
    out += ["",
            "All statistics are exact for these tokens (both models' full-precision log-probabilities in one pass);",
            "llama-perplexity --kl-divergence stores base log-probs in 16 bits clamped 16 nats below the top logit,",
            "so its PPL(base), ln ratio and KLD differ slightly from these."]
    return "\n".join(out) + "\n"


def _interval(block: dict[str, Any], key: str) -> str:
    ci = lst(block.get(f"{key}_ci"))
    bounds = [fmt.fixed(x, 6, signed=True) for x in ci] if len(ci) == 2 else []
    if None in bounds or not bounds:
        return "(no interval: one chunk)"
    state = "resolved" if block.get(f"{key}_resolved") is True else "not resolved (the interval holds 0)"
    return f"[{bounds[0]}, {bounds[1]}] {state}"


def _excess_lines(excess: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("Excess mean KLD (nats)", "kld_mean"), ("Mean ln(PPL(Q)/PPL(P))", "ln_ppl_ratio")]
    out = [(label, f"{fmt.fixed(excess.get(key), 6, signed=True) or 'not measured'} {_interval(excess, key)}")
           for label, key in rows]
    return [*out, ("Same top p (Q vs P)", fmt.fixed(excess.get("same_top_p"), 6) or "not measured")]


def _placebo_size(pc: dict[str, Any]) -> list[str]:
    tensors = [d(x) for x in lst(d(pc.get("placebo_numerical")).get("tensors"))]
    out = []
    for x in tensors:
        extra = d(x.get("extra"))
        rel = fmt.sig(extra.get("nudge_rel_mean", x.get("mean_rel")), 3)
        out.append(f"placebo size, {clean(x.get('name', '?'))}: mean relative change {rel or 'not measured'}")
    return ["", *out] if out else []


def _per_chunk(pc: dict[str, Any], placebo: dict[str, Any]) -> list[str]:
    """Every chunk's perplexities and mean KLD, the placebo's mean KLD beside the candidate's when there is one."""
    series = [(d(pc.get("per_chunk")), "ppl_base", "PPL(base)", 4), (d(pc.get("per_chunk")), "ppl_q", "PPL(Q)", 4),
              (d(pc.get("per_chunk")), "kld_mean", "mean KLD", 6)]
    if placebo:
        series.append((d(placebo.get("per_chunk")), "kld_mean", "KLD(P)", 6))
    columns = [(lst(block.get(key)), label, decimals) for block, key, label, decimals in series]
    rows = max(len(columns[0][0]), len(columns[1][0]))
    if not rows:
        return []
    out = ["", f"{'chunk':>5}" + "".join(f"  {label:>12}" for _, label, _ in columns)]
    for i in range(rows):
        cells = [fmt.fixed(values[i], decimals) if i < len(values) else None for values, _, decimals in columns]
        out.append(f"{i + 1:>5}" + "".join(f"  {cell or '-':>12}" for cell in cells))
    return out
