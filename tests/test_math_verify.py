"""The math-verify task: real math-verify in a worker process, its time limits, and the env's timeout count."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time

import numpy as np
import pytest

from gps_env.pool import PromptPool
from gps_env.tasks import MathTask, MathVerifier, Problem, last_boxed, load_dataset_file
from gps_env.tasks.math import DEFAULT_MAX_NESTING, HARD_LIMIT_GRACE, nesting_depth

#: SymPy compares this to any number for minutes, but in interruptible Python code: the worker's alarm stops it.
SLOW = r"\boxed{9^{9^{9}}}"
#: math-verify's LaTeX parser takes seconds on deep nesting, so by default MathTask refuses a gold answer like this
#: unparsed; past a higher ``max_nesting`` it times out whatever the completion is (the gold is parsed first).
NESTED = "(" * 300 + "1" + ")" * 300
#: Reward hacks through math-verify's fallback to an inner fragment when the answer as a whole does not parse
#: (scored 1 against 1/2 before the nesting bound and "first_match": the first in 16 s, the second in 0.4 s).
DEEP_BRACES = "\\boxed{" + "{" * 300 + "\\frac{1}{2}" + "}" * 300 + "+7}"
#: Exponential in the depth: 0.4 s at depth 10, 178 s at depth 20 (measured before the bound, scored 0 then).
DEEP_FRACS = "\\boxed{" + "\\frac{1}{" * 20 + "2" + "}" * 20 + "}"
HALF = Problem("What is 1/2 as a decimal?", r"\frac{1}{2}", "math")


@pytest.fixture(scope="module")
def task():
    task = MathTask(time_limit=0.5)
    yield task
    task.close()


@pytest.fixture(scope="module")
def generous():
    """A task whose time limit no verdict here comes near, even on a loaded machine (timeouts would read as 0)."""
    task = MathTask(time_limit=10.0)
    yield task
    task.close()


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        (r"\boxed{0.5}", 1.0),
        (r"The answer is $\dfrac{2}{4}$.", 1.0),
        ("x = 1/2", 1.0),
        (r"so $\boxed{\frac{1}{2}}$", 1.0),
        ("0.25", 0.0),
        (r"\boxed{2}", 0.0),
        ("", 0.0),
        ("no numbers at all", 0.0),
    ],
)
def test_equivalent_answers(task, completion, reward):
    assert task.verify(completion, HALF) == reward


def test_symbolic_and_gold_forms():
    # Its own task with a generous limit: SymPy's first symbolic comparison in a fresh worker can take longer
    # than the 0.5 s of the shared fixture on a loaded 2-core machine, which would score a timeout, not a miss.
    task = MathTask(time_limit=10.0)
    assert task.verify(r"\boxed{x^2-1}", Problem("expand", "(x-1)(x+1)", "math")) == 1.0
    assert task.verify(r"\boxed{(1, 2)}", Problem("pair", "(1,2)", "math")) == 1.0
    assert task.verify("7", Problem("seven", "7", "math")) == 1.0
    # A gold answer math-verify cannot read scores every completion 0.
    assert task.verify("7", Problem("broken", "", "math")) == 0.0
    assert task.timeouts == 0
    task.close()


@pytest.mark.parametrize("completion", [DEEP_BRACES, DEEP_FRACS, "\\boxed{" + "\\frac{1}{" * 10 + "2" + "}" * 10 + "}",
                                        "(" * 11 + "1/2" + ")" * 11 + " + 7", "[" * 400 + "0.5"])
def test_deep_nesting_scores_0_unparsed_and_fast(completion):
    task = MathTask(time_limit=30.0)  # generous: before the bound DEEP_BRACES scored 1 after 16 s
    started = time.perf_counter()
    assert task.verify(completion, HALF) == 0.0
    assert time.perf_counter() - started < 0.5
    assert (task.rejected, task.timeouts, task.verifier.pid) == (1, 0, None)  # never sent to the worker
    task.close()


@pytest.mark.parametrize("completion", [
    r"\boxed{\frac{1}{2}, +7 =}",  # the box does not parse: math-verify's "any_match" took 1/2 from inside it
    r"\boxed{\frac{1}{2}} so the answer is \boxed{7 + }",  # ... or the answer before the final one
    r"$\frac{1}{2}$ and the answer is \boxed{)(}",
])
def test_an_answer_that_does_not_parse_scores_0(generous, completion):
    before = (generous.timeouts, generous.rejected)
    assert generous.verify(completion, HALF) == 0.0
    assert generous.verify(r"\boxed{\frac{1}{2}} so the answer is \boxed{0.5}", HALF) == 1.0
    assert (generous.timeouts, generous.rejected) == before


def test_nesting_within_the_bound_is_verified(generous):
    before = generous.rejected
    eight = "\\boxed{" + "\\frac{1}{" * 8 + "\\frac{1}{2}" + "}" * 8 + "}"  # 1/2 inverted 8 times, 10 deep
    assert nesting_depth(eight) == generous.max_nesting == 10 and generous.verify(eight, HALF) == 1.0
    assert generous.verify("\\boxed{" + "\\frac{1}{" * 9 + "\\frac{1}{2}" + "}" * 9 + "}", HALF) == 0.0
    assert generous.rejected == before + 1
    shallow = MathTask(time_limit=10.0, max_nesting=2)
    assert shallow.verify(r"\boxed{\frac{1}{2}}", HALF) == 1.0
    assert shallow.verify(r"\boxed{(\frac{1}{2})}", HALF) == 0.0 and shallow.rejected == 1
    # The gold answer is bounded too: too deep, every completion scores 0, unparsed.
    assert shallow.verify(r"\boxed{0.5}", Problem("q", r"\frac{((1))}{2}", "math")) == 0.0
    assert shallow.rejected == 2 and shallow.timeouts == 0
    shallow.close()


@pytest.mark.parametrize(("text", "depth"), [("", 0), ("1/2", 0), ("(1)", 1), ("{[(x)]}", 3), ("{(})", 2),
                                              (")))((", 2), ("}}}{", 1), ("((((", 4), ("\\{1\\}", 1)])
def test_nesting_depth(text, depth):
    assert nesting_depth(text) == depth


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10", None])
def test_max_nesting_is_checked(value):
    with pytest.raises(ValueError, match="max_nesting must be an integer >= 1"):
        MathTask(max_nesting=value)
    with pytest.raises(ValueError, match="max_completion_chars must be an integer >= 1"):
        MathTask(max_completion_chars=value)
    assert MathTask().max_nesting == DEFAULT_MAX_NESTING == 10


@pytest.mark.parametrize("completion", ["\\boxed{0.5}\x00", "\x00", "\\boxed{0.5} \ud800", "\udfff"])
def test_nul_and_lone_surrogates_score_0_unparsed(generous, completion):
    rejected, timeouts = generous.rejected, generous.timeouts
    assert generous.verify(completion, HALF) == 0.0
    assert (generous.rejected, generous.timeouts) == (rejected + 1, timeouts)
    assert generous.verify(r"\boxed{0.5} 😀", HALF) == 1.0  # other unicode is fine


def test_odd_text_does_not_kill_the_worker():
    """Straight to the worker (MathTask would refuse some of these): each scores 0 or times out, softly."""
    verifier = MathVerifier(time_limit=1.0)
    assert verifier.check(r"\frac{1}{2}", "1/2") is True
    pid = verifier.pid
    for text in ["\ud800", "1/2\udfff", "\x00", "\x00\\boxed{\x00}", "\U0001f600 \U00010000", "9" * 5000,
                 "\\boxed{" + "9" * 5000 + "}", "10**10**10", "1e999999999", "{" * 40]:
        assert verifier.check(r"\frac{1}{2}", text) in (False, None)
        assert verifier.pid == pid, text
    assert verifier.check(r"\frac{1}{2}", "\\boxed{0.5}") is True and verifier.pid == pid
    verifier.close()


#: A stand-in for math-verify that prints to stdout (as ANTLR does when its versions disagree) and raises.
FAKE_MATH_VERIFY = textwrap.dedent("""
    import os

    def parse(text, **kwargs):
        print("a library writes to stdout")
        os.write(1, b"and to file descriptor 1\\n")
        if "raise" in text:
            raise RuntimeError("odd input")
        return [text.strip("$")]

    def verify(gold, target, **kwargs):
        return gold == target
""")


def test_worker_survives_library_output_and_errors(tmp_path, monkeypatch):
    (tmp_path / "math_verify.py").write_text(FAKE_MATH_VERIFY)
    monkeypatch.syspath_prepend(str(tmp_path))  # the worker gets the parent's sys.path
    verifier = MathVerifier(time_limit=10.0)
    assert verifier.check("7", "7") is True  # the printed lines are not read as replies
    pid = verifier.pid
    assert verifier.check("7", "raise") is False and verifier.pid == pid
    assert verifier.check("7", "8") is False and verifier.check("7", "7") is True and verifier.pid == pid
    verifier.close()


FAKE_WORKER = textwrap.dedent("""
    import json, sys
    print(json.dumps({{"ready": True}}), flush=True)
    for line in sys.stdin:
        print({reply!r}, flush=True)
        print(json.dumps({{"ok": True}}), flush=True)
""")


@pytest.mark.parametrize("reply", ["not json", "[true]", '{"ok": 1}', '{"ok": "yes"}', '{"ok": true, "more": 1}', "{}"])
def test_a_reply_that_is_not_one_kills_the_worker(tmp_path, monkeypatch, reply):
    """Fail closed, and never read a later reply as the answer to this item (the pipe would be out of step)."""
    worker = tmp_path / "worker.py"
    worker.write_text(FAKE_WORKER.format(reply=reply))
    monkeypatch.setattr("gps_env.tasks.math._WORKER", worker)
    task = MathTask(time_limit=10.0)
    assert task.verify("2", HALF) == 0.0 and task.verifier.pid is None and task.timeouts == 1
    assert task.verify("3", HALF) == 0.0 and task.timeouts == 2
    task.close()


def test_model_text_is_parsed_never_run(task, tmp_path):
    marker = tmp_path / "ran"
    for text in (f"__import__('os').system('touch {marker}')", f"open('{marker}', 'w')", "exec('1')"):
        assert task.verify(text, HALF) == 0.0
    assert not marker.exists()


def test_long_completions_score_0_unparsed():
    task = MathTask(max_completion_chars=32)
    assert task.verify(" " * 10 + r"\boxed{0.5}", HALF) == 1.0  # stripped, then within the bound
    started = task.verifier.pid
    assert task.verify("x" * 33 + r"\boxed{0.5}", HALF) == 0.0
    assert task.verifier.pid == started and task.timeouts == 0 and task.rejected == 1
    task.close()
    assert task.verifier.pid is None


def test_soft_timeout_scores_0_counts_and_keeps_the_worker(task):
    task.verify("1", HALF)
    pid, before = task.verifier.pid, task.timeouts
    start = time.perf_counter()
    assert task.verify(SLOW, HALF) == 0.0
    assert time.perf_counter() - start < task.verifier.time_limit + HARD_LIMIT_GRACE
    assert task.timeouts == before + 1
    assert task.verifier.pid == pid  # interrupted inside the worker, which carries on
    assert task.verify(r"\boxed{0.5}", HALF) == 1.0


def test_hard_timeout_kills_a_stuck_worker_and_starts_a_new_one(task):
    task.verify("1", HALF)
    stuck, before = task.verifier.pid, task.timeouts
    os.kill(stuck, signal.SIGSTOP)  # a worker that ignores its own alarm, as C code that never yields would
    start = time.perf_counter()
    assert task.verify(r"\boxed{0.5}", HALF) == 0.0
    assert time.perf_counter() - start >= task.verifier.time_limit + HARD_LIMIT_GRACE - 0.05
    assert task.timeouts == before + 1 and task.verifier.pid is None
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(stuck, 0)
    assert task.verify(r"\boxed{0.5}", HALF) == 1.0
    assert task.verifier.pid not in (None, stuck)


def test_dead_worker_scores_0_and_is_replaced(task):
    task.verify("1", HALF)
    dead, before = task.verifier.pid, task.timeouts
    os.kill(dead, signal.SIGKILL)
    time.sleep(0.05)
    assert task.verify(r"\boxed{0.5}", HALF) == 0.0
    assert task.timeouts == before + 1
    assert task.verify(r"\boxed{0.5}", HALF) == 1.0 and task.verifier.pid != dead


def test_a_worker_that_does_not_start_is_an_error():
    verifier = MathVerifier(startup_timeout=0.001)
    with pytest.raises(RuntimeError, match="did not start within"):
        verifier.check("1", "1")
    assert verifier.pid is None


@pytest.mark.parametrize("kwargs", [{"time_limit": 0}, {"time_limit": -1.0}, {"startup_timeout": 0},
                                    {"memory_limit_mb": 16}])
def test_verifier_arguments_are_checked(kwargs):
    with pytest.raises(ValueError):
        MathVerifier(**kwargs)


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        (r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{1} first, then \boxed{2}", "2"),
        (r"\fbox{3}", "3"),
        (r"the answer is $\boxed 5$.", "5"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{unclosed", None),
        ("no box", None),
    ],
)
def test_last_boxed(text, boxed):
    assert last_boxed(text) == boxed


def _lighteval_file(path, problems):
    """``(problem, answer)`` pairs as MATH-lighteval records (the gold answer boxed inside a solution)."""
    lines = [json.dumps({"problem": problem, "solution": f"Multiplying gives $\\boxed{{{answer}}}$.",
                         "level": "Level 1", "type": "Prealgebra"}) for problem, answer in problems]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_math_dataset_runs_through_the_env(make_env, tmp_path):
    """A MATH-lighteval JSONL file, verified by math-verify, trains the tiny policy for a few steps.

    The prompts use the tiny policy's alphabet, and half the answers are 0, which the barely trained tiny
    policy writes often (``0``, ``000``, ``0*0``...), so math-verify hands out real rewards through the env.
    """
    train = [(f"{a}*{b}=", str(a * b)) for a in range(1, 5) for b in (0, 1)]
    test = [(f"{a}*{b}=", str(a * b)) for a in range(5, 7) for b in (0, 1)]
    pool_problems, math = load_dataset_file(_lighteval_file(tmp_path / "train.jsonl", train), "math-lighteval")
    held_problems, _ = load_dataset_file(_lighteval_file(tmp_path / "test.jsonl", test), "math-lighteval",
                                         task=math)
    assert isinstance(math, MathTask) and [p.answer for p in pool_problems[:2]] == ["0", "1"]
    assert pool_problems[0].meta == {"level": "Level 1", "type": "Prealgebra"}
    try:
        env = make_env(pool=PromptPool(pool_problems, [math]), heldout=PromptPool(held_problems, [math]),
                       eval_every=2, max_steps=4)
        env.reset(seed=0)
        rewards = []
        for step in range(4):
            _, esr, _, truncated, info = env.step(np.arange(4) + 4 * (step % 2))  # every prompt, seeded run
            rewards.append(info["mean_reward"])
            assert info["verifier_timeouts"] == 0 and 0.0 <= esr <= 1.0
            assert truncated == (step == 3)
        assert max(rewards) > 0 and "math" in info["eval"]["by_task"]
    finally:
        math.close()


def test_a_gold_answer_too_deep_is_refused_unparsed():
    task = MathTask(time_limit=30.0)
    started = time.perf_counter()
    assert task.verify("1", Problem("nested", NESTED, "math")) == 0.0
    assert time.perf_counter() - started < 0.5 and (task.rejected, task.timeouts, task.verifier.pid) == (1, 0, None)


def test_env_counts_verifier_timeouts(make_env, tmp_path):
    """Every rollout of a problem whose gold answer is too slow to parse times out, scores 0 and is counted."""
    path = _lighteval_file(tmp_path / "slow.jsonl", [("1*1=", "1"), ("2*1=", "2"), ("3*1=", "3"), ("9>9:", NESTED)])
    math = MathTask(time_limit=0.2, max_nesting=400)  # let the gold answer through: its parse takes seconds
    problems, _ = load_dataset_file(path, "math-lighteval", task=math)
    assert problems[-1].answer == NESTED
    try:
        pool = PromptPool(problems, [math])
        env = make_env(pool=pool, heldout=pool, batch_size=4, rollouts_per_prompt=2, eval_every=0, max_steps=2)
        env.reset(seed=0)
        batch = np.arange(4)
        _, _, _, _, info = env.step(batch)
        assert info["verifier_timeouts"] == 2 and info["prompt_success"][3] == 0.0
        _, _, _, _, info = env.step(batch)
        assert info["verifier_timeouts"] == 4  # counted over the episode
        env.reset(seed=0)
        _, _, _, _, info = env.step(batch)
        assert info["verifier_timeouts"] == 2 and math.timeouts == 6  # the count restarts with the episode
        assert math.rejected == 0
    finally:
        math.close()
