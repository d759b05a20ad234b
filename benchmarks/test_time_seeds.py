"""Test-time allocation over several seeds: the samples each rule saves against uniform, with 95% intervals.

    for s in 0 1 2 3 4; do OMP_NUM_THREADS=1 python benchmarks/test_time.py --world reasoning-gym --seed $s \\
        --json docs/results/test_time_rg_v1_seeds/seed$s.json; done
    python benchmarks/test_time_seeds.py docs/results/test_time_rg_v1_seeds/seed*.json \
        --plot docs/figures/test_time_rg_v1_seeds.png

Reads the ``--json`` files of ``benchmarks/test_time.py`` (one training run and one held-out reservoir per
seed) and prints, per rule and per uniform budget, the share of uniform's samples the rule saves at equal
coverage: the seed mean with its 95% t interval, and the lowest seed. A seed on which a rule never reaches
uniform's coverage (within the budgets test_time.py tries) saved less than nothing there; it counts as 0
and the cell is marked "≤" (the mean is then an upper bound). ``--plot PNG`` draws the same figures (needs
matplotlib: ``pip install 'gps-env[plot]'``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gps_env.bench.stats import mean_ci


def draw(path: Path, title: str, per_prompt: list[float], table: dict[str, list[tuple[float, float, bool]]]) -> None:
    """Saved share per budget, one line per rule with its 95% interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for rule, cells in table.items():
        means = [100 * m for m, _, _ in cells]
        halves = [100 * h for _, h, _ in cells]
        ax.errorbar(per_prompt, means, yerr=halves, marker="o", capsize=3, label=rule)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.axhline(20, color="grey", linewidth=0.8, linestyle=":", label="20% (issue 18's goal)")
    ax.set_xlabel("uniform's samples per held-out prompt")
    ax.set_ylabel("samples saved at equal coverage (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", type=Path, nargs="+", help="test_time.py --json outputs, one per seed")
    parser.add_argument("--rules", nargs="+", default=["gps-coverage", "neighbours-coverage", "neighbours-window",
                                                        "oracle-coverage"])
    parser.add_argument("--plot", type=Path, help="also draw the table into this PNG")
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.files]
    # reservoir and orders: None in files written before test_time.py recorded them (all with its defaults)
    worlds = {(r["world"], r["train_steps"], tuple(r["per_prompt"]), r.get("reservoir"), r.get("orders"))
              for r in runs}
    if len(worlds) != 1:
        parser.error("the files mix settings (world, train steps, budgets, reservoir, orders): "
                     f"{sorted(worlds, key=str)}")
    (world, steps, per_prompt, _, _), = worlds
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        parser.error(f"a seed appears twice: {sorted(seeds)}")
    print(f"{world}, {steps} training steps, seeds {sorted(seeds)}: samples saved against uniform at equal "
          "coverage, seed mean ± 95% t interval [lowest seed]")
    for key in ("gps", "neighbours"):
        mean, half = mean_ci([r["spearman"][key] for r in runs])
        print(f"  Spearman of {key} against held-out success: {mean:.3f} ± {half or 0:.3f}")
    print(f"  neighbours chosen by leave-one-out: {[r['neighbours'] for r in runs]}")
    print(f"{'rule':>22} " + " ".join(f"{p:>22}" for p in (f'{q:g}/prompt' for q in per_prompt)))
    table: dict[str, list[tuple[float, float, bool]]] = {}
    for rule in args.rules:
        cells, table[rule] = [], []
        for i in range(len(per_prompt)):
            values = [r["saved"][rule][i] for r in runs]
            censored = any(v is None for v in values)
            values = [0.0 if v is None else v for v in values]
            mean, half = mean_ci(values)
            table[rule].append((mean, half or 0.0, censored))
            cells.append(f"{'≤' if censored else ''}{mean:+.0%} ± {half or 0:.0%} [{min(values):+.0%}]")
        print(f"{rule:>22} " + " ".join(f"{c:>22}" for c in cells))
    if args.plot:
        draw(args.plot, f"test-time allocation, {world}, seeds {sorted(seeds)}: mean ± 95% t", per_prompt, table)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
