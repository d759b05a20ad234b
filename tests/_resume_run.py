"""A small seeded run that checkpoints every step; shared by tests/test_checkpoint.py and its child process.

    python tests/_resume_run.py POLICY_DIR CKPT_DIR KILL_AT AGENT   # SIGKILLs itself after step KILL_AT
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import torch

from gps_env.agents import GPS, DynamicSampling, MoPPS
from gps_env.checkpoint import Checkpointer
from gps_env.env import PromptSelectionEnv
from gps_env.pool import PromptPool
from gps_env.tasks import AdditionTask, FunctionTask, Problem

STEPS = 8
AGENTS = {"gps": GPS, "mopps": MoPPS, "ds": DynamicSampling}
# Passed by the untrained-ish tiny policy about half the time, so groups are mixed and GRPO updates.
LENIENT = FunctionTask("starts_digit", lambda completion, answer: completion[:1].isdigit())


def pools() -> tuple[PromptPool, PromptPool]:
    task, rng, problems, seen = AdditionTask(width=3), np.random.default_rng(5), [], set()
    while len(problems) < 40:
        p = task.sample(rng)
        if p.prompt not in seen:
            seen.add(p.prompt)
            problems.append(Problem(p.prompt, p.answer, LENIENT.name))
    return PromptPool(problems[:32], [LENIENT]), PromptPool(problems[32:], [LENIENT])


def build(policy: str, agent: str, **overrides) -> tuple[PromptSelectionEnv, object]:
    pool, heldout = pools()
    kwargs = dict(pool=pool, heldout=heldout, policy=policy, batch_size=4, rollouts_per_prompt=4,
                  max_steps=STEPS, eval_every=3, time_in_info=False, progress=False, engine="transformers")
    env = PromptSelectionEnv(**{**kwargs, **overrides})
    return env, AGENTS[agent](env, seed=0)


def record(info: dict) -> dict:
    """The parts of a step's info that must match exactly between an interrupted and a whole run."""
    return {"step": info["step"], "batch": np.asarray(info["batch"]).tolist(),
            "success": np.asarray(info["prompt_success"]).tolist(), "grpo": info["grpo"],
            "ledger": info["ledger"], "eval": info.get("eval")}


def main(policy: str, directory: str, kill_at: int, agent_name: str) -> None:
    torch.set_num_threads(1)
    env, agent = build(policy, agent_name)
    ckpt = Checkpointer(directory, every=1)
    obs = ckpt.restore(env, agent)
    if obs is None:
        obs, _ = env.reset(seed=0)
    truncated = env.done
    while not truncated:
        obs, _, _, truncated, info = env.step(agent.act(obs))
        ckpt.step(env, agent)
        print(json.dumps(record(info)), flush=True)
        if info["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
