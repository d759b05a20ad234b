"""Whole-pool GPS's feedback loop, read off the simulated world's true success probabilities.

    python benchmarks/sim_gps_feedback.py --n 4096 --steps 500 --seeds 0 1

In the embedded world GPS over the whole pool starts above uniform's effective-sample ratio and ends far
below it (docs/gps.md). The simulated world knows every prompt's true p, so it can show what the PPM
believes while that happens. For uniform, GPS (the paper's rule), GPS without diversity (λ = 0), without the
latent, with a 16-batch replay, GPS's other readings (the default over 4B random candidates, max-min diversity,
one latent draw, the conventions of its ancestor PDTS) and GPS-M, this prints per 100-step window the mean ESR,
and at the window's end the PPM's mean prediction over the pool against the true mean p, the spread
(standard deviation) of its predictions, and the true mean p of the batch it picked. Means over ``--seeds``
(world and episode seed alike), the final held-out accuracy and how many distinct prompts were picked.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from gps_env.agents import GPS, GPSMemory, Uniform
from gps_env.agents.base import SelectorAgent
from gps_env.models import PPMConfig
from gps_env.simulated import SimulatedPromptSelectionEnv

AGENTS: dict[str, Callable[[SimulatedPromptSelectionEnv, int], SelectorAgent]] = {
    "uniform": lambda env, seed: Uniform(env, seed=seed),
    "gps-pool": lambda env, seed: GPS(env, seed=seed, candidates=None),
    "gps-pool, λ = 0": lambda env, seed: GPS(env, seed=seed, candidates=None, lam=0.0),
    "gps-pool, no latent": lambda env, seed: GPS(env, seed=seed, candidates=None, ppm=PPMConfig(latent_mode="none")),
    "gps-pool, replay 16": lambda env, seed: GPS(env, seed=seed, candidates=None, ppm=PPMConfig(replay=16)),
    "gps": lambda env, seed: GPS(env, seed=seed),
    "gps-pool, max-min": lambda env, seed: GPS(env, seed=seed, candidates=None, diversity="min"),
    "gps-pool, max-min, one draw": lambda env, seed: GPS(env, seed=seed, candidates=None, diversity="min",
                                                        draws="thompson"),
    "gps, max-min, one draw": lambda env, seed: GPS(env, seed=seed, diversity="min", draws="thompson"),
    "gps-c16, max-min, one draw": lambda env, seed: GPS(env, seed=seed, diversity="min", draws="thompson",
                                                       candidates=16),
    "gps-pdts": lambda env, seed: GPS(env, seed=seed, diversity="min", draws="thompson", candidates=64, warmup=10),
    "gps-m": lambda env, seed: GPSMemory(env, seed=seed),
    "gps-m, whole pool": lambda env, seed: GPSMemory(env, seed=seed, candidates=None),
    "gps-pool, cooldown 10": lambda env, seed: GPS(env, seed=seed, candidates=None, cooldown=10),
    "gps, cooldown 10": lambda env, seed: GPS(env, seed=seed, cooldown=10),
    "gps-m, cooldown 10": lambda env, seed: GPSMemory(env, seed=seed, cooldown=10),
}


def run(name: str, n: int, steps: int, seed: int, window: int) -> dict[str, np.ndarray | float]:
    env = SimulatedPromptSelectionEnv(batch_size=32, pool_size=n, max_steps=steps, world_seed=seed,
                                      time_in_info=False)
    agent = AGENTS[name](env, seed)
    obs, _ = env.reset(seed=seed)
    esr, believed, true, spread, batch_p, seen = [], [], [], [], [], set()
    for t in range(1, steps + 1):
        action = agent.act(obs)
        obs, reward, *_ = env.step(action)
        esr.append(reward)
        prompts = np.asarray(action["prompts"] if isinstance(action, dict) else action, dtype=np.int64)
        seen.update(prompts.tolist())  # Uniform sends a bare batch, the others a dict
        if t % window == 0:
            p = env.success_probability()
            batch_p.append(float(p[prompts].mean()))
            true.append(float(p.mean()))
            if isinstance(agent, GPS):  # the probe draws latents: put the agent's generator back after it
                state = agent.generator.get_state()
                gamma = agent.predict_success()
                agent.generator.set_state(state)
                believed.append(float(gamma.mean()))
                spread.append(float(gamma.std()))
    windows = np.asarray(esr).reshape(-1, window).mean(axis=1)
    nan = np.full(len(true), np.nan)
    return {"esr": windows, "believed": np.asarray(believed) if believed else nan, "true": np.asarray(true),
            "spread": np.asarray(spread) if spread else nan, "batch_p": np.asarray(batch_p),
            "accuracy": env.evaluate()["accuracy"], "distinct": float(len(seen))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    args = parser.parse_args()
    if args.steps % args.window:
        parser.error("--steps must be a multiple of --window")
    ends = ", ".join(str(t) for t in range(args.window, args.steps + 1, args.window))
    print(f"simulated world, N = {args.n}, B = 32, k = 8, {args.steps} steps, seeds {args.seeds}; "
          f"windows of {args.window} steps ending at {ends}")
    for name in args.agents:
        runs = [run(name, args.n, args.steps, seed, args.window) for seed in args.seeds]
        mean = {key: np.mean([r[key] for r in runs], axis=0) for key in runs[0]}

        def fmt(values: np.ndarray) -> str:
            return " ".join(f"{v:5.2f}" for v in values)

        print(f"\n{name}  (final held-out accuracy {mean['accuracy']:.3f}; {mean['distinct']:.0f} distinct prompts "
              f"picked of {args.n})")
        print(f"  ESR                   {fmt(mean['esr'])}")
        print(f"  true mean p, pool     {fmt(mean['true'])}")
        if not np.isnan(mean["believed"]).all():
            print(f"  PPM's mean γ̂, pool    {fmt(mean['believed'])}")
            print(f"  sd of γ̂ over pool     {fmt(mean['spread'])}")
        print(f"  true mean p, batch    {fmt(mean['batch_p'])}")


if __name__ == "__main__":
    main()
