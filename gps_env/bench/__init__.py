"""The head-to-head benchmark of prompt selectors at matched rollout cost (``gps-env bench`` / ``gps-env plot``).

    config.py   BenchConfig: what defines a results directory, the presets, the rule for growing it
    runs.py     one run of one selector under the budget; the run files (read, write, errors)
    stats.py    confidence intervals, rollouts to target, speedups, the paired comparison with uniform
    report.py   summary.json / summary.csv / summary.md
    plots.py    the PNGs
    cli.py      the command line (its docstring is ``gps-env --help``)

The selectors are the registry's (:mod:`gps_env.agents.registry`): ``SELECTORS`` here is that same dict.
"""

from gps_env.agents.registry import MAIN_SELECTORS, SELECTORS, SelectorEntry, build_selector
from gps_env.bench.cli import bench, config_from_args, main, report
from gps_env.bench.config import (
    BASELINE,
    CONFIG_VERSION,
    FULL,
    GROWABLE,
    LEGACY_ENGINE,
    SMALL,
    BenchConfig,
    ConfigError,
    ConfigMismatch,
)
from gps_env.bench.plots import PLOTS, plot
from gps_env.bench.report import COLUMNS, markdown_table, write_summary
from gps_env.bench.runs import (
    build_env,
    checkpoints_for,
    load_errors,
    load_runs,
    read_run,
    resolved_engine,
    run_name,
    run_one,
)
from gps_env.bench.stats import (
    cost_breakdown,
    first_reach,
    mean_ci,
    mean_ignoring_none,
    moving_average,
    paired_comparison,
    rollout_saving,
    seed_mean_curve,
    speedup,
    summarize,
)

__all__ = [
    "BASELINE", "COLUMNS", "CONFIG_VERSION", "FULL", "GROWABLE", "LEGACY_ENGINE", "MAIN_SELECTORS", "PLOTS",
    "SELECTORS", "SMALL", "BenchConfig", "ConfigError", "ConfigMismatch", "SelectorEntry", "bench", "build_env",
    "build_selector", "checkpoints_for", "config_from_args", "cost_breakdown", "first_reach", "load_errors",
    "load_runs", "main", "markdown_table", "mean_ci", "mean_ignoring_none", "moving_average", "paired_comparison",
    "plot", "read_run", "report", "resolved_engine", "rollout_saving", "run_name", "run_one", "seed_mean_curve",
    "speedup", "summarize", "write_summary",
]
