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


def test_repeated_prompts_are_an_error_naming_both_places(tmp_path):
    records = [DEEPSCALER[0], DEEPSCALER[1], {**DEEPSCALER[0], "answer": "999"}]
    path = write_jsonl(tmp_path / "dup.jsonl", records)
    with pytest.raises(ValueError, match=r"dup\.jsonl:3: the prompt of .*dup\.jsonl:1 again \('Find \$x\$ if"):
        load_dataset_file(path, "deepscaler")
    problems, _ = load_dataset_file(path, "deepscaler", duplicates="first")  # opt in to the first one winning
    assert [p.answer for p in problems] == ["3", "4"]
    long = [{"problem": "x" * 500, "answer": "1"}, {"problem": "x" * 500, "answer": "2"}]
    with pytest.raises(ValueError, match=r"long\.parquet: row 1: the prompt of .*long\.parquet: row 0 again "
                                         r"\('x{60}\.\.\.'\)"):
        load_dataset_file(write_parquet(tmp_path / "long.parquet", long), "deepscaler")
    # The same problem text under a template is the same prompt; countdown prompts are built from the fields.
    with pytest.raises(ValueError, match=r"cd\.jsonl:2: the prompt of .*cd\.jsonl:1 again \('44,19,35>98:'\)"):
        load_dataset_file(write_jsonl(tmp_path / "cd.jsonl", [COUNTDOWN[0], COUNTDOWN[0]]), "countdown")
    with pytest.raises(ValueError, match="duplicates must be 'error' or 'first'"):
        load_dataset_file(path, "deepscaler", duplicates="last")


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


def write_bytes(path, *lines):
    path.write_bytes(b"".join(lines))
    return path


GOOD_LINE = b'{"problem": "p1", "answer": "1"}\n'


@pytest.mark.parametrize(("line", "needle"), [
    (b'{"problem": "caf\xe9", "answer": "2"}\n', r"field 'problem' is not UTF-8 text \(byte 0xe9 at byte 17 of"),
    (b'{"problem": "p2", "answer": "\xff"}\n', r"field 'answer' is not UTF-8 text \(byte 0xff at byte 30 of"),
    (b'{"problem": "p2", "answer": "2"}\xc3\n', r"not UTF-8 text \(byte 0xc3 at byte 33 of the line\) \(Extra data"),
    (b'\x80\n', r"not UTF-8 text \(byte 0x80 at byte 1 of the line\)"),
    (b'{"problem": "p\xed\xa0\x80", "answer": "2"}\n', r"field 'problem' is not UTF-8 text \(byte 0xed"),  # CESU
])
def test_bytes_that_are_not_utf8_are_named(tmp_path, line, needle):
    path = write_bytes(tmp_path / "latin.jsonl", GOOD_LINE, line)
    with pytest.raises(ValueError, match=rf"latin\.jsonl:2: {needle}"):
        load_dataset_file(path, "deepscaler")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_files_are_named(tmp_path, encoding):
    path = tmp_path / "wide.jsonl"
    bom = {"utf-16-be": "\ufeff"}.get(encoding, "")  # the plain codecs write their own byte-order mark
    path.write_bytes((bom + GOOD_LINE.decode()).encode(encoding))
    name = encoding[:6].upper()
    with pytest.raises(ValueError, match=rf"wide\.jsonl:1: the file is {name} text .*must be UTF-8"):
        load_dataset_file(path, "deepscaler")


def test_a_utf8_byte_order_mark_is_allowed(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE + b'{"problem": "p2", "answer": "2"}\n')
    problems, _ = load_dataset_file(path, "deepscaler")
    assert [(p.prompt, p.answer) for p in problems] == [("p1", "1"), ("p2", "2")]


@pytest.mark.parametrize(("line", "needle"), [
    (b'{"problem": "p\\ud800", "answer": "2"}', r"field 'problem' has a lone surrogate U\+D800 at character 2"),
    (b'{"problem": "p2", "answer": "2", "tags": ["a", {"b": "\\udfff"}]}',
     r"field 'tags' has a lone surrogate U\+DFFF"),
    (b'{"problem": "p2", "answer": "2", "\\udc80": 1}', r"field '\\udc80' has a lone surrogate U\+DC80"),
])
def test_lone_surrogates_are_named(tmp_path, line, needle):
    path = write_bytes(tmp_path / "sur.jsonl", GOOD_LINE, line + b"\n")
    with pytest.raises(ValueError, match=rf"sur\.jsonl:2: {needle}"):
        load_dataset_file(path, "deepscaler")
    assert load_dataset_file(write_bytes(tmp_path / "pair.jsonl", b'{"problem": "\\ud83d\\ude00", "answer": "1"}'),
                             "deepscaler")[0][0].prompt == "\U0001f600"  # a surrogate pair is one character


@pytest.mark.parametrize("depth", [101, 5000, 100_000])
def test_deep_nesting_is_named_not_a_recursion_error(tmp_path, depth):
    line = b'{"problem": "p2", "answer": "2", "x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}\n"
    path = write_bytes(tmp_path / "deep.jsonl", GOOD_LINE, line)
    with pytest.raises(ValueError, match=r"deep\.jsonl:2: field 'x' nests more than 100 levels deep \(column 138\)"):
        load_dataset_file(path, "deepscaler")
    fine = b'{"problem": "p2", "answer": "2", "x": ' + b"[" * 99 + b'"[[{{"' + b"]" * 99 + b"}\n"  # 100 levels
    problems, _ = load_dataset_file(write_bytes(tmp_path / "ok.jsonl", GOOD_LINE, fine), "deepscaler")
    assert len(problems) == 2
    # Not in a field: json.loads gives up on it (RecursionError) some hundreds of levels down, or it is a list.
    needle = r"nests more than 100 levels deep \(column 101\)" if depth > 1000 else "expected a JSON object, got list"
    with pytest.raises(ValueError, match=rf"top\.jsonl:1: {needle}"):
        load_dataset_file(write_bytes(tmp_path / "top.jsonl", b"[" * depth + b"]" * depth), "deepscaler")


def test_an_integer_past_the_digit_limit_is_named(tmp_path):
    path = write_bytes(tmp_path / "big.jsonl", GOOD_LINE, b'{"problem": "p2", "answer": ' + b"7" * 5000 + b"}\n")
    with pytest.raises(ValueError, match=r"big\.jsonl:2: field 'answer' is an integer of 5000 digits, more than "
                                         r"Python reads \(4300\); write it as a string"):
        load_dataset_file(path, "deepscaler")
    path = write_bytes(tmp_path / "neg.jsonl", b'{"problem": "p", "answer": "1", "n": [-' + b"1" * 4301 + b"]}")
    with pytest.raises(ValueError, match=r"neg\.jsonl:1: field 'n' is an integer of 4301 digits"):
        load_dataset_file(path, "deepscaler")
    path = write_bytes(tmp_path / "edge.jsonl", b'{"problem": "p", "answer": ' + b"7" * 4300 + b"}")
    assert load_dataset_file(path, "deepscaler")[0][0].answer == "7" * 4300  # at the limit: read, as before


def test_a_key_twice_in_one_object_is_named(tmp_path):
    path = write_bytes(tmp_path / "keys.jsonl", GOOD_LINE, b'{"problem": "p2", "answer": "2", "answer": "3"}\n')
    with pytest.raises(ValueError, match=r"keys\.jsonl:2: field 'answer' appears twice in one object"):
        load_dataset_file(path, "deepscaler")


def test_damaged_parquet_pages_are_named(tmp_path):
    records = [{"problem": f"problem number {i}", "answer": str(i)} for i in range(50)]
    path = tmp_path / "damaged.parquet"
    if int(pa.__version__.split(".")[0]) >= 15:  # page checksums came to pyarrow in 15
        pq.write_table(pa.Table.from_pylist(records), path, compression="none", write_page_checksum=True)
        raw = bytearray(path.read_bytes())
        raw[raw.index(b"problem number 17") + 15] = ord("9")  # "problem number 97": caught by the page checksum
        path.write_bytes(bytes(raw))
        with pytest.raises(ValueError, match=r"damaged\.parquet: row 0: damaged Parquet data .*CRC checksum"):
            load_dataset_file(path, "deepscaler")
    pq.write_table(pa.Table.from_pylist(records), path, compression="none")
    raw = bytearray(path.read_bytes())
    start = raw.index(b"problem number 0")
    raw[start - 4:start + 40] = b"\xff" * 44  # lengths of the page's strings
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"damaged\.parquet: row 0: damaged Parquet data"):
        load_dataset_file(path, "deepscaler")


@pytest.mark.parametrize("suffix", [".PARQUET", ".Parquet"])
def test_parquet_suffix_in_any_case(tmp_path, suffix):
    path = write_parquet(tmp_path / f"upper{suffix}", DEEPSCALER)
    problems, _ = load_dataset_file(path, "deepscaler")
    assert [p.answer for p in problems] == ["3", "4"]
    assert [where for where, _ in read_records(path)] == [f"{path}: row 0", f"{path}: row 1"]
