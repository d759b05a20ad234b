"""Fault tests: a training loop and a benchmark killed with SIGKILL at several points, inside a checkpoint write
among them, resume to the same final state as an uninterrupted run."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_resume_run.py")
#: Seeds the kill moments, so a failure can be rerun.
KILL_SEED = 20261201


def child(policy, directory, kill: str, agent: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(policy), str(directory), kill, agent],
                          capture_output=True, text=True, timeout=600)


def parse(stdout: str) -> tuple[list[dict], dict | None]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    final = next((x["final"] for x in lines if "final" in x), None)
    return [x for x in lines if "final" not in x], final


@pytest.fixture(scope="module")
def whole(tiny_policy, tmp_path_factory):
    """``whole(agent)``: the records, final digests and seconds of an uninterrupted run in a child process."""
    cache = {}

    def get(agent: str):
        if agent not in cache:
            start = time.perf_counter()
            done = child(tiny_policy, tmp_path_factory.mktemp(f"whole-{agent}"), "never", agent)
            assert done.returncode == 0, done.stderr[-2000:]
            cache[agent] = (*parse(done.stdout), time.perf_counter() - start)
        return cache[agent]

    return get


def assert_resumes_to_the_same_end(tiny_policy, directory, agent, whole_records, whole_final):
    resumed = child(tiny_policy, directory, "never", agent)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records, final = parse(resumed.stdout)
    assert final == whole_final
    start = records[0]["step"] if records else None
    assert records == whole_records[start - 1:] if records else final["step"] == whole_final["step"]


@pytest.mark.parametrize("kill", ["save:3", "partial:3", "partial:1", "5"])
def test_killed_training_loop_resumes_to_the_same_final_state(tiny_policy, tmp_path, whole, kill):
    records, final, _ = whole("mopps")
    killed = child(tiny_policy, tmp_path, kill, "mopps")
    assert killed.returncode == -9, killed.stderr[-2000:]  # it really was killed where asked
    at = int(kill.rpartition(":")[2])
    printed, _ = parse(killed.stdout)
    assert printed == records[: at - 1 if ":" in kill else at]  # killed inside step `at`'s save, or after it
    assert_resumes_to_the_same_end(tiny_policy, tmp_path, "mopps", records, final)


def test_training_loop_killed_at_random_moments_resumes_to_the_same_final_state(tiny_policy, tmp_path, whole):
    records, final, seconds = whole("gps")
    rng = random.Random(KILL_SEED)
    for trial in range(3):
        directory = tmp_path / f"trial{trial}"
        process = subprocess.Popen([sys.executable, str(SCRIPT), str(tiny_policy), str(directory), "never", "gps"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, seconds))  # anywhere: imports, a step, a checkpoint write, or after the end
        process.kill()
        process.wait()
        assert_resumes_to_the_same_end(tiny_policy, directory, "gps", records, final)


def _bench(out, policy) -> list[str]:
    return [sys.executable, "-m", "gps_env.bench", "bench", "--out", str(out), "--world", "arithmetic",
            "--selectors", "uniform,mopps",
            "--seeds", "0", "--steps", "4", "--batch-size", "4", "--k", "4", "--pool-size", "48",
            "--heldout-size", "16", "--engine", "transformers", "--policy", str(policy)]


def _outcome(out: Path) -> dict:
    """What a benchmark must report identically: everything but seconds."""
    summary = json.loads((out / "summary.json").read_text())["selectors"]
    keep = ("runs", "seeds", "final_accuracy", "curve", "mean_esr", "mean_spearman", "steps", "rollouts",
            "rollouts_to_target", "final_by_task", "paired_diff", "verdict")
    return {s: {k: m.get(k) for k in keep} for s, m in summary.items()}


def test_benchmark_killed_at_random_moments_resumes_to_the_same_summary(tiny_policy, tmp_path):
    start = time.perf_counter()
    done = subprocess.run(_bench(tmp_path / "whole", tiny_policy), capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    rng = random.Random(KILL_SEED)
    for trial in range(2):
        out = tmp_path / f"killed{trial}"
        process = subprocess.Popen(_bench(out, tiny_policy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, seconds))
        process.kill()
        process.wait()
        resumed = subprocess.run(_bench(out, tiny_policy), capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert _outcome(out) == _outcome(tmp_path / "whole")
