"""How much can pass-rate-aware selection gain in a world? Measure it before comparing selectors.

    python benchmarks/headroom.py --world reasoning-gym --seeds 0 1 2 --steps 100 --out docs/results/headroom_rg.json
    python benchmarks/headroom.py --combine a.json b.json --out both.json   # seeds run in two processes

1. **Pool composition at the start of RL**: per-prompt success over k = 8 samples on ``--composition``
   prompts drawn uniformly from the pool: the share never solved, always solved and mixed (the last is
   uniform's expected ESR), overall and per task family and level.
2. **Uniform against a privileged bound**: dynamic sampling whose probes are *free*: the DS agent
   (``gps_env.agents.DynamicSampling``, probing up to ``--bound-rounds`` rounds of B uniformly drawn prompts
   through the env's probe API, which reuses the probe rollouts of the prompts it trains on), with its
   x-axis counting only the rollouts it trains on (steps × B × k), not its probes. It pays nothing to find
   the mixed groups, so it bounds what selection by pass rate can buy. Not a selector: honest ones pay for
   their probes (DS in ``gps-env bench`` does).
3. **Headroom**: the rollouts the bound needs to reach uniform's final held-out accuracy (same seed, linear
   interpolation between evaluations), as a share of uniform's; mean over seeds with a 95% t interval.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from gps_env import GRPOConfig, PromptSelectionEnv
from gps_env.agents import DynamicSampling, Uniform
from gps_env.bench.config import WORLDS


def pass_rates(env: PromptSelectionEnv, ids: np.ndarray, k: int, generator: torch.Generator) -> np.ndarray:
    """Success over ``k`` samples of each prompt in ``ids``, outside the env's generator and ledger."""
    prompts = [env.pool[int(i)].prompt for i in ids]
    rollouts = env.engine.generate(prompts, k, env.sampling, generator)
    rewards = [env.pool.verify(int(ids[r // k]), t) for r, t in enumerate(rollouts.texts)]
    return np.asarray(rewards, dtype=float).reshape(len(ids), k).mean(axis=1)


def composition(env: PromptSelectionEnv, ids: np.ndarray, rates: np.ndarray) -> dict:
    groups = defaultdict(list)
    for i, rate in zip(ids, rates):
        problem = env.pool[int(i)]
        groups[problem.task].append(rate)
        groups[f"{problem.task}/L{problem.meta.get('level', '-')}"].append(rate)

    def row(r: list[float]) -> dict:
        r = np.asarray(r)
        return {"n": len(r), "mean": float(r.mean()), "zero": float((r == 0).mean()), "one": float((r == 1).mean()),
                "mixed": float(((r > 0) & (r < 1)).mean())}

    return {"all": row(list(rates)), **{k: row(v) for k, v in sorted(groups.items())}}


def run(env: PromptSelectionEnv, agent, seed: int, label: str, free_probes: bool = False) -> dict:
    """One episode; the curve's rollouts are what the ledger charges the selector, or with ``free_probes`` only
    the rollouts trained on (steps × B × k)."""
    obs, info = env.reset(seed=seed)
    curve = [(0, 0, info["eval"]["accuracy"], info["eval"]["by_task"])]
    esr, truncated, start = [], False, time.perf_counter()
    with tqdm(total=env.max_steps, desc=f"{label} seed {seed}", leave=False) as bar:
        while not truncated:
            obs, reward, _, truncated, info = env.step(agent.act(obs))
            esr.append(reward)
            if "eval" in info:
                spent = (info["step"] * env.batch_size * env.k if free_probes
                         else info["ledger"]["rollouts"]["selector"])
                curve.append((info["step"], spent, info["eval"]["accuracy"], info["eval"]["by_task"]))
            bar.update(1)
    return {"selector": label, "seed": seed, "curve": curve, "esr": esr, "seconds": time.perf_counter() - start}


def rollouts_to_reach(curve: list, target: float) -> float:
    """Train rollouts at which ``curve`` first reaches ``target`` (linear between evaluations); inf if never."""
    for (r0, a0), (r1, a1) in zip([(c[1], c[2]) for c in curve], [(c[1], c[2]) for c in curve[1:]]):
        if a1 >= target:
            return float(r1 if a1 == a0 else r0 + (r1 - r0) * max(0.0, (target - a0) / (a1 - a0)))
    return float("inf")


def mean_ci(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or not np.all(np.isfinite(v)):
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(WORLDS), default="reasoning-gym")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--heldout-size", type=int, default=None)
    parser.add_argument("--eval-rollouts", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="GRPO learning rate (default: GRPOConfig's)")
    parser.add_argument("--epochs", type=int, default=None, help="GRPO passes over each batch (default: GRPOConfig's)")
    parser.add_argument("--composition", type=int, default=2048, help="pool prompts probed for the composition")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--policy", type=Path, default=None, help="a policy directory (default: the world's)")
    parser.add_argument("--no-bound", action="store_true")
    parser.add_argument("--bound-rounds", type=int, default=8, help="probe rounds of B prompts per bound step")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="JSON",
                        help="run nothing: report the runs of these --out files together (seeds split across "
                             "processes); the composition is the first file's")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    if args.combine:
        saved = [json.loads(path.read_text()) for path in args.combine]
        comp, runs = saved[0]["composition"], [r for data in saved for r in data["runs"]]
        seeds = sorted({r["seed"] for r in runs})
        if len(runs) != len({(r["selector"], r["seed"]) for r in runs}):
            parser.error("--combine: the files share a (selector, seed) run")
        settings = ("world", "steps", "batch_size", "eval_every", "heldout_size", "eval_rollouts", "lr", "epochs",
                    "engine", "policy", "no_bound", "bound_rounds")
        for path, data in zip(args.combine[1:], saved[1:]):
            differ = [key for key in settings if data["args"].get(key) != saved[0]["args"].get(key)]
            if differ:
                parser.error(f"--combine: {path} was run with other settings ({', '.join(differ)})")
        given = {key: saved[0]["args"].get(key, "None") for key in ("lr", "epochs")}
        default = GRPOConfig()
        grpo_lr = default.lr if given["lr"] == "None" else float(given["lr"])
        grpo_epochs = default.epochs if given["epochs"] == "None" else int(given["epochs"])
        args.batch_size = int(saved[0]["args"]["batch_size"])
        print_composition(comp)
    else:
        world = dict(WORLDS[args.world])
        if args.heldout_size:
            world["heldout_size"] = args.heldout_size
        overrides = {"lr": args.lr, "epochs": args.epochs}
        grpo = GRPOConfig(**{name: value for name, value in overrides.items() if value is not None})
        grpo_lr, grpo_epochs, seeds = grpo.lr, grpo.epochs, args.seeds
        env = PromptSelectionEnv(batch_size=args.batch_size, max_steps=args.steps, eval_every=args.eval_every,
                                 eval_rollouts=args.eval_rollouts, grpo=grpo, engine=args.engine, policy=args.policy,
                                 **world)
        env.reset(seed=0)
        ids = np.random.default_rng(5).choice(env.pool_size, size=min(args.composition, env.pool_size), replace=False)
        comp = composition(env, ids, pass_rates(env, ids, 8, torch.Generator().manual_seed(1)))
        print_composition(comp)
        runs = []
        for seed in args.seeds:
            runs.append(run(env, Uniform(env, seed=seed), seed, "uniform"))
            if not args.no_bound:
                bound = DynamicSampling(env, seed=seed, max_rounds=args.bound_rounds)
                runs.append(run(env, bound, seed, "free-probe DS (bound)", free_probes=True))
    summary = report(runs, seeds, args.batch_size, grpo_lr, grpo_epochs)
    if args.out:
        recorded = {k: str(v) for k, v in vars(args).items()}
        if args.combine:  # the runs' own settings, not this invocation's defaults
            recorded = {**saved[0]["args"], "seeds": str(seeds), "combine": [str(path) for path in args.combine],
                        "out": str(args.out)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": recorded, "composition": comp, "summary": summary, "runs": runs},
                                       indent=1))


def print_composition(comp: dict) -> None:
    n = comp["all"]["n"]
    print(f"pool composition at the start of RL ({n} pool prompts, k = 8):")
    print(f"{'group':>30} {'n':>5} {'mean':>6} {'at 0':>6} {'at 1':>6} {'mixed':>6}")
    for key, row in comp.items():
        print(f"{key:>30} {row['n']:>5} {row['mean']:>6.3f} {row['zero']:>6.3f} {row['one']:>6.3f} "
              f"{row['mixed']:>6.3f}")


def report(runs: list[dict], seeds: list[int], batch_size: int, lr: float, epochs: int) -> dict:
    """Print the seed-mean curves, gains, ESRs and (with two labels) the bound's rollout share; return them."""
    labels = list(dict.fromkeys(r["selector"] for r in runs))
    print(f"\nheld-out sampled accuracy, B={batch_size}, k=8, lr={lr}, epochs={epochs}, seeds {seeds}")
    print(f"{'step':>6} {'rollouts':>9} " + " ".join(f"{lab:>22}" for lab in labels))
    for i, point in enumerate(runs[0]["curve"]):
        cells = [f"{np.mean([r['curve'][i][2] for r in runs if r['selector'] == lab]):.3f}".rjust(22)
                 for lab in labels]
        print(f"{point[0]:>6} {point[1]:>9} " + " ".join(cells))
    summary: dict = {"lr": lr, "epochs": epochs}
    for lab in labels:
        mine = [r for r in runs if r["selector"] == lab]
        gains = [r["curve"][-1][2] - r["curve"][0][2] for r in mine]
        gain = mean_ci(gains)
        early = np.mean([np.mean(r["esr"][:10]) for r in mine])
        summary[lab] = {"gain": gain, "gain_per_seed": gains, "esr": float(np.mean([np.mean(r["esr"]) for r in mine])),
                        "esr_first10": early, "seconds": float(np.mean([r["seconds"] for r in mine]))}
        print(f"{lab}: held-out gain {gain[0]:+.3f} ± {gain[1]:.3f} (95% CI; per seed "
              f"{', '.join(f'{g:+.3f}' for g in gains)}); mean ESR {summary[lab]['esr']:.2f} "
              f"(first 10 steps {early:.2f}); {summary[lab]['seconds']:.0f} s per run")
    if len(labels) == 2:
        ratios = []
        for seed in seeds:
            base = next(r for r in runs if r["selector"] == labels[0] and r["seed"] == seed)
            other = next(r for r in runs if r["selector"] == labels[1] and r["seed"] == seed)
            ratios.append(rollouts_to_reach(other["curve"], base["curve"][-1][2]) / base["curve"][-1][1])
        mean, half = mean_ci(ratios)
        summary["rollout_ratio"] = {"per_seed": ratios, "mean": mean, "ci95": half}
        print(f"rollouts the bound needs to reach uniform's final accuracy, as a share of uniform's: "
              f"{', '.join(f'{x:.2f}' for x in ratios)} per seed; mean {mean:.2f} ± {half:.2f} (95% CI)")
    return summary


if __name__ == "__main__":
    main()
