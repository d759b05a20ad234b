"""Multi-digit addition written least-significant-digit first, zero-padded to a fixed width.

``466 + 4578`` with width 5 is the prompt ``66400+87540=`` and the answer ``440500`` (the sum, LSB first,
padded to width + 1). Fixed width puts output digit i at a fixed offset from input digits i, which a tiny
RoPE transformer learns in a few hundred supervised steps (reversed digits: Lee et al., 2023, "Teaching
Arithmetic to Small Transformers", arXiv 2307.03381; the warm start's curve is in docs/world.md).

Difficulty grows with the digit count and the number of carries, both visible in the prompt text, so
related prompts have related difficulty.
"""

from __future__ import annotations

import re

import numpy as np

from gps_env.tasks.base import Problem, Task

_DIGITS = re.compile(r"[0-9]{1,64}")  # ASCII only: unicode digits are not accepted as answers


def _lsb_first(value: int, width: int) -> str:
    return str(value)[::-1].ljust(width, "0")


class AdditionTask(Task):
    """LSB-first, fixed-width addition ``a+b``.

    Args:
        width: operand width in digits (the answer has ``width + 1``).
        min_digits, max_digits: the digit count ``d`` of the longer operand is uniform in this range; the
            other operand has 1..d digits.
    """

    name = "addition"
    max_completion_chars = 64

    def __init__(self, width: int = 5, min_digits: int = 1, max_digits: int | None = None) -> None:
        max_digits = width if max_digits is None else max_digits
        if not 1 <= min_digits <= max_digits <= width:
            raise ValueError(
                f"need 1 <= min_digits <= max_digits <= width, got {min_digits}, {max_digits}, {width}"
            )
        self.width, self.min_digits, self.max_digits = width, min_digits, max_digits

    def make(self, a: int, b: int) -> Problem:
        """The problem ``a + b`` (for hand-made pools and tests)."""
        if a < 0 or b < 0 or max(a, b) >= 10**self.width:
            raise ValueError(f"operands must be in [0, 10**{self.width}), got {a}, {b}")
        carries, carry = 0, 0
        for i in range(self.width):
            carry = int((a // 10**i % 10 + b // 10**i % 10 + carry) >= 10)
            carries += carry
        prompt = f"{_lsb_first(a, self.width)}+{_lsb_first(b, self.width)}="
        meta = {"digits": max(len(str(a)), len(str(b))), "carries": carries}
        return Problem(prompt, _lsb_first(a + b, self.width + 1), self.name, meta)

    def sample(self, rng: np.random.Generator) -> Problem:
        d = int(rng.integers(self.min_digits, self.max_digits + 1))
        e = int(rng.integers(1, d + 1))
        a = int(rng.integers(10 ** (d - 1) if d > 1 else 0, 10**d))
        b = int(rng.integers(10 ** (e - 1) if e > 1 else 0, 10**e))
        return self.make(a, b) if rng.random() < 0.5 else self.make(b, a)

    def score(self, completion: str, problem: Problem) -> bool:
        return _DIGITS.fullmatch(completion) is not None and completion == problem.answer
