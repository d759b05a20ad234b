"""Wall-clock of full episodes in the simulated world at paper scale, for each of the five agents.

    python benchmarks/sim_speed.py --n 40960 --steps 1000 --batch-size 256 32 --out docs/results/sim_speed.json

Each run builds the agent, resets the env (one evaluation of the held-out set) and plays ``--steps`` steps of
``env.step(agent.act(obs))``, with the env's default held-out evaluation every 50 steps; the clock covers all
of it (the world is built once per batch size, outside the clock, and its build time is printed). Agents run
with their default settings (those of ``gps-env bench``; Pairing refreshes every 25 steps). A run that passes
``--cap`` seconds is stopped and reported with its measured steps and the seconds 1000 steps would take at
its measured rate, marked as projected. Target: every agent within 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from gps_env.agents.registry import MAIN_SELECTORS, SELECTORS
from gps_env.simulated import SimulatedPromptSelectionEnv

TARGET_SECONDS = 60.0


def time_run(env: SimulatedPromptSelectionEnv, name: str, steps: int, cap: float) -> dict[str, float | int | bool]:
    start = time.perf_counter()
    agent = SELECTORS[name](env, 0)
    obs, _ = env.reset(seed=0)
    done = 0
    while done < steps and time.perf_counter() - start < cap:
        obs, *_ = env.step(agent.act(obs))
        done += 1
    seconds = time.perf_counter() - start
    return {"steps": done, "seconds": seconds, "projected": done < steps,
            "seconds_for_all": seconds * steps / done, "esr": env.ledger.summary()["esr"],
            "probe_rollouts": env.ledger.rollouts["probe"], "accuracy": env.evaluate()["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40960)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256, 32])
    parser.add_argument("--agents", nargs="+", default=list(MAIN_SELECTORS), choices=list(SELECTORS))
    parser.add_argument("--cap", type=float, default=180.0, help="stop a run after this many seconds")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"N = {args.n}, {args.steps} steps, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    results = []
    for b in args.batch_size:
        t0 = time.perf_counter()
        env = SimulatedPromptSelectionEnv(batch_size=b, pool_size=args.n, max_steps=args.steps, time_in_info=False)
        print(f"\nB = {b} (world built in {time.perf_counter() - t0:.2f} s)")
        print(f"{'agent':>10} {'steps':>6} {'seconds':>8} {'for all':>8} {'vs uniform':>10} {'<= 60 s':>7} "
              f"{'ESR':>5} {'held-out':>8}")
        uniform = None
        for name in args.agents:
            r = time_run(env, name, args.steps, args.cap)
            uniform = r["seconds_for_all"] if name == "uniform" else uniform
            ratio = r["seconds_for_all"] / uniform if uniform else float("nan")
            mark = " (projected)" if r["projected"] else ""
            shown = f"{ratio:>9.1f}x" if uniform else f"{'-':>10}"  # uniform not run (first) in this call
            print(f"{name:>10} {r['steps']:>6} {r['seconds']:>8.2f} {r['seconds_for_all']:>8.2f} {shown} "
                  f"{'yes' if r['seconds_for_all'] <= TARGET_SECONDS else 'no':>7} {r['esr']:>5.2f} "
                  f"{r['accuracy']:>8.3f}{mark}")
            results.append({"agent": name, "batch_size": b, "n": args.n, "ratio_to_uniform": ratio, **r})
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"target_seconds": TARGET_SECONDS, "cpus": os.cpu_count(),
                                        "torch_threads": torch.get_num_threads(), "runs": results}, indent=1))


if __name__ == "__main__":
    main()
