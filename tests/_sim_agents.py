"""Helpers shared by the selector property tests on a small simulated world."""

from __future__ import annotations

import numpy as np

from gps_env.simulated import SimulatedPromptSelectionEnv

N, B, K = 200, 8, 8


def world(max_steps: int = 50) -> SimulatedPromptSelectionEnv:
    return SimulatedPromptSelectionEnv(pool_size=N, heldout_size=20, batch_size=B, eval_every=0, max_steps=max_steps)


def prompts_of(action) -> np.ndarray:
    """The batch of an action, plain or ``{"prompts": ...}``."""
    return np.asarray(action["prompts"] if isinstance(action, dict) else action)


def run(env, agent, steps: int, seed: int = 0) -> list[np.ndarray]:
    """The batches ``agent`` picks in ``steps`` steps of a fresh episode."""
    obs, _ = env.reset(seed=seed)
    batches = []
    for _ in range(steps):
        action = agent.act(obs)
        batches.append(prompts_of(action).copy())
        obs, *_ = env.step(action)
    return batches


def assert_valid(batch: np.ndarray, n: int = N, b: int = B) -> None:
    assert batch.shape == (b,) and batch.dtype == np.int64
    assert np.unique(batch).size == b and batch.min() >= 0 and batch.max() < n


def same_state(a: dict, b: dict) -> bool:
    """Equal keys and values, arrays compared by dtype and content."""
    if a.keys() != b.keys():
        return False
    for key in a:
        if isinstance(a[key], np.ndarray):
            if not (isinstance(b[key], np.ndarray) and a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key])):
                return False
        elif a[key] != b[key]:
            return False
    return True
