"""Where an env step's time goes: generate / verify / update / everything else.

    python benchmarks/env_step.py --world arithmetic --batch-size 16 --k 8 --steps 40
    python benchmarks/env_step.py --world reasoning-gym --batch-size 32 --k 8 --engine transformers

The Reasoning Gym world's target is at most 1 s per step at B = 32, k = 8 on 2 cores.

"Everything else" is the wall time of ``env.step`` minus the three phases: action validation, history
and observation bookkeeping, weight sync to the engine is part of ``update``. Target: at most 5% of a step.
The baseline for the ratio is the step itself, measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gps_env import PromptSelectionEnv
from gps_env.agents import Uniform
from gps_env.bench.config import DEFAULT_WORLD, WORLDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--world", choices=sorted(WORLDS), default=DEFAULT_WORLD)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--policy", type=Path, default=None, help="a policy directory (default: the world's)")
    args = parser.parse_args()
    env = PromptSelectionEnv(batch_size=args.batch_size, rollouts_per_prompt=args.k,
                             max_steps=args.steps + args.warmup, eval_every=0, time_in_info=True,
                             engine=args.engine, policy=args.policy, **WORLDS[args.world])
    agent = Uniform(env, seed=0)
    obs, _ = env.reset(seed=0)
    rows = []
    for i in range(args.steps + args.warmup):
        action = agent.act(obs)
        start = time.perf_counter()
        obs, _, _, _, info = env.step(action)
        wall = time.perf_counter() - start
        t = info["time"]
        if i >= args.warmup:
            phases = t["generate"] + t["verify"] + t["update"]
            rows.append([wall, t["generate"], t["verify"], t["update"], wall - phases])
    med = np.median(np.array(rows), axis=0)
    mean = np.mean(np.array(rows), axis=0)
    print(f"env step, {args.world} world, {type(env.engine).__name__}, B={args.batch_size}, k={args.k}, "
          f"{args.steps} steps after {args.warmup} warm-up (seconds)")
    print(f"{'phase':>10} {'median':>8} {'mean':>8} {'share of step':>14}")
    for name, m, a in zip(["step", "generate", "verify", "update", "other"], med, mean):
        print(f"{name:>10} {m:>8.4f} {a:>8.4f} {a / mean[0]:>13.1%}")
    print(f"rollouts/s {args.batch_size * args.k / mean[0]:.0f}; other/step = {mean[4] / mean[0]:.2%} (target <= 5%)")


if __name__ == "__main__":
    main()
