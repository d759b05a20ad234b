"""Load user problems from JSONL files of ``{"prompt": ..., "answer": ...}`` records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gps_env.tasks.base import FunctionTask, Problem, Task, exact_match
from gps_env.tasks.datasets import _check_distinct, read_records


def load_jsonl(
    path: str | Path,
    task: Task | Callable[[str, str], bool | float] | None = None,
    task_name: str | None = None,
    duplicates: str = "error",
) -> tuple[list[Problem], Task]:
    """Read problems from ``path``, one JSON object per line.

    Args:
        path: a ``.jsonl`` file (UTF-8); blank lines are skipped. Each record needs string fields ``prompt``
            and ``answer``; any other fields are kept in :attr:`Problem.meta`. (A ``.parquet`` file with the
            same columns works too; :func:`gps_env.tasks.load_dataset_file` reads the papers' dataset formats.)
        task: the verifier: a :class:`Task`, a function ``fn(completion, answer)``, or ``None`` for exact
            match.
        task_name: name for a verifier built from a function (default: the file's stem).
        duplicates: a prompt that occurs again: ``"error"`` raises naming both lines; ``"first"`` keeps the
            first occurrence and skips the later ones.

    Returns:
        ``(problems, task)``, ready for :class:`gps_env.pool.PromptPool`.

    Raises:
        ValueError: naming the file, line and field of the first malformed record (the checks of
            :func:`gps_env.tasks.read_records`), or both lines of a repeated prompt.
    """
    path = Path(path)
    if duplicates not in ("error", "first"):
        raise ValueError(f"duplicates must be 'error' or 'first', got {duplicates!r}")
    if not isinstance(task, Task):
        task = FunctionTask(task_name or path.stem, task or exact_match)
    problems, seen = [], {}
    for where, record in read_records(path):
        for key in ("prompt", "answer"):
            if not isinstance(record.get(key), str):
                raise ValueError(f"{where}: field {key!r} must be a string, got {type(record.get(key)).__name__}")
        if _check_distinct(where, record["prompt"], seen, duplicates):
            meta = {k: v for k, v in record.items() if k not in ("prompt", "answer")}
            problems.append(Problem(record["prompt"], record["answer"], task.name, meta))
    if not problems:
        raise ValueError(f"{path}: no records")
    return problems, task
