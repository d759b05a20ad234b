"""Problem files in the formats of the papers' data: MATH-lighteval, DeepScaleR and Countdown-Tasks-3to4.

Files are JSON Lines (one object per line) or Parquet (the format the Hugging Face Hub serves); the
suffix ``.parquet`` selects Parquet, anything else JSON Lines. Each format maps a record's fields to a
:class:`Problem` (``docs/data.md`` has the table):

==================  =========================  =================================  ==========================
format              prompt                     answer                             verifier
==================  =========================  =================================  ==========================
``math-lighteval``  ``problem``                last ``\\boxed{}`` of ``solution``   :class:`MathTask`
``deepscaler``      ``problem``                ``answer``                         :class:`MathTask`
``countdown``       ``nums`` and ``target``    (none: any valid expression)       :class:`CountdownTask`
``prompt-answer``   ``prompt``                 ``answer``                         :class:`MathTask`
==================  =========================  =================================  ==========================

Every other field is kept in :attr:`Problem.meta`. A malformed record raises ``ValueError`` naming the
file and the line (JSON Lines) or the 0-based row (Parquet).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gps_env.tasks.base import Problem, Task
from gps_env.tasks.countdown import CountdownTask
from gps_env.tasks.math import MathTask, last_boxed

#: A record's prompt text, answer and meta (the fields it did not use); raises ``ValueError`` if malformed.
RecordMapper = Callable[[dict[str, Any], str], tuple[str, str, dict[str, Any]]]


def read_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` for every record of a JSON Lines or Parquet file.

    ``where`` is ``"file:line"`` for JSON Lines (blank lines are skipped but counted) and
    ``"file: row i"`` (0-based) for Parquet. Raises ``ValueError`` naming the place of a line that is not a
    JSON object, or for a file that is not Parquet.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        yield from _parquet_records(path)
        return
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
            yield f"{path}:{line_no}", record


def _parquet_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading Parquet needs pyarrow: pip install 'gps-env[math]'") from None
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
    except pa.ArrowException as err:
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from None
    row = 0
    for batch in batches:
        for record in batch.to_pylist():
            yield f"{path}: row {row}", record
            row += 1


def _text(record: dict[str, Any], key: str, where: str) -> str:
    """``record[key]`` as text: a string, or an integer written in decimal."""
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _rest(record: dict[str, Any], *used: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in used}


def _math_lighteval(record: dict[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    answer = last_boxed(_text(record, "solution", where))
    if answer is None or not answer.strip():
        raise ValueError(f"{where}: field 'solution' has no \\boxed{{...}} answer")
    return _text(record, "problem", where), answer.strip(), _rest(record, "problem", "solution")


def _deepscaler(record: dict[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    return _text(record, "problem", where), _text(record, "answer", where), _rest(record, "problem", "answer")


def _prompt_answer(record: dict[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    return _text(record, "prompt", where), _text(record, "answer", where), _rest(record, "prompt", "answer")


def _countdown(record: dict[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    target, nums = record.get("target"), record.get("nums")
    if not isinstance(target, int) or isinstance(target, bool):
        raise ValueError(f"{where}: field 'target' must be an integer, got {type(target).__name__}")
    if (
        not isinstance(nums, list)
        or len(nums) < 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 999 for x in nums)
    ):
        raise ValueError(f"{where}: field 'nums' must be a list of at least 2 integers in 0..999, got {nums!r:.80}")
    # The Countdown verifier reads the numbers and the target from the prompt, so the prompt is in its format.
    return f"{','.join(map(str, nums))}>{target}:", "", _rest(record, "target", "nums")


FORMATS: dict[str, RecordMapper] = {
    "math-lighteval": _math_lighteval,
    "deepscaler": _deepscaler,
    "countdown": _countdown,
    "prompt-answer": _prompt_answer,
}


def load_dataset_file(
    path: str | Path,
    format: str,
    task: Task | None = None,
    prompt_template: str = "{problem}",
) -> tuple[list[Problem], Task]:
    """Read problems from a JSON Lines or Parquet file in one of the :data:`FORMATS`.

    Args:
        path: the file (``.parquet`` for Parquet, JSON Lines otherwise).
        format: ``"math-lighteval"``, ``"deepscaler"``, ``"countdown"`` or ``"prompt-answer"``.
        task: the verifier; by default a new :class:`MathTask` for the math formats and a
            :class:`CountdownTask` for ``countdown``. Problems refer to it by ``task.name``.
        prompt_template: how a math problem becomes the prompt; ``{problem}`` is replaced by the problem
            text (other braces are left alone, so ``\\boxed{}`` may appear). Countdown prompts keep their
            verifier's format, so this must stay the default for ``countdown``.

    Returns:
        ``(problems, task)``, ready for :class:`gps_env.pool.PromptPool`. A prompt that occurs again later in
        the file is skipped (a pool's prompts must be distinct); the first occurrence wins.

    Raises:
        ValueError: for an unknown format or template, or naming the file and line/row of the first
            malformed record; also for a file without records.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {sorted(FORMATS)}")
    if "{problem}" not in prompt_template:
        raise ValueError("prompt_template must contain '{problem}'")
    if format == "countdown" and prompt_template != "{problem}":
        raise ValueError("countdown prompts are in the Countdown verifier's format; drop prompt_template")
    if task is None:
        task = CountdownTask() if format == "countdown" else MathTask()
    mapper, problems, seen = FORMATS[format], [], set()
    for where, record in read_records(path):
        text, answer, meta = mapper(record, where)
        problem = Problem(prompt_template.replace("{problem}", text), answer, task.name, meta)
        if problem.uid not in seen:
            seen.add(problem.uid)
            problems.append(problem)
    if not problems:
        raise ValueError(f"{path}: no records")
    return problems, task
