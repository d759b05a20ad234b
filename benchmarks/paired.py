"""Two selectors of a head-to-head directory compared seed by seed: final accuracy and rollouts to a target.

    python benchmarks/paired.py docs/results/h2h_rg gps mopps
    python benchmarks/paired.py docs/results/h2h_rg gps-m uniform

The bench's summary compares every selector with uniform; this compares any two on the seeds both ran:
- the paired difference in final held-out accuracy (A − B) with its 95% t interval;
- per seed, the rollouts A needs to reach B's final accuracy on that seed, as a share of B's budget (the
  "0.67× uniform's rollouts" of a claim), with the seed mean and its 95% t interval. A seed on which A never
  reaches it counts as 1.0 (censored: the mean is then a lower bound) and is marked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gps_env.bench.runs import load_runs
from gps_env.bench.stats import first_reach, paired_comparison, t_half_width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a gps-env bench directory")
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    config = json.loads((args.out / "config.json").read_text())
    runs = load_runs(args.out, [args.a, args.b], config["seeds"])
    by = {name: {r["seed"]: r for r in runs if r["selector"] == name} for name in (args.a, args.b)}
    seeds = sorted(set(by[args.a]) & set(by[args.b]))
    if not seeds:
        parser.error(f"no seed has finished runs of both {args.a} and {args.b} in {args.out}")
    paired = paired_comparison([by[args.a][s] for s in seeds], [by[args.b][s] for s in seeds])
    print(f"{args.out}: {args.a} vs {args.b}, seeds {seeds}")
    print(f"  final accuracy, paired difference: {paired['paired_diff']:+.4f} ± {paired['paired_diff_ci95']:.4f} "
          f"(95% t): {paired['verdict']}")
    shares, censored = [], []
    for seed in seeds:
        a, b = by[args.a][seed], by[args.b][seed]
        target = b["evals"][-1]["accuracy"]
        reach = first_reach([e["rollouts"] for e in a["evals"]], [e["accuracy"] for e in a["evals"]], target)
        budget = b["evals"][-1]["rollouts"]
        shares.append(1.0 if reach is None else reach / budget)
        censored.append(reach is None)
        note = " (never reached)" if reach is None else ""
        print(f"  seed {seed}: {args.b}'s final {target:.3f}; {args.a} reaches it at {shares[-1]:.2f}x its "
              f"rollouts{note}")
    share = np.asarray(shares)
    bound = " (a lower bound: censored seeds)" if any(censored) else ""
    print(f"  rollouts to {args.b}'s final, share: {share.mean():.2f} ± {t_half_width(share):.2f} (95% t){bound}")


if __name__ == "__main__":
    main()
