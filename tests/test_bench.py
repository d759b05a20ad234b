"""The head-to-head benchmark CLI (``gps-env bench`` / ``gps-env plot``): metrics, files, resume, errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from gps_env import bench
from gps_env.agents import Uniform, registry
from gps_env.bench import cli, runs, stats
from gps_env.bench.config import BenchConfig, ConfigError, ConfigMismatch

TINY = ["--world", "arithmetic", "--steps", "3", "--batch-size", "4", "--k", "4", "--pool-size", "48",
        "--heldout-size", "16"]
RUN = [s for s in bench.SELECTORS if not s.startswith("ppo")]  # the shipped PPO selectors: B = 32 only
ALL = ",".join(RUN)
SEEDS = [0, 1]


def args(out, policy, selectors=ALL, seeds="0,1", extra=()):
    return ["bench", "--out", str(out), "--selectors", selectors, "--seeds", seeds, *TINY, *extra,
            "--policy", str(policy)]


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- metrics
def test_t_interval_is_scipys():
    from scipy import stats as sps

    xs = [0.1, 0.4, 0.35, 0.2]
    lo, hi = sps.t.interval(0.95, len(xs) - 1, loc=np.mean(xs), scale=sps.sem(xs))
    assert stats.t_half_width(xs) == pytest.approx((hi - lo) / 2)
    for n, table in ((2, 12.706), (3, 4.303), (31, 2.042), (121, 1.980)):  # textbook t_{0.975, n-1}
        ys = [float(i) for i in range(n)]
        assert stats.t_half_width(ys) * math.sqrt(n) / np.std(ys, ddof=1) == pytest.approx(table, abs=1e-3)
    with pytest.raises(ValueError):
        stats.t_half_width([1.0])


def test_mean_ci():
    mean, half = bench.mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-4)
    assert bench.mean_ci([0.5]) == (0.5, None)
    assert bench.mean_ci([]) == (None, None)
    assert bench.mean_ci([0.3, 0.3])[1] == pytest.approx(0.0)


def test_first_reach_speedup_saving_and_means():
    xs = [0, 100, 200, 300]
    assert bench.first_reach(xs, [0.1, 0.2, 0.3, 0.4], 0.4) == pytest.approx(300)
    assert bench.first_reach(xs, [0.1, 0.2, 0.3, 0.4], 0.25) == pytest.approx(150)  # interpolated
    assert bench.first_reach(xs, [0.5, 0.2, 0.3, 0.4], 0.4) == 0  # already there at the start
    assert bench.first_reach(xs, [0.1, 0.2, 0.3, 0.35], 0.4) is None  # never reached
    assert bench.first_reach(xs, [0.1, 0.5, 0.3, 0.35], 0.4) == pytest.approx(75)  # first crossing
    assert bench.speedup(300, 150) == pytest.approx(2.0)
    assert bench.speedup(300, None) is None and bench.speedup(None, 10) is None
    assert bench.speedup(0, 0) == 1.0 and bench.speedup(10, 0) == math.inf
    assert bench.rollout_saving(75, 100) == pytest.approx(0.25)
    assert bench.rollout_saving(None, 100) is None and bench.rollout_saving(5, 0) is None
    assert bench.mean_ignoring_none([None, 0.2, float("nan"), 0.4]) == pytest.approx(0.3)
    assert bench.mean_ignoring_none([None, None]) is None


def fake_run(selector, seed, accuracies, checkpoints=(0, 100, 200, 300), esr=(0.5, 0.5), spearman=(None, None),
             select=1.0):
    evals = [{"checkpoint": c, "rollouts": c, "accuracy": a, "selector_seconds": c / 10, "step": i,
              "by_task": {"addition": a + 0.1, "countdown": a / 2 + seed / 10}}
             for i, (c, a) in enumerate(zip(checkpoints, accuracies))]
    steps = [{"step": i + 1, "esr": e, "spearman": s} for i, (e, s) in enumerate(zip(esr, spearman))]
    seconds = {"train": {"generate": 2.0, "verify": 1.0, "update": 3.0, "select": select},
               "probe": {"generate": 0.5, "verify": 0.5, "update": 0.0, "select": 0.0},
               "eval": {"generate": 4.0, "verify": 0.0, "update": 0.0, "select": 0.0}}
    return {"selector": selector, "seed": seed, "evals": evals, "steps": steps,
            "end": {"steps": len(steps), "rollouts": checkpoints[-1], "ledger": {"seconds": seconds}}}


def test_summarize_hand_made_curves():
    runs = [
        fake_run("uniform", 0, [0.1, 0.2, 0.3, 0.38]), fake_run("uniform", 1, [0.1, 0.2, 0.3, 0.42]),  # mean 0.4
        fake_run("gps", 0, [0.1, 0.3, 0.5, 0.6], spearman=(0.2, None)),
        fake_run("gps", 1, [0.1, 0.3, 0.5, 0.6], spearman=(0.4, None)),  # seed mean reaches 0.4 at 150
        fake_run("ds", 0, [0.1, 0.15, 0.2, 0.25], esr=(1.0, 0.5)),  # never reaches 0.4; its own final 0.25
        fake_run("ds", 1, [0.1, 0.15, 0.2, 0.25], esr=(1.0, 1.0)),
    ]
    s = bench.summarize(runs, ["uniform", "ds", "gps", "mopps"])
    u, g, d = s["uniform"], s["gps"], s["ds"]
    assert u["final_accuracy"] == pytest.approx(0.4)
    assert u["final_accuracy_ci95"] == pytest.approx(12.706 * math.sqrt(2 * 0.02**2) / math.sqrt(2), rel=1e-4)
    assert u["rollouts_to_target"] == pytest.approx(300) and u["speedup"] == pytest.approx(1.0)
    assert g["rollouts_to_target"] == pytest.approx(150) and g["speedup"] == pytest.approx(2.0)
    assert g["seconds_to_target"] == pytest.approx(15.0) and g["speedup_seconds"] == pytest.approx(2.0)
    assert g["final_accuracy_ci95"] == pytest.approx(0.0)
    assert d["reached_target"] is False and d["rollouts_to_target"] is None and d["speedup"] is None
    # DS reaches its own final 0.25 at 300; GPS reaches 0.25 at 75 (interpolated): saving 75%
    assert d["saving_vs_ds"] == pytest.approx(0.0)
    assert g["saving_vs_ds"] == pytest.approx(0.75)
    assert d["mean_esr"] == pytest.approx(0.875)
    assert g["mean_spearman"] == pytest.approx(0.3) and u["mean_spearman"] is None
    assert g["select_seconds_per_step"] == pytest.approx(0.5)
    assert g["seconds"] == {"train_generate": 3.0, "train_update": 3.0, "select": 1.0, "probe": 1.0, "eval": 4.0}
    assert s["mopps"] == {"runs": 0, "seeds": []}
    assert g["final_by_task"] == pytest.approx({"addition": 0.7, "countdown": 0.35})
    table = bench.markdown_table(s, u["final_accuracy"])
    assert "| gps | 0.700 | 0.350 |" in table and "final countdown" in table
    assert "| gps | 2 |" in table and "not reached" in table and "2.00x" in table and "| mopps | 0 | not run |" in table
    assert "| mopps | 0 | failed |" in bench.markdown_table(s, u["final_accuracy"], failed={"mopps"})


def test_paired_verdicts_against_uniform():
    base = [0.1, 0.2, 0.3]
    one = bench.summarize([fake_run("uniform", 0, base + [0.40]), fake_run("gps", 0, base + [0.60])],
                          ["uniform", "gps"])
    assert one["gps"]["paired_diff"] == pytest.approx(0.2) and one["gps"]["paired_diff_ci95"] is None
    assert one["gps"]["verdict"] == "one seed: no ranking" and one["gps"]["paired_seeds"] == [0]
    assert one["uniform"]["verdict"] == "baseline" and one["uniform"]["paired_diff"] is None
    table = bench.markdown_table(one, 0.4)
    assert "| +0.200 | one seed: no ranking |" in table
    assert "does not rank selectors" in table and "--full" in table and "one machine" in table

    finals = {0: 0.40, 1: 0.45, 2: 0.38}
    gaps = {0: 0.10, 1: 0.12, 2: 0.11}
    runs_ = [fake_run("uniform", k, base + [f]) for k, f in finals.items()]
    runs_ += [fake_run("mopps", k, base + [f]) for k, f in finals.items()]  # identical curves
    runs_ += [fake_run("gps", k, base + [f + gaps[k]]) for k, f in finals.items()]
    runs_ += [fake_run("ds", k, base + [f - gaps[k]]) for k, f in finals.items()]
    runs_ += [fake_run("pairing", k, base + [finals[k] + d]) for k, d in ((0, 0.05), (1, -0.05), (2, 0.01))]
    runs_ += [fake_run("gps-m", k, base + [finals.get(k, 0.5) + 0.1]) for k in (1, 2, 7)]  # seed 7: uniform has none
    s = bench.summarize(runs_, ["uniform", "ds", "mopps", "pairing", "gps", "gps-m"])
    assert s["mopps"]["paired_diff"] == 0 and s["mopps"]["paired_diff_ci95"] == 0
    assert s["mopps"]["verdict"] == "inside the noise"
    assert s["pairing"]["verdict"] == "inside the noise"
    assert s["gps"]["verdict"] == "ahead" and s["ds"]["verdict"] == "behind"
    assert s["gps"]["paired_diff"] == pytest.approx(0.11) and s["gps"]["paired_seeds"] == [0, 1, 2]
    assert s["gps"]["paired_diff_ci95"] == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-3)
    assert s["gps-m"]["paired_seeds"] == [1, 2] and s["gps-m"]["verdict"] == "ahead"
    table = bench.markdown_table(s, s["uniform"]["final_accuracy"])
    assert "| gps | 3 |" in table and "| +0.110 ± 0.025 | ahead |" in table and "| behind |" in table
    assert "does not rank selectors" not in table
    no_base = bench.summarize([fake_run("gps", 0, base + [0.6])], ["uniform", "gps"])
    assert no_base["gps"]["verdict"] is None and no_base["uniform"] == {"runs": 0, "seeds": []}


def test_a_selector_never_run_is_not_run_and_one_with_an_error_file_failed(tmp_path):
    out = tmp_path / "o"
    (out / "runs").mkdir(parents=True)
    config = BenchConfig.create(["uniform", "mopps", "gps", "ds"], [0, 1], 3, batch_size=4, k=4, pool_size=48)
    (out / "runs" / "mopps-seed1.error.json").write_text(json.dumps(
        {"run": "mopps-seed1", "selector": "mopps", "seed": 1, "error": "RuntimeError: boom"}))
    (out / "runs" / "gps-seed0.error.json").write_text("{not json")  # still names its selector and seed
    (out / "runs" / "ds-seed5.error.json").write_text(json.dumps(
        {"run": "ds-seed5", "selector": "ds", "seed": 5, "error": "old"}))  # not a seed of this config
    errors = runs.load_errors(out)
    assert {(e["selector"], e["seed"]) for e in errors} == {("mopps", 1), ("gps", 0), ("ds", 5)}
    summary = bench.summarize([fake_run("uniform", 0, [0.1, 0.2, 0.3, 0.4])], config.selectors)
    table = bench.write_summary(out, config, summary, errors)
    assert "| mopps | 0 | failed |" in table and "| gps | 0 | failed |" in table
    assert "| ds | 0 | not run |" in table and "| uniform | 1 |" in table
    assert all(row.count("|") == 14 for row in table.splitlines()[:6])
    assert (out / "summary.md").read_text() == table
    assert (out / "summary.csv").read_text().splitlines()[0].split(",") == bench.COLUMNS


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def finished(tiny_policy, tmp_path_factory):
    """One full tiny benchmark (all selectors, two seeds), shared read-only by the tests below."""
    out = tmp_path_factory.mktemp("bench") / "h2h"
    rc = bench.main(args(out, tiny_policy))
    return out, rc


def copy_of(finished, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(finished[0], dst)  # copy2 keeps mtimes
    return dst


def test_full_run_writes_everything(finished, capsys):
    out, rc = finished
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["selectors"] == RUN and config["seeds"] == SEEDS
    assert config["budget"] == 3 * 4 * 4 and config["eval_every_rollouts"] == 16
    for s in RUN:
        for seed in SEEDS:
            recs = lines(out / "runs" / f"{s}-seed{seed}.jsonl")
            assert recs[0]["type"] == "start" and recs[-1]["type"] == "end"
            assert recs[0]["torch_threads"] == torch.get_num_threads()  # what a bit-for-bit replay needs
            steps = [r for r in recs if r["type"] == "step"]
            evals = [r for r in recs if r["type"] == "eval"]
            assert [e["checkpoint"] for e in evals] == [0, 16, 32, 48]
            assert all(e["rollouts"] >= e["checkpoint"] for e in evals)
            assert steps[-1]["rollouts"] >= 48 and (len(steps) < 2 or steps[-2]["rollouts"] < 48)
            assert set(steps[0]["seconds"]) == {"generate", "verify", "update", "select", "probe"}
            assert recs[-1]["rollouts"] == recs[-1]["ledger"]["rollouts"]["selector"]
    assert not list((out / "runs").glob("*.error.json"))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["selectors"]) == set(RUN)
    assert summary["selectors"]["uniform"]["runs"] == 2
    assert summary["selectors"]["uniform"]["steps"] == 3
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert header == bench.COLUMNS
    md = (out / "summary.md").read_text()
    assert md.startswith("| selector |") and all(f"| {s} | 2 |" in md for s in RUN)
    for name in bench.PLOTS:
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_step0_evaluation_is_shared_per_seed_and_changes_no_trajectory(finished, tmp_path):
    out, _ = finished
    for seed in SEEDS:
        firsts = [lines(out / "runs" / f"{s}-seed{seed}.jsonl")[1] for s in RUN]
        assert firsts[0]["checkpoint"] == 0 and "shared" not in firsts[0]  # the seed's first run evaluates
        assert all(e["shared"] is True and e["accuracy"] == firsts[0]["accuracy"] for e in firsts[1:])
    # mopps-seed0 reused uniform's evaluation; alone, evaluating its own step 0, it takes the same steps
    config = json.loads((out / "config.json").read_text())
    env = runs.build_env(config)
    alone = tmp_path / "mopps-seed0.jsonl"
    runs.run_one(env, "mopps", 0, config["budget"], config["eval_every_rollouts"], alone)
    env.close()
    mine, theirs = lines(alone), lines(out / "runs" / "mopps-seed0.jsonl")
    assert "shared" not in mine[1]
    for kind, keys in (("step", ("rollouts", "esr", "mean_reward", "spearman")), ("eval", ("accuracy", "by_task"))):
        assert [[r[k] for k in keys] for r in mine if r["type"] == kind] == \
            [[r[k] for k in keys] for r in theirs if r["type"] == kind]


def test_resume_recomputes_only_missing_or_partial_runs(finished, tmp_path, monkeypatch, tiny_policy):
    out = copy_of(finished, tmp_path)
    (out / "runs" / "ds-seed0.jsonl").unlink()
    partial = out / "runs" / "mopps-seed1.jsonl"
    partial.write_text("\n".join(partial.read_text().splitlines()[:-1]) + "\n")  # drop the end line
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.jsonl") if p != partial}
    calls = []
    real = runs.run_one
    monkeypatch.setattr(runs, "run_one", lambda env, s, seed, *a: calls.append((s, seed)) or real(env, s, seed, *a))
    assert bench.main(args(out, tiny_policy)) == 0
    assert sorted(calls) == [("ds", 0), ("mopps", 1)]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.jsonl") if p.name in kept} == kept
    assert bench.read_run(out / "runs" / "ds-seed0.jsonl") is not None
    assert bench.read_run(partial) is not None
    calls.clear()
    assert bench.main(args(out, tiny_policy)) == 0 and calls == []  # everything finished: nothing recomputed


def test_config_mismatch_is_refused(finished, tmp_path, capsys, tiny_policy):
    out = copy_of(finished, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(SystemExit) as exc:
        bench.main(args(out, tiny_policy, extra=["--k", "2"]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "k" in err and "budget" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_engine_is_part_of_the_configuration(finished, tmp_path, capsys, monkeypatch, tiny_policy):
    """The resolved engine is recorded; a directory from before the key is a transformers one."""
    out = copy_of(finished, tmp_path)
    config = json.loads((out / "config.json").read_text())
    assert config["engine"] == "transformers"  # the tiny policy's head size: transformers even where vLLM is
    del config["engine"]
    (out / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(runs, "run_one", lambda *a: pytest.fail("nothing should run"))
    assert bench.main(args(out, tiny_policy, extra=["--engine", "transformers"])) == 0
    assert json.loads((out / "config.json").read_text())["engine"] == "transformers"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(SystemExit):
        bench.main(args(out, tiny_policy, extra=["--engine", "vllm"]))
    assert "differs in: engine" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_selectors_and_seeds_may_be_added_never_dropped(finished, tmp_path, monkeypatch, tiny_policy):
    out = copy_of(finished, tmp_path)
    calls = []
    monkeypatch.setattr(runs, "run_one", lambda *a: calls.append(a[1:3]))
    assert bench.main(args(out, tiny_policy, selectors="uniform,gps", seeds="1")) == 0
    assert calls == []  # a subset of finished runs: nothing to run
    config = json.loads((out / "config.json").read_text())
    assert config["selectors"] == RUN and config["seeds"] == SEEDS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selectors"]["gps-pool"]["runs"] == 2  # the report still covers every finished run
    bench.main(args(out, tiny_policy, selectors="uniform", seeds="1,7"))
    assert calls == [("uniform", 7)]
    assert json.loads((out / "config.json").read_text())["seeds"] == [0, 1, 7]


def test_full_preset(tmp_path, capsys):
    parser = cli._parser()
    config = cli.config_from_args(parser.parse_args(["bench", "--out", "x", "--full"]), parser)
    assert config.seeds == (0, 1, 2) and config.steps == 300 and config.budget == 300 * 32 * 8
    small = cli.config_from_args(parser.parse_args(["bench", "--out", "x"]), parser)
    assert small.selectors == bench.MAIN_SELECTORS and small.steps == bench.SMALL["steps"]
    assert small.task_mix == "reasoning_gym_v1" and small.pool_size == 20000  # the default world
    assert config.eval_every_rollouts == 12800 and small.eval_every_rollouts == 6400  # budget/6 and budget/4
    stepped = cli.config_from_args(parser.parse_args(["bench", "--out", "x", "--steps", "100"]), parser)
    assert stepped.eval_every_rollouts == 4352  # given steps: budget/6, as directories made before "evals"
    with pytest.raises(SystemExit):
        bench.main(["bench", "--out", str(tmp_path / "o"), "--full", "--steps", "5"])
    assert "--full" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_moving_average():
    ys = np.array([1.0, np.nan, 3.0, 5.0, np.nan, np.nan, np.nan])
    np.testing.assert_allclose(bench.moving_average(ys, 2), [1.0, 1.0, 3.0, 4.0, 5.0, np.nan, np.nan])
    assert bench.moving_average(ys, 1) is ys


@pytest.mark.parametrize(("flags", "words"), [
    (["--selectors", "uniform,nope"], ["nope", "uniform", "ds", "mopps", "pairing", "gps"]),
    (["--task-mix", "nope"], ["nope", "default"]),
    (["--seeds", "0,x"], ["--seeds"]),
])
def test_unknown_names_list_valid_ones(tmp_path, capsys, flags, words):
    with pytest.raises(SystemExit) as exc:
        bench.main(["bench", "--out", str(tmp_path / "o"), *TINY, *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words)
    assert not (tmp_path / "o").exists()


class Boom(Uniform):
    def act(self, obs):
        if int(obs["step"][0]) >= 1:
            raise RuntimeError("selector exploded")
        return super().act(obs)


def test_failing_run_is_recorded_and_benchmark_continues(tmp_path, monkeypatch, capsys, tiny_policy):
    out = tmp_path / "o"
    monkeypatch.setitem(bench.SELECTORS, "mopps", lambda env, seed: Boom(env, seed=seed))
    assert bench.main(args(out, tiny_policy, selectors="mopps,uniform", seeds="0")) == 1
    error = json.loads((out / "runs" / "mopps-seed0.error.json").read_text())
    assert error["selector"] == "mopps" and "selector exploded" in error["error"] and "Traceback" in error["traceback"]
    assert bench.read_run(out / "runs" / "uniform-seed0.jsonl") is not None  # ran after the failure
    assert bench.read_run(out / "runs" / "mopps-seed0.jsonl") is None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selectors"]["mopps"]["runs"] == 0 and summary["errors"][0]["run"] == "mopps-seed0"
    assert "failed" in capsys.readouterr().out
    # fixed selector: the next invocation retries the failed run only
    monkeypatch.setitem(bench.SELECTORS, "mopps", lambda env, seed: Uniform(env, seed=seed))
    assert bench.main(args(out, tiny_policy, selectors="mopps,uniform", seeds="0")) == 0
    assert not (out / "runs" / "mopps-seed0.error.json").exists()
    assert bench.read_run(out / "runs" / "mopps-seed0.jsonl") is not None


def test_plot_subcommand_redraws(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    shutil.rmtree(out / "plots")
    assert bench.main(["plot", str(out)]) == 0
    for name in bench.PLOTS:
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        bench.main(["plot", str(tmp_path / "nothing")])
    assert "not a benchmark directory" in capsys.readouterr().err
    # a subset of selectors and seeds, drawn elsewhere
    assert bench.main(["plot", str(out), "--selectors", "uniform,gps", "--seeds", "1",
                       "--to", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == sorted(bench.PLOTS)
    with pytest.raises(SystemExit):
        bench.main(["plot", str(out), "--selectors", "nope"])
    assert "nope" in capsys.readouterr().err


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "gps_env.bench", "bench", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--selectors" in result.stdout and "--policy" not in result.stdout


def test_shipped_ppo_selector_refuses_another_batch_size(tmp_path, tiny_policy):
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "o"
    assert bench.main(args(out, tiny_policy, selectors="ppo", seeds="0")) == 1  # recorded, not crashed
    error = json.loads((out / "runs" / "ppo-seed0.error.json").read_text())
    assert "shape" in error["error"] and "B=4" in error["error"]
    assert bench.read_run(out / "runs" / "uniform-seed0.jsonl") is not None


# ---------------------------------------------------------------------------------------------- registry
def test_registry_builds_every_selector():
    from gps_env.agents import GPS, GPSMemory, Pairing, SelectorAgent
    from gps_env.simulated import SimulatedPromptSelectionEnv

    assert bench.SELECTORS is registry.SELECTORS  # one dict: patching it changes what the bench runs
    env = SimulatedPromptSelectionEnv(pool_size=300, heldout_size=20, batch_size=8)
    agents = {name: registry.SELECTORS[name](env, 3) for name in registry.SELECTORS if not name.startswith("ppo")}
    for name, agent in agents.items():
        assert isinstance(agent, SelectorAgent), name
        obs, _ = env.reset(seed=0)
        for _ in range(2):  # choose, learn from the step, choose again
            obs, *_ = env.step(agent.act(obs))
        assert int(obs["step"][0]) == 2, name
    assert isinstance(agents["pairing"], Pairing) and agents["pairing"].refresh_every == 25
    assert agents["pairing-fixed"].refresh_every is None
    assert isinstance(agents["gps-pool"], GPS) and agents["gps-pool"].candidates is None
    assert agents["gps"].candidates == 4 and agents["gps"].lam == 0.5 and agents["gps"].inter_step
    assert (agents["gps"].diversity, agents["gps"].draws, agents["gps-min"].diversity) == ("sum", "mean", "min")
    assert isinstance(agents["gps-m"], GPSMemory) and agents["gps-m"].candidates == 4
    assert agents["gps-lam0"].lam == 0.0 and agents["gps-nointer"].inter_step is False
    assert agents["gps-nolatent"].ppm_config.latent_mode == "none"
    assert (agents["gps-cool"].cooldown, agents["gps-m-cool"].cooldown, agents["gps"].cooldown) == (10, 10, 0)
    assert isinstance(agents["gps-m-cool"], GPSMemory) and agents["gps-m-c16"].candidates == 16
    assert agents["gps-c8"].candidates == agents["gps-m-c8"].candidates == 8 and agents["gps-m-c8"].cooldown == 0
    assert agents["gps"].ppm_config.latent_mode != "none"
    assert registry.MAIN_SELECTORS == ("uniform", "ds", "mopps", "pairing", "gps")
    probing = {"ds", "pairing", "pairing-fixed", "greso-probe", "speed-rl", "learnability"}
    assert {n for n, e in registry.SELECTORS.items() if e.probes} == probing
    assert all(e.summary for e in registry.SELECTORS.values())
    assert registry.SELECTORS["ppo"].target == "gps_env.agents.learned:pretrained"


def test_build_selector_names_classes_paths_and_callables():
    from gps_env.agents import GPS, MoPPS, Uniform
    from gps_env.simulated import SimulatedPromptSelectionEnv

    env = SimulatedPromptSelectionEnv(pool_size=300, heldout_size=20, batch_size=8)
    assert isinstance(registry.build_selector("mopps", env, seed=1), MoPPS)
    assert isinstance(registry.build_selector("MoPPS", env), MoPPS)
    assert isinstance(registry.build_selector("gps_env.agents.uniform:Uniform", env), Uniform)
    assert isinstance(registry.build_selector(Uniform, env, seed=2), Uniform)
    agent = registry.build_selector("gps-pool", env, kwargs={"lam": 0.0})  # over the entry's settings
    assert isinstance(agent, GPS) and agent.candidates is None and agent.lam == 0.0
    assert registry.build_selector("gps-pool", env, kwargs={"candidates": 2}).candidates == 2
    with pytest.raises(ValueError, match="unknown selector") as exc:
        registry.build_selector("nope", env)
    assert all(name in str(exc.value) for name in [*registry.SELECTORS, "GPS", "MoPPS", "module:name"])
    entry = registry.SELECTORS["gps-nolatent"]
    with pytest.raises(AttributeError):
        entry.kwargs = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.kwargs["ppm"]["latent_mode"] = "full"  # type: ignore[index]
    assert entry.describe() == "GPS(ppm={'latent_mode': 'none'})"


# ---------------------------------------------------------------------------------------------- config
def test_config_reads_the_shipped_directory_and_legacy_ones(tmp_path):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "results" / "h2h" / "config.json"
    text = path.read_text()
    config = BenchConfig.from_json(text)
    assert config.to_json() == text  # the same file, byte for byte
    assert config.selectors[0] == "uniform" and config.seeds == (0, 1, 2) and config.engine == "transformers"
    legacy = json.loads(text)
    del legacy["engine"]
    assert BenchConfig.from_dict(legacy).engine == bench.LEGACY_ENGINE == "transformers"
    for key, value in (("k", 0), ("seeds", []), ("batch_size", 5000), ("steps", "3")):
        with pytest.raises(ConfigError) as exc:
            BenchConfig.from_dict({**legacy, key: value})
        assert exc.value.field == key and key in str(exc.value)
    with pytest.raises(ConfigError, match="surprise"):
        BenchConfig.from_dict({**legacy, "surprise": 1})
    with pytest.raises(ConfigError, match="missing key.*budget"):
        BenchConfig.from_dict({k: v for k, v in legacy.items() if k != "budget"})
    with pytest.raises(ConfigError, match="JSON"):
        BenchConfig.from_json("{")


def test_config_grows_by_selectors_and_seeds_only():
    a = BenchConfig.create(["gps"], [0], 3, batch_size=4, k=4, pool_size=48)
    assert a.selectors == ("uniform", "gps") and a.budget == 48 and a.eval_every_rollouts == 16
    grown = a.grown(BenchConfig.create(["mopps", "gps"], [2, 0], 3, batch_size=4, k=4, pool_size=48))
    assert grown.selectors == ("uniform", "gps", "mopps") and grown.seeds == (0, 2)
    with pytest.raises(ConfigMismatch) as exc:
        a.grown(BenchConfig.create(["gps"], [0], 3, batch_size=4, k=2, pool_size=48, engine="vllm"))
    assert exc.value.keys == ["budget", "engine", "eval_every_rollouts", "k"]
    with pytest.raises(ConfigError, match="unknown selector.*nope.*valid: uniform"):
        BenchConfig.create(["nope"], [0], 3, known_selectors=registry.SELECTORS)


def test_cli_engine_choices_are_the_engines():
    from gps_env.engines import ENGINE_NAMES

    assert tuple(cli.ENGINE_CHOICES) == tuple(ENGINE_NAMES)
