"""Per-prompt history: what every selector observes, kept once for the env and for the trainer integrations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

_INT_MAX = np.iinfo(np.int64).max


class PromptHistory:
    """Counts and the last batch over a pool of ``n`` prompts, trained on in batches of ``batch_size`` × ``k``.

    Counting rules (the observation of every prompt-selection env):

    - a trained batch increments ``times_selected`` of its prompts and sets their ``last_seen`` to the new
      step; its rollouts and successes are added, except for rows already counted by a probe (``fresh``);
    - a probe adds its rollouts and successes and sets ``last_seen`` to the current step;
    - ``last_batch`` / ``last_rewards`` hold the last trained batch (-1 / 0 before the first).

    Args:
        n: pool size.
        batch_size: B.
        k: rollouts per prompt.
    """

    KEYS = ("times_selected", "rollouts", "successes", "last_seen", "last_batch", "last_rewards")

    def __init__(self, n: int, batch_size: int, k: int) -> None:
        self.n, self.batch_size, self.k = int(n), int(batch_size), int(k)
        self.reset()

    def reset(self) -> None:
        """Step 0, nothing seen."""
        self.step = 0
        self.times_selected = np.zeros(self.n, np.int64)
        self.rollouts = np.zeros(self.n, np.int64)
        self.successes = np.zeros(self.n, np.int64)
        self.last_seen = np.full(self.n, -1, np.int64)
        self.last_batch = np.full(self.batch_size, -1, np.int64)
        self.last_rewards = np.zeros((self.batch_size, self.k), np.float32)

    def record_batch(self, indices: np.ndarray, rewards: np.ndarray, fresh: np.ndarray | None = None) -> None:
        """A trained step: ``indices`` (B,), their ``rewards`` (B, k) in {0, 1}; ``fresh`` (B,) marks rows whose
        rollouts were not counted by an earlier probe (default: all)."""
        fresh = np.ones(len(indices), dtype=bool) if fresh is None else np.asarray(fresh, dtype=bool)
        self.step += 1
        self.times_selected[indices] += 1
        self.rollouts[indices[fresh]] += self.k
        self.successes[indices[fresh]] += rewards[fresh].sum(axis=1).astype(np.int64)
        self.last_seen[indices] = self.step
        self.last_batch = np.asarray(indices, dtype=np.int64).copy()
        self.last_rewards = np.asarray(rewards).astype(np.float32)

    def record_probe(self, indices: np.ndarray, rewards: np.ndarray) -> None:
        """Probe rollouts of ``indices`` (rewards (len, k)), seen at the current step."""
        idx = np.asarray(indices, dtype=np.int64)
        self.rollouts[idx] += self.k
        self.successes[idx] += np.asarray(rewards).sum(axis=1).astype(np.int64)
        self.last_seen[idx] = self.step

    def observation(self, rollouts_spent: int) -> dict[str, np.ndarray]:
        """The observation dict (fresh arrays); ``rollouts_spent`` is the selector rollouts charged so far."""
        return {
            "last_batch": self.last_batch.copy(),
            "last_rewards": self.last_rewards.copy(),
            "times_selected": self.times_selected.copy(),
            "rollouts": self.rollouts.copy(),
            "successes": self.successes.copy(),
            "last_seen": self.last_seen.copy(),
            "step": np.array([self.step], np.int64),
            "rollouts_spent": np.array([int(rollouts_spent)], np.int64),
        }

    def observation_space(self):
        """The Gymnasium ``Dict`` space of :meth:`observation`."""
        from gymnasium import spaces

        n, b, k = self.n, self.batch_size, self.k
        count = spaces.Box(0, _INT_MAX, shape=(n,), dtype=np.int64)
        return spaces.Dict({
            "last_batch": spaces.Box(-1, n - 1, shape=(b,), dtype=np.int64),
            "last_rewards": spaces.Box(0.0, 1.0, shape=(b, k), dtype=np.float32),
            "times_selected": count,
            "rollouts": count,
            "successes": count,
            "last_seen": spaces.Box(-1, _INT_MAX, shape=(n,), dtype=np.int64),
            "step": spaces.Box(0, _INT_MAX, shape=(1,), dtype=np.int64),
            "rollouts_spent": spaces.Box(0, _INT_MAX, shape=(1,), dtype=np.int64),
        })

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key).copy() for key in self.KEYS}

    def check_state(self, state: Mapping[str, Any], step: int | None = None) -> None:
        """Raise ``ValueError`` naming the field unless ``state`` is a history of this shape whose values could
        have come from an episode (counts >= 0, successes <= rollouts, ids in range, rewards in [0, 1], no
        prompt seen after ``step``)."""
        n, b, k = self.n, self.batch_size, self.k
        shapes = {"times_selected": (n,), "rollouts": (n,), "successes": (n,), "last_seen": (n,),
                  "last_batch": (b,), "last_rewards": (b, k)}
        if not isinstance(state, Mapping):
            raise ValueError(f"checkpoint history must be a mapping, got {type(state).__name__}")
        extra = set(state) - set(shapes)
        if extra:
            raise ValueError(f"checkpoint history has unknown fields {sorted(extra)}")
        arrays = {}
        for key, shape in shapes.items():
            if key not in state:
                raise ValueError(f"checkpoint history has no {key!r}")
            value = np.asarray(state[key])
            if value.shape != shape:
                raise ValueError(f"checkpoint history {key!r} has shape {value.shape}, expected {shape}")
            numeric = np.issubdtype(value.dtype, np.integer) or (
                key == "last_rewards" and np.issubdtype(value.dtype, np.floating))
            if not numeric:
                raise ValueError(f"checkpoint history {key!r} has dtype {value.dtype}, expected integers"
                                 + (" or floats" if key == "last_rewards" else ""))
            arrays[key] = value
        for key in ("times_selected", "rollouts", "successes"):
            if np.any(arrays[key] < 0):
                raise ValueError(f"checkpoint history {key!r} has negative counts")
        if np.any(arrays["successes"] > arrays["rollouts"]):
            raise ValueError("checkpoint history 'successes' exceeds 'rollouts' for some prompt")
        if np.any(arrays["last_seen"] < -1) or (step is not None and np.any(arrays["last_seen"] > step)):
            raise ValueError(f"checkpoint history 'last_seen' must lie in [-1, step={step}]")
        if np.any((arrays["last_batch"] < -1) | (arrays["last_batch"] >= n)):
            raise ValueError(f"checkpoint history 'last_batch' holds ids outside [-1, {n})")
        rewards = arrays["last_rewards"]
        if not np.all((rewards >= 0) & (rewards <= 1)):
            raise ValueError("checkpoint history 'last_rewards' must lie in [0, 1]")

    def load_state_dict(self, state: Mapping[str, Any], step: int) -> None:
        """Restore a state checked by :meth:`check_state`, at ``step``."""
        for key in self.KEYS[:-1]:
            setattr(self, key, np.array(state[key], dtype=np.int64))
        self.last_rewards = np.array(state["last_rewards"], dtype=np.float32)
        self.step = int(step)
