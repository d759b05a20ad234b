"""Math answers checked by `math-verify <https://github.com/huggingface/Math-Verify>`_, with a hard time limit.

math-verify parses LaTeX and plain expressions into SymPy and compares them (``\\frac{2}{4}``, ``0.5`` and
``x = 1/2`` all match ``\\frac{1}{2}``). Its own timeouts use ``signal.alarm``, which works only in the
main thread, and SymPy can run for minutes on hostile input (``\\boxed{9^{9^{9}}}``). So
:class:`MathVerifier` runs it in a child process (``_math_worker.py``) with two limits per item: a soft
one inside the worker (a ``SIGALRM`` timer after ``time_limit`` seconds, which leaves the worker alive)
and a hard one in the parent, ``time_limit + 1`` seconds, after which the worker is killed and a fresh one
starts on the next call. Either way the item scores 0 and :attr:`MathTask.timeouts` counts it.

Model text is never evaluated, only parsed, and :class:`MathTask` bounds what it sends to the worker (it
fails closed: refused text scores 0 unparsed, counted in :attr:`MathTask.rejected`):

* length: completions longer than ``max_completion_chars`` (default 16,384) characters;
* nesting: completions or gold answers whose brackets (``{``, ``(`` and ``[`` counted together, see
  :func:`nesting_depth`) nest deeper than ``max_nesting`` (default 10). math-verify's LaTeX parser takes
  time exponential in the depth (``\\frac{1}{`` twenty deep: minutes), and past a few hundred levels it
  gives up on the whole answer;
* unreadable text: a NUL character or a lone UTF-16 surrogate, which no answer needs.

The worker parses a completion's first candidate answer only, and any error there scores 0 (see
``_math_worker.py``). Needs the ``math`` extra (``pip install 'gps-env[math]'``) and a POSIX system (the worker's
timer and the parent's deadline use ``setitimer`` and ``select``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import select
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from gps_env.tasks.base import Problem, Task

_WORKER = Path(__file__).with_name("_math_worker.py")
#: Seconds the parent waits beyond ``time_limit`` before it kills a worker that ignores its own alarm.
HARD_LIMIT_GRACE = 1.0
_INSTALL_HINT = "math-verify is not installed: pip install 'gps-env[math]'"
#: Default of :attr:`MathTask.max_nesting`: ``\\frac{\\sqrt{2}}{2}`` nests 2 deep inside ``\\boxed{}``; ten
#: levels parse in well under a second.
DEFAULT_MAX_NESTING = 10
_NOT_BRACKETS = re.compile(r"[^{}()\[\]]+")


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting in ``text``: ``{``, ``(`` and ``[`` counted together as one kind.

    A closer of any kind closes one level; closers with nothing open are ignored (the depth never goes below
    0), and openers never closed still count.

    >>> nesting_depth(r"\\boxed{\\frac{1}{(2)}}"), nesting_depth(")))(("), nesting_depth("[x)")
    (3, 2, 1)
    """
    depth = deepest = 0
    for char in _NOT_BRACKETS.sub("", text):
        if char in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


def _unreadable(text: str) -> bool:
    """Whether ``text`` has a NUL character or a lone surrogate (text no math answer is written in)."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces matched.

    ``\\boxed 5`` (no braces) gives ``"5"``. Returns ``None`` when there is no complete box.

    >>> last_boxed(r"so $x = \\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start + (6 if text.startswith("\\boxed", start) else 5) :]
    if rest.startswith(" "):
        answer = rest.lstrip(" ").split("$", 1)[0].split(None, 1)
        return answer[0] if answer else None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, char in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return rest[1:i]
    return None


def _stop(process: subprocess.Popen) -> None:
    """Kill a worker and release its pipes (safe on a worker that already exited)."""
    process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        with contextlib.suppress(OSError):
            stream.close()


class MathVerifier:
    """math-verify in a child process, one item at a time, with a hard per-item time limit.

    Args:
        time_limit: seconds one verification may take (the worker's own alarm); the parent kills the worker
            after ``time_limit + HARD_LIMIT_GRACE`` seconds.
        memory_limit_mb: address-space limit of the worker (``RLIMIT_AS``); ``None`` for none.
        startup_timeout: seconds the worker may take to import math-verify and SymPy.

    The worker starts on the first call and is replaced after a hard timeout or a crash. Calls are
    serialised by a lock.
    """

    def __init__(self, time_limit: float = 5.0, memory_limit_mb: int | None = 4096,
                 startup_timeout: float = 60.0) -> None:
        if importlib.util.find_spec("math_verify") is None:
            raise ImportError(_INSTALL_HINT)
        if not time_limit > 0 or not startup_timeout > 0:
            raise ValueError(f"time limits must be positive, got {time_limit}, {startup_timeout}")
        if memory_limit_mb is not None and memory_limit_mb < 256:
            raise ValueError(f"memory_limit_mb must be >= 256 or None, got {memory_limit_mb}")
        self.time_limit, self.memory_limit_mb = float(time_limit), memory_limit_mb
        self.startup_timeout = float(startup_timeout)
        self._process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """Process id of the running worker (``None`` before the first call and after a kill)."""
        return self._process.pid if self._process is not None else None

    def check(self, gold: str, completion: str) -> bool | None:
        """Whether ``completion`` states the same answer as ``gold``; ``None`` if no result came in time.

        ``gold`` is LaTeX without delimiters (``\\frac{1}{2}``); ``completion`` is free text in which
        math-verify looks for a boxed answer, LaTeX or a plain expression. A worker that hits the hard
        limit, dies or replies something that is not a reply is killed (``None``); the next call starts a
        fresh one. Only time is bounded here: :class:`MathTask` also bounds length and nesting before it
        calls this.
        """
        with self._lock:
            process = self._process or self._start()
            try:
                process.stdin.write(json.dumps({"gold": gold, "completion": completion}) + "\n")
                process.stdin.flush()
            except OSError:  # the worker died since the last call
                self.close()
                return None
            reply = self._read(process, self.time_limit + HARD_LIMIT_GRACE)
            if reply == {"timeout": True}:
                return None
            ok = reply.get("ok") if reply is not None and len(reply) == 1 else None
            if not isinstance(ok, bool):  # no reply in time, or not one of ours: fail closed
                self.close()
                return None
            return ok

    def close(self) -> None:
        """Stop the worker (a later :meth:`check` starts a new one)."""
        if self._finalizer is not None:
            self._finalizer()
        self._process = self._finalizer = None

    def _start(self) -> subprocess.Popen:
        config = {"sys_path": sys.path, "time_limit": self.time_limit, "memory_limit_mb": self.memory_limit_mb}
        process = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER), json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8",
        )
        self._process, self._finalizer = process, weakref.finalize(self, _stop, process)
        if self._read(process, self.startup_timeout) != {"ready": True}:
            self.close()
            raise RuntimeError(
                f"the math-verify worker did not start within {self.startup_timeout:g} s "
                f"(exit code {process.returncode}); see its stderr above"
            )
        return process

    @staticmethod
    def _read(process: subprocess.Popen, timeout: float) -> dict[str, Any] | None:
        """The worker's next reply, or ``None`` if none came within ``timeout`` seconds, it died, or the line
        is not a JSON object."""
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        try:
            reply = json.loads(line) if line else None
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None


class MathTask(Task):
    """Math problems with a reference answer in LaTeX, scored by math-verify under a hard time limit.

    A completion scores 1 when math-verify finds in it an answer equivalent to ``problem.answer``; 0 when
    it does not, when verification runs out of time (counted in :attr:`timeouts`, which the env reports in
    ``info``), or when the text is refused before it is parsed (counted in :attr:`rejected`): a completion
    longer than ``max_completion_chars``, a completion or gold answer nested deeper than ``max_nesting``
    (:func:`nesting_depth`), or one with a NUL character or a lone surrogate. The bounds keep the worker's
    time per item small and make hostile text fail closed: math-verify's parser is exponential in the
    nesting depth, and on an answer too deep to parse it used to fall back to an inner fragment, so
    ``\\boxed{{{...{\\frac{1}{2}}...}}+7}`` scored as ``\\frac{1}{2}``.

    Args:
        name: the task name problems refer to.
        time_limit: seconds per verification (see :class:`MathVerifier`).
        max_completion_chars: longer completions score 0 without being parsed (an integer >= 1).
        memory_limit_mb: the worker's address-space limit.
        max_nesting: completions and gold answers whose brackets nest deeper score 0 without being parsed
            (an integer >= 1; default :data:`DEFAULT_MAX_NESTING`).
    """

    def __init__(self, name: str = "math", time_limit: float = 5.0, max_completion_chars: int = 16384,
                 memory_limit_mb: int | None = 4096, max_nesting: int = DEFAULT_MAX_NESTING) -> None:
        for key, value in (("max_completion_chars", max_completion_chars), ("max_nesting", max_nesting)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
        self.name = name
        self.max_completion_chars, self.max_nesting = max_completion_chars, max_nesting
        self.verifier = MathVerifier(time_limit, memory_limit_mb)
        self.timeouts = 0
        #: Verifications refused before parsing (too long, too deeply nested, NUL or lone surrogate).
        self.rejected = 0

    def verify(self, completion: str, problem: Problem) -> float:
        if isinstance(completion, str) and len(completion) > self.max_completion_chars:
            self.rejected += 1  # Task.verify scores it 0 unparsed
        return super().verify(completion, problem)

    def score(self, completion: str, problem: Problem) -> bool:
        gold = problem.answer
        if not isinstance(gold, str):
            raise TypeError(f"a math problem's answer must be a string, got {type(gold).__name__}")
        if any(_unreadable(text) or nesting_depth(text) > self.max_nesting for text in (completion, gold)):
            self.rejected += 1
            return False
        result = self.verifier.check(gold, completion)
        if result is None:
            self.timeouts += 1
            return False
        return result

    def close(self) -> None:
        """Stop the verifier's worker process."""
        self.verifier.close()
