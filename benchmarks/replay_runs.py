"""Replay the first steps of committed head-to-head runs with today's code and compare them step by step.

    python benchmarks/replay_runs.py --runs docs/results/h2h --steps 20 --selectors gps gps-pool
    python benchmarks/replay_runs.py            # every selector with a committed seed-0 run

A change meant to keep trajectories (a faster kernel, a different but equivalent optimiser call) must
reproduce every step record of ``RUNS/runs/<selector>-seed0.jsonl``: the ESR, the mean reward and the
Spearman correlation, exactly. The env is rebuilt from ``RUNS/config.json`` (its engine included).

Only on a machine whose floating-point kernels match the one that wrote the runs: elsewhere the warm-started
policy itself differs (on one 2-core machine the held-out accuracy at step 0 was 0.530 against the runs' 0.539)
and no step matches. ``benchmarks/compare_revisions.py`` compares two revisions on one machine instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gps_env.agents.registry import SELECTORS
from gps_env.bench.config import BenchConfig
from gps_env.bench.runs import build_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("docs/results/h2h"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--selectors", nargs="+", default=None, choices=list(SELECTORS),
                        help="default: every selector with a committed seed-0 run in RUNS")
    args = parser.parse_args()
    env = build_env(BenchConfig.from_json((args.runs / "config.json").read_text()))
    selectors = args.selectors or [s for s in SELECTORS if (args.runs / "runs" / f"{s}-seed0.jsonl").exists()]
    for name in selectors:
        lines = (args.runs / "runs" / f"{name}-seed0.jsonl").read_text().splitlines()
        records = [r for r in map(json.loads, lines) if r["type"] == "step"][: args.steps]
        agent = SELECTORS[name](env, 0)
        obs, _ = env.reset(seed=0)
        same = 0
        for record in records:
            obs, esr, _, _, info = env.step(agent.act(obs))
            now = (esr, info.get("mean_reward"), info.get("spearman"))
            same += now == (record["esr"], record["mean_reward"], record["spearman"])
        print(f"{name}: {same}/{len(records)} steps identical")


if __name__ == "__main__":
    main()
