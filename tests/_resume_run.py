"""A small seeded run that checkpoints every step; shared by tests/test_checkpoint.py, tests/test_faults.py and
their child processes.

    python tests/_resume_run.py POLICY_DIR CKPT_DIR KILL AGENT

KILL is ``N`` (SIGKILL itself after step N), ``save:N`` (inside the checkpoint write of step N, after the
temporary file is complete, before it replaces the checkpoint), ``partial:N`` (inside that write, after only
half of the temporary file reached the disk) or ``never`` (run to the end; the parent may kill it at any time).
The run resumes from the checkpoint when there is one, prints one JSON line per step and, at the end, one
``{"final": ...}`` line with digests of the policy, the agent and the ledger.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import types

import numpy as np
import torch

from gps_env import checkpoint
from gps_env.agents import GPS, DynamicSampling, MoPPS
from gps_env.checkpoint import Checkpointer, encode
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


def final_digest(env, agent) -> dict:
    """Digests of what an interrupted run must end with exactly as an uninterrupted one."""

    def digest(obj) -> str:
        h = hashlib.sha256()

        def feed(x):
            if isinstance(x, dict):
                for k in sorted(x, key=str):
                    h.update(str(k).encode())
                    feed(x[k])
            elif isinstance(x, list | tuple):
                for v in x:
                    feed(v)
            elif isinstance(x, torch.Tensor):
                h.update(x.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if x.numel() else b"")
            else:
                h.update(repr(x).encode())

        feed(encode(obj))
        return h.hexdigest()[:16]

    return {"policy": digest(env.policy.state_dict()), "agent": digest(agent.state_dict()),
            "ledger": digest(env.ledger.summary(seconds=False)), "step": env.current_step}


def _kill_inside_save(step_of, at: int, partial: bool) -> None:
    """Make the checkpoint write of step ``at`` die: before the rename, or with half the file written."""
    real_fsync, real_replace = checkpoint.os.fsync, checkpoint.os.replace

    def fsync(fd):
        if partial and step_of() == at:
            size = os.fstat(fd).st_size
            os.ftruncate(fd, size // 2)
            real_fsync(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        real_fsync(fd)

    def replace(src, dst):
        if not partial and step_of() == at:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    checkpoint.os = types.SimpleNamespace(**{**vars(os), "fsync": fsync, "replace": replace})


def main(policy: str, directory: str, kill: str, agent_name: str) -> None:
    torch.set_num_threads(1)
    env, agent = build(policy, agent_name)
    mode, _, at = kill.rpartition(":") if ":" in kill else ("after", "", kill)
    kill_at = -1 if kill == "never" else int(at)
    if mode in ("save", "partial"):
        _kill_inside_save(lambda: env.current_step, kill_at, partial=mode == "partial")
    ckpt = Checkpointer(directory, every=1)
    obs = ckpt.restore(env, agent)
    if obs is None:
        obs, _ = env.reset(seed=0)
    truncated = env.done
    while not truncated:
        obs, _, _, truncated, info = env.step(agent.act(obs))
        ckpt.step(env, agent)
        print(json.dumps(record(info)), flush=True)
        if mode == "after" and info["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    print(json.dumps({"final": final_digest(env, agent)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
