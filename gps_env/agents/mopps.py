"""MoPPS: model-predictive prompt selection with a Beta-Bernoulli bandit per prompt."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import (
    SelectorAgent,
    check_array,
    check_band,
    check_bool,
    check_choice,
    check_number,
    describe,
)
from gps_env.selectors import (
    band_filter,
    candidate_count,
    distance_to_band,
    draw_candidates,
    thompson_draws,
    top_nearest_target,
)
from gps_env.spec import AgentSpec


class MoPPS(SelectorAgent):
    """Thompson sampling over per-prompt Beta posteriors (Qu et al., 2026, KDD; code thu-rllab/MoPPS).

    Algorithm (``recipe/ours/mopps.py``, ``PosteriorSampler``)::

        α_τ, β_τ = α0, β0                                   for every prompt τ
        each step t:
            observe the last batch: s_τ = success rate of τ's k rollouts
                α_τ ← λ α_τ + (1 - λ) α0 + k s_τ
                β_τ ← λ β_τ + (1 - λ) β0 + k (1 - s_τ)
            C  = ratio × B candidates drawn uniformly (capped at the pool)
            γ̂_τ ~ Beta(α_τ, β_τ) for τ ∈ C                   (one Thompson draw each)
            topk:      the B candidates with smallest (γ̂_τ - γ*)²
            threshold: B uniform among γ̂_τ ∈ [low, high]; too few -> nearest the band

    Defaults follow the official MATH settings: Beta(1, 1), λ = 1 (no forgetting; Countdown used 0.5),
    ratio 16, γ* = 0.5, topk. Decay happens when a prompt is observed, as in the official code;
    ``decay_every_step=True`` instead decays every prompt's counts toward the prior at every step (time-based
    forgetting). The update is correct for k = 1 (the official code sets α, β to 8 when ``n <= 1``).

    The Thompson draws of the selected prompts are sent as the action's ``"predictions"``, so the env
    reports the Spearman correlation of prediction and outcome (positive = good; the official code logs the
    negative).

    Args:
        env: the env.
        seed: seed of candidate draws, Thompson draws and tie-breaking.
        prior: ``(α0, β0)``, both > 0.
        decay: λ in [0, 1].
        ratio: candidate multiplier (>= 1).
        target: γ* in [0, 1].
        mode: ``"topk"`` or ``"threshold"``.
        band: ``(low, high)`` of the threshold mode.
        decay_every_step: decay all prompts every step instead of on observation.

    State: ``rng``, ``learnt_step``, ``alpha`` and ``beta`` (the pool's Beta posteriors: (N,), positive).
    """

    observation_keys = ("last_batch", "last_rewards")
    state_keys = (*SelectorAgent.state_keys, "alpha", "beta")

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        prior: tuple[float, float] = (1.0, 1.0),
        decay: float = 1.0,
        ratio: float = 16.0,
        target: float = 0.5,
        mode: str = "topk",
        band: tuple[float, float] = (0.3, 0.7),
        decay_every_step: bool = False,
    ) -> None:
        super().__init__(env, seed)
        try:
            if isinstance(prior, str) or len(prior) != 2:
                raise TypeError
            check_number("prior", prior[0], 0.0, low_open=True)
            check_number("prior", prior[1], 0.0, low_open=True)
        except (TypeError, ValueError):
            raise ValueError(f"prior must be two positive finite numbers (alpha0, beta0), got {describe(prior)}"
                             ) from None
        check_number("decay", decay, 0.0, 1.0)
        candidate_count(ratio, self.batch_size, self.pool_size, name="ratio")
        check_number("target", target, 0.0, 1.0)
        check_choice("mode", mode, ("topk", "threshold"))
        check_band("band", band)
        check_bool("decay_every_step", decay_every_step)
        self.prior, self.decay, self.ratio, self.target = (float(prior[0]), float(prior[1])), decay, ratio, target
        self.mode, self.band, self.decay_every_step = mode, band, decay_every_step
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.alpha = np.full(self.pool_size, self.prior[0])
        self.beta = np.full(self.pool_size, self.prior[1])

    @property
    def posterior_mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        batch, rewards = obs["last_batch"], obs["last_rewards"].astype(np.float64)
        k, success = rewards.shape[1], rewards.mean(axis=1)
        a0, b0 = self.prior
        if self.decay_every_step:
            self.alpha = self.decay * self.alpha + (1 - self.decay) * a0
            self.beta = self.decay * self.beta + (1 - self.decay) * b0
            self.alpha[batch] += k * success
            self.beta[batch] += k * (1 - success)
        else:
            self.alpha[batch] = self.decay * self.alpha[batch] + (1 - self.decay) * a0 + k * success
            self.beta[batch] = self.decay * self.beta[batch] + (1 - self.decay) * b0 + k * (1 - success)

    def select(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        candidates = draw_candidates(self.rng, self.pool_size, self.batch_size, self.ratio)
        draws = np.zeros(self.pool_size)
        draws[candidates] = thompson_draws(self.alpha[candidates], self.beta[candidates], self.rng)
        if self.mode == "topk":
            batch = top_nearest_target(draws, self.batch_size, self.target, candidates=candidates, rng=self.rng)
        else:
            inside = candidates[band_filter(draws[candidates], *self.band)]
            if inside.size >= self.batch_size:
                batch = self.rng.choice(inside, size=self.batch_size, replace=False).astype(np.int64)
            else:
                distance = np.zeros(self.pool_size)
                distance[candidates] = distance_to_band(draws[candidates], *self.band)
                batch = top_nearest_target(distance, self.batch_size, 0.0, candidates=candidates, rng=self.rng)
        return {"prompts": batch, "predictions": draws[batch]}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alpha": self.alpha.copy(), "beta": self.beta.copy()}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        for key in ("alpha", "beta"):
            a = check_array(key, state[key], (self.pool_size,))
            if not np.all(a > 0):
                raise ValueError(f"state {key!r} must be positive (Beta parameters)")

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.alpha = np.asarray(state["alpha"], dtype=np.float64).copy()
        self.beta = np.asarray(state["beta"], dtype=np.float64).copy()
