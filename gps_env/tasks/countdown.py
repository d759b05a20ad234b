"""Countdown-style puzzles: reach a target from given numbers with ``+ - *`` and parentheses.

The prompt ``3,5,7>22:`` asks for an expression over the numbers 3, 5 and 7, each used at most once, whose
value is 22; ``3*5+7`` is one answer. Several answers are usually valid, which gives RL room to explore.
The generator builds the target from a random expression over 2..m of the numbers, so the number of
operands and the operators needed set the difficulty, and both leave traces in the prompt (how many
numbers, how large the target is relative to them).

The verifier parses with a bounded recursive-descent parser: no ``eval``, at most
``max_completion_chars`` characters and ``max_depth`` nested parentheses.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from gps_env.tasks.base import Problem, Task

_OPS = "+-*"


class _Parser:
    """Recursive descent over ``expr := term (('+'|'-') term)*; term := factor ('*' factor)*;
    factor := number | '(' expr ')'``. Numbers have at most 3 digits, so values stay small."""

    def __init__(self, text: str, max_depth: int) -> None:
        self.text, self.pos, self.max_depth = text, 0, max_depth
        self.numbers: list[int] = []

    def parse(self) -> int:
        value = self._expr(0)
        if self.pos != len(self.text):
            raise ValueError(f"unexpected {self.text[self.pos]!r} at {self.pos}")
        return value

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _expr(self, depth: int) -> int:
        value = self._term(depth)
        while self._peek() in ("+", "-") and self._peek():
            op = self.text[self.pos]
            self.pos += 1
            rhs = self._term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def _term(self, depth: int) -> int:
        value = self._factor(depth)
        while self._peek() == "*":
            self.pos += 1
            value *= self._factor(depth)
        return value

    def _factor(self, depth: int) -> int:
        char = self._peek()
        if char == "(":
            if depth >= self.max_depth:
                raise ValueError("parentheses nested too deeply")
            self.pos += 1
            value = self._expr(depth + 1)
            if self._peek() != ")":
                raise ValueError("unbalanced parentheses")
            self.pos += 1
            return value
        start = self.pos
        while self._peek() and self._peek() in "0123456789" and self.pos - start < 3:
            self.pos += 1
        if self.pos == start:
            raise ValueError(f"expected a number at {start}")
        number = int(self.text[start : self.pos])
        self.numbers.append(number)
        return number


def evaluate(expression: str, max_depth: int = 8) -> tuple[int, list[int]]:
    """Value of an arithmetic expression and the numbers it uses; ``ValueError`` if malformed."""
    parser = _Parser(expression, max_depth)
    return parser.parse(), parser.numbers


class CountdownTask(Task):
    """Reach ``target`` from ``numbers`` (each used at most once) with ``+ - *`` and parentheses.

    Args:
        min_numbers, max_numbers: how many numbers the prompt gives.
        max_number: numbers are drawn from ``1..max_number``.
        max_target: targets lie in ``1..max_target``.
        max_depth: deepest parenthesis nesting the verifier accepts.
    """

    name = "countdown"
    max_completion_chars = 64

    def __init__(
        self,
        min_numbers: int = 3,
        max_numbers: int = 4,
        max_number: int = 9,
        max_target: int = 99,
        max_depth: int = 8,
    ) -> None:
        if not 2 <= min_numbers <= max_numbers:
            raise ValueError(f"need 2 <= min_numbers <= max_numbers, got {min_numbers}, {max_numbers}")
        if not 1 <= max_number <= 999:
            raise ValueError(f"max_number must be in 1..999, got {max_number}")
        self.min_numbers, self.max_numbers = min_numbers, max_numbers
        self.max_number, self.max_target, self.max_depth = max_number, max_target, max_depth

    def make(self, numbers: list[int], expression: str) -> Problem:
        """The problem whose target is the value of ``expression`` over ``numbers``."""
        target, used = evaluate(expression, self.max_depth)
        if Counter(used) - Counter(numbers):
            raise ValueError(f"{expression!r} uses numbers not in {numbers}")
        meta = {
            "numbers": len(numbers),
            "operands": len(used),
            "has_mul": "*" in expression,
            "has_sub": "-" in expression,
        }
        return Problem(f"{','.join(map(str, numbers))}>{target}:", expression, self.name, meta)

    def sample(self, rng: np.random.Generator) -> Problem:
        while True:
            m = int(rng.integers(self.min_numbers, self.max_numbers + 1))
            numbers = [int(x) for x in rng.integers(1, self.max_number + 1, size=m)]
            j = int(rng.integers(2, m + 1))
            operands = [numbers[i] for i in rng.permutation(m)[:j]]
            ops = [_OPS[int(i)] for i in rng.integers(0, len(_OPS), size=j - 1)]
            expression = str(operands[0]) + "".join(f"{o}{x}" for o, x in zip(ops, operands[1:]))
            target, _ = evaluate(expression)
            if 1 <= target <= self.max_target:
                return self.make(numbers, expression)

    def score(self, completion: str, problem: Problem) -> bool:
        numbers_part, _, target_part = problem.prompt.rstrip(":").partition(">")
        given = Counter(int(x) for x in numbers_part.split(","))
        value, used = evaluate(completion, self.max_depth)
        return value == int(target_part) and not (Counter(used) - given)
