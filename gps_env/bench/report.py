"""The benchmark's summary files: ``summary.json``, ``summary.csv`` and the Markdown table ``summary.md``."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from gps_env.bench.config import BASELINE, BenchConfig, as_config
from gps_env.bench.runs import json_safe, write_atomic

COLUMNS = ["selector", "runs", "final_accuracy", "final_accuracy_ci95", "paired_diff", "paired_diff_ci95",
           "verdict", "rollouts_to_target", "speedup", "seconds_to_target", "speedup_seconds", "mean_esr",
           "mean_spearman", "select_seconds_per_step", "saving_vs_ds", "steps", "rollouts"]

#: Printed under the table when every selector shown has a single seed.
ONE_SEED_NOTE = (
    "One seed per selector does not rank selectors: rerun with `--full` or more `--seeds` for a paired "
    "comparison. Figures also differ across machines (floating-point kernels differ), so compare only runs "
    "made on one machine.")


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, spec)


def _paired(m: Mapping[str, Any]) -> str:
    if m.get("paired_diff") is None:
        return "-"
    ci = f" ± {m['paired_diff_ci95']:.3f}" if m.get("paired_diff_ci95") is not None else ""
    return f"{m['paired_diff']:+.3f}{ci}"


def markdown_table(summary: Mapping[str, Mapping[str, Any]], target: float | None,
                   failed: Collection[str] = ()) -> str:
    """The summary as Markdown: one row per selector, then the per-task finals.

    A selector without a finished run reads ``failed`` if it is in ``failed`` (it has an error file), else
    ``not run``.
    """
    head = ("| selector | runs | final acc (95% CI) | vs uniform, paired (95% CI) | verdict "
            "| rollouts to uniform final | speedup | seconds to uniform final "
            "| mean ESR | mean Spearman | select s/step | rollout saving vs DS | steps |")
    n_cols = head.count(" | ") + 1
    rows = [head, "|" + "---|" * n_cols]
    for s, m in summary.items():
        if not m["runs"]:
            status = "failed" if s in failed else "not run"
            rows.append(f"| {s} | 0 | {status} |" + " - |" * (n_cols - 3))
            continue
        ci = f" ± {m['final_accuracy_ci95']:.3f}" if m["final_accuracy_ci95"] is not None else ""
        reach = _fmt(m["rollouts_to_target"], ".0f") if m["reached_target"] else "not reached"
        speed = f"{_fmt(m['speedup'], '.2f')}x" if m["speedup"] is not None else "-"
        saving = f"{m['saving_vs_ds']:+.1%}" if m["saving_vs_ds"] is not None else "-"
        rows.append(
            f"| {s} | {m['runs']} | {_fmt(m['final_accuracy'])}{ci} | {_paired(m)} | {m.get('verdict') or '-'} | "
            f"{reach} | {speed} | {_fmt(m['seconds_to_target'], '.1f')} | {_fmt(m['mean_esr'], '.2f')} | "
            f"{_fmt(m['mean_spearman'], '.2f')} | {_fmt(m['select_seconds_per_step'], '.4f')} | {saving} | "
            f"{_fmt(m['steps'], '.0f')} |"
        )
    note = f"\nTarget: uniform's final seed-mean held-out accuracy = {_fmt(target)}.\n" if target is not None else ""
    shown = [m for m in summary.values() if m["runs"]]
    if shown and all(m["runs"] == 1 for m in shown):
        note += f"\n{ONE_SEED_NOTE}\n"
    tasks = list(dict.fromkeys(t for m in shown for t in m["final_by_task"]))
    if tasks:
        note += ("\n| selector | " + " | ".join(f"final {t}" for t in tasks) + " |\n|---|"
                 + "---|" * len(tasks) + "\n")
        for s, m in summary.items():
            if m["runs"]:
                note += f"| {s} | " + " | ".join(_fmt(m["final_by_task"].get(t)) for t in tasks) + " |\n"
    return "\n".join(rows) + "\n" + note


def failed_selectors(config: BenchConfig, errors: Sequence[Mapping[str, Any]]) -> set[str]:
    """The selectors of ``config`` with an error file for one of its seeds."""
    return {e["selector"] for e in errors
            if e.get("selector") in config.selectors and e.get("seed") in config.seeds}


def write_summary(out: Path, config: BenchConfig | Mapping[str, Any], summary: dict,
                  errors: list[dict]) -> str:
    """Write ``summary.json``, ``summary.csv`` and ``summary.md`` under ``out``; returns the Markdown."""
    config = as_config(config)
    target = summary.get(BASELINE, {}).get("final_accuracy")
    write_atomic(out / "summary.json", json.dumps(
        json_safe({"config": config.to_dict(), "target_accuracy": target, "selectors": summary, "errors": errors}),
        indent=1))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for s, m in summary.items():
        writer.writerow([s] + ["" if m.get(c) is None else m[c] for c in COLUMNS[1:]])
    write_atomic(out / "summary.csv", buf.getvalue())
    table = markdown_table(summary, target, failed=failed_selectors(config, errors))
    if errors:
        table += "\nFailed runs: " + ", ".join(f"{e.get('run')} ({e.get('error')})" for e in errors) + "\n"
    write_atomic(out / "summary.md", table)
    return table
