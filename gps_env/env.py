"""``PromptSelectionEnv``: one RL post-training run of a reasoning LM, with prompt selection as the action."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from gps_env.engines import ENGINE_NAMES, RolloutEngine, Rollouts, SamplingParams, build_engine
from gps_env.grpo import GRPOConfig, GRPOTrainer
from gps_env.ledger import RolloutLedger
from gps_env.policy import PolicyConfig, load_policy, mixes, warm_start
from gps_env.pool import PromptPool
from gps_env.selectors import spearman

_INT_MAX = np.iinfo(np.int64).max
MAX_WEIGHT = 1e6  # per-prompt loss weights above this would overflow float32 advantages
EngineFactory = Callable[[Any, Any], RolloutEngine]


def _digest(lines: Any) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


class PromptBatch(spaces.Space[np.ndarray]):
    """A batch of ``batch_size`` distinct prompt indices in ``[0, n)`` (int64, shape ``(batch_size,)``)."""

    def __init__(self, n: int, batch_size: int, seed: int | np.random.Generator | None = None) -> None:
        if not 1 <= batch_size <= n:
            raise ValueError(f"need 1 <= batch_size <= pool size, got batch_size={batch_size}, n={n}")
        self.n, self.batch_size = int(n), int(batch_size)
        super().__init__(shape=(self.batch_size,), dtype=np.int64, seed=seed)

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        if mask is not None or probability is not None:
            raise NotImplementedError("PromptBatch.sample takes no mask or probability")
        return self.np_random.choice(self.n, size=self.batch_size, replace=False).astype(np.int64)

    def contains(self, x: Any) -> bool:
        x = np.asarray(x)
        return (
            x.shape == self.shape
            and np.issubdtype(x.dtype, np.integer)
            and bool(np.all((x >= 0) & (x < self.n)))
            and len(np.unique(x)) == self.batch_size
        )

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"PromptBatch(n={self.n}, batch_size={self.batch_size})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptBatch) and (other.n, other.batch_size) == (self.n, self.batch_size)


class PromptSelectionBase(gym.Env):
    """What every prompt-selection world shares (the embedded LM one and the simulated one).

    The contract (action parsing and spaces, observation, render), the per-prompt history behind the
    observation, probe bookkeeping, step timing, info and truncation, and the episode part of checkpoints.
    A world supplies rollout rewards, the policy update and :meth:`evaluate`; see
    :class:`PromptSelectionEnv` for the contract itself.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    @staticmethod
    def _check_settings(rollouts_per_prompt: int, max_steps: int, eval_every: int, eval_rollouts: int,
                        rollout_budget: int | None, render_mode: str | None) -> None:
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

    def _init_contract(self, n: int, batch_size: int, rollouts_per_prompt: int, max_steps: int,
                       rollout_budget: int | None, eval_every: int, eval_rollouts: int, time_in_info: bool,
                       render_mode: str | None) -> None:
        """Settings, spaces and ledger of a world over ``n`` prompts (settings checked by _check_settings)."""
        self.batch_size, self.k = int(batch_size), int(rollouts_per_prompt)
        self.max_steps, self.rollout_budget = int(max_steps), rollout_budget
        self.eval_every, self.eval_rollouts = int(eval_every), int(eval_rollouts)
        self.time_in_info, self.render_mode = time_in_info, render_mode
        self.action_space = PromptBatch(n, self.batch_size)
        count = spaces.Box(0, _INT_MAX, shape=(n,), dtype=np.int64)
        self.observation_space = spaces.Dict({
            "last_batch": spaces.Box(-1, n - 1, shape=(self.batch_size,), dtype=np.int64),
            "last_rewards": spaces.Box(0.0, 1.0, shape=(self.batch_size, self.k), dtype=np.float32),
            "times_selected": count,
            "rollouts": count,
            "successes": count,
            "last_seen": spaces.Box(-1, _INT_MAX, shape=(n,), dtype=np.int64),
            "step": spaces.Box(0, _INT_MAX, shape=(1,), dtype=np.int64),
            "rollouts_spent": spaces.Box(0, _INT_MAX, shape=(1,), dtype=np.int64),
        })
        self.ledger = RolloutLedger()
        self._started = self._done = False

    # ------------------------------------------------------------------ episode control
    def _reset_history(self) -> None:
        """An empty ledger and per-prompt history at step 0."""
        n = len(self.pool)
        self.ledger.reset()
        self._times_selected = np.zeros(n, np.int64)
        self._rollouts = np.zeros(n, np.int64)
        self._successes = np.zeros(n, np.int64)
        self._last_seen = np.full(n, -1, np.int64)
        self._last_batch = np.full(self.batch_size, -1, np.int64)
        self._last_rewards = np.zeros((self.batch_size, self.k), np.float32)
        self._step = 0
        self._probe_cache: dict[int, Any] = {}
        self._last_eval: dict[str, Any] | None = None
        self._started, self._done = True, False

    def _reset_result(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``reset``'s return: the first observation and info, with an evaluation when ``eval_every``."""
        info: dict[str, Any] = {"step": 0, "ledger": self.ledger.summary(seconds=self.time_in_info)}
        if self.eval_every:
            info["eval"] = self.evaluate()
            info["ledger"] = self.ledger.summary(seconds=self.time_in_info)
        self._returned_at, self._charged_then = time.perf_counter(), self._charged_seconds()
        return self._observation(), info

    def evaluate(self) -> dict[str, Any]:
        raise NotImplementedError

    def _charged_seconds(self) -> float:
        return sum(sum(phases.values()) for phases in self.ledger.seconds.values())

    def _check_running(self) -> None:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step(), probe() or evaluate()")
        if self._done:
            raise gym.error.ResetNeeded("the episode is truncated (step or rollout budget spent); call reset()")

    def _truncated(self) -> bool:
        spent = self.rollout_budget is not None and self.ledger.selector_rollouts >= self.rollout_budget
        return self._step >= self.max_steps or spent

    def _episode_timeouts(self) -> int:
        """Verifications that timed out this episode (worlds without verifiers have none)."""
        return 0

    # ------------------------------------------------------------------ actions
    def parse_action(self, action: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Validate ``action``: return ``(indices, weights, predictions)`` or raise ``ValueError`` naming it."""
        weights = predictions = None
        if isinstance(action, Mapping):
            unknown = set(action) - {"prompts", "weights", "predictions"}
            if "prompts" not in action or unknown:
                raise ValueError(
                    f"a dict action needs key 'prompts' and optionally 'weights', 'predictions'; got {sorted(action)}"
                )
            action, weights, predictions = action["prompts"], action.get("weights"), action.get("predictions")
        indices = np.asarray(action)
        if indices.dtype == object or not (np.issubdtype(indices.dtype, np.integer)):
            raise ValueError(f"prompt indices must be integers, got dtype {indices.dtype}")
        if indices.shape != (self.batch_size,):
            raise ValueError(f"expected {self.batch_size} prompt indices, got shape {indices.shape}")
        out_of_range = indices[(indices < 0) | (indices >= len(self.pool))]
        if out_of_range.size:
            raise ValueError(f"prompt indices out of range [0, {len(self.pool)}): {out_of_range[:5].tolist()}")
        values, counts = np.unique(indices, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"prompt indices must be distinct; repeated: {values[counts > 1][:5].tolist()}")
        if weights is None:
            w = np.ones(self.batch_size)
        else:
            w = np.asarray(weights)
            if w.dtype == object or not (np.issubdtype(w.dtype, np.number) and not np.iscomplexobj(w)):
                raise ValueError(f"weights must be real numbers, got dtype {w.dtype}")
            w = w.astype(np.float64)
            if w.shape != (self.batch_size,):
                raise ValueError(f"expected {self.batch_size} weights, got shape {w.shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError("weights must be finite (no NaN or inf)")
            if np.any(w < 0):
                raise ValueError(f"weights must be non-negative, got min {w.min()}")
            if np.any(w > MAX_WEIGHT):
                raise ValueError(f"weights must be at most {MAX_WEIGHT:g} (float32 update), got {w.max():g}")
        if predictions is not None:
            predictions = np.asarray(predictions)
            if predictions.dtype == object or not np.issubdtype(predictions.dtype, np.number):
                raise ValueError(f"predictions must be real numbers, got dtype {predictions.dtype}")
            predictions = predictions.astype(np.float64)
            if predictions.shape != (self.batch_size,):
                raise ValueError(f"expected {self.batch_size} predictions, got shape {predictions.shape}")
            if not np.all((predictions >= 0) & (predictions <= 1)):
                raise ValueError("predictions must be success probabilities in [0, 1]")
        return indices.astype(np.int64), w, predictions

    # ------------------------------------------------------------------ steps and probes
    def _begin_step(self, action: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple]:
        """Validate the action and charge the selection time; returns indices, weights, predictions and the
        step's timing context for :meth:`_end_step`."""
        self._check_running()
        indices, weights, predictions = self.parse_action(action)
        step_start = time.perf_counter()
        # The gap since the last return, less what the ledger charged meanwhile (probes, evaluations).
        select_seconds = max(0.0, step_start - self._returned_at - (self._charged_seconds() - self._charged_then))
        self.ledger.charge("train", "select", seconds=select_seconds)
        before = {p: dict(v) for p, v in self.ledger.seconds.items()}
        return indices, weights, predictions, (step_start, select_seconds, before)

    def _end_step(self, indices: np.ndarray, rewards: np.ndarray, fresh: np.ndarray,
                  predictions: np.ndarray | None, extra_info: dict[str, Any], timing: tuple):
        """Record a trained batch (``fresh`` marks rows not counted by an earlier probe), evaluate when due,
        and return the step's ``(obs, esr, terminated, truncated, info)``."""
        step_start, select_seconds, before = timing
        self._step += 1
        self._times_selected[indices] += 1
        self._rollouts[indices[fresh]] += self.k  # probed prompts were counted when probed
        self._successes[indices[fresh]] += rewards[fresh].sum(axis=1).astype(np.int64)
        self._last_seen[indices] = self._step
        self._last_batch = indices.copy()
        self._last_rewards = rewards.astype(np.float32)

        mixed = rewards.min(axis=1) < rewards.max(axis=1)
        esr = float(mixed.mean())
        self.ledger.record_groups(mixed=int(mixed.sum()), total=len(mixed))
        info: dict[str, Any] = {
            "step": self._step,
            "esr": esr,
            "mean_reward": float(rewards.mean()),
            "batch": indices.copy(),
            "prompt_success": rewards.mean(axis=1),
            **extra_info,
        }
        if predictions is not None:
            rho = spearman(predictions, rewards.mean(axis=1))
            info["spearman"] = None if np.isnan(rho) else rho
        if self.eval_every and self._step % self.eval_every == 0:
            info["eval"] = self.evaluate()
        info["verifier_timeouts"] = self._episode_timeouts()
        if self.time_in_info:
            info["time"] = {ph: self.ledger.seconds["train"][ph] - before["train"][ph]
                            for ph in ("generate", "verify", "update")}
            info["time"]["eval"] = sum(self.ledger.seconds["eval"].values()) - sum(before["eval"].values())
            info["time"]["select"] = select_seconds
            info["time"]["step"] = time.perf_counter() - step_start
        info["ledger"] = self.ledger.summary(seconds=self.time_in_info)
        self._returned_at, self._charged_then = time.perf_counter(), self._charged_seconds()
        self._done = self._truncated()
        return self._observation(), esr, False, self._done, info

    def _probe_request(self, indices: Sequence[int] | np.ndarray) -> tuple[list[int], list[int]]:
        """Check a probe request; returns the indices and those not probed since the last update."""
        self._check_running()
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"probe needs a non-empty 1-d integer array of indices, got {idx!r:.80}")
        if np.any((idx < 0) | (idx >= len(self.pool))):
            raise ValueError(f"probe indices out of range [0, {len(self.pool)})")
        if len(np.unique(idx)) != idx.size:
            raise ValueError("probe indices must be distinct")
        requested = idx.tolist()
        return requested, [i for i in requested if i not in self._probe_cache]

    def _record_probe(self, new: list[int], rewards: np.ndarray) -> None:
        new_arr = np.asarray(new, dtype=np.int64)
        self._rollouts[new_arr] += self.k
        self._successes[new_arr] += rewards.sum(axis=1).astype(np.int64)
        self._last_seen[new_arr] = self._step

    # ------------------------------------------------------------------ checkpointing
    @property
    def current_step(self) -> int:
        """Steps taken in this episode."""
        return self._step

    @property
    def done(self) -> bool:
        """Whether the episode is truncated (step or rollout budget spent): ``reset`` is needed."""
        return self._done

    def config_fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError

    def _episode_state(self) -> dict[str, Any]:
        """The world-independent part of ``state_dict`` (between steps only)."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before state_dict(): there is no episode to save")
        if self._probe_cache:
            raise RuntimeError("probe rollouts are pending for the next step; checkpoint after step() returns")
        return {
            "fingerprint": self.config_fingerprint(),
            "ledger": self.ledger.state_dict(),
            "np_random": copy.deepcopy(self.np_random.bit_generator.state),
            "step": self._step,
            "done": self._done,
            "history": {
                "times_selected": self._times_selected.copy(), "rollouts": self._rollouts.copy(),
                "successes": self._successes.copy(), "last_seen": self._last_seen.copy(),
                "last_batch": self._last_batch.copy(), "last_rewards": self._last_rewards.copy(),
            },
            "last_eval": copy.deepcopy(self._last_eval),
        }

    def _check_episode_state(self, state: Mapping[str, Any]) -> None:
        """Refuse, naming the difference, a state from another configuration or with misshapen history."""
        theirs, ours = state.get("fingerprint", {}), self.config_fingerprint()
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if differ:
            raise ValueError(f"checkpoint is from another configuration (differs in: {', '.join(differ)})")
        n, history = len(self.pool), state["history"]
        shapes = {"times_selected": (n,), "rollouts": (n,), "successes": (n,), "last_seen": (n,),
                  "last_batch": (self.batch_size,), "last_rewards": (self.batch_size, self.k)}
        for key, shape in shapes.items():
            if np.shape(history[key]) != shape:
                raise ValueError(f"checkpoint history {key!r} has shape {np.shape(history[key])}, expected {shape}")

    def _restore_episode(self, state: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Restore what :meth:`_episode_state` saved (after :meth:`_check_episode_state`); returns the obs."""
        history = state["history"]
        self.ledger.load_state_dict(state["ledger"])
        rng = np.random.Generator(getattr(np.random, state["np_random"]["bit_generator"])())
        rng.bit_generator.state = copy.deepcopy(state["np_random"])
        self.np_random = rng
        self._step, self._done, self._started = int(state["step"]), bool(state["done"]), True
        self._times_selected, self._rollouts, self._successes, self._last_seen, self._last_batch = (
            np.array(history[k], dtype=np.int64)
            for k in ("times_selected", "rollouts", "successes", "last_seen", "last_batch")
        )
        self._last_rewards = np.array(history["last_rewards"], dtype=np.float32)
        self._probe_cache = {}
        self._last_eval = copy.deepcopy(state["last_eval"])
        self._returned_at, self._charged_then = time.perf_counter(), self._charged_seconds()
        return self._observation()

    # ------------------------------------------------------------------ observation, rendering
    def _observation(self) -> dict[str, np.ndarray]:
        return {
            "last_batch": self._last_batch.copy(),
            "last_rewards": self._last_rewards.copy(),
            "times_selected": self._times_selected.copy(),
            "rollouts": self._rollouts.copy(),
            "successes": self._successes.copy(),
            "last_seen": self._last_seen.copy(),
            "step": np.array([self._step], np.int64),
            "rollouts_spent": np.array([self.ledger.selector_rollouts], np.int64),
        }

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if not self._started:
            return f"{type(self).__name__} (not reset)"
        line = (f"step {self._step}/{self.max_steps}  rollouts {self.ledger.selector_rollouts}  "
                f"batch success {self._last_rewards.mean():.3f}  "
                f"esr {(self._last_rewards.min(1) < self._last_rewards.max(1)).mean():.3f}")
        if self._last_eval is not None:
            line += f"  held-out {self._last_eval['accuracy']:.3f} (step {self._last_eval['step']})"
        return line


class PromptSelectionEnv(PromptSelectionBase):
    """Prompt selection for GRPO post-training of a reasoning LM.

    An **episode** is one RL training run from the initial policy. Each ``step`` takes the batch of prompts
    a selector chose, samples ``rollouts_per_prompt`` completions per prompt with the rollout engine,
    scores them with the task verifiers, runs one GRPO update on the policy, charges the rollout ledger,
    and reports what happened. The default world is embedded: a 0.86M-parameter Llama warm-started on
    LSB-first addition and Countdown (trained once, cached under ``~/.cache/gps_env``).

    **Action** (``PromptBatch``): ``batch_size`` distinct int64 prompt indices into the pool. To give
    per-prompt loss weights (Weighted GRPO) pass ``{"prompts": indices, "weights": weights}`` with
    finite, non-negative weights of shape ``(batch_size,)``; a selector that predicts success may add
    ``"predictions"`` (its predicted success per selected prompt, in [0, 1]) and gets back
    ``info["spearman"]``, the rank correlation with the observed success (positive = good prediction).
    An invalid action raises ``ValueError``
    naming the problem before anything is generated or charged; the env state is unchanged.

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
    ``step``             (1,) int64           GRPO steps taken
    ``rollouts_spent``   (1,) int64           selector rollouts charged (train + probe)
    ===================  ===================  ==================================================================

    **Reward**: the effective-sample ratio (ESR) of the batch, the share of groups with mixed outcomes
    (the groups with a non-zero GRPO advantage). **Terminated** is always False (training has no terminal
    state); **truncated** when ``max_steps`` steps or ``rollout_budget`` selector rollouts are spent. The
    budget is checked when a step returns: probes may overshoot it, and the step that follows them still
    runs (on the rollouts already paid for) and returns ``truncated=True``.

    **Info**: ``step``, ``esr``, ``mean_reward``, ``batch``, ``prompt_success`` (B,), ``tokens``,
    ``grpo`` (update statistics), ``ledger`` (:meth:`RolloutLedger.summary`), ``verifier_timeouts``
    (verifications this episode that ran out of time and scored 0), ``time`` (seconds by phase of
    this step, only when ``time_in_info``), and every ``eval_every`` steps ``eval`` =
    ``{"step", "accuracy", "greedy_accuracy"?, "by_task"}``: mean sampled success over the held-out set.
    ``reset`` evaluates once too, so a curve starts at step 0.

    **Probes**: :meth:`probe` lets oracle selectors (DS) look at candidates with real rollouts, charged under
    purpose ``"probe"``. If a probed prompt is then trained on in the same step, its probe rollouts are
    reused, not generated again, and not charged twice.

    Args:
        batch_size: prompts per step (B).
        rollouts_per_prompt: completions per prompt (k, the GRPO group size).
        max_steps: GRPO steps per episode.
        pool_size, heldout_size: sizes of the generated training pool and disjoint held-out set.
        eval_every: held-out evaluation period in steps (0 disables evaluation).
        eval_rollouts: samples per held-out prompt.
        rollout_budget: truncate once this many selector rollouts are spent (None: no budget).
        world_seed: seed of the pool and held-out generation (the world, fixed for the env's life).
        task_mix: name of the task mix (see :func:`gps_env.policy.mixes`).
        policy: ``PolicyConfig`` of the embedded warm start, or a directory saved with
            ``save_pretrained`` (model + tokenizer).
        pool, heldout: user pools that replace the generated ones.
        grpo: GRPO hyperparameters.
        sampling: sampling parameters of training and probe rollouts (eval uses the same).
        engine: ``"auto"`` (vLLM where it is installed and can run the policy, else transformers),
            ``"transformers"``, ``"vllm"``, or a factory ``(model, tokenizer) -> RolloutEngine``.
        time_in_info: include wall-clock seconds in ``info``. Seconds differ between identical runs, so
            turn this off where infos must compare equal (``check_env``'s determinism check).
        render_mode: ``None`` or ``"ansi"``.
        progress: show a progress bar while the warm start trains on first use.
        device: where the policy trains (``"cuda"`` on a GPU machine).
        dtype: policy dtype, e.g. ``"bfloat16"`` for a real model on a GPU (``None``: as saved).
        gradient_checkpointing: recompute activations in the backward pass (large models; pair it with
            ``GRPOConfig(micro_batch_size=...)``).
        chat_template: wrap each prompt as one user turn with the tokenizer's chat template (and the
            generation prompt) before sampling; for instruction-tuned models. Verifiers see only completions.
    """

    def __init__(
        self,
        batch_size: int = 32,
        rollouts_per_prompt: int = 8,
        max_steps: int = 200,
        pool_size: int = 1000,
        heldout_size: int = 400,
        eval_every: int = 50,
        eval_rollouts: int = 8,
        rollout_budget: int | None = None,
        world_seed: int = 0,
        task_mix: str = "default",
        policy: PolicyConfig | str | Path | None = None,
        pool: PromptPool | None = None,
        heldout: PromptPool | None = None,
        grpo: GRPOConfig | None = None,
        sampling: SamplingParams | None = None,
        engine: str | EngineFactory = "auto",
        time_in_info: bool = True,
        render_mode: str | None = None,
        progress: bool = True,
        device: str = "cpu",
        dtype: str | None = None,
        gradient_checkpointing: bool = False,
        chat_template: bool = False,
    ) -> None:
        self._check_settings(rollouts_per_prompt, max_steps, eval_every, eval_rollouts, rollout_budget, render_mode)
        if pool is None or heldout is None:
            if task_mix not in mixes():
                raise ValueError(f"unknown task_mix {task_mix!r}; known: {sorted(mixes())}")
            mix = mixes()[task_mix]
            problems, held = mix.split(pool_size, heldout_size, world_seed)
            pool = pool or PromptPool(problems, mix.tasks)
            heldout = heldout or PromptPool(held, mix.tasks)
        self.pool, self.heldout = pool, heldout
        self._init_contract(len(pool), batch_size, rollouts_per_prompt, max_steps, rollout_budget, eval_every,
                            eval_rollouts, time_in_info, render_mode)
        self.sampling = sampling or SamplingParams(max_new_tokens=10)
        self.grpo_config = grpo or GRPOConfig()

        if isinstance(engine, str) and engine not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {engine!r}; pass one of {ENGINE_NAMES} or a factory")
        if isinstance(policy, (str, Path)):
            self.policy_path = Path(policy)
        else:
            self.policy_path = warm_start(policy or PolicyConfig(mix=task_mix), progress=progress)
        self.policy, self.tokenizer = load_policy(self.policy_path, device=device, dtype=dtype,
                                                  gradient_checkpointing=gradient_checkpointing)
        if chat_template and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"chat_template=True but the tokenizer in {self.policy_path} has no chat template")
        self.chat_template = chat_template
        self._initial_state = copy.deepcopy(self.policy.state_dict())
        self.engine: RolloutEngine = (
            build_engine(engine, self.policy, self.tokenizer, self.policy_path)
            if isinstance(engine, str)
            else engine(self.policy, self.tokenizer)
        )

    # ------------------------------------------------------------------ episode control
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Restore the initial policy, a fresh optimiser, empty history and ledger; evaluate once."""
        super().reset(seed=seed)
        self.policy.load_state_dict(self._initial_state)
        self.engine.load_weights(self.policy.state_dict())
        self.trainer = GRPOTrainer(self.policy, self.grpo_config, self.tokenizer.pad_token_id)
        seeds = self.np_random.integers(0, 2**62, size=2)
        self._generator = torch.Generator().manual_seed(int(seeds[0]))
        self._eval_seed = int(seeds[1])  # one seed per episode: every eval uses the same random numbers
        self._reset_history()  # the probe cache holds (rollouts, rewards) per prompt
        self._timeouts_at_reset = self._verifier_timeouts()
        return self._reset_result()

    # ------------------------------------------------------------------ steps
    def step(self, action: Any):
        """Train on the selected batch: generate, verify, one GRPO update, charge, observe."""
        indices, weights, predictions, timing = self._begin_step(action)
        reused = [i for i in indices.tolist() if i in self._probe_cache]
        fresh = [i for i in indices.tolist() if i not in self._probe_cache]
        parts: dict[int, tuple[Rollouts, np.ndarray]] = {i: self._probe_cache[i] for i in reused}
        if fresh:
            rollouts, rewards = self._rollout(fresh, self.k, "train")
            for pos, i in enumerate(fresh):
                parts[i] = (rollouts.select([pos]), rewards[pos])
        batch = Rollouts.concat([parts[i][0] for i in indices.tolist()])
        rewards = np.stack([parts[i][1] for i in indices.tolist()])

        with self.ledger.timer("train", "update"):
            stats = self.trainer.step(batch.prompt_ids, batch.completion_ids, rewards, weights)
            self.engine.load_weights(self.policy.state_dict())
        self._probe_cache.clear()  # probes describe the old policy
        return self._end_step(indices, rewards, np.isin(indices, fresh), predictions, {
            "reused_probes": len(reused),
            "tokens": {"prompt": batch.prompt_tokens, "completion": batch.completion_tokens},
            "grpo": stats.as_dict(),
        }, timing)

    # ------------------------------------------------------------------ rollouts, probes, evaluation
    def _format(self, prompt: str) -> str:
        if not self.chat_template:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def _episode_timeouts(self) -> int:
        return self._verifier_timeouts() - self._timeouts_at_reset

    def _verifier_timeouts(self) -> int:
        """Timed-out verifications so far, over the distinct tasks of the pool and the held-out set."""
        tasks = {id(t): t for pool in (self.pool, self.heldout) for t in pool.tasks.values()}
        return sum(t.timeouts for t in tasks.values())

    def _rollout(self, indices: Sequence[int], n: int, purpose: str) -> tuple[Rollouts, np.ndarray]:
        prompts = [self._format(self.pool[i].prompt) for i in indices]
        with self.ledger.timer(purpose, "generate"):
            rollouts = self.engine.generate(prompts, n, self.sampling, self._generator)
        with self.ledger.timer(purpose, "verify"):
            rewards = np.array(
                [self.pool.verify(indices[r // n], text) for r, text in enumerate(rollouts.texts)], np.float64
            ).reshape(len(indices), n)
        self.ledger.charge(purpose, rollouts=len(rollouts), prompt_tokens=rollouts.prompt_tokens,
                           completion_tokens=rollouts.completion_tokens)
        return rollouts, rewards

    def probe(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Sample k rollouts for each of ``indices`` under the current policy; return rewards (len, k).

        Charged under purpose ``"probe"``. The rollouts are kept until the next update, and reused (not
        charged again) if the prompt is trained on in the next step. Probing a prompt already probed since
        the last update returns the cached rewards at no cost.
        """
        requested, new = self._probe_request(indices)
        if new:
            rollouts, rewards = self._rollout(new, self.k, "probe")
            for pos, i in enumerate(new):
                self._probe_cache[i] = (rollouts.select([pos]), rewards[pos])
            self._record_probe(new, rewards)
        return np.stack([self._probe_cache[i][1] for i in requested])

    def evaluate(self) -> dict[str, Any]:
        """Mean sampled success over the held-out set (charged under purpose ``"eval"``).

        Every evaluation in an episode draws the same random numbers, so curves compare policies, not noise.
        """
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before evaluate()")
        generator = torch.Generator().manual_seed(self._eval_seed)
        prompts = [self._format(p) for p in self.heldout.prompts]
        with self.ledger.timer("eval", "generate"):
            rollouts = self.engine.generate(prompts, self.eval_rollouts, self.sampling, generator)
        with self.ledger.timer("eval", "verify"):
            rewards = np.array(
                [self.heldout.verify(r // self.eval_rollouts, t) for r, t in enumerate(rollouts.texts)]
            ).reshape(len(prompts), self.eval_rollouts)
        self.ledger.charge("eval", rollouts=len(rollouts), prompt_tokens=rollouts.prompt_tokens,
                           completion_tokens=rollouts.completion_tokens)
        success = rewards.mean(axis=1)
        by_task: dict[str, float] = {}
        for name in sorted({p.task for p in self.heldout.problems}):
            mask = np.array([p.task == name for p in self.heldout.problems])
            by_task[name] = float(success[mask].mean())
        self._last_eval = {
            "step": self._step,
            "accuracy": float(success.mean()),
            "solved_share": float((success == 1).mean()),
            "unsolved_share": float((success == 0).mean()),
            "by_task": by_task,
        }
        return copy.deepcopy(self._last_eval)

    # ------------------------------------------------------------------ checkpointing
    def config_fingerprint(self) -> dict[str, Any]:
        """What a checkpoint of this env must agree with: the world, the initial policy and the RL settings.

        Digests (sha256, 16 hex digits) stand in for the pools and the initial weights.
        """
        if getattr(self, "_initial_digest", None) is None:  # hashed once: a real model's weights are GBs
            h = hashlib.sha256()
            for name in sorted(self._initial_state):
                tensor = self._initial_state[name].detach().cpu().contiguous()
                h.update(name.encode())
                h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
            self._initial_digest = h.hexdigest()[:16]
        return {
            "pool": _digest(f"{p.task}\x1f{p.prompt}\x1f{p.answer}" for p in self.pool.problems),
            "heldout": _digest(f"{p.task}\x1f{p.prompt}\x1f{p.answer}" for p in self.heldout.problems),
            "initial_policy": self._initial_digest, "chat_template": self.chat_template,
            "batch_size": self.batch_size, "k": self.k, "max_steps": self.max_steps,
            "rollout_budget": self.rollout_budget, "eval_every": self.eval_every,
            "eval_rollouts": self.eval_rollouts, "sampling": repr(self.sampling), "grpo": repr(self.grpo_config),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed episode needs to continue bit-identically on CPU: policy weights, optimiser,
        ledger, per-prompt history, step counters and RNG states. Take it between steps (after ``reset``
        or ``step`` returned, before the agent probes for the next step).

        Raises:
            gymnasium.error.ResetNeeded: before the first ``reset``.
            RuntimeError: while probe results wait for the next ``step``.
        """
        return {
            **self._episode_state(),
            "policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.trainer.optimizer.state_dict()),
            "generator": self._generator.get_state(),
            "eval_seed": self._eval_seed,
            "verifier_timeouts": self._episode_timeouts(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Continue the episode saved by :meth:`state_dict`; returns its observation.

        Raises:
            ValueError: when the state comes from an env with another world, policy or settings (naming what
                differs); the env is left as it was.
        """
        self._check_episode_state(state)
        expected = {k: tuple(v.shape) for k, v in self._initial_state.items()}
        if {k: tuple(v.shape) for k, v in state["policy"].items()} != expected:
            raise ValueError("checkpoint policy weights do not match this env's policy (names or shapes)")
        # The trainer is rebuilt from the initial weights first, so a KL reference is the initial policy.
        self.policy.load_state_dict(self._initial_state)
        self.trainer = GRPOTrainer(self.policy, self.grpo_config, self.tokenizer.pad_token_id)
        self.policy.load_state_dict(state["policy"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.engine.load_weights(self.policy.state_dict())
        self._generator = torch.Generator()
        self._generator.set_state(state["generator"])
        self._eval_seed = int(state["eval_seed"])
        self._timeouts_at_reset = self._verifier_timeouts() - int(state["verifier_timeouts"])
        return self._restore_episode(state)
