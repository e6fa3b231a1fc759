"""The plan's own plain-text output files: conversation_tests.txt and perplexity_comparison.txt.

Plain text needs no escaping for Markdown or HTML, but a model's answer may contain control characters (an escape
sequence would restyle the terminal of whoever runs ``cat``): those are shown as ``\\xNN``.
"""

from __future__ import annotations

from typing import Any

from fakequant.report import fmt
from fakequant.report.blocks import visible as clean
from fakequant.report.reading import d, lst, perplexity_lines


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
    interval = fmt.increase_interval(pc.get("ln_ppl_ratio"), pc.get("ln_ppl_ratio_se"))
    if interval:
        inc, lo, hi = (fmt.pct(x, 3) for x in interval)
        out.append(f"perplexity increase: {inc} (95% interval {lo} .. {hi})")
    out.append("")
    width = max(len(label) for label, _ in perplexity_lines(pc, ""))
    out += [f"{label:<{width}}  {value}" for label, value in perplexity_lines(pc, "not measured")]
    per_chunk = pc.get("per_chunk") if isinstance(pc.get("per_chunk"), dict) else {}
    base, cand, kld = (lst(per_chunk.get(k)) for k in ("ppl_base", "ppl_q", "kld_mean"))
    if base or cand:
        out += ["", f"{'chunk':>5}  {'PPL(base)':>12}  {'PPL(Q)':>12}  {'mean KLD':>12}"]
        for i in range(max(len(base), len(cand))):
            b, q, k = (fmt.fixed(v[i], d) if i < len(v) else None for v, d in ((base, 4), (cand, 4), (kld, 6)))
            out.append(f"{i + 1:>5}  {b or '-':>12}  {q or '-':>12}  {k or '-':>12}")
    out += ["",
            "All statistics are exact for these tokens (both models' full-precision log-probabilities in one pass);",
            "llama-perplexity --kl-divergence stores base log-probs in 16 bits clamped 16 nats below the top logit,",
            "so its PPL(base), ln ratio and KLD differ slightly from these."]
    return "\n".join(out) + "\n"
