"""Does the embedded world learn, and can selection matter in it?

    python benchmarks/world.py --seeds 0 1 2 --steps 300 --out docs/results/world.json --plot docs/figures/world.png

1. Pool composition at the start of RL: per-prompt success over k = 8 samples (the group size) and over
   32 samples, overall and by task and digit count.
2. Learning curves: held-out sampled accuracy against train rollouts, for uniform selection and for a
   near-0.5 **oracle** (not a selector: it knows each prompt's pass rate, re-measured every ``--refresh``
   steps from 16 extra samples per pool prompt that are *not* charged to the ledger, and updated from the
   rewards it observes in between). The oracle bounds what pass-rate-aware selection can gain in this pool;
   honest selectors that pay for what they learn are compared in ``gps-env bench`` (docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from gps_env import PromptSelectionEnv
from gps_env.agents import Uniform


def pass_rates(env: PromptSelectionEnv, n: int, seed: int) -> np.ndarray:
    """Per-prompt success over ``n`` samples, drawn outside the env's generator and ledger (analysis only)."""
    generator = torch.Generator().manual_seed(seed)
    rollouts = env.engine.generate(env.pool.prompts, n, env.sampling, generator)
    rewards = [env.pool.verify(r // n, t) for r, t in enumerate(rollouts.texts)]
    return np.asarray(rewards, dtype=float).reshape(len(env.pool), n).mean(axis=1)


def composition(env: PromptSelectionEnv, rates: np.ndarray) -> dict:
    groups = defaultdict(list)
    for problem, rate in zip(env.pool.problems, rates):
        size = problem.meta.get("digits", problem.meta.get("numbers"))
        groups[f"{problem.task}/{size}"].append(rate)
    row = lambda r: {"n": len(r), "mean": float(np.mean(r)), "zero": float(np.mean(np.equal(r, 0))),  # noqa: E731
                     "one": float(np.mean(np.equal(r, 1)))}
    return {"all": row(rates), **{k: row(v) for k, v in sorted(groups.items())}}


class NearHalfOracle:
    """Pick the B prompts whose (privileged) pass rate is nearest 0.5; ties broken at random."""

    def __init__(self, env: PromptSelectionEnv, seed: int, refresh: int) -> None:
        self.env, self.refresh, self.rng = env, refresh, np.random.default_rng(seed)
        self.rates = pass_rates(env, 16, seed=10_000 + seed)

    def act(self, obs: dict) -> np.ndarray:
        step = int(obs["step"][0])
        if step > 0:
            batch, rewards = obs["last_batch"], obs["last_rewards"]
            self.rates[batch] = 0.5 * self.rates[batch] + 0.5 * rewards.mean(axis=1)
            if step % self.refresh == 0:
                self.rates = pass_rates(self.env, 16, seed=10_000 + step)
        score = np.abs(self.rates - 0.5) + 1e-3 * self.rng.random(len(self.rates))
        return np.argsort(score)[: self.env.batch_size].astype(np.int64)


def run(env: PromptSelectionEnv, agent, seed: int, label: str) -> dict:
    obs, info = env.reset(seed=seed)
    if hasattr(agent, "rates"):
        agent.__init__(env, seed, agent.refresh)  # the oracle re-measures the restored initial policy
    curve = [(0, 0, info["eval"]["accuracy"])]
    esr, truncated, start = [], False, time.perf_counter()
    with tqdm(total=env.max_steps, desc=f"{label} seed {seed}", leave=False) as bar:
        while not truncated:
            obs, reward, _, truncated, info = env.step(agent.act(obs))
            esr.append(reward)
            if "eval" in info:
                curve.append((info["step"], info["ledger"]["rollouts"]["selector"], info["eval"]["accuracy"]))
            bar.update(1)
    return {"selector": label, "seed": seed, "curve": curve, "mean_esr": float(np.mean(esr)),
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--refresh", type=int, default=50)
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()

    env = PromptSelectionEnv(batch_size=args.batch_size, max_steps=args.steps, eval_every=args.eval_every)
    env.reset(seed=0)
    comp = {"k8": composition(env, pass_rates(env, 8, seed=1)), "n32": composition(env, pass_rates(env, 32, seed=2))}
    print("pool composition at the start of RL (share of prompts at success 0 / 1):")
    print(f"{'group':>14} {'n':>5} {'mean':>6} {'0 @k8':>6} {'1 @k8':>6} {'0|1 @k8':>8} {'0 @32':>6} {'1 @32':>6}")
    for key, row in comp["k8"].items():
        r32 = comp["n32"][key]
        print(f"{key:>14} {row['n']:>5} {r32['mean']:>6.3f} {row['zero']:>6.3f} {row['one']:>6.3f} "
              f"{row['zero'] + row['one']:>8.3f} {r32['zero']:>6.3f} {r32['one']:>6.3f}")

    runs = []
    for seed in args.seeds:
        runs.append(run(env, Uniform(env, seed=seed), seed, "uniform"))
        if not args.no_oracle:
            runs.append(run(env, NearHalfOracle(env, seed, args.refresh), seed, "near-0.5 oracle"))

    print(f"\nheld-out sampled accuracy (mean over seeds {args.seeds}), B={args.batch_size}, k=8")
    labels = sorted({r["selector"] for r in runs}, key=lambda s: s != "uniform")
    steps = [c[0] for c in runs[0]["curve"]]
    print(f"{'step':>6} {'rollouts':>9} " + " ".join(f"{lab:>18}" for lab in labels))
    for i, step in enumerate(steps):
        cells = []
        for lab in labels:
            accs = [r["curve"][i][2] for r in runs if r["selector"] == lab]
            cells.append(f"{np.mean(accs):.3f} ± {np.std(accs):.3f}".rjust(18))
        print(f"{step:>6} {runs[0]['curve'][i][1]:>9} " + " ".join(cells))
    for lab in labels:
        mine = [r for r in runs if r["selector"] == lab]
        gains = [r["curve"][-1][2] - r["curve"][0][2] for r in mine]
        print(f"{lab}: gain per seed {', '.join(f'{g:+.3f}' for g in gains)}; "
              f"mean ESR {np.mean([r['mean_esr'] for r in mine]):.3f}; "
              f"seconds per run {np.mean([r['seconds'] for r in mine]):.0f}")
    if len(labels) == 2:
        base = np.array([[c[2] for c in r["curve"]] for r in runs if r["selector"] == "uniform"])
        other = np.array([[c[2] for c in r["curve"]] for r in runs if r["selector"] != "uniform"])
        esr = {lab: np.mean([r["mean_esr"] for r in runs if r["selector"] == lab]) for lab in labels}
        print(f"oracle - uniform, per eval point: {np.round(other.mean(0) - base.mean(0), 3).tolist()}; "
              f"ESR ratio {esr[labels[1]] / esr['uniform']:.2f}x")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"composition": comp, "runs": runs, "args": {k: str(v) for k, v in vars(args).items()}}
        args.out.write_text(json.dumps(record, indent=1))
    if args.plot:
        import matplotlib.pyplot as plt

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 4))
        for lab, color in zip(labels, ["tab:blue", "tab:orange"]):
            for r in (r for r in runs if r["selector"] == lab):
                ax.plot([c[1] for c in r["curve"]], [c[2] for c in r["curve"]], color=color, alpha=0.35)
            mean = np.mean([[c[2] for c in r["curve"]] for r in runs if r["selector"] == lab], axis=0)
            ax.plot([c[1] for c in runs[0]["curve"]], mean, color=color, lw=2.5, label=f"{lab} (mean)")
        ax.set(xlabel="train rollouts", ylabel="held-out sampled accuracy",
               title=f"embedded world, B={args.batch_size}, k=8, seeds {args.seeds}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
