"""What the per-experiment summary and the per-run index say, as blocks (rendered by markdown.py and html.py).

Input is the report.json document (see :func:`fakequant.report.build_document`), read through
:mod:`fakequant.report.reading`: a missing artifact or key shows as "not measured", and nothing here raises on
missing data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from fakequant.report import battery, drift, fmt, perplexity, plots
from fakequant.report.blocks import Badge, Banner, Block, Bullets, Cell, Heading, Inline, Link, Para, Span, Table
from fakequant.report.i18n import category_text, localized, status_text, translator
from fakequant.report.reading import (
    SPEED_METRICS,
    DocContext,
    agreement,
    badge,
    code,
    conversation_counts,
    d,
    excess_phrase,
    expectation,
    flat,
    headline,
    images,
    key_numbers,
    lst,
    outcome_reason,
    perplexity_difference,
    sentences,
    settings_text,
    speed_cell,
    speed_difference,
    status_cell,
    template_line,
)
from fakequant.suite.vocab import Artifact

# --- summary -------------------------------------------------------------------------------------------------------

def summary_table(ctx: DocContext) -> Table:
    t, pc = ctx.t, ctx.a(Artifact.PERPLEXITY)
    settings = d(pc.get("settings")) or d(ctx.a(Artifact.EXPERIMENT).get("settings"))
    label = (t("ppl_row", chunks=pc["chunks"], ctx=settings.get("n_ctx", "?")) if pc.get("chunks")
             else t("perplexity"))
    rows: list[list[Cell]] = [
        [label, ctx.na(fmt.pm(pc.get("ppl_base"), pc.get("ppl_base_se"))),
         ctx.na(fmt.pm(pc.get("ppl_q"), pc.get("ppl_q_se"))), ctx.na(perplexity_difference(ctx, pc))],
    ]
    ln = fmt.pm(pc.get("ln_ppl_ratio"), pc.get("ln_ppl_ratio_se"), 5, signed=True)
    rows.append([t("paired_ln"), "", "", ctx.na(ln)])
    kld = fmt.sig(pc.get("kld_mean"))
    if kld is not None:
        se = fmt.sig(pc.get("kld_se"), 2)
        kld = f"{kld} ± {se} nats" if se else f"{kld} nats"
    rows.append([t("kld"), "", "", ctx.na(kld)])
    rows.append([t("top_agree"), "", "", ctx.na(agreement(pc))])
    excess = excess_phrase(ctx, pc)  # the format's own part of the KLD: beside the total, not instead of it
    if excess:
        rows.append([t("excess_kld_row"), "", "", excess])
    metrics = d(ctx.a(Artifact.SPEED).get("metrics"))
    for key, label_key, show in SPEED_METRICS:
        metric = d(metrics.get(key))
        rows.append([t(label_key), speed_cell(ctx, d(metric.get("baseline")), show),
                     speed_cell(ctx, d(metric.get("candidate")), show), speed_difference(ctx, metric)])
    convs = [d(c) for c in lst(ctx.art.get(Artifact.CONVERSATIONS))]
    if convs:
        base, cand, total, same, n = conversation_counts(convs)
        rows.append([t("conversations"), t("conv_summary", ok=base, n=total), t("conv_summary", ok=cand, n=total),
                     t("conv_identical", same=same, n=n)])
    else:
        rows.append([t("conversations"), t("not_measured"), t("not_measured"), t("not_measured")])
    return Table([t("measure"), t("original"), t("candidate"), t("difference")], rows)


# --- sections ------------------------------------------------------------------------------------------------------

def header(ctx: DocContext) -> list[Block]:
    t, exp = ctx.t, ctx.a(Artifact.EXPERIMENT)
    name = str(ctx.doc.get("experiment") or exp.get("name") or "?")
    decision = str(ctx.verdict.get("decision") or "INCONCLUSIVE")
    blocks: list[Block] = [
        Heading(1, t("title", name=name)),
        Banner(decision, [Span(f"{t('decision')}:", "b"), " ", badge(decision, ctx.lang), " — ",
                          headline(ctx.verdict, ctx.lang)]),
    ]
    control = expectation(ctx.verdict, ctx.lang)
    if control:
        blocks.append(Para([Span(f"{t('expected')}: ", "b"), f"{control[0]} — ", Span(control[1], "b")]))
    recipe = d(exp.get("recipe"))
    selection = d(recipe.get("selection"))
    chosen = [str(x) for key in ("names", "layers", "kinds") for x in lst(selection.get(key))]
    recipe_text = ", ".join(f"{k} = {v}" for k, v in recipe.items() if k != "selection" and v not in (None, ""))
    items: list[list[Inline]] = []
    if exp.get("description"):
        items.append([Span(f"{t('description')}: ", "b"), str(exp["description"])])
    items.append([Span(f"{t('recipe')}: ", "b"), *_joined([code(c) for c in chosen]), " → ",
                  ctx.na(recipe_text)])
    prov = ctx.a(Artifact.PROVENANCE)
    items.append([Span(f"{t('model')}: ", "b"), code(ctx.na(prov.get("model_path") or exp.get("model")))])
    items.append([Span(f"{t('corpus')}: ", "b"), code(ctx.na(prov.get("corpus_path") or exp.get("corpus")))])
    items.append([Span(f"{t('date')}: ", "b"), ctx.na(prov.get("date") or ctx.doc.get("generated"))])
    blocks.append(Bullets(items))
    return blocks


def _joined(items: Sequence[Inline], sep: str = ", ") -> list[Inline]:
    out: list[Inline] = []
    for i, item in enumerate(items):
        out += [sep, item] if i else [item]
    return out


def reasons(ctx: DocContext) -> list[Block]:
    t = ctx.t
    blocks: list[Block] = [Heading(2, t("reasons"))]
    blocks.append(Bullets([[r] for r in sentences(ctx.verdict, "reasons", ctx.lang)] or [[t("not_measured")]]))
    notes = sentences(ctx.verdict, "notes", ctx.lang)
    if notes:
        blocks += [Para([Span(t("notes"), "b")]), Bullets([[n] for n in notes])]
    return blocks


def checks(ctx: DocContext) -> list[Block]:
    t = ctx.t
    rows: list[list[Cell]] = [[code(o.get("check", "?")), category_text(str(o.get("category", "")), ctx.lang),
                               status_cell(ctx, o.get("status")), outcome_reason(o, ctx.lang)]
                              for o in map(d, lst(ctx.doc.get("outcomes")))]
    if not rows:
        return [Heading(2, t("checks")), Para([t("not_measured")])]
    return [Heading(2, t("checks")), Table([t("check"), t("category"), t("status"), t("reason")], rows)]


def _nonfinite(tensor: dict[str, Any]) -> str:
    nan, inf = fmt.integer(tensor.get("nan_after")), fmt.integer(tensor.get("inf_after"))
    if nan is None and inf is None:
        return "?"
    return f"{nan or '?'} / {inf or '?'}"


def numerical(ctx: DocContext) -> list[Block]:
    t, na = ctx.t, ctx.a(Artifact.NUMERICAL)
    blocks: list[Block] = [Heading(2, t("numerical"))]
    tensors = [d(x) for x in lst(na.get("tensors"))]
    if not tensors:
        return [*blocks, Para([t("not_measured")])]
    rows: list[list[Cell]] = []
    for x in tensors:
        shape = "×".join(str(s) for s in lst(x.get("shape"))) or "?"
        changed = f"{fmt.integer(x.get('changed')) or '?'}/{fmt.integer(x.get('n')) or '?'}"
        sqnr = fmt.sig(x.get("sqnr_db"), 3)
        if not sqnr and x.get("changed") == 0:
            sqnr = "∞"  # nothing changed: no noise at all (strict JSON stores the infinite SQNR as null)
        rows.append([code(x.get("name", "?")), shape, f"{x.get('source_type', '?')} → {x.get('stored_type', '?')}",
                     changed, ctx.na(fmt.sig(x.get("max_abs"), 3)), ctx.na(fmt.sig(x.get("mean_abs"), 3)),
                     ctx.na(fmt.pct(x.get("max_rel"), 3, signed=False)),
                     ctx.na(fmt.pct(x.get("mean_rel"), 3, signed=False)),
                     f"{sqnr} dB" if sqnr else t("not_measured"), ctx.na(fmt.fixed(x.get("cosine"), 6)),
                     _nonfinite(x)])
    header_cells: list[Cell] = [t("tensor"), t("shape"), t("type"), t("changed"), t("max_abs"), t("mean_abs"),
                                t("max_rel"), t("mean_rel"), t("sqnr"), t("cosine"), t("nonfinite")]
    blocks.append(Table(header_cells, rows, right=set(range(3, 11))))
    eps = tensors[0].get("epsilon", d(na.get("recipe")).get("epsilon"))
    if eps is not None:
        blocks.append(Para([t("epsilon_note", eps=eps)]))
    if na.get("noop") is True or all(not x.get("changed") for x in tensors):
        blocks.append(Para([Span(t("noop_note"), "b")]))
    blocks += images(ctx, [(plots.WEIGHTS, "plot_weights"), (plots.ERROR, "plot_error")])
    return blocks


def load_format(ctx: DocContext) -> list[Block]:
    t, load, fc = ctx.t, ctx.a(Artifact.LOAD), ctx.a(Artifact.FORMAT_CHECK)
    blocks: list[Block] = [Heading(2, t("load_format"))]
    quick = d(load.get("quick_inference"))
    rows: list[list[Cell]] = [[t("single_load"), ctx.na(fmt.seconds(load.get("baseline_load_s"))),
                               ctx.na(fmt.seconds(load.get("candidate_load_s")))]]
    if quick:
        answer: list[Inline] = [str(quick.get("text", ""))]
        if quick.get("nonfinite"):
            answer.append(f" (NaN/Inf: {quick['nonfinite']})")
        rows.append([f"{t('quick_inference')}: {quick.get('prompt', '')}", "", answer])
    blocks.append(Table(["", t("original"), t("candidate")], rows))
    if "ok" in fc:
        blocks.append(Para([badge("pass" if fc["ok"] else "fail", ctx.lang), " ",
                            t("format_ok") if fc["ok"] else t("format_bad")]))
        diffs = [str(x) for x in lst(fc.get("differences"))]
        if diffs:
            blocks.append(Bullets([[x] for x in diffs]))
    else:
        blocks.append(Para([f"{t('format_ok')}: {t('not_measured')}"]))
    return blocks


def _side(ctx: DocContext, side: dict[str, Any]) -> list[Inline]:
    text = side.get("text")
    if text is None:
        return [ctx.t("not_measured")]
    out: list[Inline] = [str(text)]
    if side.get("nonfinite"):
        out.append(f" (NaN/Inf: {side['nonfinite']})")
    return out


def _tokens_line(ctx: DocContext, side: dict[str, Any]) -> str:
    ids = lst(side.get("token_ids"))
    parts = [f"{len(ids)} {ctx.t('generated')}" if ids else None,
             f"{side['prompt_tokens']} {ctx.t('prompt_tokens')}" if side.get("prompt_tokens") is not None else None,
             fmt.rate(side.get("prompt_tokens_per_s")) and f"prompt {fmt.rate(side.get('prompt_tokens_per_s'))}",
             fmt.rate(side.get("gen_tokens_per_s")) and f"gen {fmt.rate(side.get('gen_tokens_per_s'))}"]
    return ", ".join(p for p in parts if p) or ctx.t("not_measured")


def _turn_rows(ctx: DocContext, conv: dict[str, Any], base: dict[str, Any], cand: dict[str, Any]) -> list[list[Cell]]:
    """A chat's turns side by side: each user message with both models' answers (the last turn when the artifact
    holds only that)."""
    users = [str(d(m).get("content", "")) for m in lst(conv.get("messages")) if d(m).get("role") == "user"]
    b_turns, c_turns = lst(base.get("turns")), lst(cand.get("turns"))
    if not users or not b_turns or len(b_turns) != len(c_turns):
        return [[ctx.t("answer"), _side(ctx, base), _side(ctx, cand)]]
    rows: list[list[Cell]] = []
    for i, (b, c) in enumerate(zip(b_turns, c_turns, strict=True)):
        question = users[i] if i < len(users) else ""
        rows.append([[Span(f"{i + 1}. ", "b"), question], str(b), str(c)])
    return rows


def conversation(ctx: DocContext, conv: dict[str, Any]) -> list[Block]:
    t = ctx.t
    cid = str(conv.get("id", "?"))
    word = status_text(str(conv["status"]), ctx.lang) if conv.get("status") else t("not_measured")
    blocks: list[Block] = [Heading(3, f"{cid} ({conv.get('kind', '?')}) — {word}")]
    base, cand = d(conv.get("baseline")), d(conv.get("candidate"))
    if conv.get("messages"):
        system = [str(d(m).get("content", "")) for m in lst(conv.get("messages")) if d(m).get("role") == "system"]
        if system:
            blocks.append(Para([Span("system: ", "b"), *system]))
        rows = _turn_rows(ctx, conv, base, cand)
    else:
        blocks.append(Para([Span(f"{t('prompt')}: ", "b"), str(conv.get("prompt", ""))]))
        rows = [[t("answer"), _side(ctx, base), _side(ctx, cand)]]
    params = d(conv.get("params"))
    if params:
        blocks.append(Para([Span(f"{t('params')}: ", "b"), code(settings_text(params))]))
    if template_line(t, conv):
        blocks.append(Para([Span(f"{t('chat_template')}: ", "b"), *template_line(t, conv)]))
    rows.append([t("tokens"), _tokens_line(ctx, base), _tokens_line(ctx, cand)])
    fluency = d(conv.get("fluency"))
    if any(v is not None for v in fluency.values()):
        rows.append([t("fluency"), ctx.na(fmt.sig(fluency.get("baseline_ppl_of_baseline_answer"))),
                     ctx.na(fmt.sig(fluency.get("baseline_ppl_of_candidate_answer")))])
    blocks.append(Table(["", t("original"), t("candidate")], rows))
    if isinstance(conv.get("exact_match"), bool):
        line: list[Inline] = [Span(f"{t('exact_match')}:", "b"), " ", t("yes") if conv["exact_match"] else t("no")]
        div = d(conv.get("first_divergence"))
        if div:
            line += [f"; {t('first_divergence')}: #{div.get('index', '?')} (",
                     code(div.get("baseline_token", "?")), " → ", code(div.get("candidate_token", "?")), ")"]
        blocks.append(Para(line))
    checks_rows: list[list[Cell]] = []
    for check in map(d, lst(conv.get("checks"))):
        def mark(ok: Any) -> Badge | str:
            return badge("pass" if ok else "fail", ctx.lang) if isinstance(ok, bool) else "?"
        if check.get("samples"):  # a sampled prompt: answers passing out of those drawn (one per seed)
            b_cell: Cell = f"{check.get('baseline_passes')}/{check['samples']}"
            c_cell: Cell = f"{check.get('candidate_passes')}/{check['samples']}"
        else:
            b_cell, c_cell = mark(check.get("baseline_ok")), mark(check.get("candidate_ok"))
        detail = localized(check.get("detail", ""), check.get("detail_message"), ctx.lang)
        checks_rows.append([code(check.get("name", "?")), b_cell, c_cell, status_cell(ctx, check.get("status")),
                            detail])
    if checks_rows:
        blocks.append(Table([t("check"), t("original"), t("candidate"), t("conv_status"), t("detail")],
                            checks_rows))
    return blocks


def conversations(ctx: DocContext) -> list[Block]:
    convs = [d(c) for c in lst(ctx.art.get(Artifact.CONVERSATIONS))]
    blocks: list[Block] = [Heading(2, ctx.t("conversations"))]
    if not convs:
        return [*blocks, ctx.absent()]
    for conv in convs:
        blocks += conversation(ctx, conv)
    return blocks


def speed(ctx: DocContext) -> list[Block]:
    t, sp = ctx.t, ctx.a(Artifact.SPEED)
    blocks: list[Block] = [Heading(2, t("speed"))]
    metrics = d(sp.get("metrics"))
    if not metrics:
        return [*blocks, ctx.absent()]
    tol = fmt.pct(sp.get("tolerance"), 0, signed=False) or "?"
    alpha = f"{fmt.number(sp.get('alpha', 0.05)) or 0.05:g}"
    blocks.append(Para([t("speed_note", rounds=sp.get("rounds", "?"), tol=tol, alpha=alpha)]))
    if sp.get("test") or sp.get("measured_by"):
        blocks.append(Para([", ".join(str(sp[k]) for k in ("test", "measured_by") if sp.get(k))]))
    rows: list[list[Cell]] = []
    for key, label_key, show in SPEED_METRICS:
        m = d(metrics.get(key))
        if not m:
            continue
        rows.append([t(label_key), speed_cell(ctx, d(m.get("baseline")), show),
                     speed_cell(ctx, d(m.get("candidate")), show), ctx.na(fmt.pct(m.get("ratio"), 1, signed=False)),
                     ctx.na(fmt.sig(m.get("p_value"), 2)), speed_difference(ctx, m, with_p=False)])
    blocks.append(Table([t("metric"), t("original"), t("candidate"), t("ratio"), t("p_value"), t("status")], rows,
                        right={3, 4}))
    return blocks


def provenance(ctx: DocContext) -> list[Block]:
    t, prov = ctx.t, ctx.a(Artifact.PROVENANCE)
    blocks: list[Block] = [Heading(2, t("provenance"))]
    if not prov:
        blocks.append(Para([t("not_measured")]))
    else:
        rows: list[list[Cell]] = []
        for key in ("model_path", "model_sha256", "corpus_path", "corpus_sha256", "criteria_path", "date"):
            if key in prov:
                rows.append([key, code(prov[key])])
        for key in ("llama_build", "machine"):
            for sub, value in d(prov.get(key)).items():
                rows.append([f"{key}.{sub}", flat(value)])
        packages = d(prov.get("packages"))
        if packages:
            rows.append(["packages", ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))])
        known = {"model_path", "model_sha256", "corpus_path", "corpus_sha256", "criteria_path", "date", "llama_build",
                 "machine", "packages", "settings"}
        rows += [[key, flat(value)] for key, value in prov.items() if key not in known]
        blocks.append(Table(["", t("value")], rows))
    settings = d(prov.get("settings")) or d(ctx.a(Artifact.EXPERIMENT).get("settings"))
    blocks.append(Heading(3, t("settings")))
    if settings:
        blocks.append(Table(["", t("value")], [[key, flat(value)] for key, value in settings.items()]))
    else:
        blocks.append(Para([t("not_measured")]))
    return blocks


def experiment_blocks(doc: dict[str, Any], lang: str = "en") -> list[Block]:
    ctx = DocContext(doc, lang)
    blocks = header(ctx)
    blocks += [Heading(2, ctx.t("summary")), summary_table(ctx)]
    if ctx.noop and not ctx.a(Artifact.PERPLEXITY):
        blocks.append(ctx.absent())
    for section in (reasons, checks, numerical, load_format, perplexity.section, drift.section, conversations,
                    battery.section, speed, provenance):
        blocks += section(ctx)
    return blocks


# --- per run -------------------------------------------------------------------------------------------------------

def index_blocks(docs: Sequence[dict[str, Any]], lang: str = "en", up: str = "") -> list[Block]:
    t = translator(lang)
    rows: list[list[Cell]] = []
    for doc in docs:
        verdict = d(doc.get("verdict"))
        name = str(doc.get("experiment", "?"))
        decision: list[Inline] = [badge(verdict.get("decision", "INCONCLUSIVE"), lang)]
        control = expectation(verdict, lang)
        if control:
            decision.append(f" ({t('expected')}: {control[0]} — {control[1]})")
        rows.append([code(name), decision, headline(verdict, lang), key_numbers(doc, lang),
                     Link("summary.md", f"{up}{quote(name)}/summary.md")])
    return [Heading(1, t("index_title")),
            Table([t("experiment"), t("decision"), t("why"), t("key_numbers"), t("report")], rows)]
