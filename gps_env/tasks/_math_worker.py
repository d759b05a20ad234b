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
"""

from __future__ import annotations

import functools
import json
import logging
import resource
import signal
import sys
from typing import Any


class _Deadline(BaseException):
    """Raised by the alarm handler; not an ``Exception``, so math-verify's ``except Exception`` lets it pass."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Deadline


def _send(message: dict[str, bool]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Serve requests from stdin until it closes."""
    config = json.loads(sys.argv[1])
    sys.path[:] = config["sys_path"]
    if config["memory_limit_mb"]:
        limit = int(config["memory_limit_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # silences "timeout is disabled" warnings

    @functools.lru_cache(maxsize=4096)
    def parse_gold(gold: str) -> list:
        return parse(f"${gold}$", parsing_timeout=None)

    def check(gold: str, completion: str) -> bool:
        target = parse_gold(gold)
        return bool(target) and verify(target, parse(completion, parsing_timeout=None), timeout_seconds=None)

    check("1", "1")  # the first call imports SymPy and the LaTeX grammar: pay for it before "ready"
    signal.signal(signal.SIGALRM, _on_alarm)
    _send({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            signal.setitimer(signal.ITIMER_REAL, float(config["time_limit"]))
            try:
                reply = {"ok": check(request["gold"], request["completion"])}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Deadline:  # also when the alarm lands between the check's return and the disarm
            reply = {"timeout": True}
        _send(reply)


if __name__ == "__main__":
    main()
