"""The pairing paper's claim in its own regime: one pair per update (B = 2), measured as pass@k.

    python benchmarks/pairing_b2.py --world arithmetic --seeds 0 1 2 3 4 --out docs/results/pairing_b2_arithmetic.json
    python benchmarks/pairing_b2.py --world reasoning-gym --seeds 0 1 2 3 4 --out docs/results/pairing_b2_rg.json

Sheng et al. (2026, arXiv 2602.03452, "Beyond Variance") train on one positive–negative pair per update,
chosen once before training, with Weighted GRPO, and compare against two prompts chosen by training-accuracy
variance p̂(1 − p̂); their figures are Pass@8 on AIME and Pass@64 on AMC23. Here, per seed, both methods
start from the same warm start and see the same measurement: ``--candidates`` pool prompts probed with k = 8
rollouts each (charged, the same random numbers for both methods). Then

* **pairing**: q⁺ with 1..c successes (hardest first) and q⁻ with k−c..k−1 (easiest first), loss weights
  1 and ``--lambda-neg`` (``gps_env.selectors.pairing_choice``, as the ``Pairing`` agent uses);
* **variance**: the two candidates with the highest p̂(1 − p̂) (ties to the earlier draw), weights 1;

each trains ``--steps`` GRPO updates on its fixed pair. pass@k on the held-out set is the unbiased
estimator 1 − C(n − c, k) / C(n, k) from n = ``--samples`` samples per prompt (Chen et al., 2021), at the
start and at the end; the difference between the methods is paired by seed, with a 95% t interval.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from scipy.special import comb
from tqdm.auto import tqdm

from gps_env import PromptSelectionEnv
from gps_env.bench.config import WORLDS
from gps_env.selectors import pairing_choice

KS = (1, 2, 4, 8, 16, 32, 64)


def pass_at_k(correct: np.ndarray, n: int, ks: tuple[int, ...]) -> dict[int, float]:
    """Mean unbiased pass@k over prompts, from ``correct`` successes of ``n`` samples each."""
    return {k: float(np.mean([1.0 - comb(n - c, k, exact=True) / comb(n, k, exact=True) for c in correct]))
            for k in ks if k <= n}


def heldout_pass(env: PromptSelectionEnv, n: int, seed: int) -> dict[int, float]:
    prompts = [p.prompt for p in env.heldout]
    rollouts = env.engine.generate(prompts, n, env.sampling, torch.Generator().manual_seed(seed))
    rewards = np.array([env.heldout.verify(r // n, t) for r, t in enumerate(rollouts.texts)]).reshape(-1, n)
    return pass_at_k(rewards.sum(axis=1).astype(int), n, KS)


def choose(method: str, ids: np.ndarray, success: np.ndarray, k: int, c: int, lambda_neg: float, n: int):
    if method == "pairing":
        full = np.full(n, 0.5)
        full[ids] = success
        positive, negative = pairing_choice(full, k, 1, c=c, candidates=ids)
        return np.concatenate([positive, negative]), np.array([1.0, lambda_neg])
    order = np.argsort(-(success * (1 - success)), kind="stable")[:2]
    return ids[order], np.ones(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(WORLDS), default="arithmetic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=256, help="pool prompts probed to pick the pair")
    parser.add_argument("--c", type=int, default=2)
    parser.add_argument("--lambda-neg", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=64, help="samples per held-out prompt (n of pass@k)")
    parser.add_argument("--heldout-size", type=int, default=None)
    parser.add_argument("--engine", default="transformers")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    world = dict(WORLDS[args.world])
    if args.heldout_size:
        world["heldout_size"] = args.heldout_size
    env = PromptSelectionEnv(batch_size=2, max_steps=args.steps, eval_every=0, engine=args.engine, **world)
    methods = ("pairing", "variance")
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    start_pass = None
    for seed in args.seeds:
        for method in methods:
            t0 = time.perf_counter()
            env.reset(seed=seed)
            if start_pass is None:  # the warm start is the same for every seed
                start_pass = heldout_pass(env, args.samples, seed=12345)
            ids = np.random.default_rng([seed, 3]).choice(env.pool_size, size=args.candidates, replace=False)
            success = env.probe(ids).mean(axis=1)
            pair, weights = choose(method, ids, success, env.k, args.c, args.lambda_neg, env.pool_size)
            esr = []
            for _ in tqdm(range(args.steps), desc=f"{method} seed {seed}", leave=False):
                _, reward, _, _, _ = env.step({"prompts": pair, "weights": weights})
                esr.append(reward)
            results["runs"].append({
                "method": method, "seed": seed, "pair": pair.tolist(), "pair_success": success[
                    [int(np.flatnonzero(ids == i)[0]) for i in pair]].tolist(),
                "esr": float(np.mean(esr)), "pass": heldout_pass(env, args.samples, seed=12345),
                "seconds": time.perf_counter() - t0})
    results["start"] = start_pass

    ks = [k for k in KS if k <= args.samples]
    print(f"{args.world}: B = 2, {args.steps} steps on one fixed pair, pass@k on {len(env.heldout)} held-out "
          f"prompts (n = {args.samples}), seeds {args.seeds}")
    print(f"{'':>24} " + " ".join(f"{'pass@' + str(k):>9}" for k in ks))
    print(f"{'warm start':>24} " + " ".join(f"{start_pass[k]:>9.3f}" for k in ks))
    by = {m: [r for r in results["runs"] if r["method"] == m] for m in methods}
    for m in methods:
        print(f"{m:>24} " + " ".join(f"{np.mean([r['pass'][k] for r in by[m]]):>9.3f}" for k in ks))
    summary = {}
    for k in ks:
        diff = np.array([a["pass"][k] - b["pass"][k] for a, b in zip(by["pairing"], by["variance"])])
        half = (float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
                if len(diff) > 1 else float("nan"))
        summary[k] = {"mean": float(diff.mean()), "ci95": half}
    print(f"{'pairing − variance':>24} " + " ".join(f"{summary[k]['mean']:>+9.3f}" for k in ks))
    print(f"{'95% CI half-width':>24} " + " ".join(f"{summary[k]['ci95']:>9.3f}" for k in ks))
    for m in methods:
        print(f"{m}: mean ESR {np.mean([r['esr'] for r in by[m]]):.2f}; pair success at selection "
              f"{np.round(np.mean([r['pair_success'] for r in by[m]], axis=0), 2).tolist()}; "
              f"{np.mean([r['seconds'] for r in by[m]]):.0f} s per run")
    results["difference"] = summary
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
