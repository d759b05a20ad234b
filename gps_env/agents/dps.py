"""DPS: dynamic prompt selection with a per-prompt three-state hidden Markov model."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import SelectorAgent, check_array, check_number
from gps_env.selectors import candidate_count, draw_candidates, top_nearest_target
from gps_env.spec import AgentSpec

#: The hidden states, in this order along every state axis.
UNSOLVED, PARTIAL, SOLVED = 0, 1, 2


class DPS(SelectorAgent):
    """A Bayesian HMM per prompt; train on the prompts most likely to be "partial" (arXiv 2603.10887, ICLR 2026;
    code maoyixiu/DPS, ``recipe/dps/task_sampler.py`` ``BayesianHMMSampler``, ``recipe/dps/our_ray_trainer.py``).

    Each prompt τ is in one of three states, unsolved / partial / solved, observed through its group of k
    rollouts: o = unsolved if no rollout is correct (reward >= 1), solved if all are, else partial (the reference
    binarises each rollout at acc >= 1). Per prompt: Dirichlet transition counts A_τ (3×3, column j = from-state
    j), the belief π̄_τ over its state at the last step and the prediction π_τ for the next one.

    Algorithm (one call of ``act``)::

        init: A_τ = A0 = a0·ones(3, 3); π_τ = π̄_τ = [1/3, 1/3, 1/3]
        observe the trained batch (every prompt τ in it, e = onehot(o_τ)):
            P  = A_τ / colsum(A_τ)
            ξ  = normalise(outer(e, π̄_τ) ⊙ P)                  # posterior over the transition just taken
            A_τ ← λ A_τ + (1 - λ) A0 + ξ;  π̄_τ ← e;  π_τ ← normalise(P(A_τ) e)
        every other prompt (decay toward the prior, belief propagated one step):
            A_τ ← λ A_τ + (1 - λ) A0;  π̄_τ ← π_τ;  π_τ ← normalise(P(A_τ) π_τ)
        select: C = min(ratio·B, N) random candidates; the B of C with the highest π_τ[partial]
                (ties broken at random, as the reference's shuffled loader does)

    The reference updates the prompts of its table; the never-visited ones sit at a fixed point (A0, 1/3), so
    updating the whole pool is the same. Defaults follow the reference's math scripts: λ = 0.7 (0.5 for
    Countdown and Geo3k; the yaml default is 1), a0 = 1, ``candidate_ratio`` 32 (with MATH's 7,500 prompts and
    B = 256 the candidate set is the whole pool). No probes: B·k rollouts per step.

    Ours: the action's ``"predictions"`` are π_τ[solved] + π_τ[partial]/2, a success estimate read off the state
    prediction (the reference logs none), so the env can report the Spearman correlation.

    Note: observing "partial" does not always raise π[partial]. The HMM learns transitions, so a prompt that
    alternated solved/partial predicts "solved" after a partial; from a fresh prompt, or right after another
    partial, it does rise (``tests/test_dps.py``).

    Args:
        env: the env or an :class:`~gps_env.spec.AgentSpec`.
        seed: seed of the candidate draws and tie-breaking.
        decay: λ in (0, 1] (1: no forgetting).
        prior: a0 in [1e-300, 1e300], the prior count of every transition.
        ratio: candidates per batch slot (>= 1; capped at the pool).

    State: ``rng``, ``learnt_step``, ``counts`` (N, 3, 3) positive, ``belief`` π (N, 3) and ``previous`` π̄ (N, 3),
    rows on the simplex.
    """

    observation_keys = ("last_batch", "last_rewards")
    state_keys = (*SelectorAgent.state_keys, "counts", "belief", "previous")

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        decay: float = 0.7,
        prior: float = 1.0,
        ratio: float = 32.0,
    ) -> None:
        super().__init__(env, seed)
        check_number("decay", decay, 0.0, 1.0, low_open=True)
        check_number("prior", prior, 1e-300, 1e300)  # beyond: column sums overflow or counts underflow to 0
        candidate_count(ratio, self.batch_size, self.pool_size, name="ratio")
        self.decay, self.prior, self.ratio = float(decay), float(prior), ratio
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.counts = np.full((self.pool_size, 3, 3), self.prior)
        self.belief = np.full((self.pool_size, 3), 1.0 / 3.0)
        self.previous = np.full((self.pool_size, 3), 1.0 / 3.0)

    @staticmethod
    def _normalise(x: np.ndarray) -> np.ndarray:
        return x / x.sum(axis=-1, keepdims=True)

    def _transition(self, counts: np.ndarray) -> np.ndarray:
        """P[τ, to, from] = A[τ, to, from] / Σ_to A[τ, to, from] (columns are from-states)."""
        return counts / counts.sum(axis=1, keepdims=True)

    def outcomes(self, rewards: np.ndarray) -> np.ndarray:
        """The observed state of each group: unsolved (0), partial (1) or solved (2); a rollout is correct at
        reward >= 1."""
        correct = np.count_nonzero(np.asarray(rewards) >= 1.0, axis=1)
        return np.where(correct == 0, UNSOLVED, np.where(correct == rewards.shape[1], SOLVED, PARTIAL))

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        batch = np.asarray(obs["last_batch"], dtype=np.int64)
        e = np.eye(3)[self.outcomes(np.asarray(obs["last_rewards"], dtype=np.float64))]
        lam, a0 = self.decay, self.prior
        # the observed prompts: posterior over the transition taken, then decay and add it
        p_old = self._transition(self.counts[batch])
        xi = e[:, :, None] * self.previous[batch][:, None, :] * p_old
        xi /= xi.sum(axis=(1, 2), keepdims=True)
        observed = np.zeros(self.pool_size, dtype=bool)
        observed[batch] = True
        rest = np.flatnonzero(~observed)
        # every prompt decays toward the prior
        self.counts = lam * self.counts + (1.0 - lam) * a0
        self.counts[batch] += xi
        p_new = self._transition(self.counts)
        self.previous[batch] = e
        self.belief[batch] = self._normalise(np.einsum("ntf,nf->nt", p_new[batch], e))
        self.previous[rest] = self.belief[rest]
        self.belief[rest] = self._normalise(np.einsum("ntf,nf->nt", p_new[rest], self.belief[rest]))

    @property
    def success_estimate(self) -> np.ndarray:
        """π[solved] + π[partial] / 2 per prompt (ours: the predictions sent with the action)."""
        return self.belief[:, SOLVED] + 0.5 * self.belief[:, PARTIAL]

    def select(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        candidates = draw_candidates(self.rng, self.pool_size, self.batch_size, self.ratio)
        batch = top_nearest_target(self.belief[:, PARTIAL], self.batch_size, 1.0, candidates=candidates,
                                   rng=self.rng)
        return {"prompts": batch, "predictions": self.success_estimate[batch]}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "counts": self.counts.copy(), "belief": self.belief.copy(),
                "previous": self.previous.copy()}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        counts = check_array("counts", state["counts"], (self.pool_size, 3, 3))
        with np.errstate(over="ignore"):
            sums = counts.sum(axis=1, dtype=np.float64)
        if not np.all(counts > 0) or not np.all(np.isfinite(sums)):
            raise ValueError("state 'counts' must be positive (Dirichlet counts) with finite column sums")
        for key in ("belief", "previous"):
            a = check_array(key, state[key], (self.pool_size, 3), low=0.0, high=1.0)
            if not np.allclose(a.sum(axis=1), 1.0, atol=1e-6):
                raise ValueError(f"state {key!r} rows must sum to 1 (state probabilities)")

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.counts = np.asarray(state["counts"], dtype=np.float64).copy()
        self.belief = self._normalise(np.asarray(state["belief"], dtype=np.float64).copy())
        self.previous = self._normalise(np.asarray(state["previous"], dtype=np.float64).copy())
