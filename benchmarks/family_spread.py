"""How tightly each task family clusters in WordLlama space: the distances the diversity terms of GPS read.

    python benchmarks/family_spread.py --world reasoning-gym --sample 3000

Embeds the world's training pool (cached, as the env does), draws ``--sample`` prompts and prints the mean
cosine distance (1 − cos) between prompts of one family and between families, and per family the mean
within-family distance and the mean distance to the nearest other prompt of the family. A max-min greedy
rewards a pick by its distance to the nearest pick, so a family whose texts vary (a large nearest-neighbour
distance) keeps earning diversity while a tight one earns it once.
"""

from __future__ import annotations

import argparse

import numpy as np

from gps_env.bench.config import WORLDS
from gps_env.policy import mixes
from gps_env.pool import PromptPool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(WORLDS), default="reasoning-gym")
    parser.add_argument("--sample", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = WORLDS[args.world]
    mix = mixes()[world["task_mix"]]
    problems, _ = mix.split(world["pool_size"], world["heldout_size"], 0)  # the env's pool (world seed 0)
    embeddings = PromptPool(problems, mix.tasks).embeddings
    tasks = np.array([p.task for p in problems])
    idx = np.random.default_rng(args.seed).choice(len(tasks), min(args.sample, len(tasks)), replace=False)
    d = 1.0 - embeddings[idx] @ embeddings[idx].T
    t = tasks[idx]
    same = t[:, None] == t[None, :]
    off = ~np.eye(len(idx), dtype=bool)
    print(f"{args.world}: {len(idx)} prompts of {len(tasks)}; mean cosine distance within a family "
          f"{d[same & off].mean():.3f}, between families {d[~same].mean():.3f}")
    for family in sorted(set(t)):
        m = t == family
        sub = d[np.ix_(m, m)]
        nearest = np.sort(sub, axis=1)[:, 1] if m.sum() > 1 else np.array([np.nan])
        print(f"  {family:26s} {m.sum():5d} prompts: within {sub[np.triu_indices(m.sum(), 1)].mean():.3f}, "
              f"nearest {nearest.mean():.3f}")


if __name__ == "__main__":
    main()
