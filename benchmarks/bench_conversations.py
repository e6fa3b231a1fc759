"""What the conversation battery costs beside the plan's prompts, in one process, side by side.

For one experiment (default ``layer5``), alternating for ``--rounds``:

- **plan**: the plan's prompts on the candidate, judged as ``test_conversation`` does (original's answers cached,
  fluency scored with the original): what conversations cost before the battery;
- **battery, cold**: the battery as ``test_conversation_battery`` runs it with empty answer caches: the candidate and
  K placebo twins answer every prompt the original passes;
- **battery, warm**: the same with the twins' answers cached (a rerun, or another format of the same tensors): only
  the candidate answers.

Models are loaded before the clock starts (the suite loads each once per process); the original's battery answers
are computed once first, as the suite caches them. Prints one Markdown table::

    .venv/bin/python benchmarks/bench_conversations.py --experiment layer5 --threads 1 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from fakequant.quant.candidate import build_candidate
from fakequant.quant.placebo import twin_of
from fakequant.runtime import chat
from fakequant.runtime import llama as runtime
from fakequant.suite import battery
from fakequant.suite import conversation as conv
from fakequant.suite.criteria import load_criteria
from fakequant.suite.criteria.battery import load_battery


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--criteria", default="criteria.toml")
    ap.add_argument("--experiment", default="layer5")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    exp = load_criteria(Path(args.criteria), threads=args.threads).experiments[args.experiment]
    settings, thresholds = exp.settings, exp.thresholds
    k = thresholds.battery_placebos
    cand_path = build_candidate(exp.model, exp.recipe).output
    twin_paths = [build_candidate(exp.model, twin_of(exp.recipe, seed=s)).output for s in range(k)]
    base = runtime.load_model(exp.model, settings)
    cand = runtime.load_model(cand_path, settings)
    twins = [runtime.load_model(p, settings) for p in twin_paths]
    prompts = load_battery()
    base_answers = battery.cached_answers(exp.model, settings, prompts, lambda: base)
    judged = battery.passing(prompts, base_answers, thresholds)
    plan_base = {p.id: chat.run_prompt(base, p) for p in exp.prompts}

    def plan() -> None:
        for p in exp.prompts:
            conv.evaluate(p, plan_base[p.id], chat.run_prompt(cand, p), thresholds,
                          lambda a, q: chat.token_logprobs(base, a, q))

    def battery_run(with_twins: bool) -> None:
        for bp in judged:
            chat.run_prompt(cand, bp.prompt)
            if with_twins:
                for twin in twins:
                    chat.run_prompt(twin, bp.prompt)

    times: dict[str, list[float]] = {"plan": [], "battery, cold": [], "battery, warm": []}
    runs = {"plan": plan, "battery, cold": lambda: battery_run(True), "battery, warm": lambda: battery_run(False)}
    for r in range(args.rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    med = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
    print(f"experiment {exp.name}, {len(exp.prompts)} plan prompts, battery {len(judged)} of {len(prompts)} prompts "
          f"passing on the original, K = {k} twins, {settings.n_threads} threads, {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| conversations | median s | min-max s | × plan |\n|---|---|---|---|")
    for name, v in times.items():
        print(f"| {name} | {med[name]:.1f} | {min(v):.1f}-{max(v):.1f} | {med[name] / med['plan']:.2f} |")
    for m in (base, cand, *twins):
        m.close()


if __name__ == "__main__":
    main()
