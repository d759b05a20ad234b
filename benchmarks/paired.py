"""Two selectors of a head-to-head directory compared seed by seed: final accuracy and rollouts to a target.

    python benchmarks/paired.py docs/results/h2h_rg gps mopps
    python benchmarks/paired.py docs/results/h2h_rg gps-m uniform
    python benchmarks/paired.py docs/results/h2h_rg_v1_10seeds gps mopps --more docs/results/h2h_rg_v1_seeds10_19

The bench's summary compares every selector with uniform; this compares any two on the seeds both ran:
- the paired difference in final held-out accuracy (A − B) with its 95% t interval;
- per seed, the rollouts A needs to reach B's final accuracy on that seed, as a share of B's budget (the
  "0.67× uniform's rollouts" of a claim), with the seed mean and its 95% t interval. A seed on which A never
  reaches it counts as 1.0 (censored: the mean is then a lower bound) and is marked.

``--more DIR`` pools the seeds of other directories run with the same configuration (every field of
``config.json`` but the selectors and seeds); a seed may appear in only one of them.
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
    parser.add_argument("--more", type=Path, nargs="+", default=[],
                        help="further bench directories of the same configuration whose seeds are pooled")
    args = parser.parse_args()
    by: dict[str, dict[int, dict]] = {args.a: {}, args.b: {}}
    setting = None
    for out in (args.out, *args.more):
        config = json.loads((out / "config.json").read_text())
        this = {key: value for key, value in config.items() if key not in ("selectors", "seeds")}
        if setting is not None and this != setting:
            differ = sorted(key for key in set(this) | set(setting) if this.get(key) != setting.get(key))
            parser.error(f"{out} was run with another configuration than {args.out}: {', '.join(differ)} differ")
        setting = this
        for run in load_runs(out, [args.a, args.b], config["seeds"]):
            if run["seed"] in by[run["selector"]]:
                parser.error(f"seed {run['seed']} of {run['selector']} is in more than one directory ({out})")
            by[run["selector"]][run["seed"]] = run
    seeds = sorted(set(by[args.a]) & set(by[args.b]))
    if not seeds:
        parser.error(f"no seed has finished runs of both {args.a} and {args.b} in {args.out}")
    paired = paired_comparison([by[args.a][s] for s in seeds], [by[args.b][s] for s in seeds])
    print(f"{', '.join(map(str, (args.out, *args.more)))}: {args.a} vs {args.b}, seeds {seeds}")
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
