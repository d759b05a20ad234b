"""The JSONL loader of user problems."""

from __future__ import annotations

import json

import pytest

from gps_env.pool import PromptPool
from gps_env.tasks import AdditionTask, FunctionTask, load_jsonl


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_good_file(tmp_path):
    path = write(tmp_path / "arith.jsonl", [
        json.dumps({"prompt": "1+1=", "answer": "2", "level": 1}),
        "",
        "   ",
        json.dumps({"prompt": "2+2=", "answer": "4", "tags": ["easy"]}),
    ])
    problems, task = load_jsonl(path)
    assert [(p.prompt, p.answer) for p in problems] == [("1+1=", "2"), ("2+2=", "4")]
    assert problems[0].meta == {"level": 1} and problems[1].meta == {"tags": ["easy"]}
    assert task.name == "arith" and all(p.task == "arith" for p in problems)
    # The default verifier is exact match on stripped text.
    assert task.verify(" 2 ", problems[0]) == 1.0
    assert task.verify("3", problems[0]) == 0.0
    assert task.verify("2.0", problems[0]) == 0.0
    pool = PromptPool(problems, [task])
    assert pool.verify(1, "4") == 1.0 and pool.verify(1, "2") == 0.0


def test_custom_verifier_function(tmp_path):
    path = write(tmp_path / "nums.jsonl", [json.dumps({"prompt": "half of 8", "answer": "4"})])

    def numeric(completion: str, answer: str) -> bool:
        return float(completion) == float(answer)

    problems, task = load_jsonl(path, numeric, task_name="numeric")
    assert isinstance(task, FunctionTask) and task.name == "numeric"
    assert problems[0].task == "numeric"
    assert task.verify("4.0", problems[0]) == 1.0
    assert task.verify("4", problems[0]) == 1.0
    assert task.verify("5", problems[0]) == 0.0
    assert task.verify("four", problems[0]) == 0.0  # ValueError in the user verifier -> 0


def test_task_instance_is_used_as_is(tmp_path):
    task = AdditionTask(width=2)
    p = task.make(12, 9)
    path = write(tmp_path / "add.jsonl", [json.dumps({"prompt": p.prompt, "answer": p.answer})])
    problems, got = load_jsonl(path, task)
    assert got is task and problems[0].task == "addition"
    assert task.verify(p.answer, problems[0]) == 1.0


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", [
        json.dumps({"prompt": "a", "answer": "b"}),
        json.dumps({"prompt": "c", "answer": "d"}),
        '{"prompt": "e", "answer": ',
        json.dumps({"prompt": "f", "answer": "g"}),
    ])
    with pytest.raises(ValueError) as err:
        load_jsonl(path)
    assert "bad.jsonl" in str(err.value)
    assert ":3:" in str(err.value)


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path / "blank.jsonl", [json.dumps({"prompt": "a", "answer": "b"}), "", "", "not json"])
    with pytest.raises(ValueError, match=r"blank\.jsonl:4:"):
        load_jsonl(path)


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"prompt": "a"}, "'answer'"),
        ({"answer": "a"}, "'prompt'"),
        ({"prompt": "a", "answer": 4}, "'answer'"),
        ({"prompt": None, "answer": "4"}, "'prompt'"),
    ],
)
def test_missing_or_non_string_field(tmp_path, record, needle):
    path = write(tmp_path / "fields.jsonl", [json.dumps({"prompt": "x", "answer": "y"}), json.dumps(record)])
    with pytest.raises(ValueError) as err:
        load_jsonl(path)
    message = str(err.value)
    assert "fields.jsonl" in message and ":2:" in message and needle in message and "must be a string, got" in message


@pytest.mark.parametrize("line", ["[1, 2]", '"just a string"', "42", "null"])
def test_non_object_line(tmp_path, line):
    path = write(tmp_path / "objs.jsonl", [line])
    with pytest.raises(ValueError, match=r"objs\.jsonl:1: expected a JSON object"):
        load_jsonl(path)


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match="empty.jsonl.*no records"):
        load_jsonl(path)


def test_repeated_prompts_are_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path / "dup.jsonl", [json.dumps({"prompt": "1+1=", "answer": "2"}), "",
                                          json.dumps({"prompt": "2+2=", "answer": "4"}),
                                          json.dumps({"prompt": "1+1=", "answer": "3"})])
    with pytest.raises(ValueError, match=r"dup\.jsonl:4: the prompt of .*dup\.jsonl:1 again \('1\+1='\)"):
        load_jsonl(path)
    problems, _ = load_jsonl(path, duplicates="first")
    assert [(p.prompt, p.answer) for p in problems] == [("1+1=", "2"), ("2+2=", "4")]


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"prompt": "a", "answer": "\xe9"}\n', r"bytes\.jsonl:1: field 'answer' is not UTF-8 text"),
    ('{"prompt": "a", "answer": "b"}\n'.encode("utf-16"), r"bytes\.jsonl:1: the file is UTF-16 text"),
    (b'{"prompt": "\\ud800", "answer": "b"}\n', r"bytes\.jsonl:1: field 'prompt' has a lone surrogate"),
    (b'{"prompt": "a", "answer": "b", "m": ' + b"[" * 3000 + b"]" * 3000 + b"}", r"bytes\.jsonl:1: field 'm' nests"),
    (b'{"prompt": "a", "answer": ' + b"9" * 5000 + b"}", r"bytes\.jsonl:1: field 'answer' is an integer of 5000"),
])
def test_bad_bytes_name_file_line_and_field(tmp_path, content, needle):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=needle):
        load_jsonl(path)
