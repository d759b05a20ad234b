"""GPS's premise, measured: does a prompt's text (its WordLlama embedding) predict its pass rate?

    python benchmarks/semantic_premise.py --world reasoning-gym
    python benchmarks/semantic_premise.py --world arithmetic

Pass rates of ``--prompts`` pool prompts are measured with ``--k`` samples under the initial policy. A
k-nearest-neighbour predictor over WordLlama embeddings (cosine, ``--neighbours``) sees the measured rates of
a random 75% and predicts the other 25%; the figure is the Spearman correlation between its predictions and
the held-back prompts' measured rates (mean and 95% interval over ``--splits`` random splits). For scale, two
references: the same split with the prompt's family mean (what knowing only the task gives) and with the
measurement noise ceiling (the Spearman between two independent k-sample measurements of the same prompts).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy import stats

from gps_env import PromptSelectionEnv
from gps_env.bench.config import WORLDS


def measure(env: PromptSelectionEnv, ids: np.ndarray, k: int, seed: int) -> np.ndarray:
    prompts = [env.pool[int(i)].prompt for i in ids]
    rollouts = env.engine.generate(prompts, k, env.sampling, torch.Generator().manual_seed(seed))
    rewards = [env.pool.verify(int(ids[r // k]), t) for r, t in enumerate(rollouts.texts)]
    return np.asarray(rewards, dtype=float).reshape(len(ids), k).mean(axis=1)


def knn_predict(emb_known: np.ndarray, rates_known: np.ndarray, emb_new: np.ndarray, neighbours: int) -> np.ndarray:
    similarity = emb_new @ emb_known.T
    nearest = np.argpartition(-similarity, neighbours, axis=1)[:, :neighbours]
    return rates_known[nearest].mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(WORLDS), default="reasoning-gym")
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--neighbours", type=int, default=10)
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--engine", default="auto")
    args = parser.parse_args()

    env = PromptSelectionEnv(eval_every=0, engine=args.engine, **WORLDS[args.world])
    env.reset(seed=0)
    ids = np.random.default_rng(0).choice(env.pool_size, size=min(args.prompts, env.pool_size), replace=False)
    rates = measure(env, ids, args.k, seed=1)
    again = measure(env, ids, args.k, seed=2)
    emb = env.pool.embeddings[ids]
    family = np.array([env.pool[int(i)].task for i in ids])
    rng = np.random.default_rng(3)
    knn, fam = [], []
    for _ in range(args.splits):
        order = rng.permutation(len(ids))
        known, new = order[: 3 * len(ids) // 4], order[3 * len(ids) // 4:]
        knn.append(stats.spearmanr(knn_predict(emb[known], rates[known], emb[new], args.neighbours),
                                   rates[new]).statistic)
        overall = float(rates[known].mean())  # a family absent from the known split gets the overall mean
        means = {f: float(rates[known][family[known] == f].mean()) for f in set(family[known])}
        fam.append(stats.spearmanr([means.get(f, overall) for f in family[new]], rates[new]).statistic)

    def show(name: str, values: list[float]) -> None:
        v = np.asarray(values)
        half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        print(f"{name:>44}: Spearman {v.mean():.3f} ± {half:.3f} (95% CI, {len(v)} splits)")

    print(f"{args.world}: {len(ids)} pool prompts, pass rates over k = {args.k}; mean {rates.mean():.3f}, "
          f"at 0 {np.mean(rates == 0):.2f}, at 1 {np.mean(rates == 1):.2f}")
    show(f"{args.neighbours}-NN over WordLlama embeddings", knn)
    show("family mean (knows the task only)", fam)
    print(f"{'noise ceiling (two independent measurements)':>44}: Spearman "
          f"{stats.spearmanr(rates, again).statistic:.3f}")


if __name__ == "__main__":
    main()
