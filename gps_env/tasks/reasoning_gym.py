"""Task families from Reasoning Gym (``reasoning-gym`` on PyPI; Stojanovski et al., 2025,
https://github.com/open-thought/reasoning-gym): natural-language prompts with their own generators and scorers.

Each :class:`ReasoningGymTask` is one Reasoning Gym family with a few *levels*, each level a set of the
family's own difficulty knobs. A problem is drawn as Reasoning Gym draws it (``dataset[idx]`` seeds
``random.Random(seed + idx)``), with ``idx`` from the caller's generator and a dataset seed per (family, level)
cell, so two cells never share number sequences and the pool is deterministic in the world seed.

Scoring is the family's own ``score_answer`` made **binary** (reward 1 only for a full score): Reasoning Gym
gives partial credit to substring matches ("12" scores 0.5 against "1") and to near misses (a prime
factorization with the right product scores 0.5), which a binary RLVR reward must not count. The scorer runs on
untrusted model text, so it is bounded like every verifier here: completions longer than
``max_completion_chars`` score 0 unread, any exception scores 0, and on the main thread a deadline
(``time_limit`` seconds, ``SIGALRM``) stops a scorer that runs long (counted in ``timeouts``).

Our choices: the families and the knobs of their levels (:data:`FAMILIES`) are picked for a 1M-parameter policy
on 2 CPU cores: short prompts and answers, a learnable easy level, and a hard level the policy rarely solves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gps_env.tasks.base import Problem, Task

#: Knobs of each family's levels (easy, medium, hard): the family's own config fields.
FAMILIES: dict[str, tuple[dict[str, Any], ...]] = {
    "chain_sum": (
        {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
        {"min_terms": 3, "max_terms": 4, "min_digits": 2, "max_digits": 2},
    ),
    "basic_arithmetic": (
        {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ("+", "-"),
         "allow_parentheses": False, "allow_negation": False},
        {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1, "operators": ("+", "-", "*"),
         "allow_parentheses": False, "allow_negation": False},
        {"min_terms": 3, "max_terms": 4, "min_digits": 1, "max_digits": 2, "operators": ("+", "-", "*"),
         "allow_parentheses": True, "allow_negation": False},
    ),
    "products": (
        {"min_digits": 1, "max_digits": 1},
        {"min_digits": 1, "max_digits": 2},
        {"min_digits": 2, "max_digits": 2},
    ),
    "gcd": ({"max_value": 20}, {"max_value": 60}, {"max_value": 300}),
    "lcm": ({"max_value": 8}, {"max_value": 20}, {"max_value": 60}),
    "count_bits": ({"max_n": 31}, {"max_n": 255}, {"max_n": 4095}),
    "letter_counting": (
        {"min_words": 1, "max_words": 1}, {"min_words": 2, "max_words": 3}, {"min_words": 4, "max_words": 6},
    ),
    "prime_factorization": ({"max_value": 40}, {"max_value": 150}, {"max_value": 600}),
    "simple_equations": (
        {"min_terms": 2, "max_terms": 2, "max_value": 10, "operators": ("+", "-"), "operators_weights": (0.5, 0.5)},
        {"min_terms": 2, "max_terms": 2, "max_value": 20},
        {"min_terms": 2, "max_terms": 3, "max_value": 50},
    ),
    "fraction_simplification": (
        {"max_value": 10, "max_factor": 5, "styles": ("plain",)},
        {"max_value": 20, "max_factor": 10, "styles": ("plain",)},
        {"max_value": 60, "max_factor": 20, "styles": ("plain",)},
    ),
}
#: Level weights (easy, medium, hard) of the world's second version, ``"gps_env/ReasoningGym-v1"``
#: (:func:`reasoning_gym_v1_mix`). Ours: with equal weights (v0) GRPO's held-out gain in 100 steps stopped at
#: +0.045 (docs/world.md); half the pool at the easy level widens the learnable middle.
V1_LEVEL_WEIGHTS = (0.5, 0.3, 0.2)
#: Completions longer than this score 0 unread (the longest reference answer of the default levels is 21).
MAX_COMPLETION_CHARS = 48


def available_families() -> list[str]:
    """Every family name the installed Reasoning Gym knows."""
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


class _Deadline:
    """Raise ``TimeoutError`` in the main thread after ``seconds`` (``SIGALRM``); a no-op elsewhere."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = (seconds > 0 and hasattr(signal, "setitimer")
                       and threading.current_thread() is threading.main_thread())

    @staticmethod
    def _expire(signum: int, frame: Any) -> None:
        raise TimeoutError("scorer ran past its deadline")

    def __enter__(self) -> _Deadline:
        if self.active:
            self._previous = signal.signal(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)


class ReasoningGymTask(Task):
    """One Reasoning Gym family at a few difficulty levels, scored by its own ``score_answer`` made binary.

    Args:
        family: a Reasoning Gym dataset name (``available_families()``).
        levels: one mapping of the family's config knobs per level; default :data:`FAMILIES`' entry.
        level_weights: probability of each level when sampling (default: equal).
        max_completion_chars: completions longer than this score 0 without being scored.
        time_limit: seconds a scorer may run before the completion scores 0 (main thread only).

    Raises:
        ValueError: an unknown family (listing the valid ones), a knob the family does not have or rejects
            (naming it and listing the family's knobs), no levels, or bad weights.
    """

    def __init__(self, family: str, levels: Sequence[Mapping[str, Any]] | None = None,
                 level_weights: Sequence[float] | None = None, max_completion_chars: int = MAX_COMPLETION_CHARS,
                 time_limit: float = 0.5) -> None:
        from reasoning_gym.factory import DATASETS

        if family not in DATASETS:
            raise ValueError(f"unknown Reasoning Gym family {family!r}; valid: {', '.join(sorted(DATASETS))}")
        if levels is None:
            if family not in FAMILIES:
                raise ValueError(f"family {family!r} has no default levels; pass levels= (knobs per level)")
            levels = FAMILIES[family]
        if not levels:
            raise ValueError(f"family {family!r}: levels must hold at least one mapping of knobs")
        weights = np.ones(len(levels)) if level_weights is None else np.asarray(level_weights, dtype=float)
        if weights.shape != (len(levels),) or not np.all(np.isfinite(weights)) or np.any(weights < 0) \
                or weights.sum() <= 0:
            raise ValueError(f"level_weights must be {len(levels)} finite non-negative numbers, not all zero, "
                             f"got {level_weights!r}")
        if max_completion_chars < 1:
            raise ValueError(f"max_completion_chars must be >= 1, got {max_completion_chars}")
        if not time_limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
        self.name = family
        self.family = family
        self.levels = [dict(level) for level in levels]
        self.level_weights = (weights / weights.sum()).tolist()
        self.max_completion_chars = max_completion_chars
        self.time_limit = time_limit
        self._datasets = [self._build(i, level) for i, level in enumerate(self.levels)]

    def _build(self, index: int, knobs: Mapping[str, Any]) -> Any:
        from reasoning_gym.factory import DATASETS

        dataset_cls, config_cls = DATASETS[self.family]
        fields = sorted(f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size"))
        unknown = sorted(set(knobs) - set(fields))
        if unknown:
            raise ValueError(f"family {self.family!r} level {index}: unknown knob(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(fields)}")
        # One dataset seed per (family, level) cell: Reasoning Gym items are Random(seed + idx).
        seed = int(hashlib.sha256(f"{self.family}/{index}".encode()).hexdigest()[:7], 16)
        try:
            config = config_cls(**dict(knobs), seed=seed, size=2**31)
            dataset = dataset_cls(config)
            dataset[0]  # some configs only fail when an item is drawn
        except Exception as exc:  # Reasoning Gym raises AssertionError, ValueError, TypeError, ...
            raise ValueError(f"family {self.family!r} level {index}: Reasoning Gym rejected the knobs {dict(knobs)} "
                             f"({type(exc).__name__}: {exc}); valid knobs: {', '.join(fields)}") from None
        return dataset

    def sample(self, rng: np.random.Generator) -> Problem:
        """One problem: a level by ``level_weights``, then Reasoning Gym's item at an index drawn from ``rng``."""
        level = int(rng.choice(len(self.levels), p=self.level_weights))
        idx = int(rng.integers(0, 2**31 - 1))
        entry = self._datasets[level][idx]
        return Problem(str(entry["question"]), str(entry["answer"]), self.name,
                       meta={"level": level, "rg_metadata": entry.get("metadata", {})})

    def verify(self, completion: str, problem: Problem) -> float:
        """1.0 only when the family's scorer gives a full score; 0.0 for anything else, including a scorer that
        raises or runs past ``time_limit``."""
        if not isinstance(completion, str) or len(completion) > self.max_completion_chars:
            return 0.0
        entry = {"question": problem.prompt, "answer": problem.answer,
                 "metadata": problem.meta.get("rg_metadata", {})}
        dataset = self._datasets[min(int(problem.meta.get("level", 0)), len(self._datasets) - 1)]
        try:
            with _Deadline(self.time_limit):
                score = dataset.score_answer(completion.strip(), entry)
        except TimeoutError:
            self.timeouts += 1
            return 0.0
        except Exception:  # noqa: BLE001 - untrusted text: any scorer failure scores 0 (fail closed)
            return 0.0
        try:
            return 1.0 if float(score) == 1.0 else 0.0
        except (TypeError, ValueError):
            return 0.0


def reasoning_gym_mix(families: Sequence[str] | Mapping[str, float] | None = None,
                      levels: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                      level_weights: Sequence[float] | None = None):
    """A :class:`~gps_env.tasks.mix.TaskMix` of Reasoning Gym families.

    Args:
        families: names (equal weights) or ``{name: weight}``; default every family of :data:`FAMILIES`.
        levels: per-family knobs overriding :data:`FAMILIES` (``{family: [knobs of level 0, ...]}``).
        level_weights: probability of each level, the same for every family (default: equal).
    """
    from gps_env.tasks.mix import TaskMix

    if families is None:
        families = list(FAMILIES)
    weights = dict(families) if isinstance(families, Mapping) else {name: 1.0 for name in families}
    levels = dict(levels or {})
    unknown = sorted(set(levels) - set(weights))
    if unknown:
        raise ValueError(f"levels given for families not in the mix: {', '.join(unknown)}")
    tasks = [ReasoningGymTask(name, levels.get(name), level_weights) for name in weights]
    return TaskMix(tasks, list(weights.values()))


def reasoning_gym_v1_mix():
    """The mix of ``"gps_env/ReasoningGym-v1"``: every family of :data:`FAMILIES` at equal weight, levels drawn
    with :data:`V1_LEVEL_WEIGHTS` (v0, :func:`reasoning_gym_mix`'s default, draws them equally)."""
    return reasoning_gym_mix(level_weights=V1_LEVEL_WEIGHTS)
