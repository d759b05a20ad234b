"""DPS (per-prompt three-state HMM): protocol properties on the simulated world, and the HMM's invariants."""

from __future__ import annotations

import numpy as np
import pytest
from _sim_agents import B, K, N, prompts_of, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_env.agents.dps import DPS, PARTIAL, SOLVED, UNSOLVED

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LEARNT = ("learnt_step", "counts", "belief", "previous")




def group(outcome: int, rng: np.random.Generator) -> np.ndarray:
    """k rewards whose observed state is ``outcome``."""
    if outcome == UNSOLVED:
        return np.zeros(K)
    if outcome == SOLVED:
        return np.ones(K)
    r = (rng.random(K) < 0.5).astype(np.float64)
    r[0], r[1] = 0.0, 1.0
    return r


def obs_of(batch: np.ndarray, rewards: np.ndarray, step: int) -> dict[str, np.ndarray]:
    return {"last_batch": np.asarray(batch, np.int64), "last_rewards": np.asarray(rewards, np.float32),
            "times_selected": np.zeros(N, np.int64), "step": np.array([step], np.int64)}


def random_obs(rng: np.random.Generator, step: int) -> dict[str, np.ndarray]:
    batch = rng.choice(N, size=B, replace=False)
    return obs_of(batch, np.stack([group(int(o), rng) for o in rng.integers(0, 3, size=B)]), step)




def run(seed: int, steps: int, **kwargs) -> list[np.ndarray]:
    env = world(max_steps=steps)
    obs, _ = env.reset(seed=0)
    agent = DPS(env, seed=seed, **kwargs)
    batches = []
    for _ in range(steps):
        action = agent.act(obs)
        batch = prompts_of(action)
        assert batch.shape == (B,) and batch.dtype == np.int64
        assert np.unique(batch).size == B and batch.min() >= 0 and batch.max() < N
        predictions = np.asarray(action["predictions"])
        assert predictions.shape == (B,) and np.all((predictions >= 0) & (predictions <= 1))
        batches.append(batch)
        obs, *_ = env.step(action)
    return batches


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 12), decay=st.sampled_from([0.5, 0.7, 1.0]))
def test_batches_are_valid_and_seeded(seed, steps, decay):
    first, second = run(seed, steps, decay=decay), run(seed, steps, decay=decay)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


@FAST
@given(seed=st.integers(0, 2**32))
def test_same_observation_twice_does_not_learn_twice(seed):
    agent = DPS(world(), seed=seed)
    obs = random_obs(np.random.default_rng(seed), step=1)
    agent.act(obs)
    learnt = agent.state_dict()
    agent.act(obs)
    again = agent.state_dict()
    for key in LEARNT:
        assert np.array_equal(learnt[key], again[key])


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(0, 6))
def test_state_dict_round_trips_exactly(seed, steps):
    rng = np.random.default_rng(seed)
    env = world()
    agent, clone = DPS(env, seed=seed), DPS(env, seed=seed + 1)
    for step in range(1, steps + 1):
        agent.act(random_obs(rng, step))
    clone.load_state_dict(agent.state_dict())
    for step in range(steps + 1, steps + 4):
        obs = random_obs(rng, step)
        a, b = agent.act(obs), clone.act(obs)
        assert np.array_equal(a["prompts"], b["prompts"]) and np.array_equal(a["predictions"], b["predictions"])


@pytest.mark.parametrize("kwargs, name", [
    ({"decay": 0.0}, "decay"), ({"decay": 1.5}, "decay"), ({"decay": float("nan")}, "decay"),
    ({"decay": True}, "decay"), ({"prior": 0.0}, "prior"), ({"prior": -1.0}, "prior"),
    ({"prior": float("inf")}, "prior"), ({"ratio": 0.5}, "ratio"), ({"ratio": "8"}, "ratio"),
    ({"seed": -1}, "seed"),
])
def test_bad_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DPS(world(), **kwargs)


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 30), decay=st.floats(0.01, 1.0),
       prior=st.floats(0.01, 100.0))
def test_state_probabilities_sum_to_one(seed, steps, decay, prior):
    rng = np.random.default_rng(seed)
    agent = DPS(world(), seed=seed, decay=decay, prior=prior)
    for step in range(1, steps + 1):
        agent.act(random_obs(rng, step))
        for belief in (agent.belief, agent.previous):
            assert np.all(belief >= 0) and np.max(np.abs(belief.sum(axis=1) - 1.0)) <= 1e-9
        assert np.all(agent.counts > 0)


@FAST
@given(seed=st.integers(0, 2**32), idle=st.integers(0, 5), decay=st.floats(0.01, 1.0), prior=st.floats(0.01, 100.0))
def test_a_fresh_prompt_observed_partial_rises(seed, idle, decay, prior):
    """A never-observed prompt (left idle for a while, others observed) sits at 1/3; one partial lifts it."""
    rng = np.random.default_rng(seed)
    agent = DPS(world(), seed=seed, decay=decay, prior=prior)
    others = np.arange(1, N)
    for step in range(1, idle + 1):
        batch = rng.choice(others, size=B, replace=False)
        agent.act(obs_of(batch, np.stack([group(int(o), rng) for o in rng.integers(0, 3, size=B)]), step))
    before = agent.belief[0, PARTIAL]
    assert before == pytest.approx(1 / 3)
    batch = np.concatenate([[0], rng.choice(others, size=B - 1, replace=False)])
    agent.act(obs_of(batch, np.stack([group(PARTIAL, rng) for _ in range(B)]), idle + 1))
    assert agent.belief[0, PARTIAL] > before


@FAST
@given(seed=st.integers(0, 2**32), history=st.lists(st.integers(-1, 2), max_size=12),
       decay=st.floats(0.01, 1.0), prior=st.floats(0.01, 100.0))
def test_partial_again_raises_partial(seed, history, decay, prior):
    """After any history (-1: prompt 0 not observed that step), observing partial twice in a row: the second
    raises P(partial) above what the first left."""
    rng = np.random.default_rng(seed)
    agent = DPS(world(), seed=seed, decay=decay, prior=prior)
    others = np.arange(1, N)
    outcomes = [*history, PARTIAL, PARTIAL]
    after = []
    for step, outcome in enumerate(outcomes, start=1):
        if outcome < 0:
            batch = rng.choice(others, size=B, replace=False)
            rewards = np.stack([group(int(o), rng) for o in rng.integers(0, 3, size=B)])
        else:
            batch = np.concatenate([[0], rng.choice(others, size=B - 1, replace=False)])
            rewards = np.stack([group(outcome, rng)] + [group(int(o), rng) for o in rng.integers(0, 3, size=B - 1)])
        agent.act(obs_of(batch, rewards, step))
        after.append(agent.belief[0, PARTIAL])
    assert after[-1] > after[-2] - 1e-12


def test_an_alternating_prompt_predicts_the_alternation():
    """The documented exception: after solved, partial, solved, ... the HMM expects "solved" after a partial, so
    observing partial lowers P(partial). DPS learns transitions, not a level."""
    rng = np.random.default_rng(0)
    agent = DPS(world(), seed=0, decay=1.0)
    others = np.arange(1, N)
    for step in range(1, 21):
        outcome = SOLVED if step % 2 else PARTIAL
        batch = np.concatenate([[0], rng.choice(others, size=B - 1, replace=False)])
        before = agent.belief[0, PARTIAL]
        agent.act(obs_of(batch, np.stack([group(outcome, rng)] * B), step))
    assert outcome == PARTIAL and agent.belief[0, PARTIAL] < before
    assert agent.belief[0, SOLVED] > 0.5


def test_outcomes_binarise_at_one():
    agent = DPS(world())
    rewards = np.array([[0.0] * K, [0.9] * K, [1.0] * K, [1.0] + [0.0] * (K - 1)])
    assert agent.outcomes(rewards).tolist() == [UNSOLVED, UNSOLVED, SOLVED, PARTIAL]


@pytest.mark.parametrize("key, value", [
    ("counts", np.zeros((N, 3, 3))), ("counts", np.ones((N, 3))), ("belief", np.full((N, 3), 0.5)),
    ("previous", np.full((N, 3), -1.0)), ("belief", "x"), ("learnt_step", -1),
])
def test_bad_states_are_refused_before_anything_changes(key, value):
    agent = DPS(world(), seed=0)
    agent.act(random_obs(np.random.default_rng(0), step=1))
    before = agent.state_dict()
    with pytest.raises(ValueError, match=key):
        agent.load_state_dict({**before, key: value})
    after = agent.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in LEARNT)
