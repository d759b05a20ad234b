"""Head-to-head benchmark of prompt selectors at matched rollout cost, resumable, with summary and plots.

    gps-env bench --out results/h2h           # all five selectors, one seed, 100 steps: minutes on 2 cores
    gps-env bench --out results/full --full   # the report: 3 seeds, 300 steps
    gps-env bench --out results/abl --selectors gps,gps-lam0,gps-nolatent,gps-nointer --seeds 0 --steps 300
    gps-env plot results/h2h          # redraw the plots from the saved runs

Rollouts come from the env's engine: ``--engine auto`` (default) is vLLM where it is installed and runs the
policy, else the transformers engine. The engine it resolves to is part of the configuration (the two
engines draw different random numbers, so their runs are not mixed in one directory; a directory written
before the key existed is a transformers one).

(also ``python -m gps_env.bench ...``). Every selector runs the public loop ``env.step(agent.act(obs))``
until it has spent the rollout budget ``steps * batch_size * k`` selector rollouts (train + probe, as charged
by ``env.ledger``), so selectors are compared at matched cost, not matched steps. Held-out accuracy is
measured with ``env.evaluate()`` at rollout checkpoints (every ``--eval-every-rollouts``, and at the budget).

Layout of ``--out DIR``::

    config.json                      the configuration, engine included (a DIR with a different one is refused)
    runs/<selector>-seed<k>.jsonl    one JSON line per step and per evaluation; the last line is
                                     {"type": "end", ...} once the run finished
    runs/<selector>-seed<k>.error.json   a run that raised (retried on the next invocation)
    summary.json, summary.csv, summary.md, plots/*.png

An interrupted benchmark resumes: finished runs are read back, never recomputed; a run without its end
line is restarted from scratch.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gps_env.agents import GPS, DynamicSampling, MoPPS, Pairing, Uniform
from gps_env.agents.learned import pretrained as pretrained_selector
from gps_env.engines import ENGINE_NAMES
from gps_env.models import PPMConfig
from gps_env.policy import mixes

#: Selector factories ``(env, seed) -> agent``, by CLI name: the five selectors, then variants
#: (GPS over random 4B-prompt candidate sets, the GPS paper's ablations, the pairing paper's fixed pair)
#: and the PPO selector trained on the simulated world (``benchmarks/train_learned_selector.py``).
SELECTORS: dict[str, Callable[[Any, int], Any]] = {
    "uniform": lambda env, seed: Uniform(env, seed=seed),
    "ds": lambda env, seed: DynamicSampling(env, seed=seed),
    "mopps": lambda env, seed: MoPPS(env, seed=seed),
    "pairing": lambda env, seed: Pairing(env, seed=seed, refresh_every=25),
    "gps": lambda env, seed: GPS(env, seed=seed),
    "gps-c4": lambda env, seed: GPS(env, seed=seed, candidates=4),
    "gps-lam0": lambda env, seed: GPS(env, seed=seed, lam=0.0),
    "gps-nolatent": lambda env, seed: GPS(env, seed=seed, ppm=PPMConfig(latent_mode="none")),
    "gps-nointer": lambda env, seed: GPS(env, seed=seed, inter_step=False),
    "pairing-fixed": lambda env, seed: Pairing(env, seed=seed),
    "ppo": lambda env, seed: pretrained_selector(env, seed),
}
#: What ``gps-env bench`` runs without ``--selectors``.
MAIN_SELECTORS = ("uniform", "ds", "mopps", "pairing", "gps")
BASELINE = "uniform"
CONFIG_VERSION = 1
#: ``--full``: the setting of the reproduction report (docs/results.md).
FULL = {"seeds": "0,1,2", "steps": 300}
#: Without ``--full`` (the README's main command: all five selectors in minutes on 2 CPU cores).
SMALL = {"seeds": "0", "steps": 100}

# ---------------------------------------------------------------------------------------------- metrics
#: Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (table to 30, then Cornish-Fisher)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = statistics.NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and half-width of its 95% t confidence interval (half-width None with fewer than 2 values)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    mean = statistics.fmean(xs)
    if len(xs) < 2:
        return mean, None
    return mean, t_quantile_975(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))


def mean_ignoring_none(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None (nor NaN); None if there are none."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(xs) if xs else None


def first_reach(xs: Sequence[float], ys: Sequence[float], target: float) -> float | None:
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


def _seconds(run: dict) -> dict[str, float]:
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


def summarize(runs: Sequence[dict], selectors: Sequence[str], baseline: str = BASELINE,
              reference: str = "ds") -> dict[str, dict[str, Any]]:
    """Per-selector metrics from finished run records (see :func:`load_runs` for their shape).

    ``target`` is the baseline's final seed-mean accuracy; ``rollouts_to_target`` / ``seconds_to_target``
    is where a selector's seed-mean curve first reaches it (interpolated between evaluations; the baseline
    is measured the same way on its own curve), and ``speedup`` = baseline's / selector's rollouts.
    ``saving_vs_ds`` = 1 - rollouts_sel / rollouts_ds to reach DS's final seed-mean accuracy.
    """
    by_sel = {s: [r for r in runs if r["selector"] == s] for s in selectors}
    curves = {s: seed_mean_curve(rs) for s, rs in by_sel.items()}
    finals = {s: (float(m[:, -1].mean()) if m.size else None) for s, (_, m) in curves.items()}

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
        costs = [_seconds(r) for r in rs]
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


# ---------------------------------------------------------------------------------------------- files
def run_name(selector: str, seed: int) -> str:
    return f"{selector}-seed{seed}"


def read_run(path: Path) -> dict | None:
    """The run record in ``path``, or None if the file is missing, unreadable or not finished."""
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    if not lines or lines[0].get("type") != "start" or lines[-1].get("type") != "end":
        return None
    start = lines[0]
    return {
        "selector": start["selector"], "seed": start["seed"],
        "steps": [x for x in lines if x["type"] == "step"],
        "evals": [x for x in lines if x["type"] == "eval"],
        "end": lines[-1],
    }


def load_runs(out: Path, selectors: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    runs = []
    for seed in seeds:
        for s in selectors:
            rec = read_run(out / "runs" / f"{run_name(s, seed)}.jsonl")
            if rec is not None:
                runs.append(rec)
    return runs


def load_errors(out: Path) -> list[dict]:
    errors = []
    for path in sorted((out / "runs").glob("*.error.json")):
        try:
            errors.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            errors.append({"run": path.name, "error": "unreadable error file"})
    return errors


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    return x


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- running
def checkpoints_for(budget: int, every: int) -> list[int]:
    return [*range(every, budget, every), budget]


def run_one(env: Any, selector: str, seed: int, budget: int, every: int, path: Path) -> dict:
    """Run ``selector`` from a fresh episode until ``budget`` selector rollouts, streaming lines to ``path``."""
    from tqdm.auto import tqdm

    checkpoints = checkpoints_for(budget, every)
    with path.open("w") as f:
        def emit(record: dict) -> None:
            f.write(json.dumps(_json_safe(record)) + "\n")
            f.flush()

        emit({"type": "start", "selector": selector, "seed": seed, "budget": budget,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        agent = SELECTORS[selector](env, seed)
        obs, _ = env.reset(seed=seed)
        start = time.perf_counter()
        ledger = env.ledger

        def evaluate(checkpoint_list: list[int], step: int) -> None:
            result = env.evaluate()
            sec = ledger.seconds
            selector_seconds = sum(sum(sec[p].values()) for p in ("train", "probe"))
            for c in checkpoint_list:
                emit({"type": "eval", "checkpoint": c, "step": step, "rollouts": ledger.selector_rollouts,
                      "accuracy": result["accuracy"], "by_task": result["by_task"],
                      "selector_seconds": selector_seconds, "wall_seconds": time.perf_counter() - start})

        evaluate([0], 0)
        nxt = 0
        with tqdm(total=budget, desc=run_name(selector, seed), leave=False, unit="rollout") as bar:
            while ledger.selector_rollouts < budget:
                before_r = ledger.selector_rollouts
                before = {p: dict(v) for p, v in ledger.seconds.items()}
                obs, esr, _, _, info = env.step(agent.act(obs))
                spent = ledger.selector_rollouts - before_r
                if spent <= 0:
                    raise RuntimeError(f"step {info['step']} spent no selector rollouts; the run cannot finish")
                d = {p: {ph: ledger.seconds[p][ph] - before[p][ph] for ph in ledger.seconds[p]} for p in before}
                emit({"type": "step", "step": info["step"], "rollouts": ledger.selector_rollouts, "esr": esr,
                      "spearman": info.get("spearman"), "mean_reward": info.get("mean_reward"),
                      "seconds": {"generate": d["train"]["generate"], "verify": d["train"]["verify"],
                                  "update": d["train"]["update"], "select": d["train"]["select"],
                                  "probe": sum(d["probe"].values())}})
                bar.update(spent)
                due = []
                while nxt < len(checkpoints) and ledger.selector_rollouts >= checkpoints[nxt]:
                    due.append(checkpoints[nxt])
                    nxt += 1
                if due:
                    evaluate(due, info["step"])
        if nxt < len(checkpoints):  # only if the loop exited without reaching them (cannot happen)
            evaluate(checkpoints[nxt:], int(obs["step"][0]))
        end = {"type": "end", "steps": int(obs["step"][0]), "rollouts": ledger.selector_rollouts,
               "wall_seconds": time.perf_counter() - start, "ledger": ledger.summary()}
        emit(end)
    return read_run(path)


def build_env(config: dict) -> Any:
    from gps_env.env import PromptSelectionEnv

    return PromptSelectionEnv(
        batch_size=config["batch_size"], rollouts_per_prompt=config["k"], max_steps=10**9,
        pool_size=config["pool_size"], heldout_size=config["heldout_size"], eval_every=0,
        task_mix=config["task_mix"], policy=config["policy"], world_seed=config["world_seed"],
        engine=config.get("engine", LEGACY_ENGINE),
    )


#: The engine of benchmark directories written before ``config["engine"]`` existed.
LEGACY_ENGINE = "transformers"


def resolved_engine(requested: str, config: dict) -> str:
    """What ``--engine`` means for this benchmark's policy: ``"vllm"`` or ``"transformers"``."""
    import importlib.util

    if requested != "auto":
        return requested
    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    from transformers import AutoConfig

    from gps_env.engines import resolve_engine
    from gps_env.policy import PolicyConfig, warm_start

    path = config["policy"] or warm_start(PolicyConfig(mix=config["task_mix"]))
    return resolve_engine(requested, AutoConfig.from_pretrained(path))


# ---------------------------------------------------------------------------------------------- reporting
def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, spec)


COLUMNS = ["selector", "runs", "final_accuracy", "final_accuracy_ci95", "rollouts_to_target", "speedup",
           "seconds_to_target", "speedup_seconds", "mean_esr", "mean_spearman", "select_seconds_per_step",
           "saving_vs_ds", "steps", "rollouts"]


def markdown_table(summary: dict[str, dict[str, Any]], target: float | None) -> str:
    head = ("| selector | runs | final acc (95% CI) | rollouts to uniform final | speedup | seconds to uniform final "
            "| mean ESR | mean Spearman | select s/step | rollout saving vs DS | steps |")
    rows = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for s, m in summary.items():
        if not m["runs"]:
            rows.append(f"| {s} | 0 | failed | - | - | - | - | - | - | - | - |")
            continue
        ci = f" ± {m['final_accuracy_ci95']:.3f}" if m["final_accuracy_ci95"] is not None else ""
        reach = _fmt(m["rollouts_to_target"], ".0f") if m["reached_target"] else "not reached"
        speed = f"{_fmt(m['speedup'], '.2f')}x" if m["speedup"] is not None else "-"
        saving = f"{m['saving_vs_ds']:+.1%}" if m["saving_vs_ds"] is not None else "-"
        rows.append(
            f"| {s} | {m['runs']} | {_fmt(m['final_accuracy'])}{ci} | {reach} | {speed} | "
            f"{_fmt(m['seconds_to_target'], '.1f')} | {_fmt(m['mean_esr'], '.2f')} | "
            f"{_fmt(m['mean_spearman'], '.2f')} | {_fmt(m['select_seconds_per_step'], '.4f')} | {saving} | "
            f"{_fmt(m['steps'], '.0f')} |"
        )
    note = f"\nTarget: uniform's final seed-mean held-out accuracy = {_fmt(target)}.\n" if target is not None else ""
    tasks = list(dict.fromkeys(t for m in summary.values() if m["runs"] for t in m["final_by_task"]))
    if tasks:
        note += ("\n| selector | " + " | ".join(f"final {t}" for t in tasks) + " |\n|---|"
                 + "---|" * len(tasks) + "\n")
        for s, m in summary.items():
            if m["runs"]:
                note += f"| {s} | " + " | ".join(_fmt(m["final_by_task"].get(t)) for t in tasks) + " |\n"
    return "\n".join(rows) + "\n" + note


def write_summary(out: Path, config: dict, summary: dict, errors: list[dict]) -> str:
    target = summary.get(BASELINE, {}).get("final_accuracy")
    _write_atomic(out / "summary.json", json.dumps(
        _json_safe({"config": config, "target_accuracy": target, "selectors": summary, "errors": errors}), indent=1))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for s, m in summary.items():
        writer.writerow([s] + ["" if m.get(c) is None else m[c] for c in COLUMNS[1:]])
    _write_atomic(out / "summary.csv", buf.getvalue())
    table = markdown_table(summary, target)
    if errors:
        table += "\nFailed runs: " + ", ".join(f"{e.get('run')} ({e.get('error')})" for e in errors) + "\n"
    _write_atomic(out / "summary.md", table)
    return table


PLOTS = ("accuracy.png", "esr.png", "spearman.png", "cost.png", "accuracy_seconds.png")


def plot(out: Path, config: dict, runs: Sequence[dict], folder: Path | None = None) -> list[Path]:
    """Draw accuracy vs rollouts and vs seconds, ESR and Spearman vs step and the cost breakdown under ``folder``
    (default ``out/plots``), for the selectors that have runs in ``runs``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    selectors = [s for s in config["selectors"] if any(r["selector"] == s for r in runs)]
    folder = out / "plots" if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    seeds = sorted({r["seed"] for r in runs})
    title = f"B={config['batch_size']}, k={config['k']}, seeds {seeds}"
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4))
    for s in selectors:
        xs, m = seed_mean_curve([r for r in runs if r["selector"] == s])
        ax.plot(xs, m.mean(axis=0), marker="o", label=s)
        if len(m) > 1:
            ax.fill_between(xs, m.min(axis=0), m.max(axis=0), alpha=0.15)
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
        ax.plot(secs.mean(axis=0), m.mean(axis=0), marker="o", label=s)
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
            ax.plot(np.arange(1, n + 1), moving_average(ys, window), label=s, marker="o" if n < 30 else None)
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
    costs = {s: [_seconds(r) for r in runs if r["selector"] == s] for s in selectors}
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


# ---------------------------------------------------------------------------------------------- CLI
def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gps-env", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="run the head-to-head benchmark (resumable)")
    b.add_argument("--selectors", default=",".join(MAIN_SELECTORS),
                   help=f"comma list of {', '.join(SELECTORS)} (uniform is always included; "
                        f"default: {','.join(MAIN_SELECTORS)})")
    b.add_argument("--seeds", default=None, help=f"comma list of integer seeds (default {SMALL['seeds']})")
    b.add_argument("--steps", type=int, default=None,
                   help=f"GRPO steps of uniform; budget = steps * B * k rollouts (default {SMALL['steps']})")
    b.add_argument("--full", action="store_true",
                   help=f"the report's setting: --seeds {FULL['seeds']} --steps {FULL['steps']}")
    b.add_argument("--out", type=Path, required=True, help="results directory")
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--k", type=int, default=8, help="rollouts per prompt")
    b.add_argument("--pool-size", type=int, default=1000)
    b.add_argument("--heldout-size", type=int, default=400)
    b.add_argument("--task-mix", default="default")
    b.add_argument("--eval-every-rollouts", type=int, default=None,
                   help="held-out evaluation period in rollouts (default: budget/6, a multiple of B*k)")
    b.add_argument("--engine", choices=ENGINE_NAMES, default="auto",
                   help="rollout engine (auto: vLLM where installed and able to run the policy, else transformers)")
    b.add_argument("--policy", default=None, help=argparse.SUPPRESS)
    p = sub.add_parser("plot", help="redraw the plots of a benchmark directory")
    p.add_argument("out", type=Path)
    p.add_argument("--selectors", default=None, help="comma list: draw only these selectors' runs")
    p.add_argument("--seeds", default=None, help="comma list: draw only these seeds' runs")
    p.add_argument("--to", type=Path, default=None, help="folder for the PNGs (default OUT/plots)")
    return parser


def _config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    preset = FULL if args.full else SMALL
    if args.full and (args.seeds is not None or args.steps is not None):
        parser.error("--full sets --seeds and --steps; give either --full or those flags")
    args.seeds = preset["seeds"] if args.seeds is None else args.seeds
    args.steps = preset["steps"] if args.steps is None else args.steps
    selectors = list(dict.fromkeys(_csv_list(args.selectors)))
    unknown = [s for s in selectors if s not in SELECTORS]
    if unknown:
        parser.error(f"unknown selector(s) {', '.join(unknown)}; valid: {', '.join(SELECTORS)}")
    if BASELINE not in selectors:
        selectors.insert(0, BASELINE)
    try:
        seeds = list(dict.fromkeys(int(s) for s in _csv_list(args.seeds)))
    except ValueError:
        parser.error(f"--seeds must be a comma list of integers, got {args.seeds!r}")
    if not seeds:
        parser.error("--seeds is empty")
    valid_mixes = sorted(mixes())
    if args.task_mix not in valid_mixes:
        parser.error(f"unknown task mix {args.task_mix!r}; valid: {', '.join(valid_mixes)}")
    for name in ("steps", "batch_size", "k", "pool_size", "heldout_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.batch_size > args.pool_size:
        parser.error(f"--batch-size {args.batch_size} exceeds --pool-size {args.pool_size}")
    bk = args.batch_size * args.k
    budget = args.steps * bk
    every = args.eval_every_rollouts
    if every is None:
        every = max(bk, round(budget / 6 / bk) * bk)
    elif every < 1:
        parser.error(f"--eval-every-rollouts must be >= 1, got {every}")
    return {
        "version": CONFIG_VERSION, "selectors": selectors, "seeds": seeds, "steps": args.steps,
        "batch_size": args.batch_size, "k": args.k, "pool_size": args.pool_size,
        "heldout_size": args.heldout_size, "task_mix": args.task_mix, "world_seed": 0,
        "budget": budget, "eval_every_rollouts": every,
        "policy": str(Path(args.policy).resolve()) if args.policy else None,
    }


def bench(config: dict, out: Path, selectors: Sequence[str] | None = None,
          seeds: Sequence[int] | None = None) -> int:
    """Run every requested (seed, selector) not finished yet (default: all in ``config``), then summarise
    every finished run of the directory, plot and print the table."""
    from tqdm.auto import tqdm

    selectors = config["selectors"] if selectors is None else selectors
    seeds = config["seeds"] if seeds is None else seeds
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo = [(s, seed) for seed in seeds for s in selectors
            if read_run(runs_dir / f"{run_name(s, seed)}.jsonl") is None]
    total = len(seeds) * len(selectors)
    env = None
    with tqdm(total=total, initial=total - len(todo), desc="benchmark", unit="run") as overall:
        for s, seed in todo:
            name = run_name(s, seed)
            error_path = runs_dir / f"{name}.error.json"
            error_path.unlink(missing_ok=True)
            try:
                if env is None:
                    env = build_env(config)
                run_one(env, s, seed, config["budget"], config["eval_every_rollouts"], runs_dir / f"{name}.jsonl")
            except Exception as exc:  # a failing run is recorded; the benchmark carries on
                error_path.write_text(json.dumps({
                    "run": name, "selector": s, "seed": seed, "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }, indent=1))
                tqdm.write(f"run {name} failed: {type(exc).__name__}: {exc} (recorded in {error_path})")
            overall.update(1)
    if env is not None:
        env.close()
    return report(config, out)


def report(config: dict, out: Path, draw: bool = True) -> int:
    runs = load_runs(out, config["selectors"], config["seeds"])
    errors = load_errors(out)
    summary = summarize(runs, config["selectors"])
    table = write_summary(out, config, summary, errors)
    if draw and runs:
        try:
            plot(out, config, runs)
        except ImportError:
            print("matplotlib is not installed: no plots (pip install 'gps-env[plot]')", file=sys.stderr)
    print(table)
    return 1 if errors else 0


#: Config keys a later invocation may extend (runs are keyed by selector and seed).
GROWABLE = ("selectors", "seeds")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "plot":
        path = args.out / "config.json"
        if not path.exists():
            parser.error(f"{path} not found: not a benchmark directory")
        config = json.loads(path.read_text())
        selectors = config["selectors"] if args.selectors is None else _csv_list(args.selectors)
        unknown = [s for s in selectors if s not in config["selectors"]]
        if unknown:
            parser.error(f"selector(s) {', '.join(unknown)} not in this benchmark; "
                         f"it has {', '.join(config['selectors'])}")
        try:
            seeds = config["seeds"] if args.seeds is None else [int(x) for x in _csv_list(args.seeds)]
        except ValueError:
            parser.error(f"--seeds must be a comma list of integers, got {args.seeds!r}")
        runs = load_runs(args.out, selectors, seeds)
        if not runs:
            parser.error(f"no finished runs in {args.out / 'runs'}")
        for p in plot(args.out, config, runs, args.to):
            print(p)
        return 0

    config = _config(args, parser)
    config["engine"] = resolved_engine(args.engine, config)
    requested = {key: config[key] for key in GROWABLE}
    out: Path = args.out
    path = out / "config.json"
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            parser.error(f"{path} is not valid JSON; remove it or use another --out")
        existing.setdefault("engine", LEGACY_ENGINE)
        # Selectors and seeds may be added to a directory; everything that defines the world may not change.
        diff = sorted(k for k in set(existing) | set(config)
                      if k not in GROWABLE and existing.get(k) != config.get(k))
        if diff:
            parser.error(f"{out} holds a benchmark with a different configuration (differs in: {', '.join(diff)}); "
                         "use another --out or the same flags")
        for key in GROWABLE:
            config[key] = list(dict.fromkeys([*existing.get(key, []), *config[key]]))
    else:
        out.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(config, indent=1))
    return bench(config, out, **requested)


if __name__ == "__main__":
    raise SystemExit(main())
