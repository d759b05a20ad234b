"""Load user problems from JSONL files of ``{"prompt": ..., "answer": ...}`` records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gps_env.tasks.base import FunctionTask, Problem, Task, exact_match
from gps_env.tasks.datasets import read_records


def load_jsonl(
    path: str | Path,
    task: Task | Callable[[str, str], bool | float] | None = None,
    task_name: str | None = None,
) -> tuple[list[Problem], Task]:
    """Read problems from ``path``, one JSON object per line.

    Args:
        path: a ``.jsonl`` file; blank lines are skipped. Each record needs string fields ``prompt`` and
            ``answer``; any other fields are kept in :attr:`Problem.meta`. (A ``.parquet`` file with the same
            columns works too; :func:`gps_env.tasks.load_dataset_file` reads the papers' dataset formats.)
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
    for where, record in read_records(path):
        for key in ("prompt", "answer"):
            if not isinstance(record.get(key), str):
                raise ValueError(f"{where}: field {key!r} must be a string")
        meta = {k: v for k, v in record.items() if k not in ("prompt", "answer")}
        problems.append(Problem(record["prompt"], record["answer"], task.name, meta))
    if not problems:
        raise ValueError(f"{path}: no records")
    return problems, task
