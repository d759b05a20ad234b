"""Positive–negative pairing with Weighted GRPO (Sheng et al., 2026, "Beyond Variance")."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import SelectorAgent
from gps_env.selectors import draw_candidates, pairing_choice
from gps_env.spec import AgentSpec


class Pairing(SelectorAgent):
    """Train on B/2 pairs of a hard-but-solvable anchor q⁺ and an easy-but-brittle prompt q⁻.

    Algorithm (arXiv 2602.03452; no public code: the details below are our reading of the paper)::

        at step 0, and every ``refresh_every`` steps if set:
            measure success s_τ of candidate prompts (probes: k rollouts each, charged; or history)
            q⁺ = prompts with s ∈ [1/k, c/k]         hardest first
            q⁻ = prompts with s ∈ [1 - c/k, 1 - 1/k]  easiest first
            batch = B/2 of each (the nearest to their band fill in when a band runs short)
        every step: train on the batch, with per-prompt loss weights w(q⁺) = 1, w(q⁻) = λ_neg

    **Weighted GRPO, derived.** The paper maps outcomes to r̃ = +1 (success) / −λ_neg (failure) before
    group normalisation. For binary outcomes that map is affine, r̃ = (1 + λ_neg) r − λ_neg, and the group
    z-score (r̃ − mean r̃) / std r̃ is invariant to affine maps: relabelling alone changes nothing (nor does a
    std pooled over the pair, since the pair shares the map). What can change the gradient is an
    asymmetric weight between the two roles, so we apply the reweighting at the pair level as per-prompt loss
    weights: the q⁻ group's advantages are multiplied by λ_neg. With one failure among k on q⁻, that
    rollout's advantage is −λ_neg·√(k−1) (the z-score gives −√(k−1)), while one success among k on q⁺ keeps
    +√(k−1): rare successes on anchors are sharp positive guidance, rare failures on brittle prompts strong
    penalties. λ_neg is not given by
    the paper; the default 2.0 is our choice (1.0 recovers plain GRPO on the pairs).

    The paper selects the pairs once before training and never refreshes them (``refresh_every=None``);
    ``refresh_every=m`` re-identifies them every m steps under the current policy.

    Args:
        env: the env (its probe API, with ``source="probe"``).
        seed: seed of candidate draws and tie-breaking.
        c: band width in failures/successes out of k (default 2).
        lambda_neg: loss weight of the q⁻ groups (>= 0).
        refresh_every: re-select every this many steps (None: once, as in the paper).
        candidates: prompts measured per selection, as a multiple of B (capped at the pool; default 4).
        source: ``"probe"`` (measure with charged probes) or ``"history"`` (use the observed success of
            prompts already trained on or probed; unseen prompts count as success 0.5).
    """

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        c: int = 2,
        lambda_neg: float = 2.0,
        refresh_every: int | None = None,
        candidates: float = 4.0,
        source: str = "probe",
    ) -> None:
        super().__init__(env, seed)
        if not 1 <= c < self.k:
            raise ValueError(f"c must be in [1, k={self.k}), got {c}")
        if not (lambda_neg >= 0 and np.isfinite(lambda_neg)):
            raise ValueError(f"lambda_neg must be finite and >= 0, got {lambda_neg}")
        if refresh_every is not None and refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1 or None, got {refresh_every}")
        if not candidates >= 1:
            raise ValueError(f"candidates (multiple of B) must be >= 1, got {candidates}")
        if source not in ("probe", "history"):
            raise ValueError(f"source must be 'probe' or 'history', got {source!r}")
        self.c, self.lambda_neg, self.refresh_every = c, float(lambda_neg), refresh_every
        self.candidates, self.source = candidates, source
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.batch: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.selected_at = -1

    def _measure(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        pool = draw_candidates(self.rng, self.pool_size, self.batch_size, self.candidates, name="candidates")
        success = np.full(self.pool_size, 0.5)
        if self.source == "probe":
            success[pool] = self.spec.probe(pool).mean(axis=1)
        else:
            seen = obs["rollouts"] > 0
            success[seen] = obs["successes"][seen] / obs["rollouts"][seen]
            pool = np.arange(self.pool_size)
        return success, pool

    def select(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        step = int(obs["step"][0])
        due = self.refresh_every is not None and step - self.selected_at >= self.refresh_every
        if self.batch is None or due:
            success, pool = self._measure(obs)
            n_neg = self.batch_size // 2
            n_pos = self.batch_size - n_neg
            positives, negatives = pairing_choice(success, self.k, n_pos, self.c, candidates=pool, rng=self.rng)
            negatives = negatives[:n_neg]
            self.batch = np.concatenate([positives, negatives]).astype(np.int64)
            self.weights = np.concatenate([np.ones(n_pos), np.full(n_neg, self.lambda_neg)])
            self.predicted = success[self.batch]
            self.selected_at = step
        return {"prompts": self.batch.copy(), "weights": self.weights.copy(), "predictions": self.predicted.copy()}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "batch": None if self.batch is None else self.batch.copy(),
            "weights": None if self.weights is None else self.weights.copy(),
            "predicted": None if self.batch is None else self.predicted.copy(),
            "selected_at": self.selected_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.batch = None if state["batch"] is None else np.asarray(state["batch"], dtype=np.int64).copy()
        self.weights = None if state["weights"] is None else np.asarray(state["weights"]).copy()
        if state["predicted"] is not None:
            self.predicted = np.asarray(state["predicted"]).copy()
        self.selected_at = int(state["selected_at"])
