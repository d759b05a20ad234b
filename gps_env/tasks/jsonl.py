"""Load user problems from JSONL files of ``{"prompt": ..., "answer": ...}`` records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gps_env.tasks.base import FunctionTask, Problem, Task, exact_match


def load_jsonl(
    path: str | Path,
    task: Task | Callable[[str, str], bool | float] | None = None,
    task_name: str | None = None,
) -> tuple[list[Problem], Task]:
    """Read problems from ``path``, one JSON object per line.

    Args:
        path: a ``.jsonl`` file; blank lines are skipped. Each record needs string fields ``prompt`` and
            ``answer``; any other fields are kept in :attr:`Problem.meta`.
        task: the verifier: a :class:`Task`, a function ``fn(completion, answer)``, or ``None`` for exact
            match.
        task_name: name for a verifier built from a function (default: the file's stem).

    Returns:
        ``(problems, task)``, ready for :class:`gps_env.pool.PromptPool`.

    Raises:
        ValueError: naming the file and line of the first malformed record.
    """
    path = Path(path)
    if not isinstance(task, Task):
        task = FunctionTask(task_name or path.stem, task or exact_match)
    problems = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
            for key in ("prompt", "answer"):
                if not isinstance(record.get(key), str):
                    raise ValueError(f"{path}:{line_no}: field {key!r} must be a string")
            meta = {k: v for k, v in record.items() if k not in ("prompt", "answer")}
            problems.append(Problem(record["prompt"], record["answer"], task.name, meta))
    if not problems:
        raise ValueError(f"{path}: no records")
    return problems, task
