"""A fixed-size view of the prompt-selection env that standard RL libraries (SB3) can learn on."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gps_env.selectors import candidate_count, draw_candidates, top_scored
from gps_env.selectors.features import FEATURE_NAMES, candidate_features


class CandidateWindow(gym.Wrapper):
    """Each step shows M random candidate prompts; the action scores them; the top B are trained on.

    The underlying env's observation is a pool-sized dict and its action a set of B prompt ids, which
    generic RL algorithms cannot handle. Here:

    - **Observation**: ``Box(0, 1, (M, F))``: the :data:`~gps_env.selectors.features.FEATURE_NAMES` of M
      candidates drawn without replacement from the pool (by the wrapper's own generator, seeded by
      ``reset(seed=...)``, else drawn from the env's ``np_random`` on first use).
    - **Action**: ``Box(-1, 1, (M,))``: one score per candidate; the B highest-scored candidates are the batch.
    - **Reward, termination, truncation**: the underlying env's (the effective-sample ratio of the batch).
    - **Info**: the underlying env's, plus ``"prompts"`` (the batch) and ``"candidates"``.

    Args:
        env: a prompt-selection env (embedded or simulated).
        candidates: M as a multiple of the batch size B (M = round(candidates * B), at most the pool).
    """

    def __init__(self, env: gym.Env, candidates: float = 4.0) -> None:
        super().__init__(env)
        inner = env.unwrapped
        self.pool_size, self.batch_size = len(inner.pool), inner.batch_size
        self.candidates = candidates
        self.window = candidate_count(candidates, self.batch_size, self.pool_size, name="candidates")
        self.observation_space = spaces.Box(0.0, 1.0, (self.window, len(FEATURE_NAMES)), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.window,), np.float32)
        self._candidates = np.arange(self.window)
        self._obs: dict[str, np.ndarray] | None = None
        self._rng: np.random.Generator | None = None

    def _view(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self._obs = obs
        self._candidates = draw_candidates(self._rng, self.pool_size, self.batch_size, self.candidates,
                                           name="candidates")
        return candidate_features(obs, self._candidates)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng([seed, 0xC4D])
        elif self._rng is None:
            self._rng = np.random.default_rng(int(self.env.unwrapped.np_random.integers(2**62)))
        return self._view(obs), info

    def step(self, action: Any):
        if self._obs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        try:
            scores = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"expected {self.window} candidate scores, got {type(action).__name__}") from None
        if scores.shape != (self.window,):
            raise ValueError(f"expected {self.window} candidate scores, got shape {scores.shape}")
        batch = top_scored(self._candidates, scores, self.batch_size)
        obs, reward, terminated, truncated, info = self.env.step(batch)
        info = {**info, "prompts": batch, "candidates": self._candidates.copy()}
        return self._view(obs), reward, terminated, truncated, info
