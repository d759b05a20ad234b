"""LILO: probe a random candidate set, train on the prompts of highest learnability p̂(1 − p̂)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import SelectorAgent, check_ids, check_integer
from gps_env.selectors import candidate_count, draw_candidates, top_scored
from gps_env.spec import AgentSpec


class Learnability(SelectorAgent):
    """Learnability-based prompt selection (Foster, Sims, Forkel, Fellows and Foerster, 2025, "Learning to
    Reason at the Frontier of Learnability", LILO, arXiv 2502.12272, NeurIPS 2025; Algorithm 2; no public code).

    Algorithm (one call of ``act``)::

        D   = candidates × B prompts drawn uniformly from the pool (capped at the pool)
        R   = env.probe(D)                          # k rollouts each, charged as "probe"
        p̂_τ = mean R_τ;  L_τ = p̂_τ (1 − p̂_τ)          # the Bessel factor k/(k−1) does not change the ranking
        batch = the B prompts of D with the largest L (ties in the random order of D)
        train on batch, reusing its probe rollouts

    Defaults follow the paper: |D| = 4B (8B was used late in VinePPO on GSM8K, when training accuracy neared
    95%). The paper probes N_learnability = 8 attempts per prompt and trains on 8; here both are the env's k,
    and the env reuses the probe rollouts of the B trained prompts (they were probed in this step), so a step
    costs candidates × B × k rollouts in all, each charged once under ``"probe"`` (the paper's 4× uniform cost);
    the surplus candidates' rollouts are discarded, as in the paper. Stateless, as in the paper: everything is
    recomputed each step (the paper found a stale high-learnability buffer overfits). Algorithm 3 (adaptive
    2-rollout probes) is not implemented: it needs probes of fewer than k rollouts.

    No ``"predictions"`` are sent: the batch is trained on the very rollouts that measured p̂, so a
    correlation of p̂ and outcome would be moot. Acting twice on one observation returns the same batch
    without probing again (the step's batch is kept in the state).

    Args:
        env: the env (needs its probe API).
        seed: seed of the candidate draws.
        candidates: |D| / B, a number >= 1 (default 4).

    After each ``act``: ``last_candidates`` (the probed ids) and ``last_learnability`` (their p̂(1 − p̂)).
    State: ``rng``, ``learnt_step``, ``acted_step`` and ``acted_batch`` (the step last acted on, -1 for none,
    and its batch).
    """

    state_keys = (*SelectorAgent.state_keys, "acted_step", "acted_batch")

    def __init__(self, env: gym.Env | AgentSpec, seed: int = 0, candidates: float = 4.0) -> None:
        super().__init__(env, seed)
        candidate_count(candidates, self.batch_size, self.pool_size, name="candidates")
        self.candidates = candidates
        self.last_candidates = np.zeros(0, dtype=np.int64)
        self.last_learnability = np.zeros(0)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._acted_step = -1
        self._acted_batch = np.zeros(0, dtype=np.int64)

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        step = int(obs["step"][0])
        if step == self._acted_step:  # this step's batch was chosen already: probe nothing again
            return self._acted_batch.copy()
        pool = draw_candidates(self.rng, self.pool_size, self.batch_size, self.candidates, name="candidates")
        success = np.asarray(self.spec.probe(pool), dtype=np.float64).mean(axis=1)
        learnability = success * (1.0 - success)
        batch = top_scored(pool, learnability, self.batch_size)
        self.last_candidates, self.last_learnability = pool.astype(np.int64), learnability
        self._acted_step, self._acted_batch = step, batch
        return batch.copy()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "acted_step": self._acted_step, "acted_batch": self._acted_batch.copy()}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        acted = check_integer("state 'acted_step'", state["acted_step"], -1)
        check_ids("acted_batch", state["acted_batch"], 0 if acted == -1 else self.batch_size, self.pool_size)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._acted_step = int(state["acted_step"])
        self._acted_batch = np.asarray(state["acted_batch"], dtype=np.int64).copy()
