"""GPS-M (ours): GPS whose predictions are corrected by each prompt's own outcomes."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import check_array, check_choice, check_number
from gps_env.agents.gps import GPS
from gps_env.spec import AgentSpec

#: γ̂ is kept inside [ε, 1 − ε] before it becomes a Beta prior, so both parameters stay positive.
PRIOR_EPS = 1e-3


class GPSMemory(GPS):
    """GPS with per-prompt memory: the PPM's γ̂ is a Beta prior, the prompt's own groups are its evidence (ours).

    Whole-pool GPS locks on because its PPM sees a prompt only through its embedding and a batch-level latent:
    it cannot tell a prompt the policy has just memorised from its informative neighbours (docs/gps.md).
    MoPPS remembers every prompt but cannot say anything about a prompt it has not seen. GPS-M keeps both::

        α_τ, β_τ = 0, 0                                   the prompt's own discounted successes / failures
        each step t:
            observe B_{t-1} and its success s_τ (k rollouts each):
                α_τ ← ρ α_τ + k s_τ,   β_τ ← ρ β_τ + k (1 − s_τ)          for τ ∈ B_{t-1}
                GPS's ELBO update of the PPM
            γ̂ = PPM.predict(C)                             C: GPS's candidates (or the whole pool)
            γ̃_τ ~ Beta(c γ̂_τ + α_τ, c (1 − γ̂_τ) + β_τ)      one Thompson draw per prompt (``posterior="mean"``:
                                                            its mean)
            B_t = GPS's greedy over u(γ̃) with its diversity term

    An unseen prompt is predicted from its embedding alone (the Beta's mean is γ̂); a prompt just trained on is
    predicted mostly from its own last group (weight k against c), so a memorised prompt (8/8) is no longer
    "near 0.5" however its neighbours did. The Thompson draw adds MoPPS's exploration. The decay ρ applies
    when the prompt is observed (as MoPPS's official code), so old groups count less than the policy's latest.

    Args:
        env, seed, and every GPS argument (``lam``, ``target``, ``candidates``, ``diversity``, ``warmup``, ...):
            as :class:`~gps_env.agents.gps.GPS`.
        strength: c > 0, the PPM prior's weight in pseudo-rollouts (default 4: half a group at k = 8).
        decay: ρ in [0, 1], the weight of a prompt's older groups (default 0.5).
        posterior: ``"thompson"`` (default) or ``"mean"``.

    State: GPS's, plus ``alpha`` and ``beta`` (N,), the prompts' discounted counts (finite, >= 0).
    """

    state_keys = (*GPS.state_keys, "alpha", "beta")

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        strength: float = 4.0,
        decay: float = 0.5,
        posterior: str = "mean",
        **gps_kwargs: Any,
    ) -> None:
        self.strength = float(check_number("strength", strength, 0.0, low_open=True))
        self.decay = float(check_number("decay", decay, 0.0, 1.0))
        check_choice("posterior", posterior, ("thompson", "mean"))
        self.posterior = posterior
        super().__init__(env, seed, **gps_kwargs)

    def reset(self) -> None:
        super().reset()
        self.alpha = np.zeros(self.pool_size)
        self.beta = np.zeros(self.pool_size)

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        batch = np.asarray(obs["last_batch"], dtype=np.int64)
        successes = obs["last_rewards"].astype(np.float64).sum(axis=1)
        k = obs["last_rewards"].shape[1]
        self.alpha[batch] = self.decay * self.alpha[batch] + successes
        self.beta[batch] = self.decay * self.beta[batch] + (k - successes)
        super().observe(obs)

    def _gamma(self, pool: np.ndarray | None) -> np.ndarray:
        gamma = super()._gamma(pool)
        return self._memory_posterior(gamma, np.arange(self.pool_size) if pool is None else pool)

    def _memory_posterior(self, gamma: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``gamma`` with its ``rows`` replaced by the Beta posterior (a draw or its mean) of prior ``gamma``."""
        prior = np.clip(gamma[rows], PRIOR_EPS, 1.0 - PRIOR_EPS)
        a = self.strength * prior + self.alpha[rows]
        b = self.strength * (1.0 - prior) + self.beta[rows]
        gamma[rows] = self.rng.beta(a, b) if self.posterior == "thompson" else a / (a + b)
        return gamma

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alpha": self.alpha.copy(), "beta": self.beta.copy()}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        for key in ("alpha", "beta"):
            check_array(f"state {key!r}", state[key], (self.pool_size,), low=0.0)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.alpha = np.asarray(state["alpha"], dtype=np.float64).copy()
        self.beta = np.asarray(state["beta"], dtype=np.float64).copy()
