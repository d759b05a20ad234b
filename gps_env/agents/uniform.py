"""Uniform: B distinct prompts drawn uniformly at random each step (the baseline every selector must beat)."""

from __future__ import annotations

import numpy as np

from gps_env.agents.base import SelectorAgent


class Uniform(SelectorAgent):
    """Draw ``batch_size`` distinct pool indices uniformly without replacement."""

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.rng.choice(self.pool_size, size=self.batch_size, replace=False).astype(np.int64)
