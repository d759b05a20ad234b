"""GRESO: skip, before rolling out, the prompts whose recent groups were all correct or all wrong."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import (
    SelectorAgent,
    check_array,
    check_band,
    check_bool,
    check_ids,
    check_integer,
    check_number,
)
from gps_env.selectors import top_nearest_target
from gps_env.spec import AgentSpec


class GRESO(SelectorAgent):
    """Probabilistic pre-rollout skipping with adaptive skip rates (arXiv 2506.02177; code
    Infini-AI-Lab/GRESO, ``verl/trainer/ttis/presampling_selector.py`` ``DataProfiler``,
    ``verl/trainer/ppo/ray_trainer.py`` ``fit``).

    Each prompt's trace of group outcomes is kept as two trailing runs: c_e (consecutive all-correct groups,
    every reward >= 0.98) and c_h (consecutive all-wrong groups, every reward <= 0.11); a mixed group resets both.

    Algorithm (one call of ``act``)::

        observe every group rolled out since the last call (the trained batch; with probes, every probed one):
            update c_e, c_h of its prompt
            if a full pass over the pool is done (epoch >= 1):        # the reference adapts from epoch 1 on
                share_e = all-correct groups / groups;  share_h = all-wrong groups / groups
                p_e ← clip(p_e - δ if share_e >= α/3  else p_e + δ, lo, hi)
                p_h ← clip(p_h - δ if share_h >= 2α/3 else p_h + δ, lo, hi)
        walk a shuffled pass over the pool (reshuffled, epoch + 1, when it ends); candidate τ:
            c_e > 0: keep w.p. max(p_e ** c_e, floor)
            c_h > 0: keep w.p. max(p_h ** c_h, floor)
            else (never seen, or last group mixed): keep
        default:     the first B survivors are the batch
        probe=True:  probe gen_batch_size survivors per round (k rollouts each, charged as "probe"), keep the
                     mixed groups, until B are kept or max_rounds; surplus mixed groups are discarded (paid
                     for); short of B, fill with the probed prompts nearest success 0.5 (as DS here),
                     and only if too few were probed, with skipped prompts, unprobed (trained at B·k cost)

    ``probe=True`` is the published loop (survivors fill a gen batch, roll out, keep mixed, repeat until B);
    the env reuses the probe rollouts of the prompts trained on, and every probe is charged to the ledger. The
    default is the filter alone, with no probes (B·k rollouts per step). If one pass over the pool in a call
    leaves fewer than B survivors (ours: a guard the reference does not need with its large pools), the
    skipped candidates fill the rest in the order they were met.

    Bug fixed: the reference counts a group as "hard" only if all its rewards are exactly 0.1 (its "wrong but
    formatted" reward), so under a 0/1 verifier the hard share is always 0, p_h drifts to its upper bound and
    hard prompts are barely skipped. Here every group whose rewards are all <= 0.11 is hard (all-0 included).
    The thresholds also apply per rollout rather than to the group mean (the reference's mean <= 0.11 means
    "no success" only for k <= 9).

    Defaults from the reference scripts: p_e = p_h = 0.5, δ = 0.01, bounds [0.05, 0.95], α
    (``target_zero_variance``) 0.25 split 1/3 easy, 2/3 hard, keep floor 0.01. The reference's gen batch is
    1.5·B with an adaptive size; here ``gen_batch_size`` defaults to B and ``max_rounds`` to 4, as DS's.

    Args:
        env: the env (with ``probe=True``, one with a probe API) or an :class:`~gps_env.spec.AgentSpec`.
        seed: seed of the shuffles, skip coins and tie-breaking.
        probe: probe the survivors and train on the mixed ones (the published loop).
        p_easy, p_hard: initial keep bases p_e, p_h in [0, 1].
        step_size: δ in [0, 1].
        bounds: ``(lo, hi)`` with 0 <= lo <= hi <= 1.
        target_zero_variance: α in [0, 1].
        keep_floor: the least keep probability, in [0, 1].
        gen_batch_size: prompts probed per round (B..N; default B), with ``probe=True``.
        max_rounds: probe round cap (>= 1), with ``probe=True``.

    After each ``act``: ``last_skipped`` (the candidates skipped this call, int64). No ``"predictions"``: GRESO
    keeps no success estimate, only outcome runs.
    State: ``rng``, ``learnt_step``, ``p_easy``, ``p_hard``, ``easy_run``, ``hard_run`` (N,), ``order`` (the
    current pass), ``cursor``, ``epoch``, ``pending_ids``/``pending_rewards`` (the probed groups of the last call).
    """

    observation_keys = ("last_batch", "last_rewards")
    state_keys = (*SelectorAgent.state_keys, "p_easy", "p_hard", "easy_run", "hard_run", "order", "cursor",
                  "epoch", "pending_ids", "pending_rewards")

    #: All-correct and all-wrong thresholds per rollout (the reference's 0.98 and 0.11).
    EASY, HARD = 0.98, 0.11

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        probe: bool = False,
        p_easy: float = 0.5,
        p_hard: float = 0.5,
        step_size: float = 0.01,
        bounds: tuple[float, float] = (0.05, 0.95),
        target_zero_variance: float = 0.25,
        keep_floor: float = 0.01,
        gen_batch_size: int | None = None,
        max_rounds: int = 4,
    ) -> None:
        super().__init__(env, seed)
        self.probe = check_bool("probe", probe)
        self.p_easy0 = float(check_number("p_easy", p_easy, 0.0, 1.0))
        self.p_hard0 = float(check_number("p_hard", p_hard, 0.0, 1.0))
        self.step_size = float(check_number("step_size", step_size, 0.0, 1.0))
        self.bounds = check_band("bounds", bounds)
        self.target_zero_variance = float(check_number("target_zero_variance", target_zero_variance, 0.0, 1.0))
        self.keep_floor = float(check_number("keep_floor", keep_floor, 0.0, 1.0))
        if gen_batch_size is None:
            self.gen_batch_size = self.batch_size
        else:
            self.gen_batch_size = check_integer("gen_batch_size", gen_batch_size, self.batch_size, self.pool_size)
        self.max_rounds = check_integer("max_rounds", max_rounds, 1)
        self.last_skipped = np.zeros(0, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.p_easy, self.p_hard = self.p_easy0, self.p_hard0
        self.easy_run = np.zeros(self.pool_size, dtype=np.int64)
        self.hard_run = np.zeros(self.pool_size, dtype=np.int64)
        self.order = np.zeros(0, dtype=np.int64)  # drawn on first use
        self.cursor, self.epoch = 0, -1  # the first pass is epoch 0
        self.pending_ids = np.zeros(0, dtype=np.int64)
        self.pending_rewards = np.zeros((0, self.k))

    # ------------------------------------------------------------------ learning
    def observe(self, obs: dict[str, np.ndarray]) -> None:
        batch = np.asarray(obs["last_batch"], dtype=np.int64)
        rewards = np.asarray(obs["last_rewards"], dtype=np.float64)
        extra = ~np.isin(self.pending_ids, batch)  # probed, not trained: rolled out all the same
        ids = np.concatenate([batch, self.pending_ids[extra]])
        groups = np.concatenate([rewards, self.pending_rewards[extra]])
        self.pending_ids = np.zeros(0, dtype=np.int64)
        self.pending_rewards = np.zeros((0, self.k))
        easy, hard = np.all(groups >= self.EASY, axis=1), np.all(groups <= self.HARD, axis=1)
        self.easy_run[ids] = np.where(easy, self.easy_run[ids] + 1, 0)
        self.hard_run[ids] = np.where(hard, self.hard_run[ids] + 1, 0)
        if self.epoch >= 1:
            alpha, lo, hi = self.target_zero_variance, *self.bounds
            step_e = -self.step_size if easy.mean() >= alpha / 3 else self.step_size
            step_h = -self.step_size if hard.mean() >= 2 * alpha / 3 else self.step_size
            self.p_easy = float(np.clip(self.p_easy + step_e, lo, hi))
            self.p_hard = float(np.clip(self.p_hard + step_h, lo, hi))

    def keep_probability(self) -> np.ndarray:
        """Each prompt's chance to survive the skip filter now (1 for never-seen and last-mixed prompts)."""
        keep = np.ones(self.pool_size)
        easy, hard = self.easy_run > 0, (self.easy_run == 0) & (self.hard_run > 0)
        keep[easy] = np.maximum(self.p_easy ** self.easy_run[easy], self.keep_floor)
        keep[hard] = np.maximum(self.p_hard ** self.hard_run[hard], self.keep_floor)
        return keep

    # ------------------------------------------------------------------ selection
    def _survivors(self, want: int, taken: np.ndarray, keep: np.ndarray, skipped: list[int]) -> list[int]:
        """Up to ``want`` survivors from the shuffled pass, none in ``taken``; walks at most one pool's worth."""
        out: list[int] = []
        for _ in range(self.pool_size):
            if len(out) == want:
                break
            if self.cursor >= self.order.size:
                self.order = self.rng.permutation(self.pool_size).astype(np.int64)
                self.cursor, self.epoch = 0, self.epoch + 1
            tau = int(self.order[self.cursor])
            self.cursor += 1
            if taken[tau]:
                continue
            taken[tau] = True
            if keep[tau] >= 1.0 or self.rng.random() < keep[tau]:
                out.append(tau)
            else:
                skipped.append(tau)
        return out

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        keep = self.keep_probability()
        taken = np.zeros(self.pool_size, dtype=bool)
        skipped: list[int] = []
        if not self.probe:
            batch = self._survivors(self.batch_size, taken, keep, skipped)
            short = self.batch_size - len(batch)
            batch += skipped[:short]  # the guard: fill from the skipped, in the order met
            self.last_skipped = np.asarray(skipped[short:] if short > 0 else skipped, dtype=np.int64)
            return self._complete(np.asarray(batch, dtype=np.int64))
        probed: list[np.ndarray] = []
        rates: list[np.ndarray] = []
        groups: list[np.ndarray] = []
        kept: list[int] = []
        for _ in range(self.max_rounds):
            candidates = np.asarray(self._survivors(self.gen_batch_size, taken, keep, skipped), dtype=np.int64)
            if candidates.size == 0:
                break
            rewards = np.asarray(self.spec.probe(candidates), dtype=np.float64)
            probed.append(candidates)
            groups.append(rewards)
            success = rewards.mean(axis=1)
            rates.append(success)
            kept.extend(candidates[(success > 0) & (success < 1)].tolist())
            if len(kept) >= self.batch_size:
                break
        self.last_skipped = np.asarray(skipped, dtype=np.int64)
        all_probed = np.concatenate(probed) if probed else np.zeros(0, dtype=np.int64)
        self.pending_ids = all_probed
        self.pending_rewards = np.concatenate(groups) if groups else np.zeros((0, self.k))
        batch = np.asarray(kept[: self.batch_size], dtype=np.int64)
        if batch.size < self.batch_size:
            rest = np.setdiff1d(all_probed, batch)
            if rest.size >= self.batch_size - batch.size:
                gamma = np.zeros(self.pool_size)
                gamma[all_probed] = np.concatenate(rates)
                fill = top_nearest_target(gamma, self.batch_size - batch.size, 0.5, candidates=rest, rng=self.rng)
            else:  # too few survivors probed (a tiny pool, all skipped): add skipped candidates, unprobed
                in_batch = set(batch.tolist())
                unused = [t for t in skipped if t not in in_batch]
                fill = np.concatenate([rest, np.asarray(unused[: self.batch_size - batch.size - rest.size],
                                                        dtype=np.int64)])
            batch = np.concatenate([batch, fill]).astype(np.int64)
        return self._complete(batch)

    def _complete(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` topped up to B with random prompts not in it (only when the pass wrapped with B near N)."""
        if batch.size < self.batch_size:
            free = np.setdiff1d(np.arange(self.pool_size), batch)
            batch = np.concatenate([batch, self.rng.choice(free, self.batch_size - batch.size, replace=False)])
        return batch.astype(np.int64)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "p_easy": self.p_easy, "p_hard": self.p_hard,
                "easy_run": self.easy_run.copy(), "hard_run": self.hard_run.copy(), "order": self.order.copy(),
                "cursor": self.cursor, "epoch": self.epoch, "pending_ids": self.pending_ids.copy(),
                "pending_rewards": self.pending_rewards.copy()}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        check_number("state 'p_easy'", state["p_easy"], 0.0, 1.0)
        check_number("state 'p_hard'", state["p_hard"], 0.0, 1.0)
        # run lengths grow by one a step: 2**62 keeps them int64 (uint64 beyond 2**63 would wrap on loading)
        easy = check_array("easy_run", state["easy_run"], (self.pool_size,), "iu", low=0, high=2**62)
        hard = check_array("hard_run", state["hard_run"], (self.pool_size,), "iu", low=0, high=2**62)
        if np.any((easy > 0) & (hard > 0)):
            raise ValueError("state 'easy_run' and 'hard_run' are both positive for a prompt")
        order = check_ids("order", state["order"], None, self.pool_size)
        if order.size not in (0, self.pool_size):
            raise ValueError(f"state 'order' must be empty or a permutation of the {self.pool_size} prompts")
        check_integer("state 'cursor'", state["cursor"], 0, order.size)
        check_integer("state 'epoch'", state["epoch"], -1)
        ids = check_ids("pending_ids", state["pending_ids"], None, self.pool_size)
        check_array("pending_rewards", state["pending_rewards"], (ids.size, self.k), low=0.0, high=1.0)

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.p_easy, self.p_hard = float(state["p_easy"]), float(state["p_hard"])
        self.easy_run = np.asarray(state["easy_run"], dtype=np.int64).copy()
        self.hard_run = np.asarray(state["hard_run"], dtype=np.int64).copy()
        self.order = np.asarray(state["order"], dtype=np.int64).copy()
        self.cursor, self.epoch = int(state["cursor"]), int(state["epoch"])
        self.pending_ids = np.asarray(state["pending_ids"], dtype=np.int64).copy()
        self.pending_rewards = np.asarray(state["pending_rewards"], dtype=np.float64).reshape(-1, self.k).copy()
