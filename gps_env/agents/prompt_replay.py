"""Prompt Replay: fresh prompts from a shuffled pass over the pool, plus replays of prompts last seen near 0.5."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import (
    SelectorAgent,
    check_array,
    check_band,
    check_ids,
    check_integer,
    check_number,
)
from gps_env.spec import AgentSpec


class PromptReplay(SelectorAgent):
    """Replay prompts whose last pass rate was near 0.5, under a cooldown and a reuse cap (arXiv 2603.21177;
    code baroian/GRPO_prompt_replay, ``open-instruct/open_instruct/grpo_fast.py``: ``ShufflingIterator``'s
    ``next_for_step``, ``_pop_next_replay_candidate``, ``update_prompt_pass_entries``).

    Algorithm (one call of ``act`` choosing the batch trained at step t)::

        buffer = {τ : 0 < pass_τ,  lo <= pass_τ <= hi,  reuse_τ < max_reuse}   ordered by (|pass_τ − 0.5|, pass_τ,
                                                                                reuse_τ, τ)
        R      = min(floor(B · f), B // 2)
        replay = the first <= R prompts of the buffer with t − last_step_τ >= C   (the others stay in the buffer)
        fresh  = the next B − |replay| prompts of a shuffled pass over the pool, skipping the replayed ids
        after the rollouts of the batch:
            pass_τ ← mean reward of τ's k rollouts;  last_step_τ ← t        (every trained prompt)
            reuse_τ ← reuse_τ + 1                                          (replayed prompts)

    Defaults follow the authors' script (``scripts/train/olmo3/qwen_math_1_5.sh``): f = 0.5, C = 5,
    max_reuse = 5 (the code's Args default is 20), window [0.24, 0.70]. The pass rate is the last observation,
    unsmoothed, as in the code. The first batches are all fresh (the buffer is empty until prompts are seen).
    No probes: B·k rollouts per step.

    What is ours or left out:

    - The cooldown counts from a prompt's last *training* (fresh or replayed), as the code's ``prompt_last_step``
      does, so a replayed prompt is never replayed within C steps of any use.
    - The shuffled pass ("epoch") is refilled when what is left of it (less the replayed ids) cannot fill the
      fresh part: the rest of the old pass goes first, followed by the other prompts in a new random order, so
      the queue always holds distinct ids. Replays do not consume the pass (as in the code): a replayed prompt
      still comes up fresh later in the pass.
    - The code's distance-dependent cooldown (5/10/15/20 steps, ±20% jitter) is stored only as metadata there and
      never gates eligibility; it is not ported. Neither are the script's ``no_resampling_pass_rate`` retirement
      of prompts solved >= 85%, its zero-pass curriculum ordering, nor ``active_sampling`` (a DS-like refill with
      extra rollouts; see :class:`~gps_env.agents.DynamicSampling`).
    - ``f`` above 0.5 is accepted but, as in the code, at most ``B // 2`` prompts are replayed.
    - The action's ``"predictions"`` are each prompt's last pass rate, 0.5 for prompts never trained.

    Selection draws randomness only when the pass is refilled and does not consume the queue: the trained batch
    is taken off it when its feedback is observed. So calling ``act`` twice on one observation returns the same
    batch and leaves the same state.

    Args:
        env: the env (its pool size and batch size are read from it).
        seed: seed of the shuffled passes.
        replay_fraction: f in [0, 1], the share of the batch that may be replayed (capped at B // 2).
        cooldown: C >= 1, steps between a prompt's last training and its replay.
        max_reuse: cap >= 1 on the number of times a prompt is replayed.
        window: ``(lo, hi)`` pass-rate window of the buffer (a pass rate of 0 never enters it).

    After each ``act``: ``last_replayed`` (the ids replayed in the returned batch).
    State: ``rng``, ``learnt_step``, ``queue`` (the rest of the current pass: distinct ids), ``pass_rate`` ((N,) in
    [0, 1]), ``last_step`` ((N,), -1 for never trained), ``reuse`` ((N,) in [0, max_reuse]) and ``pending``
    (the ids replayed in the last batch chosen, not yet observed).
    """

    observation_keys = ("last_batch", "last_rewards")
    state_keys = (*SelectorAgent.state_keys, "queue", "pass_rate", "last_step", "reuse", "pending")

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        replay_fraction: float = 0.5,
        cooldown: int = 5,
        max_reuse: int = 5,
        window: tuple[float, float] = (0.24, 0.70),
    ) -> None:
        super().__init__(env, seed)
        check_number("replay_fraction", replay_fraction, 0.0, 1.0)
        self.cooldown = check_integer("cooldown", cooldown, 1)
        self.max_reuse = check_integer("max_reuse", max_reuse, 1)
        self.window = check_band("window", window)
        self.replay_fraction = float(replay_fraction)
        #: Replays per step: min(floor(B·f), B // 2), as the code's ``_max_replay_budget``.
        self.replay_budget = min(int(np.floor(self.batch_size * self.replay_fraction)), self.batch_size // 2)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._queue = np.empty(0, dtype=np.int64)
        self.pass_rate = np.zeros(self.pool_size)
        self.last_step = np.full(self.pool_size, -1, dtype=np.int64)
        self.reuse = np.zeros(self.pool_size, dtype=np.int64)
        self._pending = np.empty(0, dtype=np.int64)
        self.last_replayed = np.empty(0, dtype=np.int64)

    # -- the buffer --------------------------------------------------------------------------------------------

    def in_buffer(self) -> np.ndarray:
        """(N,) bool: the prompts in the replay buffer (seen, 0 < pass, inside the window, under the cap)."""
        lo, hi = self.window
        p = self.pass_rate
        return (self.last_step >= 0) & (p > 0) & (p >= lo) & (p <= hi) & (self.reuse < self.max_reuse)

    @property
    def buffer(self) -> np.ndarray:
        """The buffer's ids in priority order: (|pass − 0.5|, pass, reuse, id), the code's heap order."""
        ids = np.flatnonzero(self.in_buffer())
        p = self.pass_rate[ids]
        return ids[np.lexsort((ids, self.reuse[ids], p, np.abs(p - 0.5)))].astype(np.int64)

    def eligible(self, step: int) -> np.ndarray:
        """(N,) bool: the buffer's prompts out of their cooldown for a batch trained at ``step``."""
        return self.in_buffer() & (step - self.last_step >= self.cooldown)

    # -- the protocol ------------------------------------------------------------------------------------------

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        batch = np.asarray(obs["last_batch"], dtype=np.int64)
        success = np.asarray(obs["last_rewards"], dtype=np.float64).mean(axis=1)
        trained_at = int(obs["step"][0]) - 1
        replayed = np.isin(batch, self._pending)
        self.pass_rate[batch] = success
        self.last_step[batch] = trained_at
        reuse = self.reuse[batch[replayed]]
        self.reuse[batch[replayed]] = np.where(reuse < self.max_reuse, reuse + 1, reuse)  # max_reuse may pass int64
        self._queue = self._queue[~np.isin(self._queue, batch[~replayed])]
        self._pending = np.empty(0, dtype=np.int64)

    def select(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        step = int(obs["step"][0])  # the batch chosen now is trained at step `step` (0-based)
        order = self.buffer
        replay = order[self.eligible(step)[order]][: self.replay_budget]
        need = self.batch_size - replay.size
        left = self._queue[~np.isin(self._queue, replay)]
        if left.size < need:  # refill the pass: its rest first, then the other prompts shuffled
            rest = np.setdiff1d(np.arange(self.pool_size), self._queue)
            self._queue = np.concatenate([self._queue, self.rng.permutation(rest)]).astype(np.int64)
            left = self._queue[~np.isin(self._queue, replay)]
        batch = np.concatenate([replay, left[:need]]).astype(np.int64)
        self._pending = replay.copy()
        self.last_replayed = replay.copy()
        seen = self.last_step[batch] >= 0
        predictions = np.where(seen, self.pass_rate[batch], 0.5)
        return {"prompts": batch, "predictions": predictions}

    # -- state -------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "queue": self._queue.copy(),
            "pass_rate": self.pass_rate.copy(),
            "last_step": self.last_step.copy(),
            "reuse": self.reuse.copy(),
            "pending": self._pending.copy(),
        }

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        n = self.pool_size
        check_ids("queue", state["queue"], None, n)
        check_array("pass_rate", state["pass_rate"], (n,), low=0.0, high=1.0)
        # int64 on loading (uint64 beyond 2**63 would wrap); reuse grows by one a replay
        check_array("last_step", state["last_step"], (n,), "iu", low=-1, high=2**63 - 2)
        check_array("reuse", state["reuse"], (n,), "iu", low=0, high=min(self.max_reuse, 2**62))
        check_ids("pending", state["pending"], None, n)
        if len(state["pending"]) > self.replay_budget:
            raise ValueError(f"state 'pending' holds more than {self.replay_budget} replayed ids")

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._queue = np.asarray(state["queue"], dtype=np.int64).copy()
        self.pass_rate = np.asarray(state["pass_rate"], dtype=np.float64).copy()
        self.last_step = np.asarray(state["last_step"], dtype=np.int64).copy()
        self.reuse = np.asarray(state["reuse"], dtype=np.int64).copy()
        self._pending = np.asarray(state["pending"], dtype=np.int64).copy()
        self.last_replayed = self._pending.copy()
