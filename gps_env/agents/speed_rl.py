"""SPEED-RL: screen prompts with a few rollouts, continue only those whose screen is mixed."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import SelectorAgent, check_bool, check_ids, check_integer
from gps_env.selectors import top_nearest_target
from gps_env.spec import AgentSpec


class SpeedRL(SelectorAgent):
    """Screen, then continue the prompts of intermediate difficulty (Zhang et al., 2025, SPEED-RL,
    arXiv 2506.09016; code Zanette-Labs/speed-rl, ``verl/trainer/ppo/data_controller.py``
    ``DataController.update_prompts`` / ``get_training_data`` and ``recipe/dapo/src/fast_dapo_ray_trainer.py``).

    Algorithm (one call of ``act``)::

        batch = the oldest B prompts of the carry-over queue Q (qualified at an earlier step)
        for round in 1 .. max_rounds, while |batch| < B:
            C   = g prompts drawn uniformly from those not queued, not in the batch, not yet screened this step
            r   = env.probe(C)                        # the screen: k rollouts each, charged as "probe"
            M   = [τ in C : 0 < Σ r_τ < k]              # qualified: the screen's rewards are not all equal
            batch += M[: B - |batch|];  Q += the rest of M   # leftovers stay queued (carry_over)
        if |batch| < B:                               # round cap: fill, never duplicate, never crash
            batch += the screened prompts nearest success 0.5, not already in the batch
        train on batch                                # the continuation

    Defaults follow ``run_fast_rloo_7b.sh``: g = 4B (64 screened for B = 16), at most 50 generation batches
    (rounds) per step, the std > 0 qualification and no other threshold.

    **Screen size (ours).** SPEED screens with n_init = 4 rollouts and continues qualified prompts with
    n_cont = 20 more, training on all 24. The env's probe always samples k rollouts (its fixed group size), so
    here a screen is a full group of k and the continuation is the update on those very rollouts: the env reuses
    a prompt's probe rollouts when it is trained in the next step, so a prompt that qualifies and is trained at
    once is charged k rollouts in all, once. What is lost is SPEED's saving: an unqualified prompt costs k
    rollouts here, not n_init ≪ k, so on this env SPEED is DAPO's dynamic sampling with g = 4B and a carry-over
    queue; its 2–6× speed-up over DAPO needs a probe with fewer rollouts than the training group.

    **Carry-over (code).** Qualified prompts beyond B are not discarded: they wait in a FIFO queue and open the
    next step's batch, unscreened. The env keeps probe rollouts only until the next update, so a queued
    prompt's screen is not reused: it is trained on k fresh rollouts from the updated policy (charged as
    "train"), as SPEED continues a queued prompt from the new policy; its screen may be stale by then (the
    code's pitfall too). ``carry_over=False`` discards the surplus instead (DAPO's behaviour).

    Screens are charged: every screening rollout goes through ``env.probe`` and onto the ledger's ``"probe"``
    account. No ``"predictions"`` are sent: a freshly qualified prompt is trained on its own screen's
    rollouts, so a correlation of screen and outcome would be moot. Acting twice on one observation returns the
    same batch without screening again (the batch of the step is kept in the state); a new episode empties the
    queue. The round cap fills like :class:`~gps_env.agents.DynamicSampling`'s instead of raising.

    Args:
        env: the env (needs its probe API).
        seed: seed of the screening draws and of the tie-breaking in the fill.
        gen_batch_size: g, prompts screened per round, in [B, N] (default 4B, capped at the pool).
        max_rounds: round cap per step (SPEED's ``max_num_gen_batches`` = 50); 0 means until the pool is
            exhausted.
        carry_over: keep the surplus qualified prompts for the next steps (SPEED) instead of discarding them.

    After each ``act``: ``last_screened`` (ids screened this step, in order), ``last_screen_success`` (their
    screened success rates), ``last_from_queue`` (how many of the batch came from the queue), ``last_rounds``
    and ``last_cap_hit``; ``cap_hits`` counts the episode's.
    State: ``rng``, ``learnt_step``, ``queue`` (queued prompt ids, oldest first), ``cap_hits``, ``acted_step``
    and ``acted_batch`` (the step last acted on, -1 for none, and its batch).
    """

    state_keys = (*SelectorAgent.state_keys, "queue", "cap_hits", "acted_step", "acted_batch")

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        gen_batch_size: int | None = None,
        max_rounds: int = 50,
        carry_over: bool = True,
    ) -> None:
        super().__init__(env, seed)
        if gen_batch_size is None:
            self.gen_batch_size = min(4 * self.batch_size, self.pool_size)
        else:
            self.gen_batch_size = check_integer("gen_batch_size", gen_batch_size, self.batch_size, self.pool_size)
        self.max_rounds = check_integer("max_rounds", max_rounds, 0)  # 0: no cap
        self.carry_over = check_bool("carry_over", carry_over)
        self.last_screened = np.zeros(0, dtype=np.int64)
        self.last_screen_success = np.zeros(0)
        self.last_from_queue = 0
        self.last_rounds = 0
        self.last_cap_hit = False
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.queue = np.zeros(0, dtype=np.int64)
        self.cap_hits = 0
        self._acted_step = -1
        self._acted_batch = np.zeros(0, dtype=np.int64)

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        step = int(obs["step"][0])
        if step == self._acted_step:  # this step's batch was chosen already: screen nothing again
            return self._acted_batch.copy()
        b = self.batch_size
        batch = [int(i) for i in self.queue[:b]]
        queue = [int(i) for i in self.queue[b:]]
        self.last_from_queue = len(batch)
        free = np.ones(self.pool_size, dtype=bool)
        free[self.queue] = False
        screened: list[np.ndarray] = []
        rates: list[np.ndarray] = []
        rounds = 0
        while len(batch) < b and free.any():
            if self.max_rounds and rounds == self.max_rounds:
                break
            left = np.flatnonzero(free)
            candidates = self.rng.choice(left, size=min(self.gen_batch_size, left.size), replace=False)
            rewards = np.asarray(self.spec.probe(candidates), dtype=np.float64)
            free[candidates] = False
            success = rewards.mean(axis=1)
            screened.append(candidates.astype(np.int64))
            rates.append(success)
            mixed = candidates[(success > 0) & (success < 1)].tolist()
            take = b - len(batch)
            batch.extend(mixed[:take])
            if self.carry_over:
                queue.extend(mixed[take:])
            rounds += 1
        self.last_screened = np.concatenate(screened) if screened else np.zeros(0, dtype=np.int64)
        self.last_screen_success = np.concatenate(rates) if rates else np.zeros(0)
        self.last_rounds, self.last_cap_hit = rounds, len(batch) < b
        chosen = np.asarray(batch, dtype=np.int64)
        if self.last_cap_hit:
            self.cap_hits += 1
            rest = np.setdiff1d(self.last_screened, chosen)
            gamma = np.zeros(self.pool_size)
            gamma[self.last_screened] = self.last_screen_success
            fill = top_nearest_target(gamma, b - chosen.size, 0.5, candidates=rest, rng=self.rng)
            chosen = np.concatenate([chosen, fill])
        self.queue = np.asarray(queue, dtype=np.int64)
        self._acted_step, self._acted_batch = step, chosen
        return chosen.copy()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "queue": self.queue.copy(), "cap_hits": self.cap_hits,
                "acted_step": self._acted_step, "acted_batch": self._acted_batch.copy()}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        check_ids("queue", state["queue"], None, self.pool_size)
        check_integer("state 'cap_hits'", state["cap_hits"], 0)
        acted = check_integer("state 'acted_step'", state["acted_step"], -1)
        check_ids("acted_batch", state["acted_batch"], 0 if acted == -1 else self.batch_size, self.pool_size)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.queue = np.asarray(state["queue"], dtype=np.int64).copy()
        self.cap_hits = int(state["cap_hits"])
        self._acted_step = int(state["acted_step"])
        self._acted_batch = np.asarray(state["acted_batch"], dtype=np.int64).copy()
