"""The benchmark's plots (matplotlib, imported when drawing, with the Agg backend)."""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gps_env.bench.config import BenchConfig, as_config
from gps_env.bench.stats import cost_breakdown, moving_average, seed_mean_curve

#: The files :func:`plot` draws, in ``out/plots`` by default.
PLOTS = ("accuracy.png", "esr.png", "spearman.png", "cost.png", "accuracy_seconds.png")


def plot(out: Path, config: BenchConfig | Mapping[str, Any], runs: Sequence[dict],
         folder: Path | None = None) -> list[Path]:
    """Draw accuracy vs rollouts and vs seconds, ESR and Spearman vs step and the cost breakdown under ``folder``
    (default ``out/plots``), for the selectors that have runs in ``runs``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = as_config(config)
    selectors = [s for s in config.selectors if any(r["selector"] == s for r in runs)]
    # ten colours, then the same ten dashed, then dotted: a dozen selectors stay tellable apart
    palette = plt.get_cmap("tab10").colors
    style = {s: {"color": palette[i % 10], "linestyle": ("-", "--", ":")[i // 10 % 3]} for i, s in enumerate(selectors)}
    folder = out / "plots" if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    seeds = sorted({r["seed"] for r in runs})
    title = f"B={config.batch_size}, k={config.k}, seeds {seeds}"
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4))
    for s in selectors:
        xs, m = seed_mean_curve([r for r in runs if r["selector"] == s])
        ax.plot(xs, m.mean(axis=0), marker="o", label=s, **style[s])
        if len(m) > 1:
            ax.fill_between(xs, m.min(axis=0), m.max(axis=0), alpha=0.15, color=style[s]["color"])
    ax.set(xlabel="selector rollouts (train + probe)", ylabel="held-out accuracy", title=f"accuracy ({title})")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    paths.append(folder / PLOTS[0])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for s in selectors:
        mine = [r for r in runs if r["selector"] == s]
        _, m = seed_mean_curve(mine)
        _, secs = seed_mean_curve(mine, "selector_seconds")
        ax.plot(secs.mean(axis=0), m.mean(axis=0), marker="o", label=s, **style[s])
    ax.set(xlabel="selector seconds (train + probe phases, mean over seeds)", ylabel="held-out accuracy",
           title=f"accuracy vs time ({title})")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    paths.append(folder / PLOTS[4])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    window = max(1, max(len(r["steps"]) for r in runs) // 30)  # one smoothing window for every curve
    for fname, key, label in ((PLOTS[1], "esr", "effective-sample ratio"), (PLOTS[2], "spearman", "Spearman ρ")):
        fig, ax = plt.subplots(figsize=(8, 4))
        for s in selectors:
            seqs = [[np.nan if st.get(key) is None else st[key] for st in r["steps"]]
                    for r in runs if r["selector"] == s]
            n = max(map(len, seqs))
            mat = np.array([q + [np.nan] * (n - len(q)) for q in seqs], dtype=np.float64)
            if np.all(np.isnan(mat)):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # mean of an all-NaN column
                ys = np.nanmean(mat, axis=0)
            ax.plot(np.arange(1, n + 1), moving_average(ys, window), label=s, marker="o" if n < 30 else None,
                    **style[s])
        smooth = f", moving average over {window} steps" if window > 1 else ""
        ax.set(xlabel="GRPO step", ylabel=label, title=f"{label} ({title}{smooth})")
        if ax.lines:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data (no selector reported it)", ha="center", transform=ax.transAxes)
        paths.append(folder / fname)
        fig.tight_layout()
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    parts = ("train_generate", "train_update", "select", "probe", "eval")
    labels = ("train generate+verify", "train update", "select", "probe", "eval")
    costs = {s: [cost_breakdown(r) for r in runs if r["selector"] == s] for s in selectors}
    bottom = np.zeros(len(selectors))
    for part, label in zip(parts, labels):
        vals = np.array([statistics.fmean(c[part] for c in costs[s]) for s in selectors])
        ax.bar(selectors, vals, bottom=bottom, label=label)
        bottom += vals
    ax.tick_params(axis="x", labelrotation=30 if len(selectors) > 5 else 0)
    ax.set(ylabel="seconds per run (mean over seeds)", title=f"cost breakdown ({title})")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    paths.append(folder / PLOTS[3])
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
