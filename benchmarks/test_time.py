"""Test-time allocation with a trained PPM against uniform allocation, on the embedded world's held-out set.

    python benchmarks/test_time.py --train-steps 100 --seed 0
    python benchmarks/test_time.py --world reasoning-gym --train-steps 100 --seed 0
    python benchmarks/test_time.py --world reasoning-gym --seed 2 --json out/seed2.json   # for test_time_seeds.py

1. Train the policy with GPS selection for ``--train-steps`` steps (the public loop); GPS's PPM learns.
2. Predict the success γ̂ of every held-out prompt with the PPM (prompts it never trained on), raw and through
   the isotonic and the Platt calibration maps fitted on GPS's last 16 batches (prediction when picked,
   observed success).
3. Draw ``--reservoir`` samples per held-out prompt from the trained policy. An allocation of s_τ samples
   solves τ if any of its first s_τ samples is correct (best-of-n under the task's verifier); coverage is
   averaged over ``--orders`` random orderings of each prompt's samples.
4. Compare allocations at equal total budget: uniform, GPS "coverage" (maximise predicted coverage),
   GPS "window" (the paper's binning, inferred), each from raw and from calibrated γ̂; "neighbours" (ours):
   each held-out prompt's γ̂ is the observed success of its nearest trained prompts (cosine, every batch of
   the training run, the latest outcome of each prompt), shrunk towards their mean, with the number of
   neighbours chosen by leave-one-out squared error on the trained prompts themselves (held-out outcomes
   are not used to choose it); and an oracle that knows each prompt's empirical rate from an independent
   reservoir. Report the budget each needs to match uniform's coverage (compute saved).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from gps_env import PromptSelectionEnv
from gps_env.agents import GPS
from gps_env.bench.config import WORLDS
from gps_env.metrics import calibration_error, spearman
from gps_env.selectors import allocate_samples
from gps_env.selectors.neighbours import NEIGHBOUR_OPTIONS, choose_neighbours, neighbour_success


def reservoir(env: PromptSelectionEnv, n: int, seed: int) -> np.ndarray:
    rollouts = env.engine.generate(env.heldout.prompts, n, env.sampling, torch.Generator().manual_seed(seed))
    rewards = [env.heldout.verify(r // n, t) for r, t in enumerate(rollouts.texts)]
    return np.asarray(rewards, dtype=bool).reshape(len(env.heldout), n)


def coverage(samples: np.ndarray, counts: np.ndarray, orders: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    n, m = samples.shape
    hits = []
    for _ in range(orders):
        order = np.argsort(rng.random((n, m)), axis=1)
        shuffled = np.take_along_axis(samples, order, axis=1)
        taken = np.arange(m)[None, :] < counts[:, None]
        hits.append((shuffled & taken).any(axis=1).mean())
    return float(np.mean(hits))


def uniform_counts(n: int, budget: int) -> np.ndarray:
    counts = np.full(n, budget // n)
    counts[: budget % n] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", choices=sorted(WORLDS), default="arithmetic")
    parser.add_argument("--reservoir", type=int, default=16)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--per-prompt", type=float, nargs="+", default=[1.5, 2, 3, 4, 6])
    parser.add_argument("--neighbours", type=int, nargs="+", default=list(NEIGHBOUR_OPTIONS),
                        help="options for the trained prompts per neighbour estimate (leave-one-out picks one)")
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/test_time_seeds.py "
                        "summarises several seeds)")
    args = parser.parse_args()

    env = PromptSelectionEnv(max_steps=args.train_steps, eval_every=0, engine="transformers", **WORLDS[args.world])
    agent = GPS(env, seed=args.seed)
    obs, _ = env.reset(seed=args.seed)
    latest: dict[int, float] = {}  # pool prompt -> its latest observed success
    for _ in tqdm(range(args.train_steps), desc="GRPO with GPS selection", leave=False):
        obs, *_ = env.step(agent.act(obs))
        latest.update(zip(obs["last_batch"].tolist(), obs["last_rewards"].mean(axis=1).tolist(), strict=True))
    agent.observe(obs)  # learn from the last batch too
    seen = np.fromiter(latest, dtype=np.int64)

    state = agent.generator.get_state()
    gamma = agent.predict_for(env.heldout.embeddings)  # calibration="none": raw
    maps = {}
    for kind in ("isotonic", "platt"):  # maps from the (prediction, outcome) pairs GPS kept while training
        agent.calibration = kind
        agent.generator.set_state(state)  # the same latent draws: only the map differs
        maps[kind] = agent.predict_for(env.heldout.embeddings)
    samples = reservoir(env, args.reservoir, seed=1)
    truth = reservoir(env, args.reservoir, seed=2).mean(axis=1)  # independent: the oracle's knowledge
    n = len(env.heldout)
    empirical = samples.mean(axis=1)
    print(f"held-out: {n} prompts never trained on; Spearman(γ̂, empirical success) = {spearman(gamma, empirical):.3f}; "
          f"mean γ̂ {gamma.mean():.3f}, empirical {empirical.mean():.3f}; calibration error: raw "
          f"{calibration_error(gamma, empirical):.3f}, " + ", ".join(
              f"{kind} {calibration_error(g, empirical):.3f} (mean {g.mean():.3f})" for kind, g in maps.items())
          + f"; the oracle's {calibration_error(truth, empirical):.3f}")
    seen_e, seen_s = agent.embeddings[seen].astype(np.float64), np.fromiter(latest.values(), dtype=np.float64)
    neighbours, loo = choose_neighbours(seen_e, seen_s, args.neighbours)
    near = neighbour_success(np.asarray(env.heldout.embeddings, dtype=np.float64), seen_e, seen_s, neighbours)
    print("neighbours' leave-one-out squared error on the trained prompts: "
          + ", ".join(f"{k}: {e:.4f}" for k, e in loo.items()))
    print(f"neighbours (ours, {neighbours} of {seen.size} trained prompts): Spearman "
          f"{spearman(near, empirical):.3f}, calibration error {calibration_error(near, empirical):.3f} "
          f"(mean {near.mean():.3f})")
    predictions = {"gps": gamma, **maps, "neighbours": near, "oracle": truth}
    rules = [("uniform", None, None), ("gps-coverage", "gps", "coverage"), ("gps-window", "gps", "window"),
             ("isotonic-coverage", "isotonic", "coverage"), ("platt-coverage", "platt", "coverage"),
             ("platt-window", "platt", "window"), ("neighbours-coverage", "neighbours", "coverage"),
             ("neighbours-window", "neighbours", "window"), ("oracle-coverage", "oracle", "coverage")]
    rows = {name: [] for name, _, _ in rules}
    budgets = [int(round(p * n)) for p in args.per_prompt]
    cap = args.reservoir
    for budget in budgets:
        plans = {name: uniform_counts(n, budget) if source is None
                 else allocate_samples(predictions[source], budget, rule, max_samples=cap)
                 for name, source, rule in rules}
        for name, counts in plans.items():
            assert counts.sum() == budget
            rows[name].append(coverage(samples, counts, args.orders, seed=3))
    print(f"\nshare of held-out prompts solved at least once (best-of-n), seed {args.seed}, "
          f"after {args.train_steps} GRPO steps")
    print(f"{'samples/prompt':>15} " + " ".join(f"{k:>20}" for k in rows))
    for i, p in enumerate(args.per_prompt):
        print(f"{p:>15.2f} " + " ".join(f"{rows[k][i]:>20.3f}" for k in rows))

    # Compute at equal accuracy: the smallest budget at which each method reaches uniform's coverage.
    fine = np.arange(n, cap * n // 2 + 1, n // 8)
    curves = {name: [coverage(samples, allocate_samples(predictions[source], b, rule, max_samples=cap), 5, 4)
                     for b in fine]
              for name, source, rule in rules if source is not None}
    print("\nbudget needed to match uniform's coverage (compute saved vs uniform)")
    saved: dict[str, list[float | None]] = {name: [] for name in curves}
    for i, budget in enumerate(budgets):
        target = rows["uniform"][i]
        cells = []
        for name, curve in curves.items():
            reach = next((b for b, c in zip(fine, curve) if c >= target), None)
            saved[name].append(None if reach is None else 1 - reach / budget)
            cells.append(f"{name} {reach} ({saved[name][-1]:+.0%})" if reach else f"{name} not reached")
        print(f"  uniform {budget} samples ({target:.3f}): " + "; ".join(cells))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "world": args.world, "seed": args.seed, "train_steps": args.train_steps, "per_prompt": args.per_prompt,
            "reservoir": args.reservoir, "orders": args.orders,
            "spearman": {name: spearman(predictions[name], empirical) for name in ("gps", "neighbours")},
            "neighbours": neighbours, "coverage": rows, "saved": saved}, indent=1))


if __name__ == "__main__":
    main()
