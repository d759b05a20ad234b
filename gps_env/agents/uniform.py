"""Uniform: the baseline every selector must beat (a shuffled dataloader, no filtering)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import SelectorAgent, check_bool, check_ids
from gps_env.spec import AgentSpec


class Uniform(SelectorAgent):
    """Draw ``batch_size`` distinct prompts uniformly at random each step.

    Source: the uniform baseline of MoPPS (github.com/thu-rllab/MoPPS, ``tasksampler.framework=0``) and of
    GPS (arXiv 2602.01970). Cost: B·k rollouts per step.

    Args:
        env: the env (its pool size and batch size are read from it).
        seed: seed of the agent's own RNG.
        epochs: if True, sweep the pool in shuffled epochs like a dataloader (every prompt once per epoch;
            a batch that straddles two epochs never repeats a prompt); if False (default), draw each batch
            independently without replacement.

    State: ``rng``, ``learnt_step`` and ``queue`` (the rest of the current epoch: distinct pool ids).
    """

    state_keys = (*SelectorAgent.state_keys, "queue")

    def __init__(self, env: gym.Env | AgentSpec, seed: int = 0, epochs: bool = False) -> None:
        super().__init__(env, seed)
        check_bool("epochs", epochs)
        self.epochs = epochs
        self._queue = np.empty(0, dtype=np.int64)

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if not self.epochs:
            return self.rng.choice(self.pool_size, size=self.batch_size, replace=False).astype(np.int64)
        if self._queue.size < self.batch_size:
            head = self._queue
            fresh = self.rng.permutation(self.pool_size)
            fresh = np.concatenate([fresh[~np.isin(fresh, head)], fresh[np.isin(fresh, head)]])
            self._queue = np.concatenate([head, fresh]).astype(np.int64)
        batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
        return batch.copy()

    def reset(self) -> None:
        super().reset()
        self._queue = np.empty(0, dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "queue": self._queue.copy()}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        check_ids("queue", state["queue"], None, self.pool_size)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._queue = np.asarray(state["queue"], dtype=np.int64).copy()
