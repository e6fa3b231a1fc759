"""The words of the recipe report (:mod:`fakequant.report.recipe`), English and Traditional Chinese."""

from __future__ import annotations

from collections.abc import Callable

from fakequant.report.i18n import STRINGS

# key -> (English, Traditional Chinese), as in i18n.STRINGS; keys not here fall back to that table.
WORDS: dict[str, tuple[str, str]] = {
    "title": ("Mixed-precision recipe: {name}", "混合精度量化設定：{name}"),
    "mib": ("{mib} MiB", "{mib} MiB"),
    "slices": ("Text slices (chunks of {ctx} tokens, none shared)", "文字切片（每 chunk {ctx} tokens，互不重疊）"),
    "slice_calibration": ("calibration (importance matrix)", "校準（重要性矩陣）"),
    "slice_selection": ("selection (cells measured, assignment chosen)", "選擇（測量 cell、選定配置）"),
    "slice_evaluation": ("evaluation (every model in the tables below)", "評估（下方表格中的所有模型）"),
    "slice_line": ("chunks {first}–{last} of {corpus}, tokens [{start}, {end})",
                   "{corpus} 的第 {first}–{last} 個 chunk，tokens [{start}, {end})"),
    "no_imatrix": ("none (imatrix = false: every model quantized without an importance matrix)",
                   "無（imatrix = false：所有模型皆不使用重要性矩陣量化）"),
    "imatrix_line": ("importance matrix: {path} (sha256 {sha}), {chunks} chunks", "重要性矩陣：{path}（sha256 {sha}），"
                     "{chunks} 個 chunk"),
    "suite_chunks": ("the suite's perplexity check of each try: {chunks} chunks of {corpus} from chunk {first} on, the "
                     "start of the evaluation slice",
                     "每次嘗試的測試套件 perplexity 檢查：{corpus} 從第 {first} 個 chunk 起的 {chunks} 個 chunk"
                     "（評估切片的開頭）"),
    "tries": ("Tries through the suite", "測試套件的嘗試"),
    "tries_note": ("Each try is the best assignment within the budget that was not tried before (the earlier ones are "
                   "excluded from the same integer program), up to max_tries = {max}.",
                   "每次嘗試都是預算內尚未嘗試過的最佳配置（先前的配置以同一整數規劃排除），"
                   "最多 max_tries = {max} 次。"),
    "passed": ("Try {n} passed the suite ({decision}): the model this report leads with.",
               "第 {n} 次嘗試通過測試套件（{decision}）：本報告以此模型為主。"),
    "none_passed": ("No try passed the suite ({n} tried): no assignment within this budget is a model to ship. "
                    "The tables show the first try.",
                    "{n} 次嘗試皆未通過測試套件：此預算內沒有可交付的配置。各表格顯示第一次嘗試。"),
    "not_run": ("The suite was not run.", "未執行測試套件。"),
    "col_try": ("Try", "嘗試"),
    "col_changes": ("Changed groups", "變動的群組"),
    "col_reasons": ("Why", "理由"),
    "statement_join": (" ", ""),  # between whole sentences: a space in English, nothing after a Chinese full stop
    "col_drift": ("Where the error enters (hidden-state drift by layer, its report)",
                  "誤差從哪裡進入（逐層隱藏狀態漂移，見其報告）"),
    "col_report": ("The suite's report", "測試套件報告"),
    "budget": ("Budget", "大小預算"),
    "english_names": ("", "模型名稱與備註由流程自動產生，為英文原文（與 recipe.json 相同），未翻譯。"),
    "suite_report": ("The suite's report of the chosen model (must-pass, perplexity, conversations, speed)",
                     "選定模型的測試套件報告（必須通過、perplexity、對話、速度）"),
    "side": ("Side by side", "並列比較"),
    "side_note": ("Every model is scored against the original on the same tokens, the evaluation slice, which neither "
                  "the importance matrix nor the solver saw. Each stock mix comes twice: as llama-quantize makes it "
                  "without an importance matrix, and with the recipe's. Sorted by file size (a recipe "
                  "with no file by the size it aimed at). KLD = mean KL divergence of the model's next-token "
                  "distribution from the original's (nats); Δ ln PPL = ln(PPL(model) / PPL(original)), shown also "
                  "as the perplexity change exp(Δ) − 1; 95% intervals over chunks. The chosen recipe is in bold.",
                  "所有模型都在相同 tokens 上與原始模型比較。依檔案大小排序（沒有產生檔案的量化設定依其目標大小）。"
                  "KLD = 模型的下一個 token 分佈相對於原始模型的平均 KL 散度（nats）；Δ ln PPL = ln(PPL(模型) / "
                  "PPL(原始))，並換算為 perplexity 變化 exp(Δ) − 1；95% 區間跨 chunk 計算。粗體為選定的量化設定。"
                  "所有模型皆在評估切片上評分，重要性矩陣與求解器都未見過這段文字。"
                  "每個內建組合出現兩次：llama-quantize "
                  "不用重要性矩陣的版本，以及使用本量化設定重要性矩陣的版本。"),
    "col_model": ("Model", "模型"),
    "col_kind": ("Kind", "類型"),
    "col_size": ("Size (MiB)", "大小（MiB）"),
    "col_bpw": ("Bits/weight", "每權重位元數"),
    "col_kld": ("Mean KLD (95% CI)", "平均 KLD（95% 信賴區間）"),
    "col_dln": ("Δ ln PPL (95% CI)", "Δ ln PPL（95% 信賴區間）"),
    "col_ppl": ("Perplexity change (95% CI)", "Perplexity 變化（95% 信賴區間）"),
    "col_top1": ("Top-1 same", "Top-1 相同"),
    "col_vs": ("Vs the stock mixes of its size (paired per chunk)", "對照同大小的內建組合（逐 chunk 成對）"),
    "col_note": ("Note", "備註"),
    "kind_stock": ("stock", "內建組合"),
    "kind_stock_imatrix": ("stock, imatrix", "內建組合，重要性矩陣"),
    "kind_recipe": ("recipe", "量化設定"),
    "kind_original": ("original", "原始模型"),
    "lower": ("lower than {name}: {a} vs {b}", "低於 {name}：{a} vs {b}"),
    "higher": ("higher than {name}: {a} vs {b}", "高於 {name}：{a} vs {b}"),
    "not_lower": ("not lower than {name}: {a} vs {b}", "未低於 {name}：{a} vs {b}"),
    "same": ("not told apart from {name}: {a} vs {b}", "與 {name} 無法區分：{a} vs {b}"),
    "vs_unmeasured": ("at {name}'s size, KLD not compared", "{name} 的大小，KLD 無法比較"),
    "chosen": ("chosen", "選定"),
    "additivity": ("Additivity check", "可加性檢查"),
    "add_how": ("The prediction is the largest placebo floor among the changed groups plus the sum of the chosen "
                "cells' excess KLD; its interval combines the cells' half-widths in quadrature, an approximation "
                "since every cell is measured on the same chunks. Both are on the selection slice, where the cells "
                "were measured. It agrees when the predicted and the measured intervals overlap.",
                "預測值為各變動群組中最大的安慰劑基準雜訊，加上所選 cell 超出 KLD 的總和；其區間以平方和開根號合併"
                "各 cell 的半寬，因所有 cell 都在相同 chunk 上測量，這只是近似。兩者皆在測量 cell 的選擇切片上。"
                "預測與實測區間重疊即視為相符。"),
    "col_pred": ("Predicted KLD (CI) = floor + Σ excess", "預測 KLD（信賴區間）= 基準雜訊 + Σ 超出量"),
    "col_meas": ("Measured KLD (95% CI)", "實測 KLD（95% 信賴區間）"),
    "bias": ("Selection bias", "選擇偏差"),
    "bias_note": ("Each recipe model's mean KLD on the chunks its assignment was chosen on (selection) against the "
                  "chunks nothing was chosen on (evaluation). The solver favours cells whose measurement came out "
                  "low, partly by chance, so a recipe model looks better on the selection chunks than it is (the "
                  "winner's curse). The plain stock mixes were chosen on nothing: their difference is how much harder "
                  "one text is than the other, the control. Difference = evaluation − selection, Welch 95% interval "
                  "(the slices are different chunks).",
                  "每個量化設定模型在選定其配置的 chunk（選擇切片）與未用於任何選擇的 chunk（評估切片）上的平均 KLD。"
                  "求解器偏好測量值偏低的 cell（部分出於偶然），"
                  "因此量化設定模型在選擇切片上看起來比實際好（贏家的詛咒）。"
                  "不使用重要性矩陣的內建組合未經任何選擇：其差異代表兩段文字的難度差，作為對照。差異 = 評估 − 選擇，"
                  "Welch 95% 區間（兩切片為不同 chunk）。"),
    "col_sel": ("Selection KLD (95% CI)", "選擇切片 KLD（95% 信賴區間）"),
    "col_eval": ("Evaluation KLD (95% CI)", "評估切片 KLD（95% 信賴區間）"),
    "col_diff": ("Evaluation − selection (95% CI)", "評估 − 選擇（95% 信賴區間）"),
    "col_ratio_es": ("Evaluation / selection", "評估 / 選擇"),
    "control": ("control", "對照"),
    "no_bias": ("No model was scored on both slices.", "沒有模型同時在兩個切片上評分。"),
    "col_ratio": ("Measured / predicted", "實測 / 預測"),
    "col_verdict": ("Verdict", "判定"),
    "agrees": ("agrees", "相符"),
    "misses": ("prediction misses by {diff} (measured {ratio}× predicted)",
               "預測偏差 {diff}（實測為預測的 {ratio} 倍）"),
    "misses_by": ("prediction misses by {diff}", "預測偏差 {diff}"),
    "no_interval": ("no interval: cannot tell", "無區間，無法判定"),
    "no_prediction": ("No recipe model has a prediction.", "沒有任何量化設定模型有預測值。"),
    "assignment": ("Chosen assignment: {name}", "選定的配置：{name}"),
    "no_chosen": ("No assignment: the recipe's own budget produced no model.",
                  "沒有配置：量化設定本身的預算未產生模型。"),
    "col_group": ("Group", "權重群組"),
    "col_format": ("Format", "格式"),
    "keep": ("keep (unchanged)", "保留（不變）"),
    "reproduce": ("Reproduce with llama-quantize", "以 llama-quantize 重現"),
    "reproduce_note": ("Run on the original model, with the tensor types file below saved as tensor_types.txt, this "
                       "command writes fakequant's mixed model byte for byte",
                       "在原始模型上執行此指令，並將下方權重型別檔存為 tensor_types.txt，即可逐位元組寫出與 fakequant "
                       "相同的混合模型"),
    "tested": (" (tested: ", "（已測試："),
    "tested_end": (").", "）。"),
    "types_file": ("Tensor types file (tensor_types.txt)", "權重型別檔（tensor_types.txt）"),
    "types_empty": ("(empty: every matrix ends up in the base type)", "（空白：所有矩陣皆為基礎型別）"),
    "cells": ("Measured cells", "已測量的 cell"),
    "cells_note": ("A cell is one group of tensors in one format, measured against the original. Floor = the "
                   "placebo's mean KLD (the same tensors nudged by one ulp); excess = the cell beyond its placebo, "
                   "paired per chunk, with its 95% interval; total = the cell's own mean KLD.",
                   "一個 cell 是一組權重使用一種格式，與原始模型比較。基準雜訊 = 安慰劑的平均 KLD（相同權重各微調一個 "
                   "ulp）；超出量 = 該 cell 超出安慰劑的部分，逐 chunk 成對計算，附 95% 區間；總 KLD = 該 cell 本身的"
                   "平均 KLD。"),
    "col_tensors": ("Tensors", "權重數"),
    "col_cell_size": ("Size (MiB)", "大小（MiB）"),
    "col_excess": ("Excess KLD (95% CI)", "超出 KLD（95% 信賴區間）"),
    "col_floor": ("Floor KLD", "基準雜訊 KLD"),
    "col_total": ("Total KLD", "總 KLD"),
    "col_cached": ("Cached", "取自快取"),
    "timing": ("Timing", "耗時"),
    "timing_line": ("{measured} cells measured, {cached} from the cache; wall time {wall} (importance matrix "
                    "{imatrix}, cells {cells}, scoring {scoring}, the suite {suite}).",
                    "測量 {measured} 個 cell，{cached} 個取自快取；總耗時 {wall}（重要性矩陣 {imatrix}，cell {cells}，"
                    "評分 {scoring}，測試套件 {suite}）。"),
    "pareto": ("Size against quality", "大小與品質"),
    "pareto_alt": ("File size against mean KLD and Δ ln PPL", "檔案大小與平均 KLD、Δ ln PPL 的關係"),
}


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **fields)`` in ``lang`` from :data:`WORDS`, else from the report's shared table."""
    column = 1 if lang == "zh-TW" else 0

    def t(key: str, **fields: object) -> str:
        text = (WORDS.get(key) or STRINGS[key])[column]
        return text.format(**fields) if fields else text

    return t
