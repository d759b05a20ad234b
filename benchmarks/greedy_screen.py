"""GPS's greedy with and without its screens, on the inputs GPS really produces in the simulated world.

    python benchmarks/greedy_screen.py --batch-size 32 256 --steps 1000 --every 25

Runs whole-pool GPS in the simulated world (N = 40,960, clustered embeddings) for ``--steps`` steps and keeps
the greedy's inputs (scaled utilities, previous batch) every ``--every`` steps. Then, with numpy's BLAS on one
thread as the agent runs it, times ``greedy_diverse`` on each kept input without a screen (one pass over the
float32 pool per pick) and through each screen (``Float32Screen``, GPS's, and
``BFloat16Screen``), checks that the batches and logged terms are identical, and
counts the screen calls per batch, early (first half of the kept steps) and late, beside the spread
(standard deviation) of the scaled utilities over the pool: where it is small, the batch is chosen for
diversity alone.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from gps_env.agents import gps as gps_module
from gps_env.agents.gps import GPS
from gps_env.selectors import greedy_diverse
from gps_env.selectors.screen import BFloat16Screen, Float32Screen
from gps_env.simulated import SimulatedPromptSelectionEnv


def record_inputs(b: int, n: int, steps: int, every: int) -> tuple[np.ndarray, list[tuple]]:
    env = SimulatedPromptSelectionEnv(batch_size=b, pool_size=n, max_steps=steps, time_in_info=False)
    agent = GPS(env, seed=0)
    kept, step, original = [], [0], gps_module.greedy_diverse

    def keeping(u, e, bb, lam, previous=None, candidates=None, distance="cosine", screen=None):
        if step[0] % every == 0:
            kept.append((u.copy(), None if previous is None else previous.copy(), bb, lam))
        step[0] += 1
        return original(u, e, bb, lam, previous=previous, candidates=candidates, distance=distance, screen=screen)

    gps_module.greedy_diverse = keeping
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(steps):
            obs, *_ = env.step(agent.act(obs))
    finally:
        gps_module.greedy_diverse = original
    return agent.embeddings, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40_960)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=25)
    args = parser.parse_args()
    print(f"{'B':>5} {'screen':>8} {'inputs':>6} {'unscreened ms':>13} {'screened ms':>11} {'speed-up':>8} "
          f"{'calls early':>11} {'calls late':>10} {'u std early':>11} {'u std late':>10} {'identical':>9}")
    for b in args.batch_size:
        e, kept = record_inputs(b, args.n, args.steps, args.every)
        spread = [float(np.std(u)) for u, *_ in kept]
        half = len(kept) // 2
        with threadpool_limits(limits=1, user_api="blas"):
            plain_s, plain = 0.0, []
            for u, previous, bb, lam in kept:
                t0 = time.perf_counter()
                plain.append(greedy_diverse(u, e, bb, lam, previous=previous))
                plain_s += time.perf_counter() - t0
            for name, screen in (("float32", Float32Screen(e)), ("bfloat16", BFloat16Screen(e))):
                calls: list[int] = []

                def counting(vectors, screen=screen, calls=calls):
                    calls[-1] += 1
                    return screen(vectors)

                counting.rel_error = screen.rel_error
                screened_s, identical = 0.0, 0
                for (u, previous, bb, lam), (batch, terms) in zip(kept, plain, strict=True):
                    calls.append(0)
                    t0 = time.perf_counter()
                    screened = greedy_diverse(u, e, bb, lam, previous=previous, screen=counting)
                    screened_s += time.perf_counter() - t0
                    identical += batch.tolist() == screened[0].tolist() and terms == screened[1]
                print(f"{b:>5} {name:>8} {len(kept):>6} {plain_s / len(kept) * 1e3:>13.1f} "
                      f"{screened_s / len(kept) * 1e3:>11.1f} {plain_s / screened_s:>7.1f}x "
                      f"{np.mean(calls[:half]):>11.1f} {np.mean(calls[half:]):>10.1f} "
                      f"{np.mean(spread[:half]):>11.3f} {np.mean(spread[half:]):>10.3f} {identical:>5}/{len(kept)}")

if __name__ == "__main__":
    main()
