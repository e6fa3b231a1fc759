"""Realistic recorded results without running a model: for the report's tests and for looking at a report quickly.

``fill(report_dir, "layer0", "noop")`` writes what the suite would record for one experiment (outcomes and the
artifacts of the shared contract) through :mod:`fakequant.suite.outcomes`. Scenarios: ``go``, ``caution``, ``stop``,
``inconclusive`` (the perplexity interval straddles the acceptable bound), ``noop`` (nothing changed, like layer0 on
SmolLM2), ``partial`` (only the must-pass checks ran), ``error`` (a check crashed). ``hostile=True`` puts Markdown
and HTML into every string that comes from the model file or the model.

Run ``python -m fakequant.report.sample reports-demo`` to render every scenario.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from fakequant.i18n import msg
from fakequant.quant.stats import TensorStats
from fakequant.suite import conversation, rules
from fakequant.suite.battery import ruling as battery_ruling
from fakequant.suite.criteria import Thresholds
from fakequant.suite.outcomes import CheckOutcome, record_outcome, save_artifact
from fakequant.suite.vocab import Artifact, Status

SCENARIOS = ("go", "caution", "stop", "inconclusive", "noop", "partial", "error")
PROMPT_IDS = ("english_intro", "chinese_intro", "math_zh")
HOSTILE = "blk.0.<script>alert(1)</script>|evil|`x`*_[a](javascript:x)\n# heading $x$"
# The placebo's share of the candidate's per-chunk effect: 1.0 = the format adds nothing beyond the floor (like
# BF16 on an early norm); None = a comparison run without a placebo (an older report).
_FLOOR_SHARE: dict[str, float | None] = {"go": 1.0, "caution": 0.25, "stop": 0.01, "inconclusive": 0.5, "noop": None,
                                         "partial": None, "error": None}
# (mean ln ratio, its SE, numerical error scale, conversation regression)
_SHAPES: dict[str, tuple[float, float, float, bool]] = {
    "go": (0.0012, 0.0009, 2e-3, False),
    "caution": (0.025, 0.003, 2e-2, False),
    "stop": (0.31, 0.02, 0.4, True),
    "inconclusive": (0.047, 0.012, 3e-2, False),
    "noop": (0.0, 0.0, 0.0, False),
    "partial": (0.0, 0.0, 1e-3, False),
    "error": (0.0012, 0.0009, 2e-3, False),
}


def _tensor(name: str, rng: np.random.Generator, scale: float, n: int = 576) -> dict[str, Any]:
    before = rng.normal(1.0, 0.25, n).astype(np.float32)
    after = before if scale == 0 else (before + rng.normal(0, scale, n) * np.abs(before)).astype(np.float32)
    diff = after.astype(np.float64) - before
    rel = np.abs(diff) / (np.abs(before) + 1e-8)
    edges = np.linspace(min(before.min(), after.min()), max(before.max(), after.max()), 61)
    err_edges = np.linspace(diff.min() - 1e-9, diff.max() + 1e-9, 61)
    signal = float(np.sum(before.astype(np.float64) ** 2))
    noise = float(np.sum(diff ** 2))
    q = {"0.0": float(before.min()), "0.5": float(np.median(before)), "1.0": float(before.max())}
    return {
        "name": name, "shape": [n], "source_type": "F32", "stored_type": "F32", "n": n,
        "changed": int(np.count_nonzero(diff)), "max_abs": float(np.abs(diff).max()),
        "mean_abs": float(np.abs(diff).mean()), "max_rel": float(rel.max()), "mean_rel": float(rel.mean()),
        "rmse": float(np.sqrt(np.mean(diff ** 2))), "sqnr_db": 10 * math.log10(signal / noise) if noise else math.inf,
        "cosine": float(np.dot(before, after) / (np.linalg.norm(before) * np.linalg.norm(after))),
        "nan_before": 0, "inf_before": 0, "nan_after": 0, "inf_after": 0,
        "quantiles_before": q, "quantiles_after": q,
        "histogram": {"edges": edges.tolist(), "before": np.histogram(before, edges)[0].tolist(),
                      "after": np.histogram(after, edges)[0].tolist()},
        "error_histogram": {"edges": err_edges.tolist(), "counts": np.histogram(diff, err_edges)[0].tolist()},
        "wasserstein": float(np.mean(np.abs(np.sort(before) - np.sort(after)))), "noop": scale == 0,
        "epsilon": 1e-8,
    }


def _stats(ln_ratio: float, se: float, kld: np.ndarray) -> dict[str, Any]:
    """The summary statistics of one model against the base, as runtime.paired writes them."""
    ppl_base, ppl_q = 6.7040, 6.7040 * math.exp(ln_ratio)
    return {
        "ppl_base": ppl_base, "ppl_base_se": 0.0612, "ppl_q": ppl_q, "ppl_q_se": 0.0612 * math.exp(ln_ratio),
        "ln_ppl_cor": 0.9991 if ln_ratio else 1.0, "ln_ppl_ratio": ln_ratio, "ln_ppl_ratio_se": se,
        "ppl_ratio": math.exp(ln_ratio), "ppl_ratio_se": se * math.exp(ln_ratio),
        "ppl_diff": ppl_q - ppl_base, "ppl_diff_se": se * ppl_base,
        "kld_mean": float(kld.mean()), "kld_se": float(kld.std() / math.sqrt(kld.size)),
        "kld_max": float(kld.max()), "kld_p999": float(np.quantile(kld, 0.999)),
        "kld_p99": float(np.quantile(kld, 0.99)),
        "kld_p90": float(np.quantile(kld, 0.9)), "kld_median": float(np.median(kld)),
        "kld_p10": float(np.quantile(kld, 0.1)), "kld_p05": float(np.quantile(kld, 0.05)),
        "kld_p01": float(np.quantile(kld, 0.01)), "kld_min": float(kld.min()),
        "dp_mean": -ln_ratio / 10, "dp_se": se / 10, "dp_rms": 0.01 + ln_ratio, "dp_rms_se": 0.0004,
        "same_top_p": 1.0 - min(0.5, 2 * ln_ratio), "same_top_p_se": 0.001 if ln_ratio else 0.0,
        "tokens": kld.size,
    }


def _comparison(ln_ratio: float, se: float, rng: np.random.Generator, chunks: int = 20) -> dict[str, Any]:
    base = rng.normal(6.7, 0.9, chunks).clip(3)
    cand = base * np.exp(ln_ratio + rng.normal(0, se * math.sqrt(chunks), chunks))
    kld = rng.gamma(0.4, 0.002 + 3 * ln_ratio, 256 * chunks) if ln_ratio else np.zeros(256 * chunks)
    edges = np.geomspace(1e-6, 10, 41)
    return {
        **_stats(ln_ratio, se, kld), "chunks": chunks,
        "per_chunk": {"ppl_base": base.tolist(), "ppl_q": cand.tolist(), "ln_ppl_ratio": np.log(cand / base).tolist(),
                      "kld_mean": kld.reshape(chunks, -1).mean(axis=1).tolist(), "same_top_p": [0.95] * chunks},
        "kld_hist": {"log10_edges": np.log10(edges).tolist(), "counts": np.histogram(kld, edges)[0].tolist()},
        "settings": {"n_ctx": 512, "n_batch": 512, "n_ubatch": 512, "n_threads": 2, "flash_attn": False},
        "nonfinite": None,
    }


def _with_placebo(pc: dict[str, Any], share: float, rng: np.random.Generator) -> dict[str, Any]:
    """Add a placebo twin whose per-chunk effect is ``share`` of the candidate's (1.0: the format adds nothing
    beyond the floor), and the excess as runtime.chunkstats computes it."""
    from fakequant.runtime.chunkstats import excess

    chunks, per_chunk = pc["chunks"], pc["per_chunk"]
    factor = (share * rng.normal(1.0, 0.05, chunks)).clip(0)  # the floor scatters from chunk to chunk as well
    kld = np.asarray(per_chunk["kld_mean"]) * factor
    ln = np.asarray(per_chunk["ln_ppl_ratio"]) * factor
    tokens = rng.gamma(0.4, 1.0, (chunks, 256))
    tokens *= (kld / tokens.mean(axis=1))[:, None]  # per-token KLDs with exactly these chunk means
    floor = {**_stats(share * pc["ln_ppl_ratio"], pc["ln_ppl_ratio_se"], tokens.ravel()), "chunks": chunks,
             "path": "/cache/candidates/placebo-abc.gguf"}
    base = np.asarray(per_chunk["ppl_base"])
    floor["per_chunk"] = {"ppl_base": base.tolist(), "ppl_q": (base * np.exp(ln)).tolist(), "ln_ppl_ratio": ln.tolist(),
                          "kld_mean": kld.tolist(), "same_top_p": [0.97] * chunks}
    agree = 1.0 - min(0.5, 2 * (1 - share) * pc["ln_ppl_ratio"]) - 0.01
    return {**pc, "placebo": floor, "excess": excess(per_chunk, floor["per_chunk"], same_top_p=agree)}


def _placebo_numerical(name: str) -> dict[str, Any]:
    """The placebo's own numerical analysis: one F32 ulp on every value."""
    return {"tensors": [{"name": name, "shape": [576], "source_type": "F32", "stored_type": "F32", "format": "placebo",
                         "n": 576, "changed": 576, "mean_rel": 5.96e-8, "max_rel": 1.19e-7,
                         "extra": {"nudged": 576, "nudge_rel_mean": 5.96e-8, "nudge_rel_max": 1.19e-7}}]}


def _side(text: str, rng: np.random.Generator) -> dict[str, Any]:
    return {"text": text, "token_ids": [int(x) for x in rng.integers(0, 49152, max(1, len(text) // 4))],
            "prompt_tokens": 9, "prompt_tokens_per_s": float(rng.normal(180, 5)),
            "gen_tokens_per_s": float(rng.normal(100, 3)), "nonfinite": None}


def _conversations(regression: bool, hostile: bool, rng: np.random.Generator) -> list[dict[str, Any]]:
    answer = "Hello! I'm SmolLM, an AI assistant.\nHow can I help?"
    if hostile:
        answer = "| a | b |\n|---|---|\n<img src=x onerror=alert(1)> **bold** ```code``` \x1b[31mred"
    convs = []
    for cid, prompt, temp in zip(PROMPT_IDS, ("Hello, can you introduce yourself?", "你好，請介紹一下自己。",
                                              "2+2等於多少？"), (0.7, 0.7, 0.1), strict=True):
        broken = regression and cid == "english_intro"
        cand = "the the the the the the the the" if broken else answer
        base_side, cand_side = _side(answer, rng), _side(cand, rng)
        if not broken:
            cand_side["token_ids"] = base_side["token_ids"]
        lang_ok = cid != "chinese_intro"  # the 135M model answers Chinese in English: a model limitation
        want = "en" if cid == "english_intro" else "zh"
        seen = msg("text.language", seen=[msg("text.language_turn", want=want, ratio=0.0)], min=0.2)
        checks = [{"name": "valid_text", "baseline_ok": True, "candidate_ok": True, "detail": msg("text.ok")},
                  {"name": "not_degenerate", "baseline_ok": True, "candidate_ok": not broken,
                   "detail": msg("text.repeated", share=0.88 if broken else 0.0, turn=1, limit=0.5)},
                  {"name": "language", "baseline_ok": lang_ok, "candidate_ok": lang_ok and not broken,
                   "detail": seen}]
        for check in checks:
            check["status"] = str(rules.judge(check["baseline_ok"], check["candidate_ok"]))
        status = str(rules.overall(Status(c["status"]) for c in checks))
        convs.append({"id": cid, "kind": "raw", "prompt": prompt, "params": {"temperature": temp, "seed": 42,
                                                                              "max_tokens": 50},
                      "baseline": base_side, "candidate": cand_side, "checks": checks, "exact_match": not broken,
                      "first_divergence": {"index": 0, "baseline_token": "Hello", "candidate_token": "the"}
                      if broken else None,
                      "fluency": {"baseline_ppl_of_baseline_answer": 3.1,
                                  "baseline_ppl_of_candidate_answer": 48.0 if broken else 3.1},
                      "status": status})
    convs.append({"id": "chat_multiturn", "kind": "chat",
                  "messages": [{"role": "system", "content": "You are a helpful assistant."},
                               {"role": "user", "content": "讓我們聊聊天吧。"},
                               {"role": "user", "content": HOSTILE if hostile else "What do you like?"}],
                  "params": {"temperature": 0.0, "seed": 42, "max_tokens": 30},
                  "baseline": {**_side(answer, rng), "turns": ["Sure! What about?", answer]},
                  "candidate": {**_side(answer, rng), "turns": ["Sure! What about?", answer]},
                  "checks": [{"name": "valid_text", "baseline_ok": True, "candidate_ok": True,
                              "detail": msg("text.ok"), "status": "pass"}],
                  "exact_match": True, "first_divergence": None, "fluency": {}, "status": "pass"})
    return convs


def _battery(regression: bool, prompts: int = 12, twins: int = 4) -> dict[str, Any]:
    """The battery's artifact judged by its own test: a regressed candidate breaks half the answers no twin breaks."""
    from fakequant.suite.rules.conversation import battery_test

    broke = [regression and i % 2 == 0 for i in range(prompts)]
    twin_broke = [[j == 0 and i == 1 for i in range(prompts)] for j in range(twins)]
    entries = [{"id": f"b{i + 1:02d}", "topic": "arithmetic", "turns": ["2+2?"], "original": ["4"],
                "original_passes": True, "original_failed": [], "candidate": ["the the the" if broke[i] else "4"],
                "candidate_broke": ["not_degenerate"] if broke[i] else [],
                "placebos": [["4"]] * twins, "placebos_broke": [["expectations"] if t[i] else [] for t in twin_broke]}
               for i in range(prompts)]
    test = battery_test(broke, twin_broke, 0.05)
    return {"prompts": entries, "seeds": list(range(1, twins + 1)), "template": "gguf", "test": test.to_json()}


def _speed(rng: np.random.Generator, slow: bool) -> dict[str, Any]:
    """Six A/A-calibrated rounds judged by the suite's own speed rule (a slow candidate: 20% fewer tokens/s)."""
    rounds, tolerance, alpha = 6, 0.1, 0.05

    def metric(center: float, factor: float, higher_better: bool) -> dict[str, Any]:
        base, again, cand = (rng.normal(c, c * 0.02, rounds).tolist() for c in (center, center, center * factor))
        return rules.speed_metric(base, cand, again, higher_better=higher_better, tolerance=tolerance, alpha=alpha)

    return {"rounds": rounds, "tolerance": tolerance, "alpha": alpha,
            "metrics": {"load_s": metric(0.12, 1.0, False), "prompt_tps": metric(180, 1.0, True),
                        "gen_tps": metric(100, 0.8 if slow else 1.0, True)}}


def fill(report_dir: Path, experiment: str, scenario: str = "go", *, hostile: bool = False, seed: int = 0) -> None:
    """Record one experiment's outcomes and artifacts as the suite would."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    rng = np.random.default_rng(seed)
    ln_ratio, se, scale, regression = _SHAPES[scenario]
    name = HOSTILE if hostile else "blk.0.ffn_norm.weight"
    fmt_name = {"stop": "int4", "caution": "fp8_e4m3", "inconclusive": "fp8_e5m2"}.get(scenario, "bf16")

    def out(check: str, category: str, status: Status | str, reason: str, **values: Any) -> None:
        record_outcome(report_dir, CheckOutcome(experiment, check, category, Status(status), reason, values))

    def ruled(check: str, category: str, ruling: rules.Ruling) -> None:
        out(check, category, ruling.status, ruling.reason, **ruling.values)

    recipe = {"selection": {"names": [name], "layers": [], "kinds": []}, "format": fmt_name, "group_size": None,
              "store": "f32", "epsilon": 1e-8}
    save_artifact(report_dir, experiment, Artifact.EXPERIMENT, {
        "name": experiment, "description": "the user's test 1" if not hostile else HOSTILE, "recipe": recipe,
        "thresholds": {"mean_rel_diff": 0.01, "max_rel_diff": 0.1, "ppl_increase_ideal": 0.01,
                       "ppl_increase_acceptable": 0.05},
        "settings": {"n_ctx": 512, "n_batch": 512, "n_ubatch": 512, "n_threads": 2, "flash_attn": False,
                     "type_k": "f16", "type_v": "f16", "seed": 42},
        "chunks": 20, "model": "/models/SmolLM2-135M-Instruct-Q4_1.gguf", "corpus": "/corpora/wiki.test.raw",
        "checks": ["must_pass", "numerical", "perplexity", "conversation", "speed"],
        "prompts": [{"id": cid} for cid in PROMPT_IDS], "model_sha256": "9" * 64, "corpus_sha256": "7" * 64,
        "llama_cpp_python": "0.3.36",
        # the STOP sample is a positive control that fails exactly what it names
        "expect": {"numerical": "fail", "perplexity": "fail", "conversation": "fail"} if scenario == "stop" else None})
    save_artifact(report_dir, experiment, Artifact.LOAD, {
        "baseline_load_s": 0.118, "candidate_load_s": 0.121,
        "quick_inference": {"prompt": "Hello", "text": HOSTILE if hostile else ", I'm a student", "token_ids": [1, 2],
                            "nonfinite": None}})
    save_artifact(report_dir, experiment, Artifact.FORMAT_CHECK, {"ok": True, "differences": []})
    # the must-pass checks through their rules, on stand-ins for what the suite measures (no model is loaded here)
    weights = [SimpleNamespace(name=name, n=576, changed=0 if scale == 0 else 576, nan_before=0, inf_before=0,
                               nan_after=0, inf_after=0)]
    quick: Any = SimpleNamespace(text=", I'm a student", token_ids=[1, 2, 3, 4, 5], prompt_tokens=2, nonfinite=None,
                                 stop_reason="length")
    ruled("build", "must_pass", rules.build(weights, fmt_name, scale == 0, False))  # type: ignore[arg-type]
    ruled("original_unchanged", "must_pass",
          rules.original_unchanged(Path("/models/SmolLM2-135M-Instruct-Q4_1.gguf"), "9" * 64, "9" * 64, 0.4))
    ruled("load", "must_pass", rules.load(quick, 0.121, "Hello"))
    ruled("finite", "must_pass", rules.finite(weights, quick))  # type: ignore[arg-type]
    ruled("format", "must_pass", rules.format_check([], 1))
    if scenario == "partial":
        return

    tensor = _tensor(name, rng, scale)
    save_artifact(report_dir, experiment, Artifact.NUMERICAL, {
        "output": "/cache/candidates/abc.gguf", "source": "/models/SmolLM2-135M-Instruct-Q4_1.gguf",
        "source_sha256": "9" * 64, "recipe": recipe, "noop": scale == 0, "tensors": [tensor]})
    ruled("numerical", "numerical", rules.numerical([TensorStats.from_json(tensor)], Thresholds(), 1e-8))

    pc = _comparison(ln_ratio, se, rng)
    share = _FLOOR_SHARE[scenario]
    if share is not None:  # its own generator: the other scenarios' numbers stay as they were
        pc = _with_placebo(pc, share, np.random.default_rng([seed, 1]))
        if scenario == "caution":
            pc["placebo_numerical"] = _placebo_numerical(name)
    save_artifact(report_dir, experiment, Artifact.PERPLEXITY, pc)
    if scenario == "error":
        out("perplexity", "perplexity", "error", "corpus.txt: tokenizes to 700 tokens, 1024 needed (2 × ctx 512)")
    else:
        ruled("perplexity", "perplexity", rules.perplexity(pc, Thresholds()))

    convs = _conversations(regression, hostile, rng)
    for conv in convs:  # the reason as the suite words it (before the artifact's JSON turns details into text)
        out(f"conversation[{conv['id']}]", "conversation", conv["status"], conversation.reason(conv))
    for conv in convs:
        for check in conv["checks"]:
            check["detail_message"] = check["detail"].to_json()
    save_artifact(report_dir, experiment, Artifact.CONVERSATIONS, convs)
    battery = _battery(regression)
    save_artifact(report_dir, experiment, Artifact.BATTERY, battery)
    ruled("conversation[battery]", "conversation", battery_ruling(battery))
    speed = _speed(rng, slow=scenario == "caution")
    save_artifact(report_dir, experiment, Artifact.SPEED, speed)
    ruled("speed", "speed", rules.speed({**speed, "measured_by": "sample"}))
    save_artifact(report_dir, experiment, Artifact.PROVENANCE, {
        "model_path": "/models/SmolLM2-135M-Instruct-Q4_1.gguf", "model_sha256": "9" * 64,
        "corpus_path": "/corpora/wiki.test.raw", "corpus_sha256": "7" * 64, "criteria_path": "criteria.toml",
        "packages": {"llama-cpp-python": "0.3.36", "gguf": "0.19.0", "numpy": "2.4.6"},
        "llama_build": {"version": "b0000", "system_info": "AVX2 = 1 | FMA = 1"},
        "settings": {"n_ctx": 512, "n_batch": 512, "n_ubatch": 512, "n_threads": 2, "flash_attn": False,
                     "type_k": "f16", "type_v": "f16", "seed": 42},
        "machine": {"cpu": "x86_64", "cores": 2, "os": "Linux", "python": "3.11.2"},
        "date": "2025-07-15T10:00:00+00:00", "general.name": HOSTILE if hostile else "SmolLM2 135M Instruct"})


def main(argv: list[str]) -> int:
    from fakequant.report import finish_run, terminal_lines

    report_dir = Path(argv[0] if argv else "reports-demo")
    names = [*SCENARIOS, "hostile"]
    for scenario in SCENARIOS:
        fill(report_dir, scenario, scenario)
    fill(report_dir, "hostile", "go", hostile=True)
    lang = argv[1] if len(argv) > 1 else "en"
    print("\n".join(terminal_lines(finish_run(report_dir, names, lang=lang), lang)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
