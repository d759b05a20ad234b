"""Positive–negative pairing with Weighted GRPO (Sheng et al., 2026, "Beyond Variance")."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.actions import MAX_WEIGHT
from gps_env.agents.base import SelectorAgent, check_array, check_choice, check_ids, check_integer, check_number
from gps_env.selectors import candidate_count, draw_candidates, pairing_choice
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
        lambda_neg: loss weight of the q⁻ groups, in [0, ``gps_env.actions.MAX_WEIGHT``] (the env's cap).
        refresh_every: re-select every this many steps (None: once, as in the paper).
        candidates: prompts measured per selection, as a multiple of B (capped at the pool; default 4).
        source: ``"probe"`` (measure with charged probes) or ``"history"`` (use the observed success of
            prompts already trained on or probed; unseen prompts count as success 0.5).

    State: ``rng``, ``learnt_step``, the current ``batch`` (B distinct ids), its loss ``weights`` and
    ``predicted`` success (all three None before the first selection) and ``selected_at`` (its step, -1).
    """

    state_keys = (*SelectorAgent.state_keys, "batch", "weights", "predicted", "selected_at")

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
        if self.k < 2:
            raise ValueError(f"pairing needs k >= 2 rollouts per prompt to see both outcomes, got k={self.k}")
        check_integer("c", c, 1, self.k - 1)
        check_number("lambda_neg", lambda_neg, 0.0, MAX_WEIGHT)
        if refresh_every is not None:
            check_integer("refresh_every", refresh_every, 1)
        candidate_count(candidates, self.batch_size, self.pool_size, name="candidates")
        check_choice("source", source, ("probe", "history"))
        self.observation_keys = ("rollouts", "successes") if source == "history" else ()
        self.c, self.lambda_neg, self.refresh_every = c, float(lambda_neg), refresh_every
        self.candidates, self.source = candidates, source
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.batch: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.predicted: np.ndarray | None = None
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

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        chosen = [state[key] is not None for key in ("batch", "weights", "predicted")]
        if any(chosen) and not all(chosen):
            raise ValueError("state 'batch', 'weights' and 'predicted' must all be None (nothing selected yet) or "
                             "all be arrays")
        if all(chosen):
            check_ids("batch", state["batch"], self.batch_size, self.pool_size)
            check_array("weights", state["weights"], (self.batch_size,), low=0.0, high=MAX_WEIGHT)
            check_array("predicted", state["predicted"], (self.batch_size,))
        check_integer("state 'selected_at'", state["selected_at"], -1)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.batch = None if state["batch"] is None else np.asarray(state["batch"], dtype=np.int64).copy()
        self.weights = None if state["weights"] is None else np.asarray(state["weights"]).copy()
        self.predicted = None if state["predicted"] is None else np.asarray(state["predicted"]).copy()
        self.selected_at = int(state["selected_at"])
