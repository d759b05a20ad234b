"""DS: DAPO's dynamic sampling, an oracle that looks before it trains and pays for every look."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import SelectorAgent, check_band, check_integer
from gps_env.selectors import band_filter, top_nearest_target
from gps_env.spec import AgentSpec


class DynamicSampling(SelectorAgent):
    """Over-sample, probe, keep the informative groups (Yu et al., 2025, DAPO §3.2; verl-recipe ``dapo``).

    Algorithm (one call of ``act``)::

        kept = []
        for round in 1 .. max_rounds:
            C   = gen_batch_size prompts drawn uniformly from those not yet probed this step
            r   = env.probe(C)                      # k rollouts each, charged as "probe"
            kept += [τ in C : 0 < Σ r_τ < k]          # or, with band=(lo, hi): lo <= mean r_τ <= hi
            if |kept| >= B: break
        batch = kept[:B]                            # surplus kept groups are discarded (already paid for)
        if |kept| < B:                              # round cap: fill, never duplicate, never crash
            batch += the probed prompts nearest success 0.5, not already in the batch

    The env reuses the probe rollouts of the batch for the update, so each rollout is charged once; the
    rollouts of every discarded and surplus group stay on the ledger. This fixes two bugs of the reference
    code: verl-recipe raises at the cap (recipe ``dapo``, arXiv 2503.14476) and MoPPS's copy
    (github.com/thu-rllab/MoPPS) duplicates groups there.

    Args:
        env: the env (needs its probe API).
        seed: seed of the candidate draws.
        gen_batch_size: prompts probed per round (default B, as the MoPPS authors ran DS; DAPO used 3B).
        max_rounds: round cap (MoPPS: 4 for math, 10 for Countdown). 0 means until the pool is exhausted.
        band: ``(low, high)`` band-pass on the probed success instead of the ``0 < successes < k`` rule.

    After each ``act``: ``last_rounds`` (rounds used) and ``last_cap_hit``; ``cap_hits`` counts the episode's.
    State: ``rng``, ``learnt_step``, ``cap_hits``.
    """

    state_keys = (*SelectorAgent.state_keys, "cap_hits")

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        gen_batch_size: int | None = None,
        max_rounds: int = 4,
        band: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(env, seed)
        if gen_batch_size is None:
            self.gen_batch_size = self.batch_size
        else:
            self.gen_batch_size = check_integer("gen_batch_size", gen_batch_size, self.batch_size, self.pool_size)
        check_integer("max_rounds", max_rounds, 0)  # 0: no cap
        if band is not None:
            check_band("band", band)
        self.max_rounds, self.band = int(max_rounds), band
        self.cap_hits = 0
        self.last_rounds = 0
        self.last_cap_hit = False

    def _informative(self, rewards: np.ndarray) -> np.ndarray:
        success = rewards.mean(axis=1)
        if self.band is not None:
            return band_filter(success, *self.band)
        return (success > 0) & (success < 1)

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        unprobed = np.ones(self.pool_size, dtype=bool)
        probed: list[np.ndarray] = []
        rates: list[np.ndarray] = []
        kept: list[int] = []
        rounds = 0
        while len(kept) < self.batch_size and unprobed.any():
            if self.max_rounds and rounds == self.max_rounds:
                break
            left = np.flatnonzero(unprobed)
            candidates = self.rng.choice(left, size=min(self.gen_batch_size, left.size), replace=False)
            rewards = self.spec.probe(candidates)
            unprobed[candidates] = False
            probed.append(candidates)
            rates.append(rewards.mean(axis=1))
            kept.extend(candidates[self._informative(rewards)].tolist())
            rounds += 1
        all_probed, all_rates = np.concatenate(probed), np.concatenate(rates)
        self.last_rounds, self.last_cap_hit = rounds, len(kept) < self.batch_size
        batch = np.asarray(kept[: self.batch_size], dtype=np.int64)
        if self.last_cap_hit:
            self.cap_hits += 1
            rest = np.setdiff1d(all_probed, batch)
            gamma = np.zeros(self.pool_size)
            gamma[all_probed] = all_rates
            fill = top_nearest_target(gamma, self.batch_size - batch.size, 0.5, candidates=rest, rng=self.rng)
            batch = np.concatenate([batch, fill])
        return batch  # no "predictions": DS trains on the very rollouts it measured, so a correlation is moot

    def reset(self) -> None:
        super().reset()
        self.cap_hits = 0

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "cap_hits": self.cap_hits}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        check_integer("state 'cap_hits'", state["cap_hits"], 0)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.cap_hits = int(state["cap_hits"])
