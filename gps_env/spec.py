"""What a selector agent may see of the world it selects for: :class:`AgentSpec`.

An agent is built on a spec, never on env internals: the pool size N, the batch size B, the rollouts per
prompt k, the prompts' embeddings (computed on first use, so agents that do not read them cost nothing) and,
where the world can sample extra rollouts before a step, a probe. ``AgentSpec.of(env)`` builds one from any
prompt-selection env (wrapped or not); the verl and TRL integrations build one from the trainer's dataset,
with no probe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Probe = Callable[[np.ndarray], np.ndarray]


class AgentSpec:
    """The world as a selector agent sees it.

    Args:
        pool_size: N, the number of prompts (ids ``0 .. N-1``).
        batch_size: B, distinct prompts per step (``1 <= B <= N``).
        k: rollouts per prompt (the GRPO group size, >= 1).
        embeddings: (N, d) L2-normalised prompt embeddings, or a zero-argument callable computing them on first
            use (None: the world has none; agents that need them raise).
        probe: ``probe(indices) -> rewards (len, k)``, k charged rollouts per prompt under the current policy,
            or None where the world cannot sample outside its step (inside an external trainer).
        source: what the spec describes, named in errors (``"PromptSelectionEnv"``, ``"verl"``, ``"TRL"``).
    """

    def __init__(self, pool_size: int, batch_size: int, k: int,
                 embeddings: np.ndarray | Callable[[], np.ndarray] | None = None, probe: Probe | None = None,
                 source: str = "env") -> None:
        for name, value in (("pool_size", pool_size), ("batch_size", batch_size), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if not 1 <= batch_size <= pool_size:
            raise ValueError(f"batch_size {batch_size} must be in [1, pool size {pool_size}]")
        if k < 1:
            raise ValueError(f"k (rollouts per prompt) must be >= 1, got {k}")
        if probe is not None and not callable(probe):
            raise ValueError(f"probe must be callable or None, got {type(probe).__name__}")
        self.pool_size, self.batch_size, self.k = int(pool_size), int(batch_size), int(k)
        self.source = source
        self._probe = probe
        self._embed = embeddings if callable(embeddings) else None
        self._embeddings = None if callable(embeddings) or embeddings is None else self._checked(embeddings)

    @classmethod
    def of(cls, env: Any) -> AgentSpec:
        """The spec of ``env``: an ``AgentSpec`` as it is, or a prompt-selection env (``env.unwrapped`` is read
        once: its pool, batch size, k, the pool's embeddings on first use, and its probe)."""
        if isinstance(env, AgentSpec):
            return env
        inner = getattr(env, "unwrapped", env)
        try:
            pool, batch_size, k = inner.pool, inner.batch_size, inner.k
        except AttributeError as e:
            raise TypeError(f"an agent needs a prompt-selection env or an AgentSpec, got {type(env).__name__}") from e
        return cls(len(pool), batch_size, k, embeddings=lambda: pool.embeddings,
                   probe=getattr(inner, "probe", None), source=type(inner).__name__)

    @property
    def can_probe(self) -> bool:
        return self._probe is not None

    def probe(self, indices: np.ndarray) -> np.ndarray:
        """k rollouts' rewards (len, k) for each of ``indices``, charged to the world's ledger.

        Raises:
            NotImplementedError: the world has no probe (inside verl or TRL only the trainer generates).
        """
        if self._probe is None:
            raise NotImplementedError(
                f"this agent probes prompts with extra rollouts before choosing, which {self.source} cannot do "
                "from its prompt sampler: only the trainer generates. Use an agent that learns from the trained "
                "batches (Uniform, MoPPS, GPS, Pairing(source='history'), LearnedSelector); for DAPO-style "
                "dynamic sampling use the trainer's own filter (verl: algorithm.filter_groups)."
            )
        return self._probe(indices)

    @property
    def embeddings(self) -> np.ndarray:
        """(N, d) float32 prompt embeddings (computed on first use)."""
        if self._embeddings is None:
            if self._embed is None:
                raise ValueError(f"{self.source} provides no prompt embeddings; pass embeddings= to the agent")
            self._embeddings = self._checked(self._embed())
        return self._embeddings

    def _checked(self, embeddings: Any) -> np.ndarray:
        try:
            e = np.asarray(embeddings, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"embeddings must be a real (N, d) array, got {type(embeddings).__name__}") from None
        if e.ndim != 2 or e.shape[0] != self.pool_size:
            raise ValueError(f"embeddings must have shape ({self.pool_size}, d), got {e.shape}")
        return e

    def __repr__(self) -> str:
        return (f"AgentSpec(pool_size={self.pool_size}, batch_size={self.batch_size}, k={self.k}, "
                f"probe={self.can_probe}, source={self.source!r})")
