"""Quickstart: one GRPO run on the embedded world with uniform prompt selection.

    python examples/quickstart.py --steps 200 --seed 0

The first run trains and caches the tiny policy's warm start (about a minute on 2 cores); after that an
episode of 200 steps at B=32, k=8 takes about a minute. Prints held-out accuracy over training, where
the rollouts went, and (with ``--plot``) saves the learning curve.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
from tqdm.auto import tqdm

import gps_env
from gps_env.agents import Uniform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--k", type=int, default=8, help="rollouts per prompt")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the summary to this file")
    parser.add_argument("--plot", help="save the held-out curve to this PNG (needs matplotlib)")
    args = parser.parse_args()

    env = gym.make(
        "gps_env/PromptSelection-v0",
        batch_size=args.batch_size,
        rollouts_per_prompt=args.k,
        max_steps=args.steps,
        eval_every=args.eval_every,
    )
    agent = Uniform(env, seed=args.seed)
    obs, info = env.reset(seed=args.seed)
    curve = [(0, 0, info["eval"]["accuracy"])]
    esr = []
    with tqdm(total=args.steps, desc="GRPO steps (uniform)") as bar:
        truncated = False
        while not truncated:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs))
            esr.append(reward)
            if "eval" in info:
                curve.append((info["step"], info["ledger"]["rollouts"]["selector"], info["eval"]["accuracy"]))
            bar.set_postfix(esr=f"{reward:.2f}", heldout=f"{curve[-1][2]:.3f}")
            bar.update(1)

    ledger = info["ledger"]
    print(f"\ngps-env {gps_env.__version__}: uniform selection, B={args.batch_size}, k={args.k}, seed={args.seed}")
    print(f"{'step':>6} {'rollouts':>9} {'held-out acc':>13}")
    for step, rollouts, acc in curve:
        print(f"{step:>6} {rollouts:>9} {acc:>13.3f}")
    print(f"held-out accuracy {curve[0][2]:.3f} -> {curve[-1][2]:.3f} ({curve[-1][2] - curve[0][2]:+.3f})")
    print(f"mean effective-sample ratio {sum(esr) / len(esr):.3f} (share of groups that carried gradient)")
    seconds = env.unwrapped.ledger.seconds["train"]  # seconds stay out of info unless time_in_info=True
    print("train seconds by phase: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"rollouts: train {ledger['rollouts']['train']}, eval {ledger['rollouts']['eval']}")
    summary = {"curve": curve, "mean_esr": sum(esr) / len(esr), "ledger": ledger, "args": vars(args)}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    if args.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([c[1] for c in curve], [c[2] for c in curve], marker="o")
        ax.set(xlabel="train rollouts", ylabel="held-out sampled accuracy", title="uniform selection")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    env.close()


if __name__ == "__main__":
    main()
