"""Loaders for the papers' dataset formats, in JSON Lines and Parquet: field mapping and bad records."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gps_env.pool import PromptPool
from gps_env.tasks import CountdownTask, MathTask, load_dataset_file, load_jsonl, read_records

LIGHTEVAL = [
    {"problem": "What is $1+1$?", "solution": r"We add: $1+1=\boxed{2}$.", "level": "Level 1", "type": "Algebra"},
    {"problem": "Simplify $\\frac{2}{4}$.", "solution": r"It is $\boxed{\frac{1}{2}}$.", "level": "Level 2",
     "type": "Prealgebra"},
]
DEEPSCALER = [
    {"problem": "Find $x$ if $2x=6$.", "answer": "3", "solution": "Divide by 2."},
    {"problem": "How many primes are below 10?", "answer": "4", "solution": "2, 3, 5, 7."},
]
COUNTDOWN = [{"target": 98, "nums": [44, 19, 35]}, {"target": 24, "nums": [2, 3, 4, 5]}]


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def write_parquet(path, records):
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def test_math_lighteval_mapping(tmp_path):
    problems, task = load_dataset_file(write_jsonl(tmp_path / "math.jsonl", LIGHTEVAL), "math-lighteval")
    assert isinstance(task, MathTask) and task.name == "math"
    assert [(p.prompt, p.answer, p.task) for p in problems] == [
        ("What is $1+1$?", "2", "math"), ("Simplify $\\frac{2}{4}$.", r"\frac{1}{2}", "math")]
    assert problems[1].meta == {"level": "Level 2", "type": "Prealgebra"}


def test_deepscaler_mapping_and_prompt_template(tmp_path):
    template = "{problem} Put the final answer in \\boxed{}."
    problems, _ = load_dataset_file(write_jsonl(tmp_path / "dsr.jsonl", DEEPSCALER), "deepscaler",
                                    prompt_template=template)
    assert problems[0].prompt == "Find $x$ if $2x=6$. Put the final answer in \\boxed{}."
    assert [p.answer for p in problems] == ["3", "4"]
    assert problems[0].meta == {"solution": "Divide by 2."}


def test_countdown_mapping_uses_the_countdown_verifier(tmp_path):
    problems, task = load_dataset_file(write_jsonl(tmp_path / "cd.jsonl", COUNTDOWN), "countdown")
    assert isinstance(task, CountdownTask)
    assert [(p.prompt, p.answer, p.task) for p in problems] == [("44,19,35>98:", "", "countdown"),
                                                                 ("2,3,4,5>24:", "", "countdown")]
    pool = PromptPool(problems, [task])
    assert pool.verify(0, "44+19+35") == 1.0
    assert pool.verify(0, "44+19+35+0") == 0.0  # 0 is not among the numbers
    assert pool.verify(0, "44+19+36") == 0.0
    assert pool.verify(1, "(5+5+2)*2") == 0.0  # 24, but 5 and 2 used twice
    assert pool.verify(1, "2*3*4") == 1.0
    assert pool.verify(1, "__import__('os')") == 0.0


def test_prompt_answer_mapping_keeps_other_fields(tmp_path):
    records = [{"prompt": "2+2=", "answer": "4", "source": "toy"}, {"prompt": "3+3=", "answer": 6}]
    problems, task = load_dataset_file(write_jsonl(tmp_path / "pa.jsonl", records), "prompt-answer")
    assert isinstance(task, MathTask)
    assert [(p.prompt, p.answer, p.meta) for p in problems] == [("2+2=", "4", {"source": "toy"}),
                                                                ("3+3=", "6", {})]


@pytest.mark.parametrize(("fmt", "records"),
                         [("math-lighteval", LIGHTEVAL), ("deepscaler", DEEPSCALER), ("countdown", COUNTDOWN)])
def test_parquet_round_trip_matches_jsonl(tmp_path, fmt, records):
    from_jsonl, _ = load_dataset_file(write_jsonl(tmp_path / "d.jsonl", records), fmt)
    from_parquet, _ = load_dataset_file(write_parquet(tmp_path / "d.parquet", records), fmt)
    assert [(p.prompt, p.answer, p.meta) for p in from_parquet] == [(p.prompt, p.answer, p.meta) for p in from_jsonl]


def test_read_records_places(tmp_path):
    jsonl = write_jsonl(tmp_path / "r.jsonl", [{"a": 1}, "", {"a": 2}])
    assert [(where.rsplit(":", 1)[1], r) for where, r in read_records(jsonl)] == [("1", {"a": 1}), ("3", {"a": 2})]
    parquet = write_parquet(tmp_path / "r.parquet", [{"a": 1}, {"a": 2}])
    assert [where for where, _ in read_records(parquet)] == [f"{parquet}: row 0", f"{parquet}: row 1"]


def test_task_instance_is_shared(tmp_path):
    task = MathTask(name="competition")
    train, got = load_dataset_file(write_jsonl(tmp_path / "a.jsonl", DEEPSCALER), "deepscaler", task=task)
    assert got is task and {p.task for p in train} == {"competition"}


def test_repeated_prompts_keep_the_first(tmp_path):
    records = [DEEPSCALER[0], {**DEEPSCALER[0], "answer": "999"}, DEEPSCALER[1]]
    problems, _ = load_dataset_file(write_jsonl(tmp_path / "dup.jsonl", records), "deepscaler")
    assert [p.answer for p in problems] == ["3", "4"]


BAD_RECORDS = [
    ("math-lighteval", {"problem": "p"}, "field 'solution' must be a string"),
    ("math-lighteval", {"problem": "p", "solution": "no box here"}, "no \\boxed{...} answer"),
    ("math-lighteval", {"problem": "p", "solution": "\\boxed{}"}, "no \\boxed{...} answer"),
    ("math-lighteval", {"problem": ["p"], "solution": "\\boxed{1}"}, "field 'problem' must be a string"),
    ("deepscaler", {"problem": "p", "answer": None}, "field 'answer' must be a string"),
    ("deepscaler", {"problem": "p", "answer": True}, "field 'answer' must be a string"),
    ("prompt-answer", {"answer": "1"}, "field 'prompt' must be a string"),
    ("countdown", {"target": "98", "nums": [1, 2]}, "field 'target' must be an integer"),
    ("countdown", {"target": 98, "nums": [1]}, "field 'nums' must be a list"),
    ("countdown", {"target": 98, "nums": [1, 1000]}, "field 'nums' must be a list"),
    ("countdown", {"target": 98, "nums": "1,2"}, "field 'nums' must be a list"),
]


@pytest.mark.parametrize(("fmt", "bad", "needle"), BAD_RECORDS)
def test_bad_record_names_file_and_line(tmp_path, fmt, bad, needle):
    good = {"math-lighteval": LIGHTEVAL, "deepscaler": DEEPSCALER, "countdown": COUNTDOWN,
            "prompt-answer": [{"prompt": "a", "answer": "b"}]}[fmt][0]
    path = write_jsonl(tmp_path / "bad.jsonl", [good, "", bad, good])
    with pytest.raises(ValueError) as err:
        load_dataset_file(path, fmt)
    assert f"{path}:3: " in str(err.value) and needle in str(err.value)


def test_bad_parquet_row_is_named(tmp_path):
    path = write_parquet(tmp_path / "bad.parquet", [DEEPSCALER[0], DEEPSCALER[1], {"problem": "p", "answer": None}])
    with pytest.raises(ValueError, match=r"bad\.parquet: row 2: field 'answer' must be a string"):
        load_dataset_file(path, "deepscaler")


@pytest.mark.parametrize(("line", "needle"), [('{"problem": ', "not valid JSON"), ("[1]", "expected a JSON object")])
def test_malformed_json_line_is_named(tmp_path, line, needle):
    path = write_jsonl(tmp_path / "broken.jsonl", [DEEPSCALER[0], line])
    with pytest.raises(ValueError, match=rf"broken\.jsonl:2: {needle}"):
        load_dataset_file(path, "deepscaler")


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("this is not parquet")
    with pytest.raises(ValueError, match=r"fake\.parquet: not a readable Parquet file"):
        load_dataset_file(path, "deepscaler")


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty.{suffix}"
    if suffix == "jsonl":
        path.write_text("\n\n")
    else:
        pq.write_table(pa.table({"problem": pa.array([], pa.string()), "answer": pa.array([], pa.string())}), path)
    with pytest.raises(ValueError, match="no records"):
        load_dataset_file(path, "deepscaler")


def test_argument_errors(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", DEEPSCALER)
    with pytest.raises(ValueError, match="unknown format 'gsm8k'"):
        load_dataset_file(path, "gsm8k")
    with pytest.raises(ValueError, match="must contain '{problem}'"):
        load_dataset_file(path, "deepscaler", prompt_template="Solve it.")
    with pytest.raises(ValueError, match="countdown prompts"):
        load_dataset_file(write_jsonl(tmp_path / "c.jsonl", COUNTDOWN), "countdown", prompt_template="Q: {problem}")


def test_load_jsonl_reads_parquet_too(tmp_path):
    problems, task = load_jsonl(write_parquet(tmp_path / "pa.parquet", [{"prompt": "1+1=", "answer": "2"}]))
    assert [(p.prompt, p.answer) for p in problems] == [("1+1=", "2")] and task.verify("2", problems[0]) == 1.0
