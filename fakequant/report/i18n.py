"""The report's fixed words in English and Traditional Chinese (the language of the user's own report).

Measured values and the checks' reasons are not translated: they are generated once, in English, and recorded in
report.json; a zh-TW report says so next to them. What the report itself writes around them (headings, statuses,
check categories) is translated here.
"""

from __future__ import annotations

from collections.abc import Callable

# key -> (English, Traditional Chinese); "{name}" fields are filled by str.format.
STRINGS: dict[str, tuple[str, str]] = {
    "title": ("Fake-quantization report: {name}", "Fake quantization 報告：{name}"),
    "index_title": ("Fake-quantization experiments", "Fake quantization 實驗總覽"),
    "decision": ("Decision", "決策"),
    "expected": ("Positive control, expected to fail", "正對照，預期失敗的檢查"),
    "exp_failed": ("{check} (failed)", "{check}（已失敗）"),
    "exp_not_failed": ("{check} (did not fail)", "{check}（未失敗）"),
    "exp_unexpected": ("also failed, not expected: {checks}", "非預期的失敗：{checks}"),
    "matched": ("matched", "符合"),
    "not_matched": ("DID NOT MATCH", "不符合"),
    "not_measured": ("not measured", "未測量"),
    "experiment": ("Experiment", "實驗"),
    "description": ("Description", "說明"),
    "recipe": ("Recipe", "量化設定"),
    "model": ("Model", "模型"),
    "corpus": ("Corpus", "語料"),
    "date": ("Date", "日期"),
    "summary": ("Summary", "測試摘要"),
    "measure": ("Measure", "測試項目"),
    "original": ("Original", "原始模型"),
    "candidate": ("Candidate", "Fake Quantized 模型"),
    "difference": ("Difference", "差異"),
    "perplexity": ("Perplexity", "Perplexity"),
    "ppl_row": ("Perplexity ({chunks} chunks × {ctx} tokens)", "Perplexity（{chunks} 個 chunk × {ctx} tokens）"),
    "ppl_increase": ("{inc} (95% interval {lo} … {hi})", "{inc}（95% 區間 {lo} … {hi}）"),
    "paired_ln": ("Paired Δ ln PPL", "成對 Δ ln PPL"),
    "kld": ("KL divergence (mean)", "KL 散度（平均）"),
    "top_agree": ("Top-token agreement", "Top token 一致率"),
    "load_time": ("Load time", "載入時間"),
    "prompt_speed": ("Prompt processing", "Prompt 處理速度"),
    "gen_speed": ("Token generation", "Token 生成速度"),
    "conversations": ("Conversations", "對話測試"),
    "conv_summary": ("{ok}/{n} checks met", "{ok}/{n} 項檢查通過"),
    "conv_identical": ("{same}/{n} identical", "{same}/{n} 完全一致"),
    "speed_slower_by": ("{value} slower", "慢 {value}"),
    "speed_faster_by": ("{value} faster", "快 {value}"),
    "speed_numbers": ("{moved} per round, A/A noise {noise}", "每回合{moved}，A/A 雜訊 {noise}"),
    "speed_caution": ("slower beyond the tolerance and the run's noise ({numbers})",
                      "變慢，超過容許值與本次執行的雜訊（{numbers}）"),
    "speed_ok": ("no slowdown beyond the tolerance ({numbers})", "未超過容許值的變慢（{numbers}）"),
    "speed_unresolved": ("not resolved by this run ({numbers})", "本次執行無法判定（{numbers}）"),
    "median_of": ("median of {n}, range {lo}–{hi}", "{n} 次中位數，範圍 {lo}–{hi}"),
    "reasons": ("Decision and reasons", "決策與理由"),
    "why": ("Why", "原因"),
    "notes": ("Also reported (not deciding)", "其他紀錄（不影響決策）"),
    "checks": ("Checks", "檢查項目"),
    "check": ("Check", "檢查"),
    "category": ("Category", "類別"),
    "status": ("Status", "結果"),
    "reason": ("Measured value, uncertainty, threshold", "測量值、不確定度、門檻"),
    "numerical": ("Numerical analysis", "數值差異分析"),
    "tensor": ("Tensor", "權重"),
    "shape": ("Shape", "形狀"),
    "type": ("Type (source → stored)", "型別（原始 → 儲存）"),
    "changed": ("Changed", "變動數"),
    "max_abs": ("Max abs", "最大絕對差異"),
    "mean_abs": ("Mean abs", "平均絕對差異"),
    "max_rel": ("Max rel", "最大相對差異"),
    "mean_rel": ("Mean rel", "平均相對差異"),
    "sqnr": ("SQNR", "SQNR"),
    "cosine": ("Cosine", "餘弦相似度"),
    "nonfinite": ("NaN/Inf after", "量化後 NaN/Inf"),
    "epsilon_note": ("Relative difference = |a − b| / (|a| + ε), ε = {eps}.",
                     "相對差異 = |a − b| / (|a| + ε)，ε = {eps}。"),
    "noop_note": ("No value changed: the file the suite built is the original's data.",
                  "沒有任何數值改變：產生的模型與原始模型資料相同。"),
    "skipped_noop": ("Not measured: the fake quantization changed no value, so this would compare the model with "
                     "itself.", "未測量：fake quantization 沒有改變任何數值，比較只會是模型與自己比較。"),
    "load_format": ("Load and format checks", "載入與格式檢查"),
    "format_ok": ("Format identical to the original apart from the selected tensors",
                  "除選定權重外，格式與原始模型一致"),
    "format_bad": ("Format differs from the original", "格式與原始模型不一致"),
    "quick_inference": ("Quick inference", "快速推理"),
    "single_load": ("Load time (one load each: a smoke test, not a speed comparison — see Speed)",
                    "載入時間（各載入一次，僅為冒煙測試，速度比較見「速度」）"),
    "prompt": ("Prompt", "Prompt"),
    "answer": ("Answer", "輸出"),
    "ppl_section": ("Perplexity and paired comparison", "Perplexity 與成對比較"),
    "statistic": ("Statistic", "統計量"),
    "all_stats": ("Every statistic (llama-perplexity --kl-divergence naming)",
                  "全部統計量（沿用 llama-perplexity --kl-divergence 的名稱）"),
    "value": ("Value", "數值"),
    "exact_note": ("Computed in one pass over identical tokens, from full-precision log-probabilities of both "
                   "models: every statistic here is exact for these tokens. llama.cpp's --kl-divergence mode "
                   "stores the base model's log-probabilities in 16 bits, clamped 16 nats below the top logit, so its "
                   "Mean PPL(base), ln(PPL(Q)/PPL(base)) and KLD differ slightly from exact values (a ln ratio near "
                   "zero can even change sign). PPL(Q) and PPL(base) here follow "
                   "llama-perplexity's plain mode: same chunks, same scored half of each chunk.",
                   "本報告在相同 tokens 上一次計算兩個模型的完整精度 log 機率，所有統計量皆為精確值。llama.cpp 的 "
                   "--kl-divergence 模式以 16 位元儲存基準模型的 log 機率，並在最高 logit 之下 16 nats 處截斷，"
                   "因此其 Mean PPL(base)、ln(PPL(Q)/PPL(base)) 與 KLD 與精確值略有差異（接近零的 ln 比值甚至可能"
                   "正負號相反）。此處 PPL(Q) 與 PPL(base) 依 llama-perplexity 一般模式計算："
                   "相同 chunk、只計每個 chunk 的後半。"),
    "resolve_note": ("The 95% interval straddles the acceptable bound: about {needed} chunks (now {chunks}) would "
                     "resolve it (the uncertainty shrinks as 1/√chunks).",
                     "95% 區間跨越可接受門檻：約需 {needed} 個 chunk（目前 {chunks}）才能判定"
                     "（不確定度隨 1/√chunks 縮小）。"),
    "conv_status": ("Verdict", "判定"),
    "detail": ("Detail", "細節"),
    "exact_match": ("Exact match", "完全一致"),
    "first_divergence": ("First divergence", "首個分歧 token"),
    "fluency": ("Fluency (original model's perplexity of the answer)", "流暢度（原始模型對輸出的 perplexity）"),
    "tokens": ("Tokens", "Tokens"),
    "speed": ("Speed", "速度"),
    "speed_note": ("{rounds} interleaved rounds, each timing the original twice (an A/A pair: the noise this run "
                   "sees) and the candidate once; a slowdown counts only when it is beyond the tolerance of {tol}, "
                   "beyond the A/A noise, and larger than the A/A differences by a one-sided Mann-Whitney test "
                   "(p < {alpha}). A slowdown is a CAUTION, never a STOP.",
                   "交錯進行 {rounds} 回合，每回合量測原始模型兩次（A/A 配對：本次執行本身的雜訊）與候選模型一次；"
                   "只有當變慢超過容許值 {tol}、超過 A/A 雜訊，且單尾 Mann-Whitney 檢定顯示其大於 A/A 差異"
                   "（p < {alpha}）時才計入。變慢只會是 CAUTION，不會是 STOP。"),
    "metric": ("Metric", "指標"),
    "ratio": ("Candidate / original", "Fake Quantized / 原始"),
    "p_value": ("p-value", "p 值"),
    "provenance": ("Provenance", "來源與環境"),
    "settings": ("Runtime settings (identical for both models)", "執行設定（兩模型相同）"),
    "plots": ("Plots", "圖表"),
    "yes": ("yes", "是"),
    "no": ("no", "否"),
    "key_numbers": ("Key numbers", "關鍵數據"),
    "report": ("Report", "報告"),
    "render_failed": ("The report could not be rendered in full: {error}", "報告無法完整產生：{error}"),
    "messages": ("Messages", "對話訊息"),
    "chat_template": ("Chat format", "對話格式"),
    "template_gguf": ("the model's own template (tokenizer.chat_template)",
                      "模型自帶的模板（tokenizer.chat_template）"),
    "template_builtin": ("llama.cpp's built-in template {name}", "llama.cpp 內建模板 {name}"),
    "template_plain": ("plain text, “User: …” / “Assistant:” (the model has no chat template)",
                       "純文字「User: …」/「Assistant:」（模型沒有對話模板）"),
    "reasons_english": ("", "以下理由與細節由各項檢查自動產生，為英文原文（與 report.json 相同），未翻譯。"),
    "params": ("Parameters", "參數"),
    "prompt_tokens": ("prompt tokens", "prompt tokens"),
    "generated": ("generated", "生成"),
    "chunks": ("chunks", "chunks"),
    "plot_weights": ("Weight distribution before and after", "量化前後權重分佈"),
    "plot_error": ("Error distribution", "誤差分佈"),
    "plot_chunks": ("Per-chunk perplexity", "各 chunk 的 perplexity"),
    "plot_kld": ("KL divergence per token", "每個 token 的 KL 散度"),
    # the placebo (floor) and the format's own effect (excess)
    "ci": ("{mean} ({level} CI {lo} … {hi})", "{mean}（{level} 信賴區間 {lo} … {hi}）"),
    "no_ci": ("{mean} (no interval: one chunk)", "{mean}（只有一個 chunk，無區間）"),
    "no_placebo": ("not measured (no placebo)", "未測量（無安慰劑對照）"),
    "below_resolution": ("below resolution: {value}", "低於可分辨程度：{value}"),
    "key_excess": ("format's own KLD {value}", "格式本身的 KLD {value}"),
    "excess_kld_row": ("Format's own effect (KLD beyond the placebo)", "格式本身的效應（超出安慰劑的 KLD）"),
    "floor_section": ("Floor and excess: the format's own effect", "基準雜訊與超出量：格式本身的效應"),
    "floor_sentence": ("A one-ulp nudge of the same tensors (placebo) already moves perplexity by {ppl} and gives "
                       "KLD {kld}", "將相同的權重各微調一個 ulp（安慰劑，placebo）就已使 perplexity 變動 {ppl}，"
                       "KLD 為 {kld}"),
    "excess_resolved": ("the format adds KLD {kld} and {ppl} perplexity beyond it.",
                        "格式本身在此之外再增加 KLD {kld}，perplexity 變動 {ppl}。"),
    "excess_unresolved": ("the format's own effect is below what this model and runtime can resolve at this "
                          "position: excess KLD {kld} over {chunks} chunks.",
                          "格式本身的效應低於此模型與執行環境在這個位置所能分辨的程度：{chunks} 個 chunk 的超出 KLD "
                          "為 {kld}。"),
    "sentence_join": ("; ", "；"),
    "col_total": ("Total (candidate vs original)", "總效應（Fake Quantized vs 原始）"),
    "col_floor": ("Floor (placebo vs original)", "基準雜訊（安慰劑 vs 原始）"),
    "col_excess": ("Excess (candidate beyond placebo)", "超出量（Fake Quantized 超出安慰劑的部分）"),
    "mean_kld": ("Mean KLD (nats)", "平均 KLD（nats）"),
    "delta_ln": ("Δ ln PPL", "Δ ln PPL"),
    "ppl_change": ("Perplexity change", "Perplexity 變化"),
    "vs_placebo": ("{value} (candidate vs placebo)", "{value}（Fake Quantized vs 安慰劑）"),
    "unresolved_mark": ("{value}, not resolved", "{value}，無法分辨"),
    "floor_which": ("Which is which: the total is what a user deploying this change gets, and the thresholds apply "
                    "to it; the floor is what any change of these tensors, however small, already does with this "
                    "model and runtime; the excess is the format's own part, the candidate beyond the placebo paired "
                    "per chunk ({chunks} chunks, {level} t intervals over chunks). ± is one standard error.",
                    "說明：總效應是使用者部署此改動後實際得到的結果，門檻即套用於此；基準雜訊是在此模型與執行環境下，"
                    "這些權重任何微小的改動都已造成的效應；超出量是格式本身的部分，即 Fake Quantized 模型超出安慰劑"
                    "的部分，逐 chunk 成對計算（{chunks} 個 chunk，跨 chunk 的 {level} t 區間）。± 為一個標準誤。"),
    "floor_not_measured": ("Floor not measured: this comparison ran without a placebo twin, so the format's own "
                           "effect cannot be told apart from what any change of these tensors already does.",
                           "未測量基準雜訊：此比較未同時執行安慰劑模型，因此無法區分格式本身的效應與這些權重任何"
                           "改動都會造成的效應。"),
    "placebo_size": ("Size of the placebo itself (the nudge, measured on the stored encoding)",
                     "安慰劑本身的改動幅度（以儲存編碼量測的微調）"),
    "placebo_moved": ("Moved", "變動數"),
    "placebo_rel": ("Mean relative change", "平均相對變化"),
}


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **fields)`` in ``lang``; an unknown language falls back to English."""
    column = 1 if lang == "zh-TW" else 0

    def t(key: str, **fields: object) -> str:
        text = STRINGS[key][column]
        return text.format(**fields) if fields else text

    return t



STATUS_WORDS = {
    "pass": ("pass", "通過"), "caution": ("caution", "注意"), "fail": ("fail", "失敗"),
    "limitation": ("model limitation", "模型本身限制"), "inconclusive": ("inconclusive", "無法判定"),
    "error": ("error", "錯誤"),
    "GO": ("GO", "繼續 (GO)"), "CAUTION": ("CAUTION", "謹慎繼續 (CAUTION)"), "STOP": ("STOP", "停止 (STOP)"),
    "INCONCLUSIVE": ("INCONCLUSIVE", "無法判定 (INCONCLUSIVE)"),
}


def status_text(status: str, lang: str) -> str:
    """The word for a check status or a decision in ``lang``."""
    words = STATUS_WORDS.get(str(status))
    return words[1 if lang == "zh-TW" else 0] if words else str(status)


# Check categories in zh-TW; English reports show the recorded name itself.
CATEGORY_ZH = {"must_pass": "必要檢查", "numerical": "數值差異", "perplexity": "Perplexity", "conversation": "對話",
               "speed": "速度"}


def category_text(category: str, lang: str) -> str:
    """The name of a check category in ``lang`` (an unknown one as recorded)."""
    return CATEGORY_ZH.get(str(category), str(category)) if lang == "zh-TW" else str(category)
