"""A weighted mixture of task families: the generator of the embedded world's pools.

The mix decides the pool's composition at the start of RL, and composition decides whether selection can
matter: a pool in which most groups are mixed leaves a selector little to do. The default mix spreads
addition over 1..5 digits (short sums are always solved, long ones with many carries rarely) and adds
Countdown, which the tiny policy mostly fails, so like a real RLVR pool a large share of prompts sit at
success 0 or 1 under k = 8. ``docs/world.md`` records the measured composition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gps_env.tasks.addition import AdditionTask
from gps_env.tasks.base import Problem, Task
from gps_env.tasks.countdown import CountdownTask


class TaskMix:
    """Draw problems from several tasks with fixed probabilities.

    Args:
        tasks: the task families (each must implement ``sample``); names must be distinct.
        weights: non-negative mixing weights, normalised internally.
    """

    def __init__(self, tasks: Sequence[Task], weights: Sequence[float]) -> None:
        if len(tasks) != len(weights) or not tasks:
            raise ValueError("need one weight per task and at least one task")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct, got {names}")
        w = np.asarray(weights, dtype=float)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be finite, non-negative and not all zero, got {list(weights)}")
        self.tasks = list(tasks)
        self.weights = w / w.sum()

    def describe(self) -> list[dict]:
        """Every task's parameters and weight (JSON-serialisable; part of the warm-start cache key)."""
        return [
            {"task": t.name, "weight": float(w), **{k: v for k, v in vars(t).items() if not k.startswith("_")}}
            for t, w in zip(self.tasks, self.weights)
        ]

    @property
    def by_name(self) -> dict[str, Task]:
        return {t.name: t for t in self.tasks}

    def sample(self, rng: np.random.Generator) -> Problem:
        return self.tasks[int(rng.choice(len(self.tasks), p=self.weights))].sample(rng)

    def sample_unique(
        self, n: int, rng: np.random.Generator, exclude: set[str] | None = None
    ) -> list[Problem]:
        """``n`` problems with distinct ids, none of whose ids is in ``exclude``."""
        seen = set(exclude or ())
        out: list[Problem] = []
        for _ in range(100 * n + 1000):
            if len(out) == n:
                return out
            problem = self.sample(rng)
            if problem.uid not in seen:
                seen.add(problem.uid)
                out.append(problem)
        if len(out) < n:
            raise ValueError(f"could not draw {n} distinct problems from this mix; widen its ranges")
        return out

    def split(self, n_pool: int, n_heldout: int, seed: int) -> tuple[list[Problem], list[Problem]]:
        """A training pool and a disjoint held-out set, deterministic in ``seed``."""
        rng = np.random.default_rng(seed)
        pool = self.sample_unique(n_pool, rng)
        heldout = self.sample_unique(n_heldout, rng, exclude={p.uid for p in pool})
        return pool, heldout


def default_mix(addition_weight: float = 0.65, countdown_weight: float = 0.35, width: int = 5) -> TaskMix:
    """The embedded world's mix: LSB-first addition over 1..``width`` digits plus Countdown."""
    return TaskMix(
        [AdditionTask(width=width), CountdownTask()], [addition_weight, countdown_weight]
    )
