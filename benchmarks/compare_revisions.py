"""Check that a change keeps trajectories: run every selector at a git revision and in the working tree, on
this machine, in both worlds, and compare them step by step.

    python benchmarks/compare_revisions.py --rev HEAD~3                   # both worlds, every named selector
    python benchmarks/compare_revisions.py --rev d1a6b81 --worlds sim --steps 20

``benchmarks/replay_runs.py`` compares with runs committed from another machine, which only works where
floating-point kernels (and so the warm-started policy) are the same; this compares two revisions on one
machine. Each side runs in its own process (the revision from a temporary ``git worktree``) and records, per
selector and step, a digest of the observation, the reward and the info (wall-clock seconds left out).

Embedded world: B = 8, k = 4, 200 prompts, evaluation every 3 steps, transformers engine; simulated world:
B = 16, 2,000 prompts, evaluation every 4 steps. The shipped PPO scorers (trained for B = 32) are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Runs inside each side's process: ``python -c RECORD worlds steps out.json``.
RECORD = r'''
import hashlib, json, sys
import numpy as np

def digest(obs):
    h = hashlib.sha256()
    for key in sorted(obs):
        h.update(key.encode())
        h.update(np.ascontiguousarray(obs[key]).tobytes())
    return h.hexdigest()[:16]

def clean(info):
    out = {}
    for key, value in info.items():
        if key == "time":
            continue
        if key == "ledger":
            value = {k: v for k, v in value.items() if k != "seconds"}
        out[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return json.loads(json.dumps(out, default=float))

try:
    from gps_env.agents.registry import SELECTORS
except ImportError:  # revisions before the registry
    from gps_env.bench import SELECTORS

worlds, steps, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
result = {}
for world in worlds:
    if world == "sim":
        from gps_env.simulated import SimulatedPromptSelectionEnv
        env = SimulatedPromptSelectionEnv(batch_size=16, pool_size=2000, heldout_size=100, eval_every=4,
                                          max_steps=10**6)
    else:
        from gps_env.env import PromptSelectionEnv
        env = PromptSelectionEnv(batch_size=8, rollouts_per_prompt=4, pool_size=200, heldout_size=40,
                                 eval_every=3, max_steps=10**6, engine="transformers", progress=False)
    for name in SELECTORS:
        if name.startswith("ppo"):  # the shipped PPO scorers are trained for B = 32
            continue
        agent = SELECTORS[name](env, 3)
        obs, info = env.reset(seed=5)
        trajectory = [[digest(obs), None, clean(info)]]
        for _ in range(steps):
            obs, reward, _, _, info = env.step(agent.act(obs))
            trajectory.append([digest(obs), reward, clean(info)])
        result[f"{world}/{name}"] = trajectory
json.dump(result, open(out, "w"))
'''


def record(python_path: Path, worlds: str, steps: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(python_path)}
    subprocess.run([sys.executable, "-c", RECORD, worlds, str(steps), str(out)], cwd=python_path, env=env,
                   check=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", required=True, help="git revision to compare the working tree with")
    parser.add_argument("--worlds", default="sim,embedded", help="comma list of sim, embedded")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "rev"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.rev], cwd=ROOT, check=True)
        try:
            before = record(tree, args.worlds, args.steps, Path(tmp) / "before.json")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
        after = record(ROOT, args.worlds, args.steps, Path(tmp) / "after.json")
    same = 0
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is None or b is None:
            print(f"{key}: only {'after' if a is None else 'before'}")
            continue
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if first is None and len(a) == len(b):
            same += 1
            print(f"{key}: {len(a) - 1}/{len(a) - 1} steps identical (observations, rewards, infos)")
        else:
            print(f"{key}: differs from step {first}")
    print(f"{same}/{len(set(before) | set(after))} trajectories identical to {args.rev}")


if __name__ == "__main__":
    main()
