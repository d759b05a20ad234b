"""GPS's readings side by side: distinct prompts picked, ESR over time, held-out accuracy (paired vs uniform).

    python benchmarks/gps_readings.py --world reasoning-gym --steps 100 --seeds 0 1 2 \\
        --readings gps gps-pool gps-c16 gps-min gps-thompson gps-warmup gps-pdts gps-m

Each reading is a registry name (``gps-env bench --help`` lists them) or ``name:key=value,...`` for a GPS
setting the registry does not name, e.g. ``gps:lam=0.1``, ``gps-m:strength=8,candidates=None`` or
``gps:ppm.updates=8`` (a field of the PPM's config). Every reading runs the
public loop on the same world and seeds for ``--steps`` steps (no probes: matched rollouts), evaluates once at
the end and prints, per reading, the seed-mean final held-out accuracy and its paired difference from uniform
(95% t interval), the distinct prompts picked, the ESR per window of steps, and the share of picks per task.
Uniform is always run, as the baseline of the same run. A quicker screen than ``gps-env bench``, which also
evaluates along the way and matches rollouts for selectors that probe.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch
from scipy import stats

from gps_env import PromptSelectionEnv
from gps_env.agents.registry import SELECTORS
from gps_env.bench.config import WORLDS


def build(reading: str, env: PromptSelectionEnv, seed: int):
    name, _, settings = reading.partition(":")
    kwargs = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        parsed = None if value == "None" else (value if not value.replace(".", "", 1).isdigit()
                                               else (float(value) if "." in value else int(value)))
        if key.startswith("ppm."):  # a PPMConfig field: ppm.updates=8
            kwargs.setdefault("ppm", {})[key.removeprefix("ppm.")] = parsed
        else:
            kwargs[key] = parsed
    return SELECTORS[name](env, seed, **kwargs)


def run(env: PromptSelectionEnv, reading: str, seed: int, steps: int, window: int) -> dict:
    agent = build(reading, env, seed)
    obs, _ = env.reset(seed=seed)
    esr, picks = [], collections.Counter()
    for _ in range(steps):
        action = agent.act(obs)
        picks.update(np.asarray(action["prompts"] if isinstance(action, dict) else action).tolist())
        obs, reward, *_ = env.step(action)
        esr.append(reward)
    tasks = collections.Counter()
    for prompt, count in picks.items():
        tasks[env.pool.problems[prompt].task] += count
    return {"accuracy": env.evaluate()["accuracy"], "distinct": len(picks),
            "esr": np.asarray(esr).reshape(-1, window).mean(axis=1), "tasks": tasks}


def interval(values: np.ndarray) -> float:
    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))) if len(
        values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(WORLDS), default="reasoning-gym")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--window", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--readings", nargs="+", default=["gps", "gps-pool", "gps-min", "gps-thompson", "gps-m"])
    parser.add_argument("--engine", default="transformers")
    args = parser.parse_args()
    if args.steps % args.window:
        parser.error("--steps must be a multiple of --window")
    torch.set_num_threads(1)  # the tiny policy is faster on one thread on a shared 2-core machine
    env = PromptSelectionEnv(batch_size=32, max_steps=10**9, eval_every=0, progress=False, engine=args.engine,
                             **WORLDS[args.world])
    readings = list(dict.fromkeys(["uniform", *args.readings]))
    print(f"{args.world}: {args.steps} steps, B = 32, k = 8, seeds {args.seeds}, pool of {len(env.pool)}; "
          f"ESR per {args.window}-step window")
    results: dict[str, list[dict]] = {}
    for reading in readings:
        start = time.perf_counter()
        results[reading] = [run(env, reading, seed, args.steps, args.window) for seed in args.seeds]
        base = np.asarray([r["accuracy"] for r in results["uniform"]])
        acc = np.asarray([r["accuracy"] for r in results[reading]])
        diff = acc - base
        esr = np.mean([r["esr"] for r in results[reading]], axis=0)
        tasks = sum((r["tasks"] for r in results[reading]), collections.Counter())
        total = sum(tasks.values())
        top = ", ".join(f"{t} {c / total:.0%}" for t, c in tasks.most_common(4))
        paired = "baseline" if reading == "uniform" else f"{diff.mean():+.3f} ± {interval(diff):.3f}"
        distinct = np.mean([r["distinct"] for r in results[reading]])
        print(f"{reading:28s} acc {acc.mean():.3f} ({paired})  distinct {distinct:6.0f}"
              f"  ESR {' '.join(f'{v:.2f}' for v in esr)}  picks: {top}  [{time.perf_counter() - start:.0f} s]",
              flush=True)


if __name__ == "__main__":
    main()
