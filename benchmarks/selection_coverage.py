"""How widely does each selector spread its batches over the pool? (coverage and concentration)

    python benchmarks/selection_coverage.py --world arithmetic --steps 150 --seed 0 --selectors gps gps-pool uniform

Runs each selector for ``--steps`` GRPO steps on an embedded world (``--world``) and prints how many distinct
prompts it picked, how often its favourite prompts were picked, and its share of picks per task against
the pool's share. Uniform is the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch
from tqdm.auto import tqdm

from gps_env import PromptSelectionEnv
from gps_env.agents.registry import SELECTORS
from gps_env.bench.config import DEFAULT_WORLD, WORLDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--world", choices=sorted(WORLDS), default=DEFAULT_WORLD)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--selectors", nargs="+", default=["gps", "gps-pool", "uniform"], choices=sorted(SELECTORS))
    args = parser.parse_args()
    torch.set_num_threads(1)  # the tiny policy is faster on one thread on a shared 2-core machine

    env = PromptSelectionEnv(batch_size=args.batch_size, max_steps=10**9, eval_every=0, progress=False,
                             engine=args.engine, **WORLDS[args.world])
    pool_tasks = collections.Counter(p.task for p in env.pool.problems)
    names = list(dict.fromkeys([*args.selectors, "uniform"]))
    print(f"{args.steps} steps, B={args.batch_size}, seed {args.seed}, pool of {len(env.pool)}: "
          + ", ".join(f"{t} {c / len(env.pool):.0%}" for t, c in sorted(pool_tasks.items())))
    print(f"{'selector':>14} {'distinct':>9} {'vs uniform':>10} {'top-5 picks':>22}  share of picks by task")
    baseline = None
    for name in reversed(names):  # uniform first, so the ratio column has its baseline
        agent = SELECTORS[name](env, args.seed)
        obs, _ = env.reset(seed=args.seed)
        counts: collections.Counter[int] = collections.Counter()
        for _ in tqdm(range(args.steps), desc=name, leave=False):
            action = agent.act(obs)
            counts.update(int(i) for i in np.asarray(action["prompts"] if isinstance(action, dict) else action))
            obs, *_ = env.step(action)
        by_task = collections.Counter(env.pool[i].task for i in counts.elements())
        total = sum(by_task.values())
        baseline = baseline or len(counts)
        top = ", ".join(str(c) for _, c in counts.most_common(5))
        print(f"{name:>14} {len(counts):>9} {len(counts) / baseline:>9.2f}x {top:>22}  "
              + ", ".join(f"{t} {by_task[t] / total:.0%}" for t in sorted(pool_tasks)))
    env.close()


if __name__ == "__main__":
    main()
