"""Reasoning Gym task families: generation, binary scoring bounded in time and length, and bad input."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("reasoning_gym")

from gps_env.tasks.reasoning_gym import (  # noqa: E402
    FAMILIES,
    V1_LEVEL_WEIGHTS,
    ReasoningGymTask,
    available_families,
    reasoning_gym_mix,
    reasoning_gym_v1_mix,
)


@pytest.fixture(scope="module")
def mix():
    return reasoning_gym_mix()


@pytest.fixture(scope="module")
def problems(mix):
    return mix.sample_unique(600, np.random.default_rng(0))


def test_default_mix_has_at_least_eight_natural_language_families(mix, problems):
    assert len(mix.tasks) >= 8 and set(mix.by_name) == set(FAMILIES)
    assert {p.task for p in problems} == set(FAMILIES)
    # natural language: words, not bare expressions
    assert np.mean([sum(c.isalpha() for c in p.prompt) > 10 for p in problems]) > 0.8


def test_reference_answers_score_one_and_wrong_answers_zero(mix, problems):
    for p in problems:
        task = mix.by_name[p.task]
        assert task.verify(p.answer, p) == 1.0, p
        assert task.verify(f"{p.answer} or 7", p) == 0.0, p
        assert task.verify("", p) == 0.0


def test_partial_credit_is_not_reward():
    """Reasoning Gym's default scorer gives len(ref)/len(out) to a superstring ("12" scores 0.5 against "1"),
    and prime_factorization gives 0.5 to the right product in the wrong form: both are 0 here."""
    gcd = ReasoningGymTask("gcd")
    p = next(p for p in (gcd.sample(np.random.default_rng(s)) for s in range(200)) if p.answer == "1")
    assert gcd._datasets[p.meta["level"]].score_answer("12", {"answer": "1", "metadata": {}}) == 0.5
    assert gcd.verify("12", p) == 0.0
    pf = ReasoningGymTask("prime_factorization")
    p = next(p for p in (pf.sample(np.random.default_rng(s)) for s in range(500)) if " × " in p.answer)
    first, second, *rest = (int(f) for f in p.answer.split(" × "))
    merged = " × ".join(map(str, [first * second, *rest]))  # right product, not a prime factorization
    entry = {"answer": p.answer, "metadata": p.meta["rg_metadata"]}
    assert pf._datasets[p.meta["level"]].score_answer(merged, entry) == 0.5
    assert pf.verify(merged, p) == 0.0


def test_same_seed_same_pool_and_cells_do_not_share_numbers(mix):
    a, _ = mix.split(300, 50, seed=3)
    b, _ = reasoning_gym_mix().split(300, 50, seed=3)
    assert [(p.task, p.prompt, p.answer) for p in a] == [(p.task, p.prompt, p.answer) for p in b]
    c, _ = mix.split(300, 50, seed=4)
    assert [p.prompt for p in a] != [p.prompt for p in c]
    task = ReasoningGymTask("products")
    assert task._datasets[0].seed != task._datasets[1].seed != task._datasets[2].seed


def test_heldout_disjoint_from_pool(mix):
    pool, held = mix.split(500, 200, seed=0)
    assert not {p.uid for p in pool} & {p.uid for p in held}


def test_v1_draws_levels_by_its_weights_and_v0_equally():
    rng = np.random.default_rng(0)
    for mix, weights in ((reasoning_gym_v1_mix(), V1_LEVEL_WEIGHTS), (reasoning_gym_mix(), (1 / 3,) * 3)):
        assert {t.name for t in mix.tasks} == set(FAMILIES)
        levels = np.array([mix.sample(rng).meta["level"] for _ in range(3000)])
        shares = np.bincount(levels, minlength=3) / levels.size
        assert np.allclose(shares, weights, atol=0.04), shares


def test_the_gymnasium_ids_name_their_mix_and_share_the_shipped_warm_start():
    import gymnasium as gym

    import gps_env  # noqa: F401  (registers the ids)
    from gps_env.policy import REASONING_GYM_POLICY, default_policy, mixes

    for version, mix in (("v0", "reasoning_gym"), ("v1", "reasoning_gym_v1")):
        spec = gym.spec(f"gps_env/ReasoningGym-{version}")
        assert spec.kwargs == {"task_mix": mix, "pool_size": 20000, "heldout_size": 500}
        assert mix in mixes() and default_policy(mix) == REASONING_GYM_POLICY


def test_levels_order_difficulty_in_the_text():
    task = ReasoningGymTask("products")
    rng = np.random.default_rng(0)
    by_level: dict[int, list[int]] = {}
    for _ in range(300):
        p = task.sample(rng)
        by_level.setdefault(p.meta["level"], []).append(len(p.answer))
    assert np.mean(by_level[0]) < np.mean(by_level[1]) < np.mean(by_level[2])


def test_unknown_family_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown Reasoning Gym family 'gcdd'.*valid:.*gcd"):
        ReasoningGymTask("gcdd")
    assert "gcd" in available_families() and len(available_families()) > 50


def test_unknown_or_rejected_knob_names_it():
    with pytest.raises(ValueError, match=r"family 'gcd' level 0: unknown knob\(s\) max_val; valid: .*max_value"):
        ReasoningGymTask("gcd", levels=[{"max_val": 10}])
    with pytest.raises(ValueError, match=r"family 'gcd' level 1: Reasoning Gym rejected the knobs"):
        ReasoningGymTask("gcd", levels=[{"max_value": 10}, {"min_value": 50, "max_value": 10}])
    with pytest.raises(ValueError, match="no default levels"):
        ReasoningGymTask("leg_counting")
    with pytest.raises(ValueError, match="level_weights"):
        ReasoningGymTask("gcd", level_weights=[1, -1, 0])
    with pytest.raises(ValueError, match="levels given for families not in the mix: lcm"):
        reasoning_gym_mix(["gcd"], levels={"lcm": [{"max_value": 5}]})


def test_a_scorer_that_raises_scores_zero(monkeypatch):
    task = ReasoningGymTask("gcd")
    p = task.sample(np.random.default_rng(0))

    def boom(answer, entry):
        raise KeyError("metadata")

    monkeypatch.setattr(task._datasets[p.meta["level"]], "score_answer", boom)
    assert task.verify(p.answer, p) == 0.0


def test_a_scorer_that_runs_long_scores_zero_within_its_bound(monkeypatch):
    task = ReasoningGymTask("gcd", time_limit=0.05)
    p = task.sample(np.random.default_rng(0))

    def slow(answer, entry):
        while True:  # a scorer stuck on adversarial text
            time.sleep(0.001)

    monkeypatch.setattr(task._datasets[p.meta["level"]], "score_answer", slow)
    start = time.perf_counter()
    assert task.verify(p.answer, p) == 0.0
    assert time.perf_counter() - start < 1.0
    assert task.timeouts == 1


def test_overlong_completion_scores_zero_unread(monkeypatch):
    task = ReasoningGymTask("gcd")
    p = task.sample(np.random.default_rng(0))
    monkeypatch.setattr(task._datasets[p.meta["level"]], "score_answer", lambda *a: pytest.fail("was read"))
    assert task.verify(" " * 10 + "x" * task.max_completion_chars, p) == 0.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60), index=st.integers(0, 599))
def test_random_text_scores_zero_or_one_quickly(problems, mix, text, index):
    p = problems[index]
    start = time.perf_counter()
    reward = mix.by_name[p.task].verify(text, p)
    assert reward in (0.0, 1.0)
    assert time.perf_counter() - start < 0.6
    if reward == 1.0:  # only a form of the reference answer can score
        assert any(ch.isdigit() for ch in text)


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_check_env_passes_on_both_versions(version):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import gps_env  # noqa: F401  (registers the ids)

    env = gym.make(f"gps_env/ReasoningGym-{version}", pool_size=64, heldout_size=20, batch_size=8,
                   rollouts_per_prompt=2, engine="transformers", progress=False)
    try:
        check_env(env.unwrapped)
    finally:
        env.close()
