"""English: every sentence fakequant writes, by key (see :mod:`fakequant.i18n`).

Reason codes are dotted (``perplexity.below_ideal``); their values fill ``{fields}`` with the format spec given.
"""

from __future__ import annotations

TEXT: dict[str, str] = {
    # the report's fixed words: headings, table columns, notes
    'title': 'Fake-quantization report: {name}',
    'index_title': 'Fake-quantization experiments',
    'decision': 'Decision',
    'expected': 'Positive control, expected to fail',
    'exp_failed': '{check} (failed)',
    'exp_not_failed': '{check} (did not fail)',
    'exp_unexpected': 'also failed, not expected: {checks}',
    'matched': 'matched',
    'not_matched': 'DID NOT MATCH',
    'not_measured': 'not measured',
    'experiment': 'Experiment',
    'description': 'Description',
    'recipe': 'Recipe',
    'model': 'Model',
    'corpus': 'Corpus',
    'date': 'Date',
    'summary': 'Summary',
    'measure': 'Measure',
    'original': 'Original',
    'candidate': 'Candidate',
    'difference': 'Difference',
    'perplexity': 'Perplexity',
    'ppl_row': 'Perplexity ({chunks} chunks × {ctx} tokens)',
    'ppl_increase': '{inc} (95% interval {lo} … {hi})',
    'paired_ln': 'Paired Δ ln PPL',
    'kld': 'KL divergence (mean)',
    'top_agree': 'Top-token agreement',
    'load_time': 'Load time',
    'prompt_speed': 'Prompt processing',
    'gen_speed': 'Token generation',
    'conversations': 'Conversations',
    'conv_summary': '{ok}/{n} checks met',
    'conv_identical': '{same}/{n} identical',
    'speed_slower_by': '{value} slower',
    'speed_faster_by': '{value} faster',
    'speed_numbers': '{moved} per round, A/A noise {noise}',
    'speed_caution': "slower beyond the tolerance and the run's noise ({numbers})",
    'speed_ok': 'no slowdown beyond the tolerance ({numbers})',
    'speed_unresolved': 'not resolved by this run ({numbers})',
    'median_of': 'median of {n}, range {lo}–{hi}',
    'reasons': 'Decision and reasons',
    'why': 'Why',
    'notes': 'Also reported (not deciding)',
    'checks': 'Checks',
    'check': 'Check',
    'category': 'Category',
    'status': 'Status',
    'reason': 'Measured value, uncertainty, threshold',
    'numerical': 'Numerical analysis',
    'tensor': 'Tensor',
    'shape': 'Shape',
    'type': 'Type (source → stored)',
    'changed': 'Changed',
    'max_abs': 'Max abs',
    'mean_abs': 'Mean abs',
    'max_rel': 'Max rel',
    'mean_rel': 'Mean rel',
    'sqnr': 'SQNR',
    'cosine': 'Cosine',
    'nonfinite': 'NaN/Inf after',
    'epsilon_note': 'Relative difference = |a − b| / (|a| + ε), ε = {eps}.',
    'noop_note': "No value changed: the file the suite built is the original's data.",
    'skipped_noop': (
        'Not measured: the fake quantization changed no value, so this would compare the model with itself.'
    ),
    'load_format': 'Load and format checks',
    'format_ok': 'Format identical to the original apart from the selected tensors',
    'format_bad': 'Format differs from the original',
    'quick_inference': 'Quick inference',
    'single_load': 'Load time (one load each: a smoke test, not a speed comparison — see Speed)',
    'prompt': 'Prompt',
    'answer': 'Answer',
    'ppl_section': 'Perplexity and paired comparison',
    'statistic': 'Statistic',
    'all_stats': 'Every statistic (llama-perplexity --kl-divergence naming)',
    'value': 'Value',
    'exact_note': (
        'Computed in one pass over identical tokens, from full-precision log-probabilities of both models: every '
        "statistic here is exact for these tokens. llama.cpp's --kl-divergence mode stores the base model's "
        'log-probabilities in 16 bits, clamped 16 nats below the top logit, so its Mean PPL(base), '
        'ln(PPL(Q)/PPL(base)) and KLD differ slightly from exact values (a ln ratio near zero can even change '
        "sign). PPL(Q) and PPL(base) here follow llama-perplexity's plain mode: same chunks, same scored half of "
        'each chunk.'
    ),
    'resolve_note': (
        'The 95% interval straddles the acceptable bound: about {needed} chunks (now {chunks}) would resolve it '
        '(the uncertainty shrinks as 1/√chunks).'
    ),
    'conv_status': 'Verdict',
    'detail': 'Detail',
    'exact_match': 'Exact match',
    'first_divergence': 'First divergence',
    'fluency': "Fluency (original model's perplexity of the answer)",
    'tokens': 'Tokens',
    'speed': 'Speed',
    'speed_note': (
        '{rounds} interleaved rounds, each timing the original twice (an A/A pair: the noise this run sees) and the '
        'candidate once; a slowdown counts only when it is beyond the tolerance of {tol}, beyond the A/A noise, and '
        'larger than the A/A differences by a one-sided Mann-Whitney test (p < {alpha}). A slowdown is a CAUTION, '
        'never a STOP.'
    ),
    'metric': 'Metric',
    'ratio': 'Candidate / original',
    'p_value': 'p-value',
    'provenance': 'Provenance',
    'settings': 'Runtime settings (identical for both models)',
    'plots': 'Plots',
    'yes': 'yes',
    'no': 'no',
    'key_numbers': 'Key numbers',
    'report': 'Report',
    'render_failed': 'The report could not be rendered in full: {error}',
    'messages': 'Messages',
    'chat_template': 'Chat format',
    'template_gguf': "the model's own template (tokenizer.chat_template)",
    'template_builtin': "llama.cpp's built-in template {name}",
    'template_plain': 'plain text, “User: …” / “Assistant:” (the model has no chat template)',
    'params': 'Parameters',
    'prompt_tokens': 'prompt tokens',
    'generated': 'generated',
    'chunks': 'chunks',
    'plot_weights': 'Weight distribution before and after',
    'plot_error': 'Error distribution',
    'plot_chunks': 'Per-chunk perplexity',
    'plot_kld': 'KL divergence per token',
    'ci': '{mean} ({level} CI {lo} … {hi})',
    'no_ci': '{mean} (no interval: one chunk)',
    'no_placebo': 'not measured (no placebo)',
    'below_resolution': 'below resolution: {value}',
    'key_excess': "format's own KLD {value}",
    'excess_kld_row': "Format's own effect (KLD beyond the placebo)",
    'floor_section': "Floor and excess: the format's own effect",
    'floor_sentence': (
        'A one-ulp nudge of the same tensors (placebo) already moves perplexity by {ppl} and gives KLD {kld}'
    ),
    'excess_resolved': 'the format adds KLD {kld} and {ppl} perplexity beyond it.',
    'excess_unresolved': (
        "the format's own effect is below what this model and runtime can resolve at this position: excess KLD "
        '{kld} over {chunks} chunks.'
    ),
    'sentence_join': '; ',
    'col_total': 'Total (candidate vs original)',
    'col_floor': 'Floor (placebo vs original)',
    'col_excess': 'Excess (candidate beyond placebo)',
    'mean_kld': 'Mean KLD (nats)',
    'delta_ln': 'Δ ln PPL',
    'ppl_change': 'Perplexity change',
    'vs_placebo': '{value} (candidate vs placebo)',
    'unresolved_mark': '{value}, not resolved',
    'floor_which': (
        'Which is which: the total is what a user deploying this change gets, and the thresholds apply to it; the '
        'floor is what any change of these tensors, however small, already does with this model and runtime; the '
        "excess is the format's own part, the candidate beyond the placebo paired per chunk ({chunks} chunks, "
        '{level} t intervals over chunks). ± is one standard error.'
    ),
    'floor_not_measured': (
        "Floor not measured: this comparison ran without a placebo twin, so the format's own effect cannot be told "
        'apart from what any change of these tensors already does.'
    ),
    'placebo_size': 'Size of the placebo itself (the nudge, measured on the stored encoding)',
    'placebo_moved': 'Moved',
    'placebo_rel': 'Mean relative change',
    # statuses and decisions
    'status.pass': 'pass',
    'status.caution': 'caution',
    'status.fail': 'fail',
    'status.limitation': 'model limitation',
    'status.inconclusive': 'inconclusive',
    'status.error': 'error',
    'status.GO': 'GO',
    'status.CAUTION': 'CAUTION',
    'status.STOP': 'STOP',
    'status.INCONCLUSIVE': 'INCONCLUSIVE',
    # check categories (English reports show the recorded name)
    'category.must_pass': 'must_pass',
    'category.numerical': 'numerical',
    'category.perplexity': 'perplexity',
    'category.conversation': 'conversation',
    'category.speed': 'speed',
    # the end of a run: the terminal's decision lines and pytest-html's summary
    'term_expected': '  [expected to fail: {checks} — {matched}]',
    'term_reports': 'reports: {where}',
    'html_title': 'fakequant decisions',
    'html_expected': ' (expected to fail: {checks} — {matched})',
    'col_experiment': 'experiment',
    'col_decision': 'decision',
    'col_why': 'why',
    'col_key_numbers': 'key numbers',
    'col_report': 'report',
    'key_changed': '{changed}/{total} values changed',
    'key_ppl': 'PPL {diff}',
    'key_kld': 'KLD {kld} nats',
    'clause_join': '; ',
    # the conversation battery's report section (fakequant.report.battery)
    'battery_title': 'Conversation battery',
    'battery_prompts': 'prompts (original passes)',
    'battery_cand': 'candidate breaks',
    'battery_twins': "placebo twins' breaks (seeds {seeds})",
    'battery_p': 'p-value (within-prompt permutation test)',
    'battery_smallest': 'fewest breaks that would be significant',
    'battery_none': 'none: no power',
    'battery_template': 'chat template',
    'battery_status': 'status',
    'battery_broken': 'Broken answers',
    'battery_id': 'prompt',
    'battery_topic': 'topic',
    'battery_original': 'original',
    'battery_candidate': 'candidate',
    'battery_checks': 'candidate broke',
    'battery_by_twins': 'twins that broke it',
    'battery_failed': 'The original fails {n} prompts (not counted): {ids}',
    'battery_rule': (
        "A regression is a candidate that breaks significantly more of the original's passing answers than its "
        'placebo twins (p < {alpha}) and more than any twin.'
    ),
    # a sweep's sensitivity map (fakequant.report.sensitivity)
    'sens_title': '# Sweep `{sweep}`: sensitivity map',
    'sens_cells': (
        '{layers} layers × {kinds} tensor kinds ({kind_list}) × {formats} formats ({format_list}) = {cells} cells.'
    ),
    'sens_model': 'Model',
    'sens_corpus': 'Corpus',
    'sens_chunks': 'Perplexity chunks',
    'sens_settings': 'Settings (same for every cell)',
    'sens_timing': (
        'This run: {run} cells measured, {cached} taken from the cell cache, wall time {wall:.1f} s with {jobs} '
        'worker(s) × {threads} thread(s)'
    ),
    'sens_safe': 'Layers that look safe to go on with ({what}, every cell GO): {layers} ({count} of {total})',
    'sens_none': 'none',
    'sens_group': '{label}: {layers}',
    'sens_caution': 'go with care (CAUTION)',
    'sens_stop': 'not safe (STOP)',
    'sens_unresolved': 'unresolved (INCONCLUSIVE or not measured)',
    'sens_end': '.',
    'sens_top': "## Most sensitive tensors (top {count}, by the format's own effect: mean KLD beyond the placebo)",
    'sens_col_tensor': 'tensor',
    'sens_col_format': 'format',
    'sens_col_excess': 'excess KLD [95% CI]',
    'sens_col_floor': 'floor KLD',
    'sens_col_total': 'total KLD',
    'sens_col_mean': 'mean KLD',
    'sens_col_delta': 'Δ ln PPL ± SE',
    'sens_col_change': 'PPL change',
    'sens_col_top1': 'top-1 same',
    'sens_col_decision': 'decision',
    'sens_col_layer': 'layer',
    'sens_col_kind': 'kind',
    'sens_col_experiment': 'experiment',
    'sens_col_why': 'why',
    'sens_no_placebo': 'no placebo †',
    'sens_not_resolved': ' (not resolved)',
    'sens_cached': ' (cached)',
    'sens_dagger': (
        '† measured without a placebo: ranked after the cells that have one, by total mean KLD (its own part cannot '
        'be told from the floor).'
    ),
    'sens_decisions': '## Decisions, {format} (layer × tensor kind: decision, Δ ln PPL)',
    'sens_every': '## Every cell',
    'sens_legend': (
        'Δ ln PPL = mean ln(PPL(candidate)/PPL(base)) on the same tokens, ± one standard error (paired over '
        "tokens); KLD = mean KL divergence of the candidate's next-token distribution from the base's (the total: "
        'what a user deploying the change gets; decisions follow it); floor KLD = the same for the placebo twin '
        '(the same tensors nudged by one ulp in their own encoding, one per layer × kind, shared by every format); '
        'excess KLD = the candidate beyond its placebo, paired per chunk, with its 95% t interval over chunks: the '
        "format's own part, by which the cells are ranked. top-1 same = share of positions where both models rank "
        'the same token first. Each cell is an ordinary experiment: its own report is in `reports/<experiment>/`.'
    ),
    # building, loading and the must-pass checks (fakequant.suite.rules)
    'build.done': '{changed}/{total} values changed in {tensors} tensor(s) ({what})',
    'build.noop': 'no-op: every value already representable in {format}',
    'build.failed': '{error}',
    'config.invalid': '{error}',
    'format.differs': "{count} difference(s) from the original's format, first: {first}",
    'format.same': 'same format as the original; only the {changed_tensors} selected tensor(s) may differ',
    'load.failed': '{file}: {error}',
    'load.no_token': 'quick inference produced no token (stop: {stop})',
    'load.ok': "loaded in {seconds:.2f} s; '{prompt}' → {tokens} tokens {text!r}",
    'finite.weights': '{name}: {nan_after} NaN and {inf_after} Inf after (before: {nan_before} / {inf_before})',
    'finite.logits': 'NaN/Inf logit at {where}',
    'finite.ok': 'no NaN/Inf in {tensors} changed tensor(s) nor in the logits of {positions} positions',
    'original.changed': '{model}: sha256 changed from {before}… to {after}…',
    'original.unchanged': '{name}: sha256 {sha}… unchanged',
    'check.crashed': '{test} raised at {when}: {error}',
    # numerical
    'noop.target_format': 'the target format',
    'numerical.nothing_changed': '0 of {values} values changed: nothing to compare',
    'numerical.bounds': (
        'mean rel diff {mean_rel:.3%} ({mean_tensor}; ideal < {mean_ideal:.0%}, acceptable < '
        '{mean_acceptable:.0%}), max rel diff {max_rel:.3%} ({max_tensor}; ideal < {max_ideal:.0%}, acceptable < '
        '{max_acceptable:.0%}), over {tensors} changed tensor(s)'
    ),
    # perplexity, and its floor (the placebo) and excess
    'perplexity.one_chunk': (
        'perplexity increase {inc:+.3%} over {n} chunk(s): an interval over chunks needs at least 2 chunks'
    ),
    'perplexity.measured': 'perplexity increase {inc:+.3%} (95% CI {lo:+.3%} … {hi:+.3%}, t over {chunks} chunks)',
    'perplexity.below_ideal': '{measured} entirely below the ideal bound {ideal:.0%}',
    'perplexity.above_acceptable': '{measured} entirely above the acceptable bound {acceptable:.0%}',
    'perplexity.below_acceptable': (
        '{measured} below the acceptable bound {acceptable:.0%} but not surely below the ideal {ideal:.0%}'
    ),
    'perplexity.straddles': '{measured} straddles the acceptable bound {acceptable:.0%}; {more}',
    'perplexity.chunks_would_resolve': 'about {need} chunks would resolve it',
    'perplexity.no_chunks_resolve': 'no number of chunks resolves an effect on the bound',
    'perplexity.nonfinite': 'NaN/Inf logits in the perplexity pass at {where}; {text}',
    'floor.placebo': (
        'a one-ulp nudge of the same tensors (placebo) already moves perplexity by {ppl:+.3%} and gives KLD {kld:.2g}'
    ),
    'floor.interval': '95% CI {lo:+.2g} … {hi:+.2g}',
    'floor.no_interval': 'no interval from one chunk',
    'floor.resolved': 'the format adds KLD {kld:+.2g} ({interval}) and {ppl:+.3%} perplexity beyond it',
    'floor.unresolved': (
        "the format's own effect is below what this model and runtime resolve at this position (excess KLD "
        '{kld:+.2g}, {interval}, {chunks} chunks)'
    ),
    # speed, against the run's own A/A noise
    'speed.slower': '{value:.1%} slower',
    'speed.faster': '{value:.1%} faster',
    'speed.shown': '{moved} per round (median), A/A noise {noise:.1%}, p = {p:.3f}',
    'speed.caution': '{shown} < {alpha:.3g}: slower beyond the tolerance of {tolerance:.0%}',
    'speed.too_few_rounds': (
        '{n} rounds cannot show a slowdown: the smallest p they can reach is {smallest_p:.3f}, not below {alpha:.3g}'
    ),
    'speed.not_slower': 'not slower: {moved} per round (median), significantly below the A/A slowdowns (p = {p:.3f})',
    'speed.noisy': (
        '{shown}; the original against itself already differs by {noise:.1%} per round, more than the tolerance of '
        '{tolerance:.0%}: this run cannot resolve it'
    ),
    'speed.within_tolerance': '{shown}: significant, but within the tolerance of {tolerance:.0%}',
    'speed.no_slowdown': 'no significant slowdown ({ratio:.3f}× the original, p = {p:.2f}; A/A noise {noise:.1%})',
    'speed.metric': '{metric} {verdict}',
    'speed.rounds': '{rounds} interleaved rounds: {metrics}',
    # the decision (fakequant.suite.verdict)
    'clauses': '{parts}',
    'verdict.check': '{check}: {reason}',
    'verdict.speed_never_stops': '{reason} (speed alone never stops an experiment)',
    'verdict.noop': (
        'numerical: {changed}/{total} values changed (already representable in {format}); the candidate is the '
        'original, so no check can tell anything — choose a format or tensors that change values'
    ),
    'verdict.more_chunks': '{text}; about {needed} chunks (now {chunks}) would resolve it',
    'verdict.could_not_run': '{check} could not run: {reason}',
    'verdict.checks_unknown': (
        'not measured: which checks {experiment} has is unknown (no {artifact}.json with its checks and prompts); '
        'run {command}'
    ),
    'verdict.missing': "not measured: {checks} (no outcome recorded); run the experiment's tests together: {command}",
    'verdict.limitation': "model limitation, not the quantization's: {reason}",
    'verdict.unmeasurable': 'not measurable with this model, not counted as a pass: {reason}',
    'verdict.all_pass': 'all {passed} checks pass',
    'verdict.all_pass_but': 'all {passed} checks pass ({count} more could not be measured: {checks})',
    'verdict.unreadable': 'the recorded results could not be read: {error}',
    'headline.noop': '{changed}/{total} values changed (already representable in {format})',
    'headline.lead': '{reason}{more}{floor}',
    'headline.more': ' (+{count} more)',
    'headline.floor_resolved': " — format's own effect KLD {excess:+.2g} beyond the placebo floor {floor:.2g}",
    'headline.floor_unresolved': (
        " — format's own effect below the placebo floor's resolution (floor KLD {floor:.2g}, excess {excess:+.2g})"
    ),
    # conversations: a prompt's check (fakequant.suite.conversation, fakequant.suite.rules.conversation)
    'conversation.regression': '{id}: regression in {checks} — {details}',
    'conversation.greedy_caution': (
        "{id}: the candidate's greedy answer breaks {checks}; {broke} of {twins} placebo twins broke it too — one "
        'greedy answer is a caution, the battery decides a regression — {details}'
    ),
    'conversation.unsure': '{id}: {said} — {details}',
    'conversation.no_power': 'no power to detect a regression in {checks}',
    'conversation.weak': (
        "most candidate answers fail {checks}, fewer passes than the baseline's but not significantly (more seeds "
        'would tell)'
    ),
    'conversation.limitation': '{id}: model limitation (baseline fails too) in {checks} — {details}',
    'conversation.all_pass': '{id}: all {count} checks pass on both models ({match})',
    'conversation.identical': 'identical answer',
    'conversation.diverges': 'diverges at token {index}',
    'conversation.differs': 'differs',
    'conversation.detail': '{name}: {detail}',
    'text.ok': 'ok',
    'text.turn': 'turn {turn}: {problem}',
    'text.empty': 'empty answer',
    'text.invalid_utf8': 'invalid UTF-8 (replacement character in the decoded text)',
    'text.control': 'control character U+{char} in the answer',
    'text.repeated': 'repeated trigrams {share:.0%} (turn {turn}; limit {limit:.0%})',
    'text.language_turn': '{want}: CJK {ratio:.0%}',
    'text.language': '{seen} (Chinese when CJK ≥ {min:.0%})',
    'text.missing': 'missing {strings}',
    'text.contains': 'contains {strings}',
    'text.has_one': 'has one of {strings}',
    'text.lacks_one': 'lacks one of {strings}',
    'sample.first': 'baseline: {base} | candidate: {cand}',
    'sample.candidate': 'candidate sample {n}: {seen}',
    'sample.counts': (
        'passes {b}/{n} baseline vs {c}/{n} candidate answers (seeds; p = {p:.3f}, regression when p < {alpha:g})'
    ),
    'sample.counts_no_power': (
        'passes {b}/{n} baseline vs {c}/{n} candidate answers (seeds; p = {p:.3f}): no power — {n} samples cannot '
        'detect a regression from a {b}/{n} baseline (even 0/{n} candidate passes give p = {smallest:.3f}, not '
        'below {alpha:g})'
    ),
    'sample.detail': '{counts}; sample {worst}: baseline: {base} | candidate: {cand}',
    'fluency.detail': (
        "baseline model's PPL of candidate answer {pc:.2f} vs of its own answer {pb:.2f} (×{ratio:.2f}, p = "
        '{p:.3f}; regression when > ×{factor:g} and p < {alpha:g})'
    ),
    'fluency.sampled': '{detail}; sampled at temperature {temperature:g}: informational',
    'finite_logits.nonfinite': 'candidate: NaN/Inf logit at {where}',
    # the conversation battery (fakequant.suite.battery)
    'battery.reason': '{verdict} — {counts}; {test} ({power}){broke}',
    'battery.counts': (
        "candidate broke {breaks} of the original's {passes} passing answers ({prompts} prompts), the {twins} "
        'placebo twins {twin_breaks}'
    ),
    'battery.test': 'within-prompt permutation test p = {p:.3g}',
    'battery.no_power': 'no power: even {n} breaks could not be significant at {alpha:g}',
    'battery.no_power_none': 'no power: the original passes none of the prompts',
    'battery.power': '{count} breaks would have been significant',
    'battery.broken': '; broken: {ids}',
    'battery.regression': 'regression: the candidate breaks significantly more answers than its placebo twins',
    'battery.not_measurable': 'not measurable',
    'battery.tie': 'no regression: a placebo twin broke as many answers',
    'battery.no_regression': 'no regression: not significantly more breaks than the placebo twins',
    # a sweep's cells (fakequant.suite.sweep)
    'sweep.no_outcome': 'no outcome recorded: its tests did not run',
    'sweep.not_gathered': 'not recorded by any gathered host ({hosts}); measure it there or run without --gather',
    'sweep.stale': 'not measured by this run (the outcomes on disk were recorded with other settings)',
    # a recipe's decision (fakequant.recipe)
    'recipe.no_outcome': (
        'the suite recorded no outcome for {name} (pytest exit status {rc}); run `{command}` in {root} and read its '
        'output'
    ),
    'recipe.other_mix': (
        'the suite tested another mix than this run chose (its cells changed in between); run `fakequant recipe '
        '{recipe}` again'
    ),
    'recipe.no_choice': '{error}',
    'recipe.nothing_to_test': 'every group keeps its type: nothing to test',
    'recipe.suite_not_run': 'the suite was not run (run_suite=False)',
    # positive controls (fakequant.suite.expectation)
    'expect.did_not_fail': '{key} did not fail',
    'expect.unexpected': '{check} failed, not expected',
    'expect.not_stop': 'the decision is {decision}, not STOP',
    'expect.could_not_run': '{check} (could not run)',
    'expect.invalid': (
        'experiment.expect = {raw} is not a table of checks that must fail (e.g. {{finite = "fail"}}); ignored'
    ),
}
