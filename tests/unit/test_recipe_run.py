"""The recipe pipeline: the prediction and the additivity check on known numbers, and one real run on the default
model (one group, two formats, no stock mix, no importance matrix) through a stand-in suite that passes it, then one
that stops it (the next try finds every assignment within the budget tried)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fakequant.recipe.measure import CellCost
from fakequant.recipe.plan import Choice
from fakequant.recipe.run import additivity, predict


def cell(group: str, fmt: str, floor: float, excess: float, half: float | None) -> CellCost:
    ci = (excess - half, excess + half) if half is not None else None
    return CellCost(group, fmt, 1, floor + excess, floor, excess, ci, 0.0, 4)


def choice(assignment: dict[str, str]) -> Choice:
    return Choice(assignment=assignment, formats={}, types={}, cost=0.0, file_bytes=0, bpw=0.0)


CELLS = {("a", "q4_0"): cell("a", "q4_0", 0.003, 0.010, 0.003), ("b", "q4_0"): cell("b", "q4_0", 0.001, 0.020, 0.004),
         ("c", "q4_0"): cell("c", "q4_0", 0.002, -0.001, 0.002)}


def test_prediction_is_the_largest_floor_plus_the_excess_with_quadrature_halfwidths():
    p = predict(choice({"a": "q4_0", "b": "q4_0", "c": "keep"}), CELLS)
    assert p["floor"] == 0.003 and p["excess_sum"] == pytest.approx(0.030) and p["cells"] == 2
    assert p["kld_mean"] == pytest.approx(0.033)
    assert p["kld_mean_ci"] == pytest.approx([0.033 - 0.005, 0.033 + 0.005])  # sqrt(0.003² + 0.004²)


def test_a_negative_excess_costs_nothing_and_keeping_everything_predicts_zero():
    p = predict(choice({"a": "keep", "b": "keep", "c": "q4_0"}), CELLS)
    assert p["excess_sum"] == 0.0 and p["kld_mean"] == pytest.approx(0.002)
    assert predict(choice({"a": "keep"}), CELLS)["kld_mean"] == 0.0


def test_additivity_agrees_on_overlap_and_says_by_how_much_it_misses():
    predicted = {"kld_mean": 0.033, "kld_mean_ci": [0.028, 0.038]}
    ok = additivity(predicted, {"kld_mean": 0.040, "kld_mean_ci": [0.036, 0.044]})
    assert ok["agrees"] and ok["miss"] == 0.0 and ok["ratio"] == pytest.approx(0.040 / 0.033)
    bad = additivity(predicted, {"kld_mean": 0.066, "kld_mean_ci": [0.060, 0.072]})
    assert not bad["agrees"] and bad["miss"] == pytest.approx(0.033) and bad["ratio"] == pytest.approx(2.0)
    assert not additivity(predicted, {"kld_mean": 0.03, "kld_mean_ci": None})["agrees"]  # one chunk: no claim



@pytest.mark.slow
def test_a_one_group_recipe_on_the_default_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  default_assets: tuple[Path, Path]) -> None:
    """ffn_down of every layer may go to q4_k or q2_k (both smaller than its Q4_1) under a budget only q2_k fits:
    the solver picks q2_k, the file keeps to the budget, the mixed model, which is that cell's candidate, measures
    exactly the cell's KLD on the selection chunks, and the suite is asked to test that very mix."""
    from fakequant.gguf.check import read_layout
    from fakequant.recipe.groups import plan_groups
    from fakequant.recipe.run import run_recipe
    from fakequant.suite.criteria import load_criteria

    model, corpus = default_assets
    monkeypatch.setenv("FAKEQUANT_HOME", str(tmp_path / "home"))  # cells measured here, not taken from a cache
    info = read_layout(model)
    ffn_down = [t for t in info.tensors if t.name.endswith("ffn_down.weight")]
    values = sum(t.nbytes * 32 // 20 for t in ffn_down)  # Q4_1: 20 bytes per 32 values
    saved_q4k, saved_q2k = (sum(t.nbytes for t in ffn_down) - values * per // 256 for per in (144, 84))
    budget = (info.path.stat().st_size - (saved_q4k + saved_q2k) // 2) / 2**20  # only q2_k fits
    (tmp_path / "criteria.toml").write_text(f"""
[defaults]
model = "{model}"
corpus = "{corpus}"
chunks = 2
[recipes.k]
kinds = ["ffn_down"]
group = "kind"
formats = ["q4_k", "q2_k"]
budget_mib = {budget!r}
imatrix = false
selection_chunks = 2
evaluation_chunks = 2
""")
    recipe = load_criteria(tmp_path / "criteria.toml").recipes["k"]
    assert [g.formats for g in plan_groups(info, recipe.selection, recipe.formats, "kind", source="t")] == \
        [("q4_k", "q2_k")]
    tested: list = []
    verdict = ["pass"]

    def suite(cmd: list[str], cwd: Path) -> int:
        """Stands in for `pytest --recipe k -k recipe_k` (the real suite takes minutes): records what it would test,
        the mix chosen from the cells this run cached, and a passing outcome for every check."""
        from fakequant.recipe.experiment import recipe_experiment
        from fakequant.suite.outcomes import CheckOutcome, record_outcome, save_artifact
        from fakequant.suite.session import experiment_record
        from fakequant.suite.verdict import expected_checks
        from fakequant.suite.vocab import CHECK_OF_TEST

        assert cmd[3:7] == ["--recipe", "k", "-k", "recipe_k"]
        exp = recipe_experiment(load_criteria(tmp_path / "criteria.toml").recipes["k"])
        tested.append(exp)
        record = experiment_record(exp)
        save_artifact(tmp_path / "reports", exp.name, "experiment", record)
        category = {check.split("[")[0]: category for check, category in CHECK_OF_TEST.values()}
        for check in expected_checks(record) or []:
            record_outcome(tmp_path / "reports", CheckOutcome(exp.name, check, category[check.split("[")[0]],
                                                              verdict[0], "measured"))
        return 0

    results = run_recipe(recipe, tmp_path / "out", stock=(), log=lambda _: None, criteria_path=tmp_path /
                         "criteria.toml", report_dir=tmp_path / "reports", runner=suite)
    assert dict(tested[0].recipe.mix) == {t.name: "q2_k" for t in ffn_down}  # the suite tests the chosen mix
    assert results["decision"]["decision"] == "GO"
    # the stand-in writes no summary.md, so no copy of it is named: the suite's own path stays
    assert results["decision"]["report"] == str(tmp_path / "reports" / "recipe_k" / "summary.md")
    cells = {c["format"]: c for c in results["cells"]}
    assert cells["q2_k"]["excess_kld_mean"] > cells["q4_k"]["excess_kld_mean"]  # 2 bits cost more than 4
    assert cells["q2_k"]["placebo_kld_mean"] == cells["q4_k"]["placebo_kld_mean"]  # one placebo per group
    [own] = [m for m in results["models"] if m["name"] == results["chosen"]]
    assert own["assignment"] == {"ffn_down": "q2_k"}
    assert own["file_bytes"] <= budget * 2**20
    # the same model on the same tokens as its cell: the selection chunks 0-1 (no calibration slice)
    assert math.isclose(own["selection"]["kld_mean"], cells["q2_k"]["kld_mean"], rel_tol=1e-9)
    assert own["additivity"]["agrees"]
    assert [s["tokens"] for s in results["slices"]] == [[0, 1024], [1024, 2048]]  # n_ctx 512
    # the bias's means are over chunks, the scores' over tokens of equal chunks: equal up to the order of summation
    assert math.isclose(own["bias"]["selection_kld_mean"], own["selection"]["kld_mean"], rel_tol=1e-12)
    assert math.isclose(own["bias"]["evaluation_kld_mean"], own["kld_mean"], rel_tol=1e-12)
    assert not math.isclose(own["kld_mean"], own["selection"]["kld_mean"], rel_tol=1e-6)  # other chunks
    assert results["passed"] == 1 and [t["decision"] for t in results["tries"]] == ["GO"]
    assert own["file_bytes"] == Path(own["path"]).stat().st_size  # the file the plan predicted is the one built
    from fakequant.quant.candidate import build_candidate

    suites = build_candidate(model, tested[0].recipe)  # what the suite builds for its experiment: that very file
    assert suites.reused and str(suites.output) == own["path"] and suites.output_bytes == own["file_bytes"]
    assert results["timing"]["cells_measured"] == 2
    written = json.loads((tmp_path / "out" / "recipe.json").read_text())
    assert written["chosen"] == results["chosen"] and written["decision"]["decision"] == "GO"
    assert "^blk\\.0\\.ffn_down\\.weight$=q2_k" in (tmp_path / "out" / "tensor_types.txt").read_text()
    again = run_recipe(recipe, tmp_path / "out", stock=(), log=lambda _: None, run_suite=False)
    assert again["timing"]["cells_measured"] == 0 and again["timing"]["cells_cached"] == 2
    assert again["decision"]["decision"] is None and len(tested) == 1
    # a suite that stops the pick: the next try excludes it, and nothing else fits the budget
    verdict[0] = "fail"
    stopped = run_recipe(recipe, tmp_path / "out", stock=(), log=lambda _: None, criteria_path=tmp_path /
                         "criteria.toml", report_dir=tmp_path / "reports", runner=suite)
    assert [t["decision"] for t in stopped["tries"]] == ["STOP", None] and stopped["passed"] is None
    assert stopped["tries"][1]["reasons"][0].endswith("was tried already (1)")
    assert "No try passed the suite (1 tried)" in (tmp_path / "out" / "recipe.md").read_text()
