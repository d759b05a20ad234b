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
(``tests/test_faults.py`` kills runs with SIGKILL, also inside a checkpoint write). The payload is written
with ``torch.save`` and read with ``torch.load(weights_only=True)``: only tensors, numbers, strings and
containers, never arbitrary objects (numpy arrays travel as tensors and come back as arrays). The file carries
the payload's sha256, checked before anything is decoded, so a flipped byte, a truncation or a splice is
refused. A checkpoint from another configuration, of the env (world, initial policy, RL settings) or of the
agent (class and settings), or with a malformed state, is refused with an error naming what differs, and
everything is checked before anything is restored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 2
#: First bytes of a checkpoint file; the sha256 of the payload follows.
MAGIC = b"GPSENVCKPT\x00\x02"
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
    """Write the env's episode (and the agent's state) to ``path`` atomically (a temp file, then rename).

    The file is ``MAGIC``, the sha256 of the payload, then the payload (``torch.save`` of the encoded state).
    """
    path = Path(path)
    state = {"version": FORMAT_VERSION, "env": env.unwrapped.state_dict()}
    if agent is not None:
        state["agent"] = {"fingerprint": agent_fingerprint(agent), "state": agent.state_dict()}
    buffer = io.BytesIO()
    torch.save(encode(state), buffer)
    payload = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, require_digest: bool = True) -> dict[str, Any]:
    """The decoded state in ``path``, after checking its content digest (nothing is restored).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, damaged or altered (its digest does not match), is not a gps-env
            checkpoint, or is of another format version; the message names the file.
    """
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(MAGIC):
        digest, payload = data[len(MAGIC): len(MAGIC) + 32], data[len(MAGIC) + 32:]
        if len(digest) < 32 or hashlib.sha256(payload).digest() != digest:
            raise ValueError(f"{path}: the checkpoint is damaged or was altered (its sha256 does not match its "
                             "content); nothing was restored")
    elif data.startswith(b"PK") and not require_digest:
        payload = data  # format 1: a plain torch.save zip, without a digest
    elif data.startswith(b"PK"):
        raise ValueError(f"{path}: a checkpoint of an older gps-env, without a content digest; load it with "
                         "require_digest=False if you trust the file")
    else:
        raise ValueError(f"{path}: not a gps-env checkpoint (unknown header)")
    try:
        state = decode(torch.load(io.BytesIO(payload), weights_only=True))
    except Exception as e:  # a damaged payload raises whatever the unpickler or zip reader meets first
        raise ValueError(f"{path}: the checkpoint cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("version") not in (1, FORMAT_VERSION) or "env" not in state:
        version = state.get("version") if isinstance(state, dict) else None
        raise ValueError(f"{path}: checkpoint format {version!r}, this gps-env reads {FORMAT_VERSION}")
    return state


def load_checkpoint(path: str | Path, env: Any, agent: Any | None = None,
                    require_digest: bool = True) -> dict[str, np.ndarray]:
    """Restore ``env`` (and ``agent``) from ``path``; returns the observation to act on next.

    Everything is checked before anything is restored: the file's digest, the agent's class and settings, the
    env state (:meth:`~gps_env.contract.PromptSelectionContract.check_state_dict`) and the agent state (its
    ``check_state_dict`` where it has one). The env is restored through ``env.reset(options={"restore": ...})``,
    so a wrapper stack (``gym.make``) sees a reset and the env steps at once.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a damaged file, another format, env configuration or agent, or a malformed state (naming
            what); nothing is changed.
    """
    state = read_checkpoint(path, require_digest=require_digest)
    if agent is not None:
        if "agent" not in state:
            raise ValueError(f"{path} holds no agent state")
        theirs, ours = state["agent"]["fingerprint"], agent_fingerprint(agent)
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if differ:
            raise ValueError(f"{path}: the agent differs from the checkpoint's in: {', '.join(differ)}")
    try:
        env.unwrapped.check_state_dict(state["env"])
        check_agent = getattr(agent, "check_state_dict", None)
        if callable(check_agent):
            check_agent(state["agent"]["state"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    obs, _ = env.reset(options={"restore": state["env"]})
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
