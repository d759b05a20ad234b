"""Problems, tasks and verifiers: the contract every task family follows.

A :class:`Problem` is one prompt with its reference answer and the name of the task whose verifier
scores completions for it. A :class:`Task` turns untrusted model text into a binary reward: it parses,
never evaluates, and it bounds the work it does by refusing completions longer than
``max_completion_chars``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Completions longer than this are scored 0 without being parsed (bounds verifier time and memory).
DEFAULT_MAX_COMPLETION_CHARS = 256


@dataclass(frozen=True)
class Problem:
    """One prompt of a pool.

    Attributes:
        prompt: the text given to the policy.
        answer: the reference answer the verifier compares against.
        task: name of the :class:`Task` whose verifier scores this problem.
        meta: hidden generator knobs (digit count, carries, ...), kept for analysis and never shown to
            selectors.
    """

    prompt: str
    answer: str
    task: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def uid(self) -> str:
        """A stable id: unique across tasks even when two tasks share a prompt text."""
        return hashlib.sha1(f"{self.task}\x00{self.prompt}".encode()).hexdigest()[:16]


class Task:
    """A task family: a verifier, and optionally a seeded problem generator.

    Subclasses implement :meth:`score` on a completion already known to be short enough; the public
    :meth:`verify` enforces the length bound and turns any parsing failure into reward 0.
    """

    name: str = "task"
    max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS
    #: Verifications that ran out of time and scored 0 (only verifiers with a time limit count any).
    timeouts: int = 0

    def verify(self, completion: str, problem: Problem) -> float:
        """Binary reward in {0.0, 1.0} for ``completion`` as an answer to ``problem``."""
        if not isinstance(completion, str) or len(completion) > self.max_completion_chars:
            return 0.0
        try:
            return 1.0 if self.score(completion.strip(), problem) else 0.0
        except (ValueError, OverflowError, RecursionError, ZeroDivisionError):
            return 0.0

    def score(self, completion: str, problem: Problem) -> bool:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Problem:
        """Draw one problem (only generative task families implement this)."""
        raise NotImplementedError(f"task {self.name!r} has no problem generator")


class FunctionTask(Task):
    """A task made from a user verifier ``fn(completion, answer) -> bool | float``.

    The function receives the stripped completion (already bounded to ``max_completion_chars``) and the
    reference answer; any exception it raises of the parsing kinds counts as reward 0.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[str, str], bool | float],
        max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
    ) -> None:
        self.name = name
        self._fn = fn
        self.max_completion_chars = max_completion_chars

    def score(self, completion: str, problem: Problem) -> bool:
        return float(self._fn(completion, problem.answer)) >= 1.0


def exact_match(completion: str, answer: str) -> bool:
    """The default verifier for user data: the stripped completion equals the stripped answer."""
    return completion.strip() == answer.strip()
