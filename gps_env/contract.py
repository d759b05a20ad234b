"""The prompt-selection contract, written once: every world is a few hooks on :class:`PromptSelectionContract`.

Torch-free (numpy and gymnasium): the simulated world and the selectors build on it without loading a model.
The file is longer than 400 lines on purpose: it is the whole contract in one place (its spec, the step, probes,
evaluation and the checkpoint checks), so that no world re-implements a part of it.

The path of one action, all of it in :meth:`PromptSelectionContract.step`::

    parse_action ─► charge selection seconds ─► reuse probe rollouts / world.sample(fresh, "train")
                 ─► world.update(batch, rewards, weights) ─► history ─► evaluate (when due) ─► obs, info

A world (the embedded LM in :mod:`gps_env.env`, the item-response model in :mod:`gps_env.simulated`) supplies:

==========================  =========================================================================
hook                        what it does
==========================  =========================================================================
``_world_reset()``          restore the initial policy (``self.np_random`` is already seeded)
``_world_sample(ids, p)``   k rollouts for each prompt id under purpose ``p`` (train / probe): a ``Sampled``
``_world_update(...)``      one policy update on the batch (rewards, per-prompt weights): an ``Update``
``_world_evaluate()``       held-out evaluation: an ``Evaluation`` (metrics and what it cost)
``config_fingerprint()``    what a checkpoint must agree with (world, policy, settings)
``_world_state()``          the world's part of ``state_dict`` (merged at the top level)
``_world_check_state(s)``   raise ``ValueError`` naming the field unless ``s`` can be restored; change nothing
``_world_load_state(s)``    restore it
``_episode_timeouts()``     verifications that ran out of time this episode (optional; default 0)
==========================  =========================================================================

The contract owns the rest: settings, spaces, action validation, the probe cache, the ledger and the charging
of rollouts and tokens, the per-prompt history and the observation, truncation, info, render, and the
episode part of checkpoints.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.actions import PromptBatch, parse_action
from gps_env.history import PromptHistory
from gps_env.ledger import RolloutLedger
from gps_env.metrics import calibration_error, mixed_groups, spearman


@dataclass
class Sampled:
    """What :meth:`~PromptSelectionContract._world_sample` returns for m prompts.

    Attributes:
        rewards: (m, k) float64 rewards in {0, 1}.
        payloads: one object per prompt that the world's update needs (the embedded world: its rollouts),
            kept with the rewards while a probe waits for the next step; None for worlds that need none.
        prompt_tokens, completion_tokens: token counts charged to the ledger.
    """

    rewards: np.ndarray
    payloads: list[Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Update:
    """What :meth:`~PromptSelectionContract._world_update` returns: the update's statistics (``info["grpo"]``)
    and the batch's token counts (``info["tokens"]``)."""

    stats: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Evaluation:
    """What :meth:`~PromptSelectionContract._world_evaluate` returns: ``metrics`` (``accuracy``,
    ``solved_share``, ``unsolved_share``, ``by_task``) and what the evaluation cost."""

    metrics: dict[str, Any]
    rollouts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def check_settings(rollouts_per_prompt: int, max_steps: int, eval_every: int, eval_rollouts: int,
                   rollout_budget: int | None, render_mode: str | None) -> None:
    """Raise ``ValueError`` naming the first bad contract setting."""
    for name, value in (("rollouts_per_prompt", rollouts_per_prompt), ("max_steps", max_steps),
                        ("eval_rollouts", eval_rollouts)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if eval_every < 0:
        raise ValueError(f"eval_every must be >= 0, got {eval_every}")
    if rollout_budget is not None and rollout_budget < 1:
        raise ValueError(f"rollout_budget must be >= 1 or None, got {rollout_budget}")
    if render_mode not in (None, "ansi"):
        raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")


class PromptSelectionContract(gym.Env):
    """Prompt selection for GRPO post-training: the contract every world shares.

    An **episode** is one RL training run from the initial policy. Each ``step`` takes the batch of prompts
    a selector chose, samples k rollouts per prompt, scores them, runs one policy update, charges the rollout
    ledger, and reports what happened.

    **Action** (``PromptBatch``): ``batch_size`` distinct int64 prompt indices into the pool. To give
    per-prompt loss weights (Weighted GRPO) pass ``{"prompts": indices, "weights": weights}`` with
    finite, non-negative weights of shape ``(batch_size,)``; a selector that predicts success may add
    ``"predictions"`` (its predicted success per selected prompt, in [0, 1]) and gets back
    ``info["spearman"]``, the rank correlation with the observed success (positive = good prediction), and
    ``info["calibration_error"]``, the batch's expected calibration error (``gps_env.metrics``).
    An invalid action raises ``ValueError`` naming the problem before anything is sampled or charged; the env
    state is unchanged.

    **Observation** (``Dict``; fresh arrays on every call):

    ===================  ===================  ==================================================================
    key                  shape, dtype         meaning
    ===================  ===================  ==================================================================
    ``last_batch``       (B,) int64           indices trained on in the last step (-1 after reset)
    ``last_rewards``     (B, k) float32       their per-rollout rewards in {0, 1}
    ``times_selected``   (N,) int64           steps in which each prompt was trained on
    ``rollouts``         (N,) int64           train + probe rollouts observed per prompt
    ``successes``        (N,) int64           rewarded rollouts among them
    ``last_seen``        (N,) int64           last step a prompt was trained on or probed (-1: never)
    ``step``             (1,) int64           updates taken
    ``rollouts_spent``   (1,) int64           selector rollouts charged (train + probe)
    ===================  ===================  ==================================================================

    **Reward**: the effective-sample ratio (ESR) of the batch, the share of groups with mixed outcomes
    (the groups with a non-zero GRPO advantage). **Terminated** is always False (training has no terminal
    state); **truncated** when ``max_steps`` steps or ``rollout_budget`` selector rollouts are spent. The
    budget is checked when a step returns: probes may overshoot it, and the step that follows them still
    runs (on the rollouts already paid for) and returns ``truncated=True``.

    **Info**: ``step``, ``esr``, ``mean_reward``, ``batch``, ``prompt_success`` (B,), ``reused_probes``,
    ``tokens``, ``grpo`` (the world's update statistics), ``spearman`` and ``calibration_error``
    (with predictions), ``verifier_timeouts`` (verifications this episode that ran out of time and scored 0),
    ``time`` (seconds by phase of this step, only when ``time_in_info``), ``ledger``
    (:meth:`RolloutLedger.summary`) and every ``eval_every`` steps ``eval`` = ``{"step", "accuracy",
    "solved_share", "unsolved_share", "by_task"}``.
    ``reset`` evaluates once too, so a curve starts at step 0.

    **Probes**: :meth:`probe` samples k rollouts per prompt under the current policy, charged under purpose
    ``"probe"``. They are kept until the next update: a probed prompt trained on in the next step reuses them
    (not sampled or charged again), and probing it again before then returns them at no cost.

    **Time**: the gap between one ``step`` returning and the next starting, less what the ledger charged
    meanwhile (probes, evaluations), is charged to ``("train", "select")``: a selector that thinks for a
    second per step pays for that second.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def _init_contract(self, n: int, batch_size: int, rollouts_per_prompt: int, max_steps: int,
                       rollout_budget: int | None, eval_every: int, eval_rollouts: int, time_in_info: bool,
                       render_mode: str | None) -> None:
        """Settings, spaces, ledger and history of a world over ``n`` prompts (checked by check_settings)."""
        self.batch_size, self.k = int(batch_size), int(rollouts_per_prompt)
        self.max_steps, self.rollout_budget = int(max_steps), rollout_budget
        self.eval_every, self.eval_rollouts = int(eval_every), int(eval_rollouts)
        self.time_in_info, self.render_mode = time_in_info, render_mode
        self.action_space = PromptBatch(n, self.batch_size)
        self.history = PromptHistory(n, self.batch_size, self.k)
        self.observation_space = self.history.observation_space()
        self.ledger = RolloutLedger()
        self._probe_cache: dict[int, tuple[Any, np.ndarray]] = {}
        self._last_eval: dict[str, Any] | None = None
        self._started = self._done = self._closed = False

    # ------------------------------------------------------------------ hooks (see the module docstring)
    def _world_reset(self) -> None:
        raise NotImplementedError

    def _world_sample(self, indices: list[int], purpose: str) -> Sampled:
        raise NotImplementedError

    def _world_update(self, indices: np.ndarray, rewards: np.ndarray, weights: np.ndarray,
                      payloads: list[Any]) -> Update:
        raise NotImplementedError

    def _world_evaluate(self) -> Evaluation:
        raise NotImplementedError

    def config_fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError

    def _world_state(self) -> dict[str, Any]:
        return {}

    def _world_check_state(self, state: Mapping[str, Any]) -> None:
        """Default: nothing of the world to check."""

    def _world_load_state(self, state: Mapping[str, Any]) -> None:
        """Default: nothing of the world to restore."""

    def _episode_timeouts(self) -> int:
        return 0

    def _world_close(self) -> None:
        """Release what the world holds (engines, verifier processes); called once by :meth:`close`."""

    # ------------------------------------------------------------------ episode control
    @property
    def pool_size(self) -> int:
        return self.action_space.n

    @property
    def current_step(self) -> int:
        """Steps taken in this episode."""
        return self.history.step

    @property
    def done(self) -> bool:
        """Whether the episode is truncated (step or rollout budget spent): ``reset`` is needed."""
        return self._done

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Restore the initial policy; empty history, probe cache and ledger; evaluate once if ``eval_every``.

        ``options={"restore": state}`` instead continues the episode saved by :meth:`state_dict` (what
        :func:`gps_env.checkpoint.load_checkpoint` does), so that every wrapper of a ``gym.make`` stack sees a
        reset; ``info`` is then ``{"step", "ledger", "restored": True}``. A bad state raises ``ValueError``
        and changes nothing.
        """
        self._check_open()
        unknown = set(options or {}) - {"restore"}
        if unknown:
            raise ValueError(f"reset options may hold only 'restore', got {sorted(unknown)}")
        if options and "restore" in options:
            if seed is not None:
                raise ValueError("reset(seed=...) and options={'restore': ...} exclude each other")
            obs = self.load_state_dict(options["restore"])
            return obs, {"step": self.history.step, "ledger": self.ledger.summary(seconds=self.time_in_info),
                         "restored": True}
        super().reset(seed=seed)
        self._world_reset()
        self.ledger.reset()
        self.history.reset()
        self._probe_cache = {}
        self._last_eval = None
        self._started, self._done = True, False
        info: dict[str, Any] = {"step": 0, "ledger": self.ledger.summary(seconds=self.time_in_info)}
        if self.eval_every:
            info["eval"] = self.evaluate()
            info["ledger"] = self.ledger.summary(seconds=self.time_in_info)
        self._mark_return()
        return self._observation(), info

    def close(self) -> None:
        """Release the world's engine and verifier processes. Idempotent; a closed env refuses to reset, step,
        probe or evaluate (``gymnasium.error.ClosedEnvironmentError``)."""
        if not self._closed:
            self._closed = True
            self._world_close()
        super().close()

    def _check_open(self) -> None:
        if self._closed:
            raise gym.error.ClosedEnvironmentError(f"this {type(self).__name__} is closed; make a new one")

    def _check_running(self) -> None:
        self._check_open()
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step(), probe() or evaluate()")
        if self._done:
            raise gym.error.ResetNeeded("the episode is truncated (step or rollout budget spent); call reset()")

    def _charged_seconds(self) -> float:
        return sum(sum(phases.values()) for phases in self.ledger.seconds.values())

    def _mark_return(self) -> None:
        self._returned_at, self._charged_then = time.perf_counter(), self._charged_seconds()

    def _truncated(self) -> bool:
        spent = self.rollout_budget is not None and self.ledger.selector_rollouts >= self.rollout_budget
        return self.history.step >= self.max_steps or spent

    # ------------------------------------------------------------------ actions
    def parse_action(self, action: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Validate ``action``: return ``(indices, weights, predictions)`` or raise ``ValueError`` naming it."""
        return parse_action(action, self.pool_size, self.batch_size)

    # ------------------------------------------------------------------ steps, probes, evaluation
    def _sample(self, indices: list[int], purpose: str) -> Sampled:
        """The world's rollouts for ``indices``, charged to ``purpose``."""
        sampled = self._world_sample(indices, purpose)
        self.ledger.charge(purpose, rollouts=len(indices) * self.k, prompt_tokens=sampled.prompt_tokens,
                           completion_tokens=sampled.completion_tokens)
        return sampled

    def step(self, action: Any):
        """Train on the selected batch: sample (reusing probes), one update, charge, observe."""
        self._check_running()
        indices, weights, predictions = self.parse_action(action)
        step_start = time.perf_counter()
        # The gap since the last return, less what the ledger charged meanwhile (probes, evaluations).
        select_seconds = max(0.0, step_start - self._returned_at - (self._charged_seconds() - self._charged_then))
        self.ledger.charge("train", "select", seconds=select_seconds)
        before = {p: dict(v) for p, v in self.ledger.seconds.items()}

        order = indices.tolist()
        parts = {i: self._probe_cache[i] for i in order if i in self._probe_cache}
        fresh = [i for i in order if i not in parts]
        if fresh:
            sampled = self._sample(fresh, "train")
            payloads = sampled.payloads or [None] * len(fresh)
            parts.update((i, (payloads[pos], sampled.rewards[pos])) for pos, i in enumerate(fresh))
        rewards = np.stack([parts[i][1] for i in order])
        with self.ledger.timer("train", "update"):
            update = self._world_update(indices, rewards, weights, [parts[i][0] for i in order])
        self._probe_cache.clear()  # probes describe the old policy

        self.history.record_batch(indices, rewards, fresh=np.isin(indices, fresh))
        mixed = mixed_groups(rewards)
        esr = float(mixed.mean())
        self.ledger.record_groups(mixed=int(mixed.sum()), total=len(mixed))
        info: dict[str, Any] = {
            "step": self.history.step,
            "esr": esr,
            "mean_reward": float(rewards.mean()),
            "batch": indices.copy(),
            "prompt_success": rewards.mean(axis=1),
            "reused_probes": len(order) - len(fresh),
            "tokens": {"prompt": update.prompt_tokens, "completion": update.completion_tokens},
            "grpo": update.stats,
        }
        if predictions is not None:
            rho = spearman(predictions, rewards.mean(axis=1))
            info["spearman"] = None if np.isnan(rho) else rho
            info["calibration_error"] = calibration_error(predictions, rewards.mean(axis=1))
        if self.eval_every and self.history.step % self.eval_every == 0:
            info["eval"] = self.evaluate()
        info["verifier_timeouts"] = self._episode_timeouts()
        if self.time_in_info:
            info["time"] = {ph: self.ledger.seconds["train"][ph] - before["train"][ph]
                            for ph in ("generate", "verify", "update")}
            info["time"]["eval"] = sum(self.ledger.seconds["eval"].values()) - sum(before["eval"].values())
            info["time"]["select"] = select_seconds
            info["time"]["step"] = time.perf_counter() - step_start
        info["ledger"] = self.ledger.summary(seconds=self.time_in_info)
        self._mark_return()
        self._done = self._truncated()
        return self._observation(), esr, False, self._done, info

    def probe(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Sample k rollouts for each of ``indices`` under the current policy; return rewards (len, k).

        Charged under purpose ``"probe"``. The rollouts are kept until the next update, and reused (not
        charged again) if the prompt is trained on in the next step. Probing a prompt already probed since
        the last update returns the cached rewards at no cost.
        """
        self._check_running()
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"probe needs a non-empty 1-d integer array of indices, got {idx!r:.80}")
        if np.any((idx < 0) | (idx >= self.pool_size)):
            raise ValueError(f"probe indices out of range [0, {self.pool_size})")
        if len(np.unique(idx)) != idx.size:
            raise ValueError("probe indices must be distinct")
        requested = idx.tolist()
        new = [i for i in requested if i not in self._probe_cache]
        if new:
            sampled = self._sample(new, "probe")
            payloads = sampled.payloads or [None] * len(new)
            self._probe_cache.update((i, (payloads[pos], sampled.rewards[pos])) for pos, i in enumerate(new))
            self.history.record_probe(np.asarray(new, dtype=np.int64), sampled.rewards)
        return np.stack([self._probe_cache[i][1] for i in requested])

    def evaluate(self) -> dict[str, Any]:
        """Held-out evaluation under the current policy, charged under purpose ``"eval"``."""
        self._check_open()
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before evaluate()")
        result = self._world_evaluate()
        self.ledger.charge("eval", rollouts=result.rollouts, prompt_tokens=result.prompt_tokens,
                           completion_tokens=result.completion_tokens)
        self._last_eval = {"step": self.history.step, **result.metrics}
        return copy.deepcopy(self._last_eval)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed episode needs to continue bit-identically on CPU: the ledger, per-prompt
        history, step counters, RNG state and the world's own state (policy, optimiser, ...). Take it between
        steps (after ``reset`` or ``step`` returned, before the agent probes for the next step).

        Raises:
            gymnasium.error.ResetNeeded: before the first ``reset``.
            RuntimeError: while probe results wait for the next ``step``.
        """
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before state_dict(): there is no episode to save")
        if self._probe_cache:
            raise RuntimeError("probe rollouts are pending for the next step; checkpoint after step() returns")
        return {
            "fingerprint": self.config_fingerprint(),
            "ledger": self.ledger.state_dict(),
            "np_random": copy.deepcopy(self.np_random.bit_generator.state),
            "step": self.history.step,
            "done": self._done,
            "history": self.history.state_dict(),
            "last_eval": copy.deepcopy(self._last_eval),
            **self._world_state(),
        }

    def check_state_dict(self, state: Any) -> None:
        """Raise ``ValueError`` naming the field unless ``state`` (from :meth:`state_dict`) can be restored into
        this env: the same configuration (fingerprint), and every field present, of the right type and shape,
        with values an episode could have produced. Changes nothing."""
        if not isinstance(state, Mapping):
            raise ValueError(f"an env state must be a mapping, got {type(state).__name__}")
        required = {"fingerprint", "ledger", "np_random", "step", "done", "history", "last_eval"}
        missing = sorted(required - set(state))
        if missing:
            raise ValueError(f"the env state has no {', '.join(map(repr, missing))}")
        theirs, ours = state["fingerprint"], self.config_fingerprint()
        if not isinstance(theirs, Mapping):
            raise ValueError("the env state's 'fingerprint' must be a mapping")
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if differ:
            raise ValueError(f"checkpoint is from another configuration (differs in: {', '.join(differ)})")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"the env state's 'step' must be a non-negative integer, got {step!r:.40}")
        if not isinstance(state["done"], bool | np.bool_):
            raise ValueError(f"the env state's 'done' must be a bool, got {state['done']!r:.40}")
        if state["last_eval"] is not None and not isinstance(state["last_eval"], Mapping):
            raise ValueError("the env state's 'last_eval' must be a mapping or None")
        self.history.check_state(state["history"], step=int(step))
        RolloutLedger().load_state_dict(state["ledger"])  # on a scratch ledger: raises, changes nothing
        _generator_from_state(state["np_random"])
        self._world_check_state(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Continue the episode saved by :meth:`state_dict`; returns its observation. To restore through a
        wrapper stack (``gym.make``) use ``reset(options={"restore": state})``.

        Raises:
            ValueError: when the state comes from another world, policy or settings, or is malformed (naming
                what); it is checked completely (:meth:`check_state_dict`) before anything changes.
        """
        self._check_open()
        self.check_state_dict(state)
        self._world_load_state(state)
        self.ledger.load_state_dict(state["ledger"])
        self.np_random = _generator_from_state(state["np_random"])
        self.history.load_state_dict(state["history"], step=int(state["step"]))
        self._done, self._started = bool(state["done"]), True
        self._probe_cache = {}
        self._last_eval = copy.deepcopy(state["last_eval"])
        self._mark_return()
        return self._observation()

    # ------------------------------------------------------------------ observation, rendering
    def _observation(self) -> dict[str, np.ndarray]:
        return self.history.observation(self.ledger.selector_rollouts)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if not self._started:
            return f"{type(self).__name__} (not reset)"
        rewards = self.history.last_rewards
        line = (f"step {self.history.step}/{self.max_steps}  rollouts {self.ledger.selector_rollouts}  "
                f"batch success {rewards.mean():.3f}  esr {mixed_groups(rewards).mean():.3f}")
        if self._last_eval is not None:
            line += f"  held-out {self._last_eval['accuracy']:.3f} (step {self._last_eval['step']})"
        return line


#: numpy bit generators a checkpoint may name (``np.random.Generator(PCG64())`` is Gymnasium's default).
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _generator_from_state(state: Any) -> np.random.Generator:
    """A numpy Generator in the saved bit-generator state; ``ValueError`` if the state is not one."""
    name = state.get("bit_generator") if isinstance(state, Mapping) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"the env state's 'np_random' names bit generator {name!r:.40}; expected one of "
                         f"{_BIT_GENERATORS}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = copy.deepcopy(dict(state))
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ValueError(f"the env state's 'np_random' is not a valid {name} state: {e}") from None
    return np.random.Generator(bit_generator)
