"""Statistics of finished runs: confidence intervals, rollouts to a target, speedups, paired comparisons.

A run record is what :func:`gps_env.bench.runs.read_run` returns: ``selector``, ``seed``, ``steps`` (one dict
per GRPO step), ``evals`` (one dict per held-out checkpoint) and ``end`` (the final ledger).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from gps_env.bench.config import BASELINE

#: Verdicts of :func:`paired_comparison`.
ONE_SEED = "one seed: no ranking"
NOISE = "inside the noise"
AHEAD, BEHIND = "ahead", "behind"


def t_half_width(values: Sequence[float], confidence: float = 0.95) -> float:
    """Half-width of the two-sided Student-t confidence interval of the mean of ``values`` (2 or more)."""
    from scipy import stats  # imported here: it takes a while and only the summaries need it

    n = len(values)
    if n < 2:
        raise ValueError(f"a t interval needs 2 or more values, got {n}")
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)


def mean_ci(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and half-width of its 95% t confidence interval (half-width None with fewer than 2 values)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return mean, None
    return mean, t_half_width(xs)


def mean_ignoring_none(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None (nor NaN); None if there are none."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(xs) if xs else None


def first_reach(xs: Sequence[float], ys: Sequence[float], target: float | None) -> float | None:
    """The x at which the curve ``ys(xs)`` first reaches ``target`` (linear interpolation); None if never."""
    if target is None:
        return None
    for i, (x, y) in enumerate(zip(xs, ys)):
        if y >= target:
            if i == 0:
                return float(x)
            x0, y0 = xs[i - 1], ys[i - 1]
            return float(x0 + (target - y0) / (y - y0) * (x - x0))
    return None


def speedup(baseline: float | None, selector: float | None) -> float | None:
    """``baseline / selector`` cost to reach the same accuracy (None if either never reached it)."""
    if baseline is None or selector is None:
        return None
    if selector <= 0:
        return 1.0 if baseline <= 0 else math.inf
    return baseline / selector


def rollout_saving(selector: float | None, reference: float | None) -> float | None:
    """``1 - selector / reference`` rollouts to reach the reference's final accuracy (None if not defined)."""
    if selector is None or reference is None or reference <= 0:
        return None
    return 1.0 - selector / reference


def moving_average(ys: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` finite values (NaN where the window holds none)."""
    if window <= 1:
        return ys
    finite = np.isfinite(ys)
    sums = np.convolve(np.where(finite, ys, 0.0), np.ones(window))[: len(ys)]
    counts = np.convolve(finite.astype(np.float64), np.ones(window))[: len(ys)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def seed_mean_curve(runs: Sequence[dict], key: str = "accuracy") -> tuple[list[float], np.ndarray]:
    """Checkpoints shared by all runs and the (runs, checkpoints) matrix of ``key`` at them."""
    if not runs:
        return [], np.zeros((0, 0))
    tables = [{e["checkpoint"]: e[key] for e in run["evals"]} for run in runs]
    checkpoints = sorted(set.intersection(*(set(t) for t in tables)))
    return checkpoints, np.array([[t[c] for c in checkpoints] for t in tables], dtype=np.float64)


def cost_breakdown(run: dict) -> dict[str, float]:
    """Cost breakdown of a finished run (seconds), from its final ledger."""
    sec = run["end"]["ledger"].get("seconds") or {}
    train, probe, ev = sec.get("train", {}), sec.get("probe", {}), sec.get("eval", {})
    return {
        "train_generate": train.get("generate", 0.0) + train.get("verify", 0.0),
        "train_update": train.get("update", 0.0),
        "select": train.get("select", 0.0),
        "probe": sum(probe.values()),
        "eval": sum(ev.values()),
    }


def final_by_seed(runs: Iterable[dict]) -> dict[int, float]:
    """Each run's final held-out accuracy (its last evaluation, at the budget), by seed."""
    return {r["seed"]: float(r["evals"][-1]["accuracy"]) for r in runs if r["evals"]}


def paired_comparison(runs: Sequence[dict], baseline_runs: Sequence[dict]) -> dict[str, Any]:
    """A selector against the baseline over the seeds both finished: the same seed is the same world, initial
    policy and sampling stream, so the per-seed difference in final accuracy cancels what the seeds share.

    Returns ``paired_seeds``, ``paired_diff`` (mean of selector - baseline), ``paired_diff_ci95`` (half-width
    of its 95% t interval, None with one seed) and ``verdict``: ``"one seed: no ranking"``, ``"inside the
    noise"`` (the interval holds 0), ``"ahead"`` or ``"behind"``; all None without a shared seed.
    """
    mine, base = final_by_seed(runs), final_by_seed(baseline_runs)
    seeds = sorted(set(mine) & set(base))
    if not seeds:
        return {"paired_seeds": [], "paired_diff": None, "paired_diff_ci95": None, "verdict": None}
    diffs = [mine[s] - base[s] for s in seeds]
    mean, half = mean_ci(diffs)
    if half is None:
        verdict = ONE_SEED
    elif mean - half <= 0.0 <= mean + half:
        verdict = NOISE
    else:
        verdict = AHEAD if mean > 0 else BEHIND
    return {"paired_seeds": seeds, "paired_diff": mean, "paired_diff_ci95": half, "verdict": verdict}


def summarize(runs: Sequence[dict], selectors: Sequence[str], baseline: str = BASELINE,
              reference: str = "ds") -> dict[str, dict[str, Any]]:
    """Per-selector metrics from finished run records.

    ``target`` is the baseline's final seed-mean accuracy; ``rollouts_to_target`` / ``seconds_to_target``
    is where a selector's seed-mean curve first reaches it (interpolated between evaluations; the baseline
    is measured the same way on its own curve), and ``speedup`` = baseline's / selector's rollouts.
    ``saving_vs_ds`` = 1 - rollouts_sel / rollouts_ds to reach DS's final seed-mean accuracy.
    ``paired_*`` and ``verdict`` compare each selector with the baseline seed by seed
    (:func:`paired_comparison`; the baseline's own verdict is ``"baseline"``).
    """
    by_sel = {s: [r for r in runs if r["selector"] == s] for s in selectors}
    curves = {s: seed_mean_curve(rs) for s, rs in by_sel.items()}
    finals = {s: (float(m[:, -1].mean()) if m.size else None) for s, (_, m) in curves.items()}
    baseline_runs = [r for r in runs if r["selector"] == baseline]

    def reach(s: str, target: float | None, key: str = "rollouts") -> float | None:
        if target is None or not by_sel.get(s):
            return None
        xs = curves[s][0] if key == "rollouts" else list(seed_mean_curve(by_sel[s], key)[1].mean(axis=0))
        return first_reach(xs, list(curves[s][1].mean(axis=0)), target)

    target, ds_target = finals.get(baseline), finals.get(reference)
    base_r, base_s = reach(baseline, target), reach(baseline, target, "selector_seconds")
    ds_r = reach(reference, ds_target)
    out: dict[str, dict[str, Any]] = {}
    for s, rs in by_sel.items():
        if not rs:
            out[s] = {"runs": 0, "seeds": []}
            continue
        checkpoints, matrix = curves[s]
        acc_mean, acc_ci = mean_ci(matrix[:, -1].tolist())
        r_t, s_t = reach(s, target), reach(s, target, "selector_seconds")
        steps = [r["end"]["steps"] for r in rs]
        costs = [cost_breakdown(r) for r in rs]
        if s == baseline:
            paired = {"paired_seeds": sorted(r["seed"] for r in rs), "paired_diff": None,
                      "paired_diff_ci95": None, "verdict": "baseline"}
        else:
            paired = paired_comparison(rs, baseline_runs)
        out[s] = {
            "runs": len(rs),
            "seeds": [r["seed"] for r in rs],
            "final_accuracy": acc_mean,
            "final_accuracy_ci95": acc_ci,
            "final_accuracy_by_seed": matrix[:, -1].tolist(),
            "target_accuracy": target,
            "reached_target": r_t is not None,
            "rollouts_to_target": r_t,
            "seconds_to_target": s_t,
            "speedup": speedup(base_r, r_t),
            "speedup_seconds": speedup(base_s, s_t),
            "saving_vs_ds": rollout_saving(reach(s, ds_target), ds_r) if ds_target is not None else None,
            **paired,
            "mean_esr": mean_ignoring_none(
                mean_ignoring_none(st["esr"] for st in r["steps"]) for r in rs),
            "mean_spearman": mean_ignoring_none(
                mean_ignoring_none(st.get("spearman") for st in r["steps"]) for r in rs),
            "select_seconds_per_step": mean_ignoring_none(
                c["select"] / n for c, n in zip(costs, steps) if n),
            "steps": statistics.fmean(steps),
            "rollouts": statistics.fmean(r["end"]["rollouts"] for r in rs),
            "seconds": {k: statistics.fmean(c[k] for c in costs) for k in costs[0]},
            "curve": {"rollouts": checkpoints, "accuracy": matrix.mean(axis=0).tolist()},
            "final_by_task": {t: statistics.fmean(r["evals"][-1]["by_task"][t] for r in rs)
                              for t in rs[0]["evals"][-1].get("by_task", {})},
        }
    return out
