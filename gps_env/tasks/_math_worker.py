"""The math-verify worker: a child process that answers verification requests, one JSON line each.

:class:`gps_env.tasks.math.MathVerifier` runs this file as ``python -I _math_worker.py CONFIG``. Isolated
mode keeps this directory off ``sys.path``; the parent's ``sys.path`` arrives in ``CONFIG`` (JSON, with
``time_limit`` in seconds and ``memory_limit_mb``). The worker imports nothing from ``gps_env``, so it starts
in about a second, and it never evaluates model text: math-verify parses it into SymPy objects.

Protocol: after start-up the worker writes ``{"ready": true}``. Each request line
``{"gold": ..., "completion": ...}`` gets one reply line, ``{"ok": true|false}``, or ``{"timeout": true}``
when the soft time limit ran out. The soft limit is a ``SIGALRM`` timer, which works here because the
worker runs math-verify in the main thread of its own process (math-verify's own signal timeouts are
turned off so they cannot clash with it). Code that never returns to the interpreter ignores the signal;
the parent's hard limit covers that case by killing this process. The worker exits at end of input.

Model text is untrusted, so the worker fails closed and stays up:

* the completion is parsed with ``extraction_mode="first_match"``: when the answer math-verify picks first
  (the last ``\\boxed{}``, say) does not parse, the completion scores 0. With math-verify's default
  (``"any_match"``) it would go on to try other candidates, among them fragments of the unparsable answer
  and earlier answers, so ``\\boxed{\\frac{1}{2}, +7 =}`` or a deeply nested ``{...{\\frac{1}{2}}...}+7``
  matched the gold answer ``\\frac{1}{2}``;
* any ``Exception`` while handling one request (odd text, ``MemoryError`` under the address-space limit,
  ``RecursionError``) makes the reply ``{"ok": false}``; the worker carries on;
* the protocol has file descriptor 1 to itself: ``sys.stdout`` and fd 1 are pointed at stderr before
  math-verify is imported, so nothing a library prints can be read by the parent as a reply.

Bracket nesting and completion length are bounded by the parent before a request is sent (see
:class:`gps_env.tasks.math.MathTask`): math-verify's LaTeX parser takes time exponential in the nesting depth.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import resource
import signal
import sys
from typing import Any, TextIO


class _Deadline(BaseException):
    """Raised by the alarm handler; not an ``Exception``, so math-verify's ``except Exception`` lets it pass."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Deadline


def _send(stream: TextIO, message: dict[str, bool]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def _protocol_stream() -> TextIO:
    """A private copy of stdout for replies; fd 1 and ``sys.stdout`` then write to stderr."""
    stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def main() -> None:
    """Serve requests from stdin until it closes."""
    config = json.loads(sys.argv[1])
    sys.path[:] = config["sys_path"]
    if config["memory_limit_mb"]:
        limit = int(config["memory_limit_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    replies = _protocol_stream()  # before the import: ANTLR binds sys.stdout as a default argument

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # silences "timeout is disabled" warnings

    @functools.lru_cache(maxsize=4096)
    def parse_gold(gold: str) -> list:
        return parse(f"${gold}$", parsing_timeout=None)

    def check(gold: str, completion: str) -> bool:
        target = parse_gold(gold)
        if not target:
            return False
        answer = parse(completion, extraction_mode="first_match", parsing_timeout=None)
        return bool(answer) and verify(target, answer, timeout_seconds=None)

    check("1", "1")  # the first call imports SymPy and the LaTeX grammar: pay for it before "ready"
    signal.signal(signal.SIGALRM, _on_alarm)
    _send(replies, {"ready": True})
    for line in sys.stdin:
        try:
            signal.setitimer(signal.ITIMER_REAL, float(config["time_limit"]))
            try:
                try:
                    request = json.loads(line)
                    reply = {"ok": check(request["gold"], request["completion"]) is True}
                except Exception:  # odd input: score 0 and stay up (a _Deadline is no Exception)
                    reply = {"ok": False}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Deadline:  # also when the alarm lands between the check's return and the disarm
            reply = {"timeout": True}
        _send(replies, reply)


if __name__ == "__main__":
    main()
