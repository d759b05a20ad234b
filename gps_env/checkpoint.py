"""Checkpoint and resume an RL run: the env's episode and the agent's state, in one file, pickle-free.

    ckpt = Checkpointer("runs/exp1", every=10)
    obs = ckpt.restore(env, agent)                 # None when there is nothing to resume
    if obs is None:
        obs, info = env.reset(seed=0)
    truncated = env.unwrapped.done
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs))
        ckpt.step(env, agent)                      # saves every `every` steps, atomically

``env`` may be wrapped (``gym.make``); its ``unwrapped`` env is saved. A run killed at any point resumes
from its last checkpoint and continues bit-identically on CPU to a run that was never interrupted
(``tests/test_checkpoint.py`` kills one with SIGKILL). The file is written with ``torch.save`` and read with
``torch.load(weights_only=True)``: only tensors, numbers, strings and containers, never arbitrary objects
(numpy arrays travel as tensors and come back as arrays). A checkpoint from another configuration, of the
env (world, initial policy, RL settings) or of the agent (class and settings), is refused with an error
naming what differs.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1
_ARRAY, _TUPLE = "__ndarray__", "__tuple__"
_MISSING = object()


def encode(obj: Any) -> Any:
    """``obj`` with numpy arrays and scalars as tensors / Python numbers, tuples tagged: safe to load."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays cannot be checkpointed")
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(obj).copy()), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {_TUPLE: [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, torch.Tensor | str | int | float | bool) or obj is None:
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if _ARRAY in obj:
            return obj[_ARRAY].numpy().astype(obj["dtype"], copy=True)
        if _TUPLE in obj:
            return tuple(decode(v) for v in obj[_TUPLE])
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def agent_fingerprint(agent: Any) -> dict[str, str]:
    """The agent's class and settings: its constructor's arguments, as stored on the agent (``name`` or
    ``name_config``), where they are numbers, strings, tuples of those, or dataclasses."""
    settings = {}
    for name in inspect.signature(type(agent).__init__).parameters:
        value = getattr(agent, name, getattr(agent, f"{name}_config", _MISSING))
        plain = value is None or isinstance(value, bool | int | float | str | tuple)
        if plain or dataclasses.is_dataclass(value):
            settings[name] = repr(value)
    return {"class": f"{type(agent).__module__}.{type(agent).__qualname__}", **settings}


def save_checkpoint(path: str | Path, env: Any, agent: Any | None = None) -> Path:
    """Write the env's episode (and the agent's state) to ``path`` atomically (a temp file, then rename)."""
    path = Path(path)
    state = {"version": FORMAT_VERSION, "env": env.unwrapped.state_dict()}
    if agent is not None:
        state["agent"] = {"fingerprint": agent_fingerprint(agent), "state": agent.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(encode(state), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, env: Any, agent: Any | None = None) -> dict[str, np.ndarray]:
    """Restore ``env`` (and ``agent``) from ``path``; returns the observation to act on next.

    Raises:
        FileNotFoundError: no such file.
        ValueError: another format, env configuration or agent (naming what differs); nothing is changed.
    """
    state = decode(torch.load(Path(path), weights_only=True))
    if state.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state.get('version')!r}, this gps-env reads {FORMAT_VERSION}")
    if agent is not None:
        if "agent" not in state:
            raise ValueError(f"{path} holds no agent state")
        theirs, ours = state["agent"]["fingerprint"], agent_fingerprint(agent)
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if differ:
            raise ValueError(f"{path}: the agent differs from the checkpoint's in: {', '.join(differ)}")
    obs = env.unwrapped.load_state_dict(state["env"])  # checks the env's fingerprint before changing anything
    if agent is not None:
        agent.load_state_dict(state["agent"]["state"])
    return obs


class Checkpointer:
    """Save every ``every`` steps to ``directory/checkpoint.pt`` and resume from it.

    Args:
        directory: where the checkpoint lives (created on first save).
        every: steps between checkpoints (>= 1).
    """

    def __init__(self, directory: str | Path, every: int = 10) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.path = Path(directory) / "checkpoint.pt"
        self.every = int(every)

    def restore(self, env: Any, agent: Any | None = None) -> dict[str, np.ndarray] | None:
        """The resumed observation, or None when there is no checkpoint yet."""
        if not self.path.exists():
            return None
        return load_checkpoint(self.path, env, agent)

    def step(self, env: Any, agent: Any | None = None) -> bool:
        """Call after each ``env.step``: saves when the step count is a multiple of ``every``."""
        step = env.unwrapped.current_step
        if step % self.every:
            return False
        save_checkpoint(self.path, env, agent)
        return True
