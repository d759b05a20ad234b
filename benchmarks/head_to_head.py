"""Head-to-head of selector agents on the embedded world, under one rollout ledger.

    python benchmarks/head_to_head.py --agents uniform ds mopps pairing --seeds 0 1 2 --budget 76800 \\
        --out docs/results/agents.json --plot docs/figures/agents.png

Every agent runs the public loop ``env.step(agent.act(obs))`` until it has spent ``--budget`` selector
rollouts (train + probe, as charged by the ledger). Held-out accuracy is measured each time another
``--eval-rollouts`` selector rollouts have been spent, so agents are compared at matched cost, not matched
steps. The baseline is uniform selection, run in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gps_env import PromptSelectionEnv
from gps_env.agents import GPS, DynamicSampling, MoPPS, Pairing, Uniform
from gps_env.models import PPMConfig

AGENTS = {
    "uniform": lambda env, seed: Uniform(env, seed=seed),
    "ds": lambda env, seed: DynamicSampling(env, seed=seed),
    "mopps": lambda env, seed: MoPPS(env, seed=seed),
    "pairing": lambda env, seed: Pairing(env, seed=seed, refresh_every=25),
    "pairing-fixed": lambda env, seed: Pairing(env, seed=seed),
    "gps": lambda env, seed: GPS(env, seed=seed),
    "gps-c4": lambda env, seed: GPS(env, seed=seed, candidates=4),
    "gps-lam0": lambda env, seed: GPS(env, seed=seed, lam=0.0),
    "gps-nolatent": lambda env, seed: GPS(env, seed=seed, ppm=PPMConfig(latent_mode="none")),
    "gps-nointer": lambda env, seed: GPS(env, seed=seed, inter_step=False),
}


def run(env: PromptSelectionEnv, name: str, seed: int, budget: int, every: int) -> dict:
    agent = AGENTS[name](env, seed)
    obs, _ = env.reset(seed=seed)
    curve = [(0, 0, env.evaluate()["accuracy"])]
    esr, spearman, next_eval, start = [], [], every, time.perf_counter()
    with tqdm(total=budget, desc=f"{name} seed {seed}", leave=False, unit="rollout") as bar:
        while env.ledger.selector_rollouts < budget:
            before = env.ledger.selector_rollouts
            obs, reward, _, truncated, info = env.step(agent.act(obs))
            esr.append(reward)
            if info.get("spearman") is not None:
                spearman.append(info["spearman"])
            bar.update(env.ledger.selector_rollouts - before)
            while env.ledger.selector_rollouts >= next_eval:
                curve.append((info["step"], env.ledger.selector_rollouts, env.evaluate()["accuracy"]))
                next_eval += every
            if truncated:
                break
    summary = env.ledger.summary()
    return {
        "agent": name, "seed": seed, "curve": curve, "steps": int(obs["step"][0]),
        "mean_esr": float(np.mean(esr)), "mean_spearman": float(np.mean(spearman)) if spearman else None,
        "ledger": summary, "wall_seconds": time.perf_counter() - start,
    }


def accuracy_at(curve: list, rollouts: int) -> float:
    """Held-out accuracy of the last evaluation at or before ``rollouts``."""
    return [acc for _, r, acc in curve if r <= rollouts][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["uniform", "ds", "mopps", "pairing"], choices=list(AGENTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=76_800, help="selector rollouts per run")
    parser.add_argument("--eval-rollouts", type=int, default=12_800, help="evaluate every this many rollouts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--from-json", type=Path, help="re-tabulate (and re-plot) the runs saved in this file")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    if "uniform" not in args.agents:
        args.agents.insert(0, "uniform")

    if args.from_json:
        runs = [r for r in json.loads(args.from_json.read_text())["runs"]
                if r["agent"] in args.agents and r["seed"] in args.seeds]
        k = 8
    else:
        env = PromptSelectionEnv(batch_size=args.batch_size, max_steps=10**6, eval_every=0)
        runs = [run(env, name, seed, args.budget, args.eval_rollouts) for seed in args.seeds for name in args.agents]
        k = env.k

    checkpoints = list(range(0, args.budget + 1, args.eval_rollouts))
    print(f"\nheld-out sampled accuracy vs selector rollouts (mean ± sd over seeds {args.seeds}), "
          f"B={args.batch_size}, k={k}")
    print(f"{'rollouts':>9} " + " ".join(f"{a:>15}" for a in args.agents))
    table = {a: np.array([[accuracy_at(r["curve"], c) for c in checkpoints] for r in runs if r["agent"] == a])
             for a in args.agents}
    for j, c in enumerate(checkpoints):
        print(f"{c:>9} " + " ".join(f"{table[a][:, j].mean():.3f} ± {table[a][:, j].std():.3f}".rjust(15)
                                    for a in args.agents))
    uniform_final = table["uniform"][:, -1].mean()
    print(f"\n{'agent':>14} {'final':>6} {'vs uniform':>10} {'AUC':>6} {'ESR':>5} {'spearman':>8} {'steps':>6} "
          f"{'rollouts to uniform final':>26} {'train s':>8} {'probe s':>8} {'select s':>8}")
    for a in args.agents:
        mine = [r for r in runs if r["agent"] == a]
        mean_curve = table[a].mean(axis=0)
        reach = next((c for c, acc in zip(checkpoints, mean_curve) if acc >= uniform_final), None)
        sec = {p: np.mean([sum(r["ledger"]["seconds"][p].values()) - (r["ledger"]["seconds"][p]["select"]
                                                                       if p == "train" else 0) for r in mine])
               for p in ("train", "probe")}
        select = np.mean([r["ledger"]["seconds"]["train"]["select"] for r in mine])
        rho = [r["mean_spearman"] for r in mine if r["mean_spearman"] is not None]
        print(f"{a:>14} {mean_curve[-1]:>6.3f} {mean_curve[-1] - uniform_final:>+10.3f} "
              f"{mean_curve[1:].mean():>6.3f} {np.mean([r['mean_esr'] for r in mine]):>5.2f} "
              f"{(f'{np.mean(rho):.2f}' if rho else '-'):>8} {np.mean([r['steps'] for r in mine]):>6.0f} "
              f"{(f'{reach} ({args.budget / reach:.2f}x)' if reach else 'not reached'):>26} "
              f"{sec['train']:>8.1f} {sec['probe']:>8.1f} {select:>8.2f}")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"runs": runs, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    if args.plot:
        import matplotlib.pyplot as plt

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for a in args.agents:
            mean, sd = table[a].mean(axis=0), table[a].std(axis=0)
            ax.plot(checkpoints, mean, marker="o", label=a)
            ax.fill_between(checkpoints, mean - sd, mean + sd, alpha=0.15)
        ax.set(xlabel="selector rollouts (train + probe)", ylabel="held-out sampled accuracy",
               title=f"embedded world, B={args.batch_size}, k={k}, seeds {args.seeds}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
