"""The selector-agent protocol: ``act(obs) -> action``, seeded, with its state in a state dict."""

from __future__ import annotations

from typing import Any

import numpy as np

from gps_env.spec import AgentSpec


class SelectorAgent:
    """Base class of selector agents.

    An agent is built on what it may see of the world, an :class:`~gps_env.spec.AgentSpec` (pool size, batch
    size, k, prompt embeddings on first use, an optional probe): pass the env (wrapped or not; its spec is
    read once) or a spec built by a trainer integration. It learns from the feedback in each observation
    inside :meth:`act` (at most once per step: it remembers the last step it learnt from) and picks the next
    batch.

    Subclasses implement :meth:`select` and, if they learn, :meth:`observe`.
    """

    def __init__(self, env: Any, seed: int = 0) -> None:
        self.spec = AgentSpec.of(env)
        self.pool_size = self.spec.pool_size
        self.batch_size = self.spec.batch_size
        self.k = self.spec.k
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._learnt_step = 0

    def act(self, obs: dict[str, np.ndarray]) -> Any:
        """Learn from the last step's feedback (once), then return the next action."""
        n = np.shape(obs.get("times_selected", ()))
        if n != (self.pool_size,):
            raise ValueError(
                f"observation is for a pool of shape {n}, but this agent was built for {self.pool_size} prompts"
            )
        step = int(obs["step"][0])
        if step < self._learnt_step:  # a new episode began: forget the old one
            self.reset()
        if step > self._learnt_step:
            self.observe(obs)
            self._learnt_step = step
        return self.select(obs)

    def predict(self, obs: dict[str, np.ndarray], state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[Any, Any]:
        """Stable-Baselines3's ``predict`` signature, so SB3 evaluation tools can run any selector."""
        return self.act(obs), state

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        """Update beliefs from ``obs["last_batch"]`` and ``obs["last_rewards"]`` (default: nothing)."""

    def select(self, obs: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget what was learnt (the env started a new episode)."""
        self._learnt_step = 0

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "learnt_step": self._learnt_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._learnt_step = int(state["learnt_step"])
