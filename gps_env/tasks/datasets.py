"""Problem files in the formats of the papers' data: MATH-lighteval, DeepScaleR and Countdown-Tasks-3to4.

Files are JSON Lines (UTF-8, one object per line) or Parquet (the format the Hugging Face Hub serves); the
suffix ``.parquet`` (in any case) selects Parquet, anything else JSON Lines. Each format maps a record's
fields to a :class:`Problem` (``docs/data.md`` has the table):

==================  =========================  =================================  ==========================
format              prompt                     answer                             verifier
==================  =========================  =================================  ==========================
``math-lighteval``  ``problem``                last ``\\boxed{}`` of ``solution``   :class:`MathTask`
``deepscaler``      ``problem``                ``answer``                         :class:`MathTask`
``countdown``       ``nums`` and ``target``    (none: any valid expression)       :class:`CountdownTask`
``prompt-answer``   ``prompt``                 ``answer``                         :class:`MathTask`
==================  =========================  =================================  ==========================

Every other field is kept in :attr:`Problem.meta`. Nothing is dropped or repaired silently: a malformed
record raises ``ValueError`` naming the file, the line (JSON Lines) or the 0-based row (Parquet) and, where
there is one, the field. Checked on every record: the bytes are UTF-8 (a UTF-8 byte-order mark is allowed on
the first line; UTF-16 and UTF-32 files are refused), strings hold no lone surrogates, JSON nests at most
:data:`MAX_NESTING` levels, integers have at most Python's int-string digit limit
(``sys.get_int_max_str_digits()``, 4300 by default), an object has no key twice, and a Parquet file's pages
decode (and pass their checksums, where the writer stored them). A prompt that occurs twice is an error
naming both places, unless ``duplicates="first"``.
"""

from __future__ import annotations

import codecs
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gps_env.tasks.base import Problem, Task
from gps_env.tasks.countdown import CountdownTask
from gps_env.tasks.math import MathTask, last_boxed

#: A record's prompt text, answer and meta (the fields it did not use); raises ``ValueError`` if malformed.
RecordMapper = Callable[[dict[str, Any], str], tuple[str, str, dict[str, Any]]]


#: Deepest JSON (or Parquet) nesting a record may have: a record is an object of strings and numbers; meta
#: fields may hold lists and objects, but nothing needs 100 levels, and deeper data breaks recursive code.
MAX_NESTING = 100
#: Byte-order marks of the encodings a JSON Lines file must not be in (UTF-32 first: its LE mark starts
#: with UTF-16's).
_FOREIGN_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                 (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
#: JSON strings and brackets: what :func:`_too_deep` needs to measure nesting without parsing.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class _LongInt(str):
    """A JSON integer with more digits than Python converts (kept as its text, then refused by name)."""


class _RepeatedKey(ValueError):
    """A JSON object with the same key twice (``json.loads`` would keep the last silently)."""


def _parse_int(digits: str) -> int | _LongInt:
    try:
        return int(digits)
    except ValueError:  # past sys.get_int_max_str_digits()
        return _LongInt(digits)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return record


def _too_deep(text: str) -> str | None:
    """Where ``text`` (a JSON line) nests brackets deeper than :data:`MAX_NESTING`, without parsing it.

    Returns ``None``, or a description naming the top-level field (when there is one) and the column. Used
    to describe a line found too deep (``json.loads`` raises ``RecursionError`` some hundreds of levels down).
    """
    depth, key = 0, None
    for token in _JSON_TOKENS.finditer(text):
        char = token.group()
        if char[0] == '"':
            if depth == 1:
                key = char  # at depth 1 the last string before a bracket is that value's key
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                try:
                    field = f"field {json.loads(key)!r} " if key is not None else ""
                except ValueError:
                    field = ""
                return f"{field}nests more than {MAX_NESTING} levels deep (column {token.start() + 1})"
        else:
            depth -= 1
    return None


def _bad_value(record: dict[str, Any], not_utf8: str | None = None) -> str | None:
    """What is wrong with a parsed record's values, naming the field; ``None`` if nothing.

    Looks for lone surrogates, integers past the digit limit, and nesting past :data:`MAX_NESTING`. With
    ``not_utf8`` (what is wrong with the line's bytes) the line was decoded with ``surrogateescape``, so
    U+DC80..U+DCFF stand for those bytes: the message names their field.
    """
    stack = [(key, key, 1) for key in record] + [(key, value, 1) for key, value in record.items()]
    while stack:
        field, value, depth = stack.pop()
        if isinstance(value, _LongInt):
            limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else "its limit"
            return (f"field {field!r} is an integer of {len(value.lstrip('-'))} digits, more than Python reads "
                    f"({limit}); write it as a string")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                char = value[err.start]
                if not_utf8 and 0xDC80 <= ord(char) <= 0xDCFF:
                    return f"field {field!r} is {not_utf8}"
                return (f"field {field!r} has a lone surrogate U+{ord(char):04X} at character {err.start + 1} "
                        "(not Unicode text)")
        elif isinstance(value, (list, dict)):
            if depth >= MAX_NESTING:
                return f"field {field!r} nests more than {MAX_NESTING} levels deep"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    stack.append((field, key, depth + 1))
                stack.append((field, item, depth + 1))
    return None


def _json_record(raw: bytes, where: str, first: bool) -> dict[str, Any] | None:
    """One JSON Lines line as a record; ``None`` for a blank line; ``ValueError`` naming ``where`` if bad."""
    if first:
        for bom, encoding in _FOREIGN_BOMS:
            if raw.startswith(bom):
                raise ValueError(f"{where}: the file is {encoding} text (it starts with a {encoding} byte-order "
                                 "mark); JSON Lines files must be UTF-8")
        if raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
    try:
        text, not_utf8 = raw.decode("utf-8"), None
    except UnicodeDecodeError as err:  # read on, to name the field the byte is in
        text = raw.decode("utf-8", errors="surrogateescape")
        not_utf8 = f"not UTF-8 text (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line)"
    if not text.strip():
        if not_utf8:
            raise ValueError(f"{where}: {not_utf8}")
        return None
    try:
        record = json.loads(text, parse_int=_parse_int, object_pairs_hook=_object)
    except _RepeatedKey as err:
        raise ValueError(f"{where}: field {err.args[0]!r} appears twice in one object") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: {not_utf8 or 'not valid JSON'} ({err.msg} at column {err.colno})") from None
    except RecursionError:  # thousands of levels: json.loads gives up (a few hundred down)
        raise ValueError(f"{where}: {_too_deep(text) or 'nests too deeply to read'}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    problem = _bad_value(record, not_utf8)
    if problem and " nests more than " in problem:
        problem = _too_deep(text) or problem  # the same finding, with its column
    if problem or not_utf8:
        raise ValueError(f"{where}: {problem or not_utf8}")
    return record


def read_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, record)`` for every record of a JSON Lines or Parquet file.

    ``where`` is ``"file:line"`` for JSON Lines (blank lines are skipped but counted) and
    ``"file: row i"`` (0-based) for Parquet. Raises ``ValueError`` naming the place (and the field, where
    there is one) of a line that is not UTF-8 or not a JSON object, of a lone surrogate, of an integer past
    Python's digit limit, of a key repeated in one object, of nesting deeper than :data:`MAX_NESTING`, and
    for a file that is not Parquet or whose pages do not decode.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        yield from _parquet_records(path)
        return
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            where = f"{path}:{line_no}"
            record = _json_record(raw, where, first=line_no == 1)
            if record is not None:
                yield where, record


def _parquet_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading Parquet needs pyarrow: pip install 'gps-env[math]'") from None
    damaged = (pa.ArrowException, OSError, ValueError)  # ArrowInvalid, "Couldn't deserialize thrift", bad UTF-8
    try:
        try:
            parquet = pq.ParquetFile(path, page_checksum_verification=True)
        except TypeError:  # pyarrow < 15 reads without checking page checksums
            parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=1024)
    except FileNotFoundError:
        raise
    except damaged as err:
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from None
    row = 0
    while True:
        try:
            batch = next(batches, None)
            records = None if batch is None else batch.to_pylist()
        except damaged as err:
            raise ValueError(f"{path}: row {row}: damaged Parquet data in the rows from here on "
                             f"({type(err).__name__}: {err})") from None
        if records is None:
            return
        for record in records:
            where = f"{path}: row {row}"
            if problem := _bad_value(record):
                raise ValueError(f"{where}: {problem}")
            yield where, record
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


def _check_distinct(where: str, prompt: str, seen: dict[str, str], duplicates: str) -> bool:
    """Whether ``prompt`` is new (and record it at ``where``); a repeat raises unless ``duplicates="first"``.

    ``seen`` maps the prompts so far to where they were. Raises ``ValueError`` naming both places and the
    prompt (its first 60 characters).
    """
    if prompt not in seen:
        seen[prompt] = where
        return True
    first = seen[prompt]
    if duplicates == "first":
        return False
    shown = prompt if len(prompt) <= 60 else prompt[:60] + "..."
    raise ValueError(f"{where}: the prompt of {first} again ({shown!r}); a pool's prompts must be distinct "
                     "(pass duplicates='first' to keep the first and skip the others)")


def load_dataset_file(
    path: str | Path,
    format: str,
    task: Task | None = None,
    prompt_template: str = "{problem}",
    duplicates: str = "error",
) -> tuple[list[Problem], Task]:
    """Read problems from a JSON Lines or Parquet file in one of the :data:`FORMATS`.

    Args:
        path: the file (``.parquet``, in any case, for Parquet; JSON Lines otherwise).
        format: ``"math-lighteval"``, ``"deepscaler"``, ``"countdown"`` or ``"prompt-answer"``.
        task: the verifier; by default a new :class:`MathTask` for the math formats and a
            :class:`CountdownTask` for ``countdown``. Problems refer to it by ``task.name``.
        prompt_template: how a math problem becomes the prompt; ``{problem}`` is replaced by the problem
            text (other braces are left alone, so ``\\boxed{}`` may appear). Countdown prompts keep their
            verifier's format, so this must stay the default for ``countdown``.
        duplicates: a prompt that occurs again (a pool's prompts must be distinct): ``"error"`` raises
            naming both places; ``"first"`` keeps the first occurrence and skips the later ones.

    Returns:
        ``(problems, task)``, ready for :class:`gps_env.pool.PromptPool`.

    Raises:
        ValueError: for an unknown format, template or ``duplicates``, or naming the file, line/row and
            field of the first malformed record (see :func:`read_records`) or repeated prompt; also for a
            file without records.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {sorted(FORMATS)}")
    if "{problem}" not in prompt_template:
        raise ValueError("prompt_template must contain '{problem}'")
    if format == "countdown" and prompt_template != "{problem}":
        raise ValueError("countdown prompts are in the Countdown verifier's format; drop prompt_template")
    if duplicates not in ("error", "first"):
        raise ValueError(f"duplicates must be 'error' or 'first', got {duplicates!r}")
    if task is None:
        task = CountdownTask() if format == "countdown" else MathTask()
    mapper, problems, seen = FORMATS[format], [], {}
    for where, record in read_records(path):
        text, answer, meta = mapper(record, where)
        prompt = prompt_template.replace("{problem}", text)
        if _check_distinct(where, prompt, seen, duplicates):
            problems.append(Problem(prompt, answer, task.name, meta))
    if not problems:
        raise ValueError(f"{path}: no records")
    return problems, task
