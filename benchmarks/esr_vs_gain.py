"""Does training on more mixed groups buy held-out accuracy? Every selector of some head-to-heads, side by side.

    python benchmarks/esr_vs_gain.py docs/results/h2h_rg_v1 docs/results/readout_rg_v1 \\
        --plot docs/figures/esr_vs_gain_rg_v1.png

Selection by pass rate rests on one premise: a group with mixed outcomes is what GRPO learns from, so more of
them per rollout means more accuracy per rollout. This reads committed ``gps-env bench`` runs and prints, per
selector and directory, the mixed groups it trained on over the run (the sum over steps of ESR × B: a selector
that probes trains on fewer groups, a selector that picks well on more mixed ones), its mean ESR, its GRPO
steps, and its final held-out accuracy minus uniform's on the same seed (paired, 95% t interval), then the
Spearman correlation across selectors between the two. Uniform must be in each directory (its seeds pair).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from gps_env.bench.runs import read_run
from gps_env.bench.stats import t_half_width


def summarise(path: Path, batch_size: int) -> tuple[float, float, int, float] | None:
    """(mixed groups trained, mean ESR, steps, final accuracy) of one finished run, None if unfinished."""
    run = read_run(path)
    if run is None:
        return None
    esr = np.array([r["esr"] for r in run["steps"]], dtype=float)
    return float(esr.sum() * batch_size), float(esr.mean()), len(esr), float(run["evals"][-1]["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", type=Path, nargs="+", help="gps-env bench directories (each with uniform runs)")
    parser.add_argument("--plot", type=Path, default=None, help="also draw gain against mixed groups here")
    parser.add_argument("--exclude", default="", help="comma list of selectors left out of the correlation "
                        "(still printed and drawn)")
    args = parser.parse_args()
    rows = []
    for out in args.dirs:
        config = json.loads((out / "config.json").read_text())
        by: dict[str, dict[int, tuple]] = {}
        for path in sorted((out / "runs").glob("*-seed*.jsonl")):
            name, _, seed = path.stem.rpartition("-seed")
            result = summarise(path, config["batch_size"])
            if result is not None:
                by.setdefault(name, {})[int(seed)] = result
        if "uniform" not in by:
            parser.error(f"{out} has no finished uniform runs to pair with")
        for name, seeds in by.items():
            common = sorted(set(seeds) & set(by["uniform"]))
            if not common:
                continue
            gain = np.array([seeds[s][3] - by["uniform"][s][3] for s in common])
            rows.append({"dir": out.name, "selector": name, "seeds": len(common),
                         "mixed": float(np.mean([seeds[s][0] for s in common])),
                         "esr": float(np.mean([seeds[s][1] for s in common])),
                         "steps": float(np.mean([seeds[s][2] for s in common])),
                         "gain": float(gain.mean()), "ci": t_half_width(gain) if len(gain) > 1 else float("nan")})
    # a run copied into two directories (bench directories share runs that way) is one row, not two
    unique: dict[tuple, dict] = {}
    for r in rows:
        unique.setdefault((r["selector"], r["seeds"], r["mixed"], r["gain"]), r)
    rows = sorted(unique.values(), key=lambda r: r["mixed"])
    print(f"{'directory':22s} {'selector':16s} seeds  mixed groups  mean ESR  steps  final − uniform's (95% t)")
    for r in rows:
        print(f"{r['dir']:22s} {r['selector']:16s} {r['seeds']:5d}  {r['mixed']:12.0f}  {r['esr']:8.2f}  "
              f"{r['steps']:5.0f}  {r['gain']:+.4f} ± {r['ci']:.4f}")
    excluded = {"uniform", *filter(None, args.exclude.split(","))}
    others = [r for r in rows if r["selector"] not in excluded]
    if len(others) > 2:
        rho, p = stats.spearmanr([r["mixed"] for r in others], [r["gain"] for r in others])
        left_out = f", leaving out {', '.join(sorted(excluded - {'uniform'}))}" if excluded - {"uniform"} else ""
        print(f"\nacross {len(others)} selector rows{left_out}: Spearman(mixed groups, gain) = {rho:+.2f} "
              f"(p = {p:.2f}); gains from {min(r['gain'] for r in others):+.4f} to "
              f"{max(r['gain'] for r in others):+.4f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in rows:
            ax.errorbar(r["mixed"], r["gain"], yerr=r["ci"], fmt="o", capsize=3, color="black" if
                        r["selector"] == "uniform" else "tab:blue")
            ax.annotate(r["selector"], (r["mixed"], r["gain"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("mixed groups trained on over the run (ESR × B, summed over steps)")
        ax.set_ylabel("final held-out accuracy − uniform's (paired, 95% t)")
        ax.set_title(", ".join(d.name for d in args.dirs), fontsize=9)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
