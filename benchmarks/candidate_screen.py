"""GPS's greedy over a candidate set, with and without the float32 screen, on GPS's own inputs.

    python benchmarks/candidate_screen.py --batch-size 256 --candidates 4 8 16 64 --diversity sum min

For each diversity form (``--diversity``: max-sum, GPS's, or max-min, PDTS's) and candidate-set size
(``--candidates``, a multiple of B as in ``GPS(candidates=...)``), runs GPS with that setting in the simulated
world (N = 40,960, clustered embeddings) for ``--steps`` steps and keeps the greedy's inputs (scaled
utilities, previous batch, candidates) every ``--every`` steps. Then, with numpy's BLAS on one thread as the
agent runs it, times the greedy (``greedy_diverse`` or ``greedy_maxmin``) on each kept input unscreened (one
product of the candidate rows per pick) and screened (a float32 screen over the candidate rows: what both do
by themselves from ``SCREEN_MIN_CANDIDATES`` rows), checks that batches and terms are identical, and prints
the ratio. The threshold is set where the ratio passes 1.

    python benchmarks/candidate_screen.py --trajectories gps-c16 gps-pdts gps-pool --steps 300

instead runs each named selector twice from the same seed, screened as the agent is (candidate sets from
``SCREEN_MIN_CANDIDATES`` rows, the pool from ``SCREEN_MIN_POOL``) and never screened, and reports the steps
whose batches differ: a screen must not change a trajectory.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from gps_env.agents import gps as gps_module
from gps_env.agents.gps import GPS
from gps_env.agents.registry import SELECTORS
from gps_env.selectors import greedy as greedy_module
from gps_env.selectors import greedy_diverse, greedy_maxmin
from gps_env.simulated import SimulatedPromptSelectionEnv

GREEDY = {"sum": ("greedy_diverse", greedy_diverse), "min": ("greedy_maxmin", greedy_maxmin)}


def record_inputs(b: int, n: int, candidates: float, steps: int, every: int,
                  diversity: str = "sum") -> tuple[np.ndarray, list[tuple]]:
    env = SimulatedPromptSelectionEnv(batch_size=b, pool_size=n, max_steps=steps, time_in_info=False)
    agent = GPS(env, seed=0, candidates=candidates, diversity=diversity)
    name, original = GREEDY[diversity]
    kept, step = [], [0]

    def keeping(u, e, bb, lam, previous=None, candidates=None, **options):
        if step[0] % every == 0:
            kept.append((u.copy(), None if previous is None else previous.copy(), candidates.copy(), bb, lam))
        step[0] += 1
        return original(u, e, bb, lam, previous=previous, candidates=candidates, **options)

    setattr(gps_module, name, keeping)
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(steps):
            obs, *_ = env.step(agent.act(obs))
    finally:
        setattr(gps_module, name, original)
    return agent.embeddings, kept


def time_greedy(e: np.ndarray, kept: list[tuple], threshold: int, diversity: str = "sum") -> tuple[float, list]:
    """Mean seconds per batch and the batches, with ``SCREEN_MIN_CANDIDATES`` set to ``threshold``."""
    greedy = GREEDY[diversity][1]
    saved, greedy_module.SCREEN_MIN_CANDIDATES = greedy_module.SCREEN_MIN_CANDIDATES, threshold
    try:
        seconds, out = 0.0, []
        for u, previous, candidates, b, lam in kept:
            t0 = time.perf_counter()
            out.append(greedy(u, e, b, lam, previous=previous, candidates=candidates))
            seconds += time.perf_counter() - t0
    finally:
        greedy_module.SCREEN_MIN_CANDIDATES = saved
    return seconds / len(kept), out


def batches(name: str, b: int, n: int, steps: int, screened: bool) -> tuple[list[list[int]], float]:
    """One run's batches and final expected held-out accuracy, with the screens on or off."""
    saved = greedy_module.SCREEN_MIN_CANDIDATES, gps_module.SCREEN_MIN_POOL
    if not screened:
        greedy_module.SCREEN_MIN_CANDIDATES = gps_module.SCREEN_MIN_POOL = 10**12
    try:
        env = SimulatedPromptSelectionEnv(batch_size=b, pool_size=n, max_steps=steps, time_in_info=False)
        agent, out = SELECTORS[name](env, 0), []
        obs, _ = env.reset(seed=0)
        for _ in range(steps):
            action = agent.act(obs)
            out.append(action["prompts"].tolist())
            obs, *_ = env.step(action)
        return out, env.evaluate()["accuracy"]
    finally:
        greedy_module.SCREEN_MIN_CANDIDATES, gps_module.SCREEN_MIN_POOL = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40_960)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256])
    parser.add_argument("--candidates", type=float, nargs="+", default=[4, 8, 16, 64])
    parser.add_argument("--diversity", nargs="+", choices=list(GREEDY), default=list(GREEDY))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--trajectories", nargs="+", choices=list(SELECTORS), metavar="SELECTOR",
                        help="compare whole runs of these selectors, screened and not (B = the first --batch-size)")
    args = parser.parse_args()
    if args.trajectories:
        b = args.batch_size[0]
        for name in args.trajectories:
            (plain, plain_acc), (screened, acc) = (batches(name, b, args.n, args.steps, s) for s in (False, True))
            differ = [t for t, (x, y) in enumerate(zip(plain, screened, strict=True)) if x != y]
            print(f"{name}, B = {b}, {args.steps} steps: batches differ at {len(differ)} steps "
                  f"{differ[:5]}; held-out {plain_acc:.6f} unscreened, {acc:.6f} screened", flush=True)
        return
    torch.ones(2) @ torch.ones(2)  # torch's first product (thread pool start) outside the clock
    print(f"SCREEN_MIN_CANDIDATES = {greedy_module.SCREEN_MIN_CANDIDATES}")
    print(f"{'form':>5} {'B':>5} {'candidates':>10} {'rows':>6} {'inputs':>6} {'unscreened ms':>13} "
          f"{'screened ms':>11} {'speed-up':>8} {'identical':>9}")
    for diversity in args.diversity:
        for b in args.batch_size:
            for c in args.candidates:
                e, kept = record_inputs(b, args.n, c, args.steps, args.every, diversity)
                with threadpool_limits(limits=1, user_api="blas"):
                    plain_s, plain = time_greedy(e, kept, 10**12, diversity)
                    screened_s, screened = time_greedy(e, kept, 1, diversity)
                identical = sum(p[0].tolist() == s[0].tolist() and p[1] == s[1]
                                for p, s in zip(plain, screened, strict=True))
                print(f"{diversity:>5} {b:>5} {c:>9g}B {kept[0][2].size:>6} {len(kept):>6} {plain_s * 1e3:>13.1f} "
                      f"{screened_s * 1e3:>11.1f} {plain_s / screened_s:>7.2f}x {identical:>5}/{len(kept)}", flush=True)


if __name__ == "__main__":
    main()
