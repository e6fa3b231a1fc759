"""Traditional Chinese (Taiwan usage, the language of the user's own plan and report): the same keys as
:mod:`fakequant.i18n.en`, the same fields. Numbers, check ids and tensor names are values and stay as they are.
"""

from __future__ import annotations

TEXT: dict[str, str] = {
    # the report's fixed words: headings, table columns, notes
    'title': 'Fake quantization 報告：{name}',
    'index_title': 'Fake quantization 實驗總覽',
    'decision': '決策',
    'expected': '正對照，預期失敗的檢查',
    'exp_failed': '{check}（已失敗）',
    'exp_not_failed': '{check}（未失敗）',
    'exp_unexpected': '非預期的失敗：{checks}',
    'matched': '符合',
    'not_matched': '不符合',
    'not_measured': '未測量',
    'experiment': '實驗',
    'description': '說明',
    'recipe': '量化設定',
    'model': '模型',
    'corpus': '語料',
    'date': '日期',
    'summary': '測試摘要',
    'measure': '測試項目',
    'original': '原始模型',
    'candidate': 'Fake Quantized 模型',
    'difference': '差異',
    'perplexity': '困惑度',
    'ppl_row': '困惑度（{chunks} 個 chunk × {ctx} tokens）',
    'ppl_increase': '{inc}（95% 區間 {lo} … {hi}）',
    'paired_ln': '成對 Δ ln PPL',
    'kld': 'KL 散度（平均）',
    'top_agree': 'Top token 一致率',
    'load_time': '載入時間',
    'prompt_speed': 'Prompt 處理速度',
    'gen_speed': 'Token 生成速度',
    'conversations': '對話測試',
    'conv_summary': '{ok}/{n} 項檢查通過',
    'conv_identical': '{same}/{n} 完全一致',
    'speed_slower_by': '慢 {value}',
    'speed_faster_by': '快 {value}',
    'speed_numbers': '每回合{moved}，A/A 雜訊 {noise}',
    'speed_caution': '變慢，超過容許值與本次執行的雜訊（{numbers}）',
    'speed_ok': '未超過容許值的變慢（{numbers}）',
    'speed_unresolved': '本次執行無法判定（{numbers}）',
    'median_of': '{n} 次中位數，範圍 {lo}–{hi}',
    'reasons': '決策與理由',
    'why': '原因',
    'notes': '其他紀錄（不影響決策）',
    'checks': '檢查項目',
    'check': '檢查',
    'category': '類別',
    'status': '結果',
    'reason': '測量值、不確定度、門檻',
    'numerical': '數值差異分析',
    'tensor': '權重',
    'shape': '形狀',
    'type': '型別（原始 → 儲存）',
    'changed': '變動數',
    'max_abs': '最大絕對差異',
    'mean_abs': '平均絕對差異',
    'max_rel': '最大相對差異',
    'mean_rel': '平均相對差異',
    'sqnr': 'SQNR',
    'cosine': '餘弦相似度',
    'nonfinite': '量化後 NaN/Inf',
    'epsilon_note': '相對差異 = |a − b| / (|a| + ε)，ε = {eps}。',
    'noop_note': '沒有任何數值改變：產生的模型與原始模型資料相同。',
    'skipped_noop': '未測量：fake quantization 沒有改變任何數值，比較只會是模型與自己比較。',
    'load_format': '載入與格式檢查',
    'format_ok': '除選定權重外，格式與原始模型一致',
    'format_bad': '格式與原始模型不一致',
    'quick_inference': '快速推理',
    'single_load': '載入時間（各載入一次，僅為冒煙測試，速度比較見「速度」）',
    'prompt': 'Prompt',
    'answer': '輸出',
    'ppl_section': '困惑度與成對比較',
    'statistic': '統計量',
    'all_stats': '全部統計量（沿用 llama-perplexity --kl-divergence 的名稱）',
    'value': '數值',
    'exact_note': (
        '本報告在相同 tokens 上一次計算兩個模型的完整精度 log 機率，所有統計量皆為精確值。llama.cpp 的 '
        '--kl-divergence 模式以 16 位元儲存基準模型的 log 機率，並在最高 logit 之下 16 nats 處截斷，因此其 Mean '
        'PPL(base)、ln(PPL(Q)/PPL(base)) 與 KLD 與精確值略有差異（接近零的 ln 比值甚至可能正負號相反）。此處 PPL(Q) '
        '與 PPL(base) 依 llama-perplexity 一般模式計算：相同 chunk、只計每個 chunk 的後半。'
    ),
    'resolve_note': (
        '95% 區間跨越可接受門檻：約需 {needed} 個 chunk（目前 {chunks}）才能判定（不確定度隨 1/√chunks 縮小）。'
    ),
    'conv_status': '判定',
    'detail': '細節',
    'exact_match': '完全一致',
    'first_divergence': '首個分歧 token',
    'fluency': '流暢度（原始模型對輸出的困惑度）',
    'tokens': 'Tokens',
    'speed': '速度',
    'speed_note': (
        '交錯進行 {rounds} 回合，每回合量測原始模型兩次（A/A '
        '配對：本次執行本身的雜訊）與候選模型一次；只有當變慢超過容許值 {tol}、超過 A/A 雜訊，且單尾 Mann-Whitney '
        '檢定顯示其大於 A/A 差異（p < {alpha}）時才計入。變慢只會是 CAUTION，不會是 STOP。'
    ),
    'metric': '指標',
    'ratio': 'Fake Quantized / 原始',
    'p_value': 'p 值',
    'provenance': '來源與環境',
    'settings': '執行設定（兩模型相同）',
    'plots': '圖表',
    'yes': '是',
    'no': '否',
    'key_numbers': '關鍵數據',
    'report': '報告',
    'render_failed': '報告無法完整產生：{error}',
    'messages': '對話訊息',
    'chat_template': '對話格式',
    'template_gguf': '模型自帶的模板（tokenizer.chat_template）',
    'template_builtin': 'llama.cpp 內建模板 {name}',
    'template_plain': '純文字「User: …」/「Assistant:」（模型沒有對話模板）',
    'params': '參數',
    'prompt_tokens': 'prompt tokens',
    'generated': '生成',
    'chunks': 'chunks',
    'plot_weights': '量化前後權重分佈',
    'plot_error': '誤差分佈',
    'plot_chunks': '各 chunk 的困惑度',
    'plot_kld': '每個 token 的 KL 散度',
    'ci': '{mean}（{level} 信賴區間 {lo} … {hi}）',
    'no_ci': '{mean}（只有一個 chunk，無區間）',
    'no_placebo': '未測量（無安慰劑對照）',
    'below_resolution': '低於可分辨程度：{value}',
    'key_excess': '格式本身的 KLD {value}',
    'excess_kld_row': '格式本身的效應（超出安慰劑的 KLD）',
    'floor_section': '基準雜訊與超出量：格式本身的效應',
    'floor_sentence': '將相同的權重各微調一個 ulp（安慰劑，placebo）就已使 perplexity 變動 {ppl}，KLD 為 {kld}',
    'excess_resolved': '格式本身在此之外再增加 KLD {kld}，perplexity 變動 {ppl}。',
    'excess_unresolved': (
        '格式本身的效應低於此模型與執行環境在這個位置所能分辨的程度：{chunks} 個 chunk 的超出 KLD 為 {kld}。'
    ),
    'sentence_join': '；',
    'col_total': '總效應（Fake Quantized vs 原始）',
    'col_floor': '基準雜訊（安慰劑 vs 原始）',
    'col_excess': '超出量（Fake Quantized 超出安慰劑的部分）',
    'mean_kld': '平均 KLD（nats）',
    'delta_ln': 'Δ ln PPL',
    'ppl_change': '困惑度變化',
    'vs_placebo': '{value}（Fake Quantized vs 安慰劑）',
    'unresolved_mark': '{value}，無法分辨',
    'floor_which': (
        '說明：總效應是使用者部署此改動後實際得到的結果，門檻即套用於此；基準雜訊是在此模型與執行環境下，這些權重任'
        '何微小的改動都已造成的效應；超出量是格式本身的部分，即 Fake Quantized 模型超出安慰劑的部分，逐 chunk '
        '成對計算（{chunks} 個 chunk，跨 chunk 的 {level} t 區間）。± 為一個標準誤。'
    ),
    'floor_not_measured': (
        '未測量基準雜訊：此比較未同時執行安慰劑模型，因此無法區分格式本身的效應與這些權重任何改動都會造成的效應。'
    ),
    'placebo_size': '安慰劑本身的改動幅度（以儲存編碼量測的微調）',
    'placebo_moved': '變動數',
    'placebo_rel': '平均相對變化',
    # statuses and decisions
    'status.pass': '通過',
    'status.caution': '注意',
    'status.fail': '失敗',
    'status.limitation': '模型本身限制',
    'status.inconclusive': '無法判定',
    'status.error': '錯誤',
    'status.GO': '繼續 (GO)',
    'status.CAUTION': '謹慎繼續 (CAUTION)',
    'status.STOP': '停止 (STOP)',
    'status.INCONCLUSIVE': '無法判定 (INCONCLUSIVE)',
    # check categories (English reports show the recorded name)
    'category.must_pass': '必要檢查',
    'category.numerical': '數值差異',
    'category.perplexity': '困惑度',
    'category.conversation': '對話',
    'category.speed': '速度',
    # the end of a run: the terminal's decision lines and pytest-html's summary
    'term_expected': '  [預期失敗：{checks} — {matched}]',
    'term_reports': '報告：{where}',
    'html_title': 'fakequant 決策',
    'html_expected': '（預期失敗：{checks} — {matched}）',
    'col_experiment': '實驗',
    'col_decision': '決策',
    'col_why': '原因',
    'col_key_numbers': '關鍵數據',
    'col_report': '報告',
    'key_changed': '{changed}/{total} 個數值改變',
    'key_ppl': '困惑度 {diff}',
    'key_kld': 'KLD {kld} nats',
    'clause_join': '；',
    # the conversation battery's report section (fakequant.report.battery)
    'battery_title': '對話題組',
    'battery_prompts': '題數（原始模型通過）',
    'battery_cand': 'Fake Quantized 模型答壞',
    'battery_twins': '安慰劑模型答壞（種子 {seeds}）',
    'battery_p': 'p 值（題內置換檢定）',
    'battery_smallest': '達顯著所需最少答壞題數',
    'battery_none': '無：檢定力不足',
    'battery_template': '對話模板',
    'battery_status': '結果',
    'battery_broken': '答壞的題目',
    'battery_id': '題目',
    'battery_topic': '類別',
    'battery_original': '原始模型',
    'battery_candidate': 'Fake Quantized 模型',
    'battery_checks': 'Fake Quantized 模型未通過',
    'battery_by_twins': '也答壞的安慰劑模型',
    'battery_failed': '原始模型未通過 {n} 題（不計入）：{ids}',
    'battery_rule': (
        'Fake Quantized 模型答壞原始模型通過之題目顯著多於其安慰劑模型（p < '
        '{alpha}），且多於每一個安慰劑模型時，才算退化。'
    ),
    # a sweep's sensitivity map (fakequant.report.sensitivity)
    'sens_title': '# 掃描 `{sweep}`：敏感度地圖',
    'sens_cells': '{layers} 層 × {kinds} 種權重（{kind_list}）× {formats} 種格式（{format_list}）= {cells} 個組合。',
    'sens_model': '模型',
    'sens_corpus': '語料',
    'sens_chunks': '困惑度 chunk 數',
    'sens_settings': '執行設定（每個組合相同）',
    'sens_timing': (
        '本次執行：量測 {run} 個組合，{cached} 個取自組合快取，總耗時 {wall:.1f} 秒，{jobs} 個 worker × {threads} '
        '個執行緒'
    ),
    'sens_safe': '看來可以繼續的層（{what}，每個組合皆為 GO）：{layers}（{total} 層中的 {count} 層）',
    'sens_none': '無',
    'sens_group': '{label}：{layers}',
    'sens_caution': '需謹慎（CAUTION）',
    'sens_stop': '不安全（STOP）',
    'sens_unresolved': '未判定（INCONCLUSIVE 或未測量）',
    'sens_end': '。',
    'sens_top': '## 最敏感的權重（前 {count} 名，依格式本身的效應：超出安慰劑的平均 KLD）',
    'sens_col_tensor': '權重',
    'sens_col_format': '格式',
    'sens_col_excess': '超出 KLD [95% 信賴區間]',
    'sens_col_floor': '基準 KLD',
    'sens_col_total': '總 KLD',
    'sens_col_mean': '平均 KLD',
    'sens_col_delta': 'Δ ln PPL ± SE',
    'sens_col_change': '困惑度變化',
    'sens_col_top1': 'top-1 相同',
    'sens_col_decision': '決策',
    'sens_col_layer': '層',
    'sens_col_kind': '種類',
    'sens_col_experiment': '實驗',
    'sens_col_why': '原因',
    'sens_no_placebo': '無安慰劑 †',
    'sens_not_resolved': '（無法分辨）',
    'sens_cached': '（快取）',
    'sens_dagger': '† 未搭配安慰劑量測：排在有安慰劑的組合之後，依總平均 KLD 排序（無法區分其本身的效應與基準雜訊）。',
    'sens_decisions': '## 決策：{format}（層 × 權重種類：決策、Δ ln PPL）',
    'sens_every': '## 所有組合',
    'sens_legend': (
        'Δ ln PPL = 在相同 tokens 上的平均 ln(PPL(Fake Quantized)/PPL(原始))，± 一個標準誤（逐 token 成對）；KLD = '
        'Fake Quantized 模型的下一個 token 分佈相對於原始模型的平均 KL '
        '散度（總效應：使用者部署此改動實際得到的結果，決策依此判定）；基準 KLD = '
        '安慰劑模型的同一數值（相同權重以其自身編碼各微調一個 ulp，每個層 × 種類一個，所有格式共用）；超出 KLD = '
        'Fake Quantized 模型超出其安慰劑的部分，逐 chunk 成對計算，附跨 chunk 的 95% t '
        '區間：格式本身的效應，組合依此排序。top-1 相同 = 兩個模型排名第一的 token '
        '相同的位置比例。每個組合都是一般的實驗：其報告在 `reports/<experiment>/`。'
    ),
    # building, loading and the must-pass checks (fakequant.suite.rules)
    'build.done': '{tensors} 個權重共 {total} 個數值中有 {changed} 個改變（{what}）',
    'build.noop': '未改變：每個數值都已可用 {format} 精確表示',
    'build.failed': '無法建立 Fake Quantized 模型：{error}',
    'config.invalid': '實驗設定無效：{error}',
    'format.differs': '與原始模型的格式有 {count} 處不同，第一處：{first}',
    'format.same': '格式與原始模型相同；只有選定的 {changed_tensors} 個權重可以不同',
    'load.failed': '{file}：無法載入或推理：{error}',
    'load.no_token': '快速推理沒有產生任何 token（停止原因：{stop}）',
    'load.ok': '載入耗時 {seconds:.2f} 秒；「{prompt}」→ {tokens} 個 token：{text!r}',
    'finite.weights': (
        '{name}：量化後有 {nan_after} 個 NaN 與 {inf_after} 個 Inf（量化前：{nan_before} / {inf_before}）'
    ),
    'finite.logits': '在 {where} 出現 NaN/Inf logit',
    'finite.ok': '{tensors} 個改動的權重與 {positions} 個位置的 logits 中皆無 NaN/Inf',
    'original.changed': '{model}：sha256 已從 {before}… 變為 {after}…',
    'original.unchanged': '{name}：sha256 {sha}… 未改變',
    'check.crashed': '{test} 在 {when} 階段發生例外：{error}',
    # numerical
    'noop.target_format': '目標格式',
    'numerical.nothing_changed': '{values} 個數值中沒有任何一個改變：無可比較',
    'numerical.bounds': (
        '平均相對差異 {mean_rel:.3%}（{mean_tensor}；理想 < {mean_ideal:.0%}，可接受 < '
        '{mean_acceptable:.0%}），最大相對差異 {max_rel:.3%}（{max_tensor}；理想 < {max_ideal:.0%}，可接受 < '
        '{max_acceptable:.0%}），共 {tensors} 個改動的權重'
    ),
    # perplexity, and its floor (the placebo) and excess
    'perplexity.one_chunk': '困惑度增加 {inc:+.3%}，只有 {n} 個 chunk：跨 chunk 的區間至少需要 2 個 chunk',
    'perplexity.measured': '困惑度增加 {inc:+.3%}（95% 信賴區間 {lo:+.3%} … {hi:+.3%}，{chunks} 個 chunk 的 t 區間）',
    'perplexity.below_ideal': '{measured}，完全低於理想門檻 {ideal:.0%}',
    'perplexity.above_acceptable': '{measured}，完全高於可接受門檻 {acceptable:.0%}',
    'perplexity.below_acceptable': '{measured}，低於可接受門檻 {acceptable:.0%}，但不能確定低於理想門檻 {ideal:.0%}',
    'perplexity.straddles': '{measured}，跨越可接受門檻 {acceptable:.0%}；{more}',
    'perplexity.chunks_would_resolve': '約需 {need} 個 chunk 才能判定',
    'perplexity.no_chunks_resolve': '效應正落在門檻上，再多 chunk 也無法判定',
    'perplexity.nonfinite': '困惑度計算中在 {where} 出現 NaN/Inf logits；{text}',
    'floor.placebo': '將相同權重各微調一個 ulp（安慰劑）就已使困惑度變動 {ppl:+.3%}，KLD 為 {kld:.2g}',
    'floor.interval': '95% 信賴區間 {lo:+.2g} … {hi:+.2g}',
    'floor.no_interval': '只有一個 chunk，無區間',
    'floor.resolved': '格式本身在此之外再增加 KLD {kld:+.2g}（{interval}），困惑度變動 {ppl:+.3%}',
    'floor.unresolved': (
        '格式本身的效應低於此模型與執行環境在這個位置所能分辨的程度（超出的 KLD {kld:+.2g}，{interval}，{chunks} 個 '
        'chunk）'
    ),
    # speed, against the run's own A/A noise
    'speed.slower': '慢 {value:.1%}',
    'speed.faster': '快 {value:.1%}',
    'speed.shown': '每回合中位數{moved}，A/A 雜訊 {noise:.1%}，p = {p:.3f}',
    'speed.caution': '{shown} < {alpha:.3g}：變慢幅度超過容許值 {tolerance:.0%}',
    'speed.too_few_rounds': '{n} 個回合無法顯示變慢：可達到的最小 p 值為 {smallest_p:.3f}，未低於 {alpha:.3g}',
    'speed.not_slower': '沒有變慢：每回合中位數{moved}，顯著低於 A/A 的變慢幅度（p = {p:.3f}）',
    'speed.noisy': '{shown}；原始模型與自身相比每回合已相差 {noise:.1%}，超過容許值 {tolerance:.0%}：本次執行無法判定',
    'speed.within_tolerance': '{shown}：差異顯著，但在容許值 {tolerance:.0%} 之內',
    'speed.no_slowdown': '沒有顯著變慢（原始模型的 {ratio:.3f}×，p = {p:.2f}；A/A 雜訊 {noise:.1%}）',
    'speed.metric': '{metric}：{verdict}',
    'speed.rounds': '交錯 {rounds} 回合：{metrics}',
    # the decision (fakequant.suite.verdict)
    'clauses': '{parts}',
    'verdict.check': '{check}：{reason}',
    'verdict.speed_never_stops': '{reason}（速度本身不會讓實驗停止）',
    'verdict.noop': (
        'numerical：{changed}/{total} 個數值改變（已可用 {format} 精確表示）；Fake Quantized '
        '模型就是原始模型，任何檢查都無從判斷——請選擇會改變數值的格式或權重'
    ),
    'verdict.more_chunks': '{text}；約需 {needed} 個 chunk（目前 {chunks} 個）才能判定',
    'verdict.could_not_run': '{check} 無法執行：{reason}',
    'verdict.checks_unknown': (
        '未測量：不知道 {experiment} 有哪些檢查（沒有記錄其檢查與 prompt 的 {artifact}.json）；請執行 {command}'
    ),
    'verdict.missing': '未測量：{checks}（沒有記錄結果）；請一起執行此實驗的所有測試：{command}',
    'verdict.limitation': '模型本身的限制，並非量化造成：{reason}',
    'verdict.unmeasurable': '此模型無法測量，不計為通過：{reason}',
    'verdict.all_pass': '全部 {passed} 項檢查通過',
    'verdict.all_pass_but': '全部 {passed} 項檢查通過（另有 {count} 項無法測量：{checks}）',
    'verdict.unreadable': '無法讀取記錄的結果：{error}',
    'headline.noop': '{changed}/{total} 個數值改變（已可用 {format} 精確表示）',
    'headline.lead': '{reason}{more}{floor}',
    'headline.more': '（另有 {count} 項）',
    'headline.floor_resolved': '——格式本身的效應：KLD 比安慰劑基準 {floor:.2g} 多 {excess:+.2g}',
    'headline.floor_unresolved': (
        '——格式本身的效應低於安慰劑基準的可分辨程度（基準 KLD {floor:.2g}，超出 {excess:+.2g}）'
    ),
    # conversations: a prompt's check (fakequant.suite.conversation, fakequant.suite.rules.conversation)
    'conversation.regression': '{id}：{checks} 退化——{details}',
    'conversation.greedy_caution': (
        '{id}：Fake Quantized 模型的 greedy 回答未通過 {checks}；{twins} 個安慰劑模型中有 {broke} 個也答壞——單一 '
        'greedy 回答只算注意，是否退化由對話題組判定——{details}'
    ),
    'conversation.unsure': '{id}：{said}——{details}',
    'conversation.no_power': '檢定力不足，無法偵測 {checks} 的退化',
    'conversation.weak': (
        '多數 Fake Quantized 模型的回答未通過 {checks}，通過次數少於原始模型但差異不顯著（更多種子才能判定）'
    ),
    'conversation.limitation': '{id}：{checks} 為模型本身的限制（原始模型也未通過）——{details}',
    'conversation.all_pass': '{id}：兩個模型皆通過全部 {count} 項檢查（{match}）',
    'conversation.identical': '回答完全相同',
    'conversation.diverges': '自第 {index} 個 token 起分歧',
    'conversation.differs': '回答不同',
    'conversation.detail': '{name}：{detail}',
    'text.ok': '正常',
    'text.turn': '第 {turn} 輪：{problem}',
    'text.empty': '空白回答',
    'text.invalid_utf8': '無效的 UTF-8（解碼後的文字中有替代字元）',
    'text.control': '回答中有控制字元 U+{char}',
    'text.repeated': '重複的三元組 {share:.0%}（第 {turn} 輪；上限 {limit:.0%}）',
    'text.language_turn': '{want}：CJK 字元 {ratio:.0%}',
    'text.language': '{seen}（CJK ≥ {min:.0%} 時視為中文）',
    'text.missing': '缺少 {strings}',
    'text.contains': '包含 {strings}',
    'text.has_one': '包含其中之一：{strings}',
    'text.lacks_one': '不含其中任何一個：{strings}',
    'sample.first': '原始模型：{base} | Fake Quantized 模型：{cand}',
    'sample.candidate': 'Fake Quantized 模型第 {n} 個樣本：{seen}',
    'sample.counts': (
        '通過次數：原始模型 {b}/{n}，Fake Quantized 模型 {c}/{n}（各種子；p = {p:.3f}，p < {alpha:g} 時為退化）'
    ),
    'sample.counts_no_power': (
        '通過次數：原始模型 {b}/{n}，Fake Quantized 模型 {c}/{n}（各種子；p = {p:.3f}）：檢定力不足——原始模型只通過 '
        '{b}/{n} 時，{n} 個樣本無法偵測退化（即使 Fake Quantized 模型 0/{n} 通過，p = {smallest:.3f}，仍未低於 '
        '{alpha:g}）'
    ),
    'sample.detail': '{counts}；第 {worst} 個樣本：原始模型：{base} | Fake Quantized 模型：{cand}',
    'fluency.detail': (
        '原始模型對 Fake Quantized 模型回答的困惑度 {pc:.2f}，對自己回答的困惑度 {pb:.2f}（×{ratio:.2f}，p = '
        '{p:.3f}；> ×{factor:g} 且 p < {alpha:g} 時為退化）'
    ),
    'fluency.sampled': '{detail}；以溫度 {temperature:g} 取樣：僅供參考',
    'finite_logits.nonfinite': 'Fake Quantized 模型：在 {where} 出現 NaN/Inf logit',
    # the conversation battery (fakequant.suite.battery)
    'battery.reason': '{verdict}——{counts}；{test}（{power}）{broke}',
    'battery.counts': (
        'Fake Quantized 模型答壞原始模型通過的 {passes} 題中的 {breaks} 題（共 {prompts} 題），{twins} '
        '個安慰劑模型各答壞 {twin_breaks} 題'
    ),
    'battery.test': '題內置換檢定 p = {p:.3g}',
    'battery.no_power': '檢定力不足：即使答壞 {n} 題也無法在 {alpha:g} 下達到顯著',
    'battery.no_power_none': '檢定力不足：原始模型沒有通過任何題目',
    'battery.power': '答壞 {count} 題即可達到顯著',
    'battery.broken': '；答壞的題目：{ids}',
    'battery.regression': '退化：Fake Quantized 模型答壞的題目顯著多於其安慰劑模型',
    'battery.not_measurable': '無法測量',
    'battery.tie': '沒有退化：有安慰劑模型答壞同樣多的題目',
    'battery.no_regression': '沒有退化：答壞的題目並未顯著多於安慰劑模型',
    # a sweep's cells (fakequant.suite.sweep)
    'sweep.no_outcome': '沒有記錄任何結果：此組合的測試沒有執行',
    'sweep.not_gathered': '沒有任何收集的主機記錄了此組合（{hosts}）；請在那些主機上量測，或不加 --gather 執行',
    'sweep.stale': '本次執行未量測（磁碟上的結果是以其他設定記錄的）',
    # a recipe's decision (fakequant.recipe)
    'recipe.no_outcome': (
        '測試套件沒有記錄 {name} 的任何結果（pytest 結束狀態 {rc}）；請在 {root} 執行 `{command}` 並查看其輸出'
    ),
    'recipe.other_mix': (
        '測試套件測試的配置與本次選定的不同（其間 cell 已改變）；請再執行一次 `fakequant recipe {recipe}`'
    ),
    'recipe.no_choice': '無法選出配置：{error}',
    'recipe.nothing_to_test': '每個群組都維持原本的型別：沒有可測試的內容',
    'recipe.suite_not_run': '未執行測試套件（run_suite=False）',
    # positive controls (fakequant.suite.expectation)
    'expect.did_not_fail': '{key} 沒有失敗',
    'expect.unexpected': '{check} 失敗，但不在預期之中',
    'expect.not_stop': '決策為 {decision}，而非 STOP',
    'expect.could_not_run': '{check}（無法執行）',
    'expect.invalid': 'experiment.expect = {raw} 不是列出必須失敗之檢查的表格（例如 {{finite = "fail"}}）；已忽略',
}
