"""Head-to-head benchmark of prompt selectors at matched rollout cost, resumable, with summary and plots.

    gps-env bench --out results/h2h           # all five selectors, one seed, 100 steps: minutes on 2 cores
    gps-env bench --out results/full --full   # the report: 3 seeds, 300 steps
    gps-env bench --out results/abl --selectors gps,gps-lam0,gps-nolatent,gps-nointer --seeds 0 --steps 300
    gps-env plot results/h2h          # redraw the plots from the saved runs
    gps-env warm-start --world reasoning-gym --ship   # train a world's policy and ship it in the package

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
line is restarted from scratch. The summary compares each selector with uniform seed by seed (the paired
difference in final held-out accuracy and its 95% t interval); one seed does not rank selectors.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from gps_env.agents.registry import MAIN_SELECTORS, SELECTORS, selector_help
from gps_env.bench import runs
from gps_env.bench.config import DEFAULT_WORLD, FULL, SMALL, WORLDS, BenchConfig, ConfigError, ConfigMismatch
from gps_env.bench.plots import plot
from gps_env.bench.report import write_summary
from gps_env.bench.stats import summarize

ENGINE_CHOICES = ("auto", "transformers", "vllm")  # gps_env.engines.ENGINE_NAMES, without importing torch


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gps-env", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="run the head-to-head benchmark (resumable)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="selectors:\n" + selector_help())
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
    b.add_argument("--world", choices=sorted(WORLDS), default=DEFAULT_WORLD,
                   help="the world: its task mix and pool sizes (" + "; ".join(
                       f"{name}: {w['task_mix']}, pool {w['pool_size']}, held-out {w['heldout_size']}"
                       for name, w in WORLDS.items()) + f"; default {DEFAULT_WORLD})")
    b.add_argument("--pool-size", type=int, default=None, help="training prompts (default: the world's)")
    b.add_argument("--heldout-size", type=int, default=None, help="held-out prompts (default: the world's)")
    b.add_argument("--task-mix", default=None, help="task mix (default: the world's)")
    b.add_argument("--eval-every-rollouts", type=int, default=None,
                   help=f"held-out evaluation period in rollouts (default: budget/{SMALL['evals']} when "
                        f"--steps is not given and not --full, else budget/{FULL['evals']}; a multiple of B*k)")
    b.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="rollout engine (auto: vLLM where installed and able to run the policy, else transformers)")
    b.add_argument("--policy", default=None, help=argparse.SUPPRESS)
    p = sub.add_parser("plot", help="redraw the plots of a benchmark directory")
    p.add_argument("out", type=Path)
    p.add_argument("--selectors", default=None, help="comma list: draw only these selectors' runs")
    p.add_argument("--seeds", default=None, help="comma list: draw only these seeds' runs")
    p.add_argument("--to", type=Path, default=None, help="folder for the PNGs (default OUT/plots)")
    w = sub.add_parser("warm-start", help="train (or find) a world's warm-started policy; --ship copies it into "
                       "the package with its digests")
    w.add_argument("--world", choices=sorted(WORLDS), default=DEFAULT_WORLD)
    w.add_argument("--ship", action="store_true", help="copy the weights into gps_env/pretrained (SHA256SUMS.json)")
    return parser


def _warm_start_command(args: argparse.Namespace) -> int:
    from gps_env.policy import default_policy, ship, warm_start

    config = default_policy(WORLDS[args.world]["task_mix"])
    path = ship(config) if args.ship else warm_start(config)
    record = json.loads((path / "warm_start.json").read_text())
    print(f"{path}: stopped at SFT step {record['stopped_at_step']}, competence {record['competence']:.3f}, "
          f"{record['seconds']:.0f} s")
    return 0


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> BenchConfig:
    """The configuration ``gps-env bench`` flags ask for (engine ``"auto"`` until resolved); exits on bad flags."""
    from gps_env.policy import mixes

    if args.full and (args.seeds is not None or args.steps is not None):
        parser.error("--full sets --seeds and --steps; give either --full or those flags")
    preset = FULL if args.full else SMALL
    seeds_text = preset["seeds"] if args.seeds is None else args.seeds
    try:
        seeds = [int(s) for s in _csv_list(seeds_text)]
    except ValueError:
        parser.error(f"--seeds must be a comma list of integers, got {seeds_text!r}")
    if not seeds:
        parser.error("--seeds is empty")
    world = {key: value if getattr(args, key) is None else getattr(args, key)
             for key, value in WORLDS[args.world].items()}
    try:
        return BenchConfig.create(
            _csv_list(args.selectors), seeds, preset["steps"] if args.steps is None else args.steps,
            batch_size=args.batch_size, k=args.k, pool_size=world["pool_size"], heldout_size=world["heldout_size"],
            task_mix=world["task_mix"], eval_every_rollouts=args.eval_every_rollouts,
            policy=str(Path(args.policy).resolve()) if args.policy else None, engine="auto",
            known_selectors=SELECTORS, known_mixes=mixes(),
            evals=SMALL["evals"] if not args.full and args.steps is None else FULL["evals"])
    except ConfigError as exc:
        parser.error(str(exc))


def bench(config: BenchConfig, out: Path, selectors: Sequence[str] | None = None,
          seeds: Sequence[int] | None = None) -> int:
    """Run every requested (seed, selector) not finished yet (default: all in ``config``), then summarise
    every finished run of the directory, plot and print the table."""
    from tqdm.auto import tqdm

    selectors = config.selectors if selectors is None else selectors
    seeds = config.seeds if seeds is None else seeds
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo = [(s, seed) for seed in seeds for s in selectors
            if runs.read_run(runs_dir / f"{runs.run_name(s, seed)}.jsonl") is None]
    total = len(seeds) * len(selectors)
    env = None
    start_evals: dict[int, dict] = {}  # one held-out evaluation at step 0 per seed (runs.run_one)
    with tqdm(total=total, initial=total - len(todo), desc="benchmark", unit="run") as overall:
        for s, seed in todo:
            name = runs.run_name(s, seed)
            error_path = runs_dir / f"{name}.error.json"
            error_path.unlink(missing_ok=True)
            try:
                if env is None:
                    env = runs.build_env(config)
                runs.run_one(env, s, seed, config.budget, config.eval_every_rollouts, runs_dir / f"{name}.jsonl",
                             start_evals)
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


def report(config: BenchConfig, out: Path, draw: bool = True) -> int:
    """Summarise every finished run of ``out`` (summary.json/csv/md), plot, print the table; 1 if a run failed."""
    finished = runs.load_runs(out, config.selectors, config.seeds)
    errors = runs.load_errors(out)
    summary = summarize(finished, config.selectors)
    table = write_summary(out, config, summary, errors)
    if draw and finished:
        try:
            plot(out, config, finished)
        except ImportError:
            print("matplotlib is not installed: no plots (pip install 'gps-env[plot]')", file=sys.stderr)
    print(table)
    return 1 if errors else 0


def _read_config(path: Path, parser: argparse.ArgumentParser) -> BenchConfig:
    try:
        return BenchConfig.from_json(path.read_text())
    except ConfigError as exc:
        parser.error(f"{path}: {exc}; remove it or use another --out")


def _plot_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    path = args.out / "config.json"
    if not path.exists():
        parser.error(f"{path} not found: not a benchmark directory")
    config = _read_config(path, parser)
    selectors = config.selectors if args.selectors is None else _csv_list(args.selectors)
    unknown = [s for s in selectors if s not in config.selectors]
    if unknown:
        parser.error(f"selector(s) {', '.join(unknown)} not in this benchmark; it has {', '.join(config.selectors)}")
    try:
        seeds = config.seeds if args.seeds is None else [int(x) for x in _csv_list(args.seeds)]
    except ValueError:
        parser.error(f"--seeds must be a comma list of integers, got {args.seeds!r}")
    finished = runs.load_runs(args.out, selectors, seeds)
    if not finished:
        parser.error(f"no finished runs in {args.out / 'runs'}")
    for p in plot(args.out, config, finished, args.to):
        print(p)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "plot":
        return _plot_command(args, parser)
    if args.command == "warm-start":
        return _warm_start_command(args)

    config = config_from_args(args, parser)
    config = config.replace(engine=runs.resolved_engine(args.engine, config))
    requested = {"selectors": config.selectors, "seeds": config.seeds}
    out: Path = args.out
    path = out / "config.json"
    if path.exists():
        # Selectors and seeds may be added to a directory; everything that defines the world may not change.
        try:
            config = _read_config(path, parser).grown(config)
        except ConfigMismatch as exc:
            parser.error(f"{out} holds a benchmark with a {exc}; use another --out or the same flags")
    else:
        out.mkdir(parents=True, exist_ok=True)
    runs.write_atomic(path, config.to_json())
    return bench(config, out, **requested)
