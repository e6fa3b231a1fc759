"""The recipe report: the side-by-side table sorted by size with its numbers, the additivity verdicts, the zh-TW twin,
the Pareto plot, and a results dict with nothing measured. Expected strings are written out by hand."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from fakequant.report.recipe import write_recipe_report

MIB = 1 << 20
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _stock(name: str, mib: float, bpw: float, kld: float, ci: list[float], dln: float, dln_ci: list[float],
           top1: float, note: str | None = None) -> dict[str, Any]:
    return {"name": name, "kind": "stock", "file_bytes": int(mib * MIB), "bpw": bpw, "kld_mean": kld,
            "kld_mean_ci": ci, "ln_ppl_ratio": dln, "ln_ppl_ratio_ci": dln_ci, "same_top_p": top1,
            "command": f"llama-quantize --allow-requantize SRC DST {name}", "note": note}


def _recipe(name: str, vs: str | None, budget_mib: float, mib: float | None, **numbers: Any) -> dict[str, Any]:
    row = {"name": name, "kind": "recipe", "budget_bytes": int(budget_mib * MIB),
           "file_bytes": None if mib is None else int(mib * MIB), "bpw": None, "kld_mean": None, "kld_mean_ci": None,
           "ln_ppl_ratio": None, "ln_ppl_ratio_ci": None, "same_top_p": None, "predicted": None, "assignment": None,
           "command": None, "vs": vs, "note": None}
    row.update(numbers)
    return row


def results() -> dict[str, Any]:
    types = "^blk\\.0\\.attn_q\\.weight$=q4_0\n^blk\\.0\\.ffn_down\\.weight$=q4_1\n"
    command = "llama-quantize --allow-requantize --pure --tensor-type-file tensor_types.txt SRC DST Q4_0"
    models = [  # deliberately not in size order
        {**_stock("Q4_K_M", 100.5, 4.9, 0.05, [0.04, 0.06], 0.03, [0.02, 0.04], 0.9), "mix": "Q4_K_M",
         "variant": "plain", "bias": {"selection_kld_mean": 0.045, "selection_kld_mean_ci": [0.04, 0.05],
                                      "evaluation_kld_mean": 0.05, "evaluation_kld_mean_ci": [0.04, 0.06],
                                      "difference": 0.005, "difference_ci": [-0.004, 0.014], "ratio": 1.11}},
        {**_stock("Q4_K_M (imatrix)", 100.5625, 4.9, 0.032, [0.028, 0.036], 0.02, [0.015, 0.025], 0.93),
         "mix": "Q4_K_M", "variant": "imatrix"},
        _stock("Q2_K", 72.0, 3.1, 0.4, [0.35, 0.45], 0.25, [0.2, 0.3], 0.62),
        _stock("Q8_0", 138.25, 8.5, 0.0004, [0.0003, 0.0005], 0.0002, [-0.0004, 0.0008], 0.995,
               note="requantized from Q4_1 | no imatrix"),
        _stock("Q4_0", 87.25, 4.5, 0.08, [0.07, 0.09], 0.05, [0.04, 0.06], 0.85),
        _stock("Q3_K_M", 88.5, 4.2, 0.12, [0.1, 0.14], 0.08, [0.06, 0.1], 0.8),
        _stock("Q5_K_M", 107.0, 5.7, 0.01, [0.008, 0.012], 0.006, [0.004, 0.008], 0.95),
        _recipe("recipe @ Q4_K_M size", "Q4_K_M", 100.5, 100.25, bpw=4.85, kld_mean=0.03, kld_mean_ci=[0.025, 0.035],
                ln_ppl_ratio=0.018, ln_ppl_ratio_ci=[0.01, 0.026], same_top_p=0.92,
                predicted={"kld_mean": 0.028, "kld_mean_ci": [0.02, 0.036], "floor": 0.003, "excess_sum": 0.025},
                assignment={"attn_q": "q4_0", "ffn_down": "keep"},
                vs_stock=[{"name": "Q4_K_M", "kld_mean": 0.05, "difference": -0.02, "difference_ci": [-0.025, -0.015]},
                          {"name": "Q4_K_M (imatrix)", "kld_mean": 0.032, "difference": -0.002,
                           "difference_ci": [-0.006, 0.002]}]),
        _recipe("recipe @ Q2_K size", "Q2_K", 72.0, None,
                note="infeasible: the smallest this recipe reaches is 74.0 MiB"),
        _recipe("recipe @ Q4_0 size", "Q4_0", 87.25, 87.0, bpw=4.4, kld_mean=0.09, kld_mean_ci=[0.08, 0.1],
                ln_ppl_ratio=-0.01, ln_ppl_ratio_ci=[-0.02, 0.0], same_top_p=0.84,
                predicted={"kld_mean": 0.05, "kld_mean_ci": [0.045, 0.055], "floor": 0.004, "excess_sum": 0.046},
                assignment={"attn_q": "q4_0", "ffn_down": "q4_0"}),
        _recipe("recipe (budget_mib = 80)", None, 80.0, 79.75, bpw=3.9, kld_mean=0.2, kld_mean_ci=[0.18, 0.22],
                ln_ppl_ratio=0.1, ln_ppl_ratio_ci=[0.09, 0.11], same_top_p=0.7,
                predicted={"kld_mean": 0.19, "kld_mean_ci": None, "floor": 0.004, "excess_sum": 0.186},
                assignment={"attn_q": "q4_0", "ffn_down": "q4_1", "output": "keep"}, command=command,
                selection={"kld_mean": 0.15, "kld_mean_ci": [0.14, 0.16]},
                bias={"selection_kld_mean": 0.15, "selection_kld_mean_ci": [0.14, 0.16], "evaluation_kld_mean": 0.2,
                      "evaluation_kld_mean_ci": [0.18, 0.22], "difference": 0.05, "difference_ci": [0.03, 0.07],
                      "ratio": 1.333}),
    ]
    cells = [
        {"group": "attn_q", "format": "q4_0", "tensors": 30, "bytes": int(5.25 * MIB), "kld_mean": 0.01,
         "placebo_kld_mean": 0.003, "excess_kld_mean": 0.007, "excess_kld_mean_ci": [0.005, 0.009],
         "ln_ppl_ratio": 0.004, "cached": False},
        {"group": "ffn_down", "format": "q4_1", "tensors": 30, "bytes": int(15.5 * MIB), "kld_mean": 0.04,
         "placebo_kld_mean": 0.004, "excess_kld_mean": 0.036, "excess_kld_mean_ci": [0.03, 0.042],
         "ln_ppl_ratio": 0.02, "cached": True},
    ]
    return {
        "recipe": "kinds", "description": "attention and MLP matrices | one format per kind",
        "model": "/models/SmolLM2-135M-Instruct.Q4_1.gguf", "model_bytes": 98343104,
        "corpus": "/data/brown.txt", "n_ctx": 512, "budget": "budget_mib = 80",
        "slices": [{"name": "calibration", "corpus": "/data/brown.txt", "first_chunk": 0, "chunks": 8, "n_ctx": 512,
                    "tokens": [0, 4096]},
                   {"name": "selection", "corpus": "/data/brown.txt", "first_chunk": 8, "chunks": 4, "n_ctx": 512,
                    "tokens": [4096, 6144]},
                   {"name": "evaluation", "corpus": "/data/brown.txt", "first_chunk": 12, "chunks": 8, "n_ctx": 512,
                    "tokens": [6144, 10240]}],
        "imatrix": {"path": "/cache/imatrix/abc.gguf", "sha256": "abcdef0123456789" * 4, "chunks": 8,
                    "tokens": [0, 4096]},
        "suite_chunks": 10, "max_tries": 3, "passed": 1,
        "tries": [{"attempt": 1, "name": "recipe (budget_mib = 80)", "decision": "CAUTION",
                   "assignment": {"attn_q": "q4_0", "ffn_down": "q4_1", "output": "keep"},
                   "reasons": ["mean KLD 0.2 above the caution bound 0.1"], "report": "/r/try-1/summary.md"}],
        "cells": cells, "models": models, "chosen": "recipe (budget_mib = 80)", "command": command,
        "tensor_types": types,
        "decision": {"decision": "CAUTION", "reasons": ["mean KLD 0.2 above the caution bound 0.1"]},
        "timing": {"cells_measured": 30, "cells_cached": 4, "wall_s": 812.3, "cells_wall_s": 700.1,
                   "scoring_wall_s": 9.5, "imatrix_wall_s": 41.0, "suite_wall_s": 61.0},
    }


def _section(md: str, heading: str) -> str:
    start = md.index(heading)
    end = md.find("\n#", start + len(heading))
    return md[start:end if end >= 0 else None]


def _rows(section: str) -> list[list[str]]:
    """The body rows of the first table in ``section``, split on unescaped pipes."""
    lines = [line for line in section.splitlines() if line.startswith("| ")][2:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_side_by_side_is_sorted_by_size_with_its_numbers(tmp_path: Path) -> None:
    paths = write_recipe_report(results(), tmp_path / "out")
    assert set(paths) == {"json", "md", "md_zh", "png"} and all(p.parent == tmp_path / "out" for p in paths.values())
    md = paths["md"].read_text()
    rows = _rows(_section(md, "## Side by side"))
    names = [r[0].replace("\\_", "_").strip("*") for r in rows]
    assert names == ["Q2_K", "recipe @ Q2_K size", "recipe (budget_mib = 80) (chosen)", "recipe @ Q4_0 size", "Q4_0",
                     "Q3_K_M", "SmolLM2-135M-Instruct.Q4_1.gguf", "recipe @ Q4_K_M size", "Q4_K_M",
                     "Q4_K_M (imatrix)", "Q5_K_M", "Q8_0"]
    sizes = [r[2].strip("*") for r in rows]
    assert sizes == ["72.00", "—", "79.75", "87.00", "87.25", "88.50", "93.79", "100.25", "100.50", "100.56",
                     "107.00", "138.25"]
    by_name = dict(zip(names, rows, strict=True))
    assert by_name["Q4_K_M"][1:9] == ["stock", "100.50", "4.90", "0.0500 (0.0400 … 0.0600)",
                                      "+0.0300 (+0.0200 … +0.0400)", "+3.05% (+2.02% … +4.08%)", "90.00%", "—"]
    assert by_name["Q4_K_M (imatrix)"][1] == "stock, imatrix"
    recipe = by_name["recipe @ Q4_K_M size"]
    # a side is claimed only where the paired interval is on it: lower than the plain mix, not told apart from the
    # imatrix one (its difference's interval holds 0)
    assert recipe[4] == "0.0300 (0.0250 … 0.0350)" and recipe[8] == ("lower than Q4\\_K\\_M: 0.030 vs 0.050; not told "
                                                                     "apart from Q4\\_K\\_M (imatrix): 0.030 vs 0.032")
    assert by_name["recipe @ Q4_0 size"][5] == "-0.0100 (-0.0200 … 0.0000)"
    assert by_name["recipe @ Q4_0 size"][8] == "not lower than Q4\\_0: 0.090 vs 0.080"
    infeasible = by_name["recipe @ Q2_K size"]
    assert infeasible[2:8] == ["—"] * 6 and infeasible[8] == "at Q2\\_K's size, KLD not compared"
    assert infeasible[9] == "infeasible: the smallest this recipe reaches is 74.0 MiB"
    assert by_name["Q8_0"][9] == "requantized from Q4\\_1 \\| no imatrix"  # the pipe stays inside its cell
    assert by_name["Q8_0"][4] == "0.000400 (0.000300 … 0.000500)"
    chosen = by_name["recipe (budget_mib = 80) (chosen)"]
    assert chosen[0] == "**recipe (budget\\_mib = 80) (chosen)**" and chosen[2] == "**79.75**"
    assert chosen[4] == "**0.200 (0.180 … 0.220)**" and chosen[8] == "—"
    assert "**Decision:** ⚠️ CAUTION" in md and "- mean KLD 0.2 above the caution bound 0.1" in md
    assert "`SmolLM2-135M-Instruct.Q4_1.gguf` (93.8 MiB)" in md
    slices = _section(md, "## Text slices (chunks of 512 tokens, none shared)")
    assert "- **calibration (importance matrix):** chunks 0–7 of brown.txt, tokens \\[0, 4096)" in slices
    assert "- **selection (cells measured, assignment chosen):** chunks 8–11 of brown.txt, tokens \\[4096, 6144)" \
        in slices
    assert "- **evaluation (every model in the tables below):** chunks 12–19 of brown.txt, tokens \\[6144, 10240)" \
        in slices
    assert "importance matrix: abc.gguf (sha256 abcdef012345), 8 chunks" in slices
    assert "the suite's perplexity check of each try: 10 chunks of brown.txt from chunk 12 on" in slices
    assert "**Try 1 passed the suite (CAUTION): the model this report leads with.**" in md
    assert "attention and MLP matrices \\| one format per kind" in md
    assert "![File size against mean KLD and Δ ln PPL](pareto.png)" in md
    assert ("30 cells measured, 4 from the cache; wall time 812.3 s (importance matrix 41.0 s, cells 700.1 s, "
            "scoring 9500 ms, the suite 61.0 s).") in md
    assert not list((tmp_path / "out").glob(".*.tmp-*"))  # written through temporaries, none left over


def test_additivity_agrees_when_intervals_overlap_and_misses_when_not(tmp_path: Path) -> None:
    md = write_recipe_report(results(), tmp_path)["md"].read_text()
    section = _section(md, "## Additivity check")
    assert "largest placebo floor" in section and "in quadrature" in section
    rows = {r[0].replace("\\_", "_"): r[1:] for r in _rows(section)}
    assert set(rows) == {"recipe @ Q4_0 size", "recipe (budget_mib = 80)", "recipe @ Q4_K_M size"}
    assert rows["recipe @ Q4_K_M size"] == ["0.0280 (0.0200 … 0.0360) = 0.00300 + 0.0250", "0.0300 (0.0250 … 0.0350)",
                                            "1.07", "agrees"]
    assert rows["recipe @ Q4_0 size"] == ["0.0500 (0.0450 … 0.0550) = 0.00400 + 0.0460", "0.090 (0.080 … 0.100)",
                                          "1.80", "prediction misses by +0.040 (measured 1.80× predicted)"]
    # measured on the selection slice, where the cells were: 0.15, not the evaluation slice's 0.2
    assert rows["recipe (budget_mib = 80)"][1:] == ["0.150 (0.140 … 0.160)", "0.79", "no interval: cannot tell"]


def test_assignment_command_and_cells(tmp_path: Path) -> None:
    data = results()
    md = write_recipe_report(data, tmp_path)["md"].read_text()
    section = _section(md, "## Chosen assignment")
    assert _rows(section) == [["`attn_q`", "`q4_0`"], ["`ffn_down`", "`q4_1`"], ["`output`", "keep (unchanged)"]]
    assert f"```text\n{data['command']}\n```" in md
    assert f"```text\n{data['tensor_types'].rstrip()}\n```" in md
    assert "byte for byte (tested: `tests/unit/test_recipe_command.py::test_command_reproduces_the_mixed_model_" in md
    cells = _rows(_section(md, "## Measured cells"))
    assert cells == [["`attn_q`", "`q4_0`", "30", "5.25", "0.00700 (0.00500 … 0.00900)", "0.00300", "0.0100", "no"],
                     ["`ffn_down`", "`q4_1`", "30", "15.5", "0.0360 (0.0300 … 0.0420)", "0.00400", "0.0400", "yes"]]
    assert json.loads((tmp_path / "recipe.json").read_text()) == data
    assert (tmp_path / "recipe.json").read_text().startswith('{\n "budget": "budget_mib = 80",\n "cells": [')


def test_zh_tw_has_the_same_numbers_and_chinese_headings(tmp_path: Path) -> None:
    paths = write_recipe_report(results(), tmp_path)
    en, zh = paths["md"].read_text(), paths["md_zh"].read_text()
    for heading in ("# 混合精度量化設定：kinds", "## 並列比較", "## 可加性檢查", "## 選定的配置", "## 已測量的 cell",
                    "## 耗時", "## 決策與理由"):
        assert heading in zh
    assert "**決策:** ⚠️ 謹慎繼續 (CAUTION)" in zh
    assert "低於 Q4\\_K\\_M：0.030 vs 0.050" in zh and "未低於 Q4\\_0：0.090 vs 0.080" in zh
    assert "預測偏差 +0.040（實測為預測的 1.80 倍）" in zh and "| 相符 |" in zh
    zh_rows, en_rows = _rows(_section(zh, "## 並列比較")), _rows(_section(en, "## Side by side"))
    assert [r[2:8] for r in zh_rows] == [r[2:8] for r in en_rows]  # sizes, bits/weight, KLD, Δ, PPL, top-1

    def numbers(text: str) -> list[str]:
        return sorted(re.findall(r"[+-]?\d+(?:\.\d+)?(?:e[+-]\d+)?%?", text))

    assert numbers(zh) == numbers(en)


def test_pareto_png(tmp_path: Path) -> None:
    png = write_recipe_report(results(), tmp_path)["png"]
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000


def _nothing(value: Any) -> Any:
    """``value`` with every number (and every interval) replaced by None."""
    if isinstance(value, dict):
        return {k: _nothing(v) for k, v in value.items()}
    if isinstance(value, list):
        return None if all(isinstance(v, int | float) for v in value) else [_nothing(v) for v in value]
    return None if isinstance(value, int | float) and not isinstance(value, bool) else value


def test_every_number_none_still_writes_every_file(tmp_path: Path) -> None:
    data = _nothing(results())
    data["decision"] = {"decision": None, "reasons": []}
    paths = write_recipe_report(data, tmp_path / "none")
    assert all(p.is_file() for p in paths.values())
    md, zh = paths["md"].read_text(), paths["md_zh"].read_text()
    assert "None" not in md and "nan" not in md and "None" not in zh
    assert "**Decision:** not measured" in md and "**決策:** 未測量" in zh
    assert paths["png"].read_bytes().startswith(PNG_MAGIC)
    rows = _rows(_section(md, "## Additivity check"))
    assert rows and all(r[1:] == ["—", "—", "—", "not measured"] for r in rows)


def test_selection_bias_and_its_control(tmp_path: Path) -> None:
    md = write_recipe_report(results(), tmp_path)["md"].read_text()
    section = _section(md, "## Selection bias")
    assert "winner's curse" in section
    rows = {r[0].replace("\\_", "_"): r[1:] for r in _rows(section)}
    assert rows == {"recipe (budget_mib = 80)": ["0.150 (0.140 … 0.160)", "0.200 (0.180 … 0.220)",
                                                 "+0.0500 (+0.0300 … +0.0700)", "1.33"],
                    "Q4_K_M (control)": ["0.0450 (0.0400 … 0.0500)", "0.0500 (0.0400 … 0.0600)",
                                         "+0.0050 (-0.0040 … +0.0140)", "1.11"]}


def test_tries_when_none_passed(tmp_path: Path) -> None:
    data = results()
    data["passed"] = None
    data["tries"] = [
        {"attempt": 1, "name": "recipe (budget_mib = 80)", "decision": "STOP", "assignment": {"attn_q": "q4_0"},
         "reasons": ["conversation[chat_zh]: invalid UTF-8"], "report": "/r/try-1/summary.md",
         "drift": {"growth_of": "excess", "first_resolved": "l_out-3", "chunks": 4,
                   "largest_growth": {"layer": "l_out-7", "by": 0.0123}, "problems": []}},
        {"attempt": 2, "name": "recipe (budget_mib = 80), try 2", "decision": "INCONCLUSIVE",
         "assignment": {"attn_q": "keep", "ffn_down": "q4_1"}, "reasons": ["perplexity: interval holds the bound"]},
        {"attempt": 3, "name": None, "decision": None, "reasons": ["every assignment within budget_mib = 80 was "
                                                                   "tried already (2)"]}]
    data["decision"] = data["tries"][0]
    paths = write_recipe_report(data, tmp_path)
    md, zh = paths["md"].read_text(), paths["md_zh"].read_text()
    assert "**No try passed the suite (2 tried): no assignment within this budget is a model to ship." in md
    assert "2 次嘗試皆未通過測試套件" in zh
    rows = _rows(_section(md, "## Tries through the suite"))
    assert [r[:4] for r in rows] == [["1", "recipe (budget\\_mib = 80)", "attn\\_q → q4\\_0", "STOP"],
                                     ["2", "recipe (budget\\_mib = 80), try 2", "ffn\\_down → q4\\_1", "INCONCLUSIVE"],
                                     ["3", "—", "—", "not measured"]]
    assert rows[0][4] == "conversation\\[chat\\_zh\\]: invalid UTF-8" and rows[0][6] == "`/r/try-1/summary.md`"
    # where the error enters, from the try's own report: its statements, or a dash for a try without drift
    assert rows[0][5] == ("First layer whose excess is resolved above zero: l\\_out-3. Largest growth (of the "
                          "excess): l\\_out-7 (+1.230e-02).")
    assert rows[1][5] == "—"
    assert "超出量首次確定大於零的層：l\\_out-3。增長最大" in zh


def test_all_recipes_infeasible_and_no_chosen_model(tmp_path: Path) -> None:
    data = results()
    data["models"] = [copy.deepcopy(m) for m in data["models"] if m["kind"] == "stock"]
    data["models"].append(_recipe("recipe @ Q2_K size", "Q2_K", 72.0, None, note="infeasible: 74.0 MiB"))
    data.update(chosen=None, command=None, tensor_types=None)
    paths = write_recipe_report(data, tmp_path)
    md = paths["md"].read_text()
    assert "No recipe model has a prediction." in md and "No assignment" in md
    assert paths["png"].read_bytes().startswith(PNG_MAGIC)
