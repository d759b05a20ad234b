"""Replay the first steps of committed head-to-head runs with today's code and compare them step by step.

    python benchmarks/replay_runs.py --runs docs/results/h2h --steps 20 --selectors gps gps-pool
    python benchmarks/replay_runs.py            # every selector with a committed seed-0 run

A change meant to keep trajectories (a faster kernel, a different but equivalent optimiser call) must
reproduce every step record of ``RUNS/runs/<selector>-seed0.jsonl``: the ESR, the mean reward and the
Spearman correlation, exactly. The env is rebuilt from ``RUNS/config.json`` (its engine included).

Each run's ``start`` line records torch's thread count (runs written since 4 December 2026); the replay takes
it, since some CPU kernels sum in an order that depends on it (GPS's PPM update among them: in the simulated
world, GPS on one thread and on two picks a different batch from step 23 at B = 256, N = 40,960, and from step
158 at B = 32, N = 20,000; 4 December 2026). ``--threads`` sets it for older runs.
Only on a machine whose floating-point kernels match the one that wrote the runs: elsewhere the warm-started
policy itself differs (on one 2-core machine the held-out accuracy at step 0 was 0.530 against the runs' 0.539)
and no step matches. ``benchmarks/compare_revisions.py`` compares two revisions on one machine instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gps_env.agents.registry import SELECTORS
from gps_env.bench.config import BenchConfig
from gps_env.bench.runs import build_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("docs/results/h2h"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--selectors", nargs="+", default=None, choices=list(SELECTORS),
                        help="default: every selector with a committed seed-0 run in RUNS")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for runs whose start line does not record them (default: torch's)")
    args = parser.parse_args()
    env = build_env(BenchConfig.from_json((args.runs / "config.json").read_text()))
    selectors = args.selectors or [s for s in SELECTORS if (args.runs / "runs" / f"{s}-seed0.jsonl").exists()]
    fallback = args.threads or torch.get_num_threads()  # for runs that do not record theirs
    for name in selectors:
        lines = (args.runs / "runs" / f"{name}-seed0.jsonl").read_text().splitlines()
        torch.set_num_threads(json.loads(lines[0]).get("torch_threads", fallback))
        records = [r for r in map(json.loads, lines) if r["type"] == "step"][: args.steps]
        agent = SELECTORS[name](env, 0)
        obs, _ = env.reset(seed=0)
        same = 0
        for record in records:
            obs, esr, _, _, info = env.step(agent.act(obs))
            now = (esr, info.get("mean_reward"), info.get("spearman"))
            same += now == (record["esr"], record["mean_reward"], record["spearman"])
        print(f"{name}: {same}/{len(records)} steps identical (torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
