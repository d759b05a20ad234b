"""What reading a random subset of each batch in the PPM's set encoders costs and saves, at paper scale.

    python benchmarks/set_size.py                                   # N = 40,960, B = 256, 300 steps, seeds 0-4
    python benchmarks/set_size.py --set-sizes none 64 32 --steps 100 --seeds 0 1

``PPMConfig.set_size`` (ours) lets the two set encoders read at most that many members of a batch (drawn at
random each time a set is encoded); the likelihood still covers the whole batch. This runs GPS (the default
reading, ``gps``) in the simulated world at each set size on the same seeds and prints, per set size, the wall
clock per step and the quality of the run: ESR over the run, mean Spearman of γ̂ against the batch's observed
success, and the world's expected held-out accuracy at the end; then each set size against the first one,
paired by seed, with 95% t intervals. Runs are sequential (torch's threads, one process).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gps_env.agents import GPS
from gps_env.bench.stats import mean_ci
from gps_env.simulated import SimulatedPromptSelectionEnv


def run(set_size: int | None, seed: int, n: int, b: int, steps: int) -> dict[str, float]:
    env = SimulatedPromptSelectionEnv(batch_size=b, pool_size=n, max_steps=steps, time_in_info=False)
    start = time.perf_counter()
    agent = GPS(env, seed=seed, ppm={"set_size": set_size})
    obs, _ = env.reset(seed=seed)
    spearmans = []
    for _ in range(steps):
        obs, _, _, _, info = env.step(agent.act(obs))
        spearmans.append(info.get("spearman", np.nan))
    seconds = time.perf_counter() - start
    return {"ms_per_step": 1000 * seconds / steps, "esr": env.ledger.summary()["esr"],
            "spearman": float(np.nanmean(spearmans)), "accuracy": env.evaluate()["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40960)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set-sizes", nargs="+", default=["none", "64"],
                        help="'none' (the whole batch) or a member count; the first is the baseline")
    args = parser.parse_args()
    sizes = [None if s.lower() == "none" else int(s) for s in args.set_sizes]
    print(f"GPS in the simulated world: N = {args.n}, B = {args.batch_size}, {args.steps} steps, seeds {args.seeds}")
    rows: dict[int | None, list[dict[str, float]]] = {}
    for size in sizes:
        rows[size] = []
        for seed in args.seeds:
            rows[size].append(run(size, seed, args.n, args.batch_size, args.steps))
            r = rows[size][-1]
            print(f"  set_size {size!s:>4}, seed {seed}: {r['ms_per_step']:6.1f} ms/step, ESR {r['esr']:.4f}, "
                  f"Spearman {r['spearman']:.4f}, accuracy {r['accuracy']:.4f}", flush=True)
    keys = ("ms_per_step", "esr", "spearman", "accuracy")
    print("\nmeans (95% t interval over seeds)")
    for size in sizes:
        cells = [mean_ci([r[key] for r in rows[size]]) for key in keys]
        parts = (f"{key} {mean:.4f} ± {half or 0:.4f}" for key, (mean, half) in zip(keys, cells, strict=True))
        print(f"  set_size {size!s:>4}: " + ", ".join(parts))
    base = sizes[0]
    for size in sizes[1:]:
        print(f"\nset_size {size} vs {base}, paired by seed")
        for key in keys:
            mean, half = mean_ci([a[key] - b[key] for a, b in zip(rows[size], rows[base])])
            print(f"  {key}: {mean:+.4f} ± {half or 0:.4f}")
        speedup = np.mean([b["ms_per_step"] for b in rows[base]]) / np.mean([a["ms_per_step"] for a in rows[size]])
        print(f"  speedup (mean time per step): {speedup:.2f}×")


if __name__ == "__main__":
    main()
