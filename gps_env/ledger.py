"""The rollout-cost ledger: every selector pays by the same rules.

Costs are counted by *purpose* (``train``: rollouts the policy is updated on; ``probe``: rollouts an oracle
selector spends to look at candidates; ``eval``: held-out measurement) and, for seconds, by *phase*
(``generate``, ``verify``, ``update``, ``select``). A probe rollout that is then trained on is charged
once, as probe. The selector's budget is ``train + probe`` rollouts; ``eval`` is the experimenter's cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

PURPOSES = ("train", "probe", "eval")
PHASES = ("generate", "verify", "update", "select")


class RolloutLedger:
    """Counts rollouts, prompt and completion tokens and seconds by purpose and phase."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.rollouts = dict.fromkeys(PURPOSES, 0)
        self.prompt_tokens = dict.fromkeys(PURPOSES, 0)
        self.completion_tokens = dict.fromkeys(PURPOSES, 0)
        self.seconds = {p: dict.fromkeys(PHASES, 0.0) for p in PURPOSES}
        self.steps = 0
        self.mixed_groups = 0
        self.trained_groups = 0

    @staticmethod
    def _check(purpose: str, phase: str | None = None) -> None:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown purpose {purpose!r}; expected one of {PURPOSES}")
        if phase is not None and phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")

    def charge(
        self,
        purpose: str,
        phase: str | None = None,
        *,
        seconds: float = 0.0,
        rollouts: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Add costs; ``seconds`` need a ``phase``."""
        self._check(purpose, phase)
        if not (np.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be finite and non-negative, got {seconds}")
        for name, count in (("rollouts", rollouts), ("prompt_tokens", prompt_tokens),
                            ("completion_tokens", completion_tokens)):
            if isinstance(count, bool) or int(count) != count or count < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {count!r}")
        if seconds and phase is None:
            raise ValueError("seconds must be charged to a phase")
        self.rollouts[purpose] += int(rollouts)
        self.prompt_tokens[purpose] += int(prompt_tokens)
        self.completion_tokens[purpose] += int(completion_tokens)
        if phase is not None:
            self.seconds[purpose][phase] += float(seconds)

    def record_groups(self, mixed: int, total: int) -> None:
        """Count one training step's groups, and how many of them had mixed outcomes (non-zero advantage)."""
        if not 0 <= mixed <= total:
            raise ValueError(f"need 0 <= mixed <= total, got {mixed}, {total}")
        self.steps += 1
        self.mixed_groups += int(mixed)
        self.trained_groups += int(total)

    @contextmanager
    def timer(self, purpose: str, phase: str) -> Iterator[None]:
        """Charge the wall-clock time of the ``with`` block."""
        self._check(purpose, phase)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[purpose][phase] += time.perf_counter() - start

    @property
    def selector_rollouts(self) -> int:
        """Rollouts the selector is accountable for: train + probe."""
        return self.rollouts["train"] + self.rollouts["probe"]

    def summary(self, seconds: bool = True) -> dict[str, Any]:
        """A JSON-serialisable snapshot (fresh objects); ``seconds=False`` leaves out wall-clock times."""
        out: dict[str, Any] = {
            "rollouts": {**self.rollouts, "selector": self.selector_rollouts},
            "prompt_tokens": dict(self.prompt_tokens),
            "completion_tokens": dict(self.completion_tokens),
            "steps": self.steps,
            "groups": {"trained": self.trained_groups, "mixed": self.mixed_groups},
            "esr": self.mixed_groups / self.trained_groups if self.trained_groups else None,
        }
        if seconds:
            out["seconds"] = {p: dict(v) for p, v in self.seconds.items()}
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.summary(seconds=True)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; a malformed state raises ``ValueError`` naming the field and
        changes nothing."""

        def count(value: Any, name: str) -> int:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"ledger state {name!r} must be a non-negative integer, got {value!r:.40}")
            return int(value)

        def seconds(value: Any, name: str) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not 0 <= value < math.inf:
                raise ValueError(f"ledger state {name!r} must be finite non-negative seconds, got {value!r:.40}")
            return float(value)

        def table(key: str) -> Mapping[str, Any]:
            value = state.get(key) if isinstance(state, Mapping) else None
            if not isinstance(value, Mapping):
                raise ValueError(f"ledger state has no mapping {key!r}")
            return value

        try:
            rollouts = {p: count(table("rollouts")[p], f"rollouts.{p}") for p in PURPOSES}
            prompt = {p: count(table("prompt_tokens")[p], f"prompt_tokens.{p}") for p in PURPOSES}
            completion = {p: count(table("completion_tokens")[p], f"completion_tokens.{p}") for p in PURPOSES}
            secs = {p: {ph: seconds(table("seconds")[p][ph], f"seconds.{p}.{ph}") for ph in PHASES} for p in PURPOSES}
            steps = count(state["steps"], "steps")
            trained = count(table("groups")["trained"], "groups.trained")
            mixed = count(table("groups")["mixed"], "groups.mixed")
        except (KeyError, TypeError) as e:
            raise ValueError(f"ledger state is missing a field: {e}") from None
        if mixed > trained:
            raise ValueError(f"ledger state has more mixed groups ({mixed}) than trained ones ({trained})")
        self.rollouts, self.prompt_tokens, self.completion_tokens, self.seconds = rollouts, prompt, completion, secs
        self.steps, self.trained_groups, self.mixed_groups = steps, trained, mixed
