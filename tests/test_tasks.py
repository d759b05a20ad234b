"""Task families, verifiers, the Countdown parser and task mixes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gps_env.tasks import (
    AdditionTask,
    CountdownTask,
    FunctionTask,
    Problem,
    TaskMix,
    default_mix,
    evaluate,
    exact_match,
)

# ---------------------------------------------------------------- addition


def test_addition_make_docstring_example():
    p = AdditionTask(width=5).make(466, 4578)
    assert p.prompt == "66400+87540="
    assert p.answer == "440500"
    assert p.task == "addition"
    assert p.meta == {"digits": 4, "carries": 3}


@pytest.mark.parametrize(
    ("a", "b", "answer", "digits", "carries"),
    [
        (0, 0, "0000", 1, 0),
        (1, 2, "3000", 1, 0),
        (999, 1, "0001", 3, 3),
        (55, 45, "0010", 2, 2),
        (120, 3, "3210", 3, 0),
    ],
)
def test_addition_answer_is_lsb_first_width_plus_one(a, b, answer, digits, carries):
    task = AdditionTask(width=3)
    p = task.make(a, b)
    assert p.answer == answer and len(p.answer) == task.width + 1
    assert int(p.answer[::-1]) == a + b
    assert p.prompt == f"{str(a)[::-1].ljust(3, '0')}+{str(b)[::-1].ljust(3, '0')}="
    assert p.meta == {"digits": digits, "carries": carries}


def test_addition_verify():
    task = AdditionTask(width=5)
    p = task.make(466, 4578)
    assert task.verify("440500", p) == 1.0
    assert task.verify("  440500\n", p) == 1.0  # surrounding whitespace is stripped
    assert task.verify("44050", p) == 0.0  # missing the padded digit
    assert task.verify("0054", p) == 0.0
    assert task.verify("5044", p) == 0.0  # MSB-first is wrong
    assert task.verify("440501", p) == 0.0
    assert task.verify("", p) == 0.0
    assert task.verify("440 500", p) == 0.0


@pytest.mark.parametrize("kwargs", [dict(width=3, min_digits=0), dict(width=3, max_digits=4),
                                    dict(width=3, min_digits=3, max_digits=2)])
def test_addition_rejects_bad_ranges(kwargs):
    with pytest.raises(ValueError):
        AdditionTask(**kwargs)


@pytest.mark.parametrize(("a", "b"), [(-1, 2), (1000, 0), (0, 1000)])
def test_addition_make_rejects_out_of_range_operands(a, b):
    with pytest.raises(ValueError):
        AdditionTask(width=3).make(a, b)


def test_addition_sample_respects_digit_range_and_is_seeded():
    task = AdditionTask(width=5, min_digits=2, max_digits=4)
    problems = [task.sample(np.random.default_rng(s)) for s in range(200)]
    assert {p.meta["digits"] for p in problems} == {2, 3, 4}
    for p in problems:
        a, b = (int(x[::-1]) for x in p.prompt.rstrip("=").split("+"))
        assert len(str(max(a, b))) == p.meta["digits"]
        assert task.verify(p.answer, p) == 1.0
    again = [task.sample(np.random.default_rng(s)) for s in range(200)]
    assert [p.prompt for p in problems] == [p.prompt for p in again]


@settings(max_examples=150, deadline=None)
@given(a=st.integers(0, 10**5 - 1), b=st.integers(0, 10**5 - 1),
       other=st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_addition_property_own_answer_only(a, b, other):
    task = AdditionTask(width=5)
    p = task.make(a, b)
    assert task.verify(p.answer, p) == 1.0
    assert int(p.answer[::-1]) == a + b
    if other != p.answer:
        assert task.verify(other, p) == 0.0


# ---------------------------------------------------------------- countdown parser


@pytest.mark.parametrize(
    ("expr", "value", "numbers"),
    [
        ("3*5+7", 22, [3, 5, 7]),
        ("3+5*7", 38, [3, 5, 7]),
        ("(3+5)*7", 56, [3, 5, 7]),
        ("7-5-3", -1, [7, 5, 3]),  # left associative
        ("2*(3-(4+1))", -4, [2, 3, 4, 1]),
        ("123", 123, [123]),
        ("((8))", 8, [8]),
    ],
)
def test_evaluate(expr, value, numbers):
    assert evaluate(expr) == (value, numbers)


@pytest.mark.parametrize("expr", ["", "3+", "*3", "(3+5", "3+5)", "1234", "3/5", "3 + 5", "a", "3**2", "-3+5",
                                  "((((((((((1))))))))))", "eval(1)"])
def test_evaluate_rejects_malformed(expr):
    with pytest.raises(ValueError):
        evaluate(expr)


def test_evaluate_depth_limit():
    assert evaluate("(" * 8 + "1" + ")" * 8) == (1, [1])
    with pytest.raises(ValueError, match="deep"):
        evaluate("(" * 9 + "1" + ")" * 9)
    start = time.perf_counter()
    with pytest.raises(ValueError):
        evaluate("(" * 5000 + "1" + ")" * 5000)
    assert time.perf_counter() - start < 0.1


# ---------------------------------------------------------------- countdown task


@pytest.fixture
def countdown_problem():
    return CountdownTask().make([3, 5, 7], "3*5+7")


def test_countdown_make(countdown_problem):
    p = countdown_problem
    assert p.prompt == "3,5,7>22:"
    assert p.answer == "3*5+7"
    assert p.meta == {"numbers": 3, "operands": 3, "has_mul": True, "has_sub": False}


@pytest.mark.parametrize("completion", ["3*5+7", "7+5*3", "5*3+7", "(3*5)+7", " 7+3*5 ", "((3*5)+7)", "7+(5*3)"])
def test_countdown_accepts_correct_expressions(countdown_problem, completion):
    assert CountdownTask().verify(completion, countdown_problem) == 1.0


def test_countdown_accepts_any_valid_expression_not_just_reference():
    task = CountdownTask()
    p = task.make([2, 3, 4, 6], "2*3+4")  # target 10
    assert p.prompt == "2,3,4,6>10:"
    for good in ["2*3+4", "6+4", "4+6", "(6-3)*2+4", "4*3-2", "6*3-4*2"]:
        assert task.verify(good, p) == 1.0, good


@pytest.mark.parametrize(
    "completion",
    [
        "3*3+7+3",  # reuses 3
        "7+7+5+3",  # reuses 7
        "22",  # a number that was not given
        "3*5+8",  # 8 not given
        "3*5+7+0",  # 0 not given
        "3*5-7",  # wrong target
        "3*5+7=22",
        "",
        "3*5",
    ],
)
def test_countdown_rejects(countdown_problem, completion):
    assert CountdownTask().verify(completion, countdown_problem) == 0.0


def test_countdown_unused_numbers_allowed():
    task = CountdownTask()
    p = task.make([3, 5, 7, 9], "3+5")
    assert task.verify("3+5", p) == 1.0
    assert task.verify("9-7+3+3", p) == 0.0  # value 8 but reuses 3
    assert task.verify("9-(7-5)+1", p) == 0.0  # 1 not given


def test_countdown_make_rejects_numbers_not_given():
    with pytest.raises(ValueError):
        CountdownTask().make([3, 5], "3*3")


@pytest.mark.parametrize("kwargs", [dict(min_numbers=1), dict(min_numbers=4, max_numbers=3), dict(max_number=0),
                                    dict(max_number=1000)])
def test_countdown_rejects_bad_config(kwargs):
    with pytest.raises(ValueError):
        CountdownTask(**kwargs)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_countdown_property_samples_verify_their_reference(seed):
    task = CountdownTask()
    p = task.sample(np.random.default_rng(seed))
    assert task.verify(p.answer, p) == 1.0
    numbers = [int(x) for x in p.prompt.split(">")[0].split(",")]
    target = int(p.prompt.split(">")[1].rstrip(":"))
    assert task.min_numbers <= len(numbers) <= task.max_numbers
    assert all(1 <= x <= task.max_number for x in numbers)
    assert 1 <= target <= task.max_target
    assert p.meta["numbers"] == len(numbers)


# ---------------------------------------------------------------- adversarial verifier input

ADVERSARIAL = [
    "x" * 10_000,
    "1" * 10_000,
    "9" * 5000,
    "9" * 64,
    "999*" * 15 + "999",
    "٣",
    "٣+٥*٧",
    "４４０５００",
    "１２",
    "(" * 5000 + "1" + ")" * 5000,
    "(" * 30 + "1" + ")" * 30,
    "__import__('os')",
    "__import__('os').system('echo hi')",
    "3*5+7; import os",
    "lambda: 0",
    "\x00" * 100,
    "𝟒𝟒𝟎𝟓𝟎𝟎",
    "1e999999",
    "0x16",
    "2**10**10",
    "\n" * 300 + "440500",
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
@pytest.mark.parametrize("which", ["addition", "countdown", "exact_match"])
def test_adversarial_input_scores_zero_quickly(text, which):
    if which == "addition":
        task, problem = AdditionTask(width=5), AdditionTask(width=5).make(466, 4578)
    elif which == "countdown":
        task, problem = CountdownTask(), CountdownTask().make([3, 5, 7], "3*5+7")
    else:
        task = FunctionTask("user", exact_match)
        problem = Problem("q", "22", "user")
    start = time.perf_counter()
    reward = task.verify(text, problem)
    elapsed = time.perf_counter() - start
    assert reward == 0.0
    assert elapsed < 0.1


def test_verify_rejects_non_strings():
    task = AdditionTask(width=5)
    p = task.make(1, 2)
    assert task.verify(None, p) == 0.0  # type: ignore[arg-type]
    assert task.verify(300000, p) == 0.0  # type: ignore[arg-type]


def test_length_limit_boundary():
    task = FunctionTask("user", exact_match, max_completion_chars=10)
    assert task.verify("a" * 10, Problem("q", "a" * 10, "user")) == 1.0
    assert task.verify("a" * 11, Problem("q", "a" * 11, "user")) == 0.0


def test_function_task_parsing_errors_count_as_zero_and_floats_threshold():
    def verifier(completion: str, answer: str) -> float:
        return float(int(completion) == int(answer))

    task = FunctionTask("ints", verifier)
    p = Problem("q", "7", "ints")
    assert task.verify("07", p) == 1.0
    assert task.verify("seven", p) == 0.0  # int() raises ValueError -> 0
    half = FunctionTask("half", lambda c, a: 0.5)
    assert half.verify("anything", p) == 0.0


def test_problem_uid():
    a = Problem("1+1=", "2", "t1")
    assert a.uid == Problem("1+1=", "different answer", "t1", {"x": 1}).uid
    assert a.uid != Problem("1+1=", "2", "t2").uid
    assert a.uid != Problem("1+2=", "2", "t1").uid
    assert len(a.uid) == 16 and int(a.uid, 16) >= 0


def test_task_without_generator():
    with pytest.raises(NotImplementedError):
        FunctionTask("user", exact_match).sample(np.random.default_rng(0))


# ---------------------------------------------------------------- mixes


def test_split_is_seeded_and_disjoint():
    mix = default_mix()
    pool, held = mix.split(200, 80, seed=3)
    pool2, held2 = default_mix().split(200, 80, seed=3)
    assert [p.uid for p in pool] == [p.uid for p in pool2]
    assert [p.uid for p in held] == [p.uid for p in held2]
    assert [p.answer for p in pool] == [p.answer for p in pool2]
    other, _ = mix.split(200, 80, seed=4)
    assert [p.uid for p in other] != [p.uid for p in pool]
    pool_ids, held_ids = {p.uid for p in pool}, {p.uid for p in held}
    assert len(pool_ids) == 200 and len(held_ids) == 80
    assert not pool_ids & held_ids
    assert {p.task for p in pool} == {"addition", "countdown"}
    for p in pool + held:
        assert mix.by_name[p.task].verify(p.answer, p) == 1.0


def test_mix_weights_are_respected():
    mix = TaskMix([AdditionTask(width=3), CountdownTask()], [3, 1])
    assert np.allclose(mix.weights, [0.75, 0.25])
    rng = np.random.default_rng(0)
    share = np.mean([mix.sample(rng).task == "addition" for _ in range(2000)])
    assert 0.7 < share < 0.8
    only = TaskMix([AdditionTask(width=3), CountdownTask()], [0, 1])
    assert all(only.sample(rng).task == "countdown" for _ in range(50))


def test_mix_describe_is_json_serialisable():
    import json

    desc = default_mix().describe()
    assert json.loads(json.dumps(desc)) == desc
    assert [d["task"] for d in desc] == ["addition", "countdown"]


@pytest.mark.parametrize(
    ("tasks", "weights"),
    [
        ([], []),
        ([AdditionTask()], [1, 1]),
        ([AdditionTask(), AdditionTask(width=3)], [1, 1]),
        ([AdditionTask(), CountdownTask()], [1, -1]),
        ([AdditionTask(), CountdownTask()], [0, 0]),
        ([AdditionTask(), CountdownTask()], [1, float("nan")]),
    ],
)
def test_mix_rejects_bad_config(tasks, weights):
    with pytest.raises(ValueError):
        TaskMix(tasks, weights)


def test_sample_unique_raises_when_mix_too_narrow():
    mix = TaskMix([AdditionTask(width=1)], [1])  # only 100 distinct problems
    assert len(mix.sample_unique(100, np.random.default_rng(0))) == 100
    with pytest.raises(ValueError, match="distinct"):
        mix.sample_unique(101, np.random.default_rng(0))
