"""LILO (learnability selection): protocol properties on the simulated world (hypothesis over seeds and run
lengths), and its own invariants: every probe rollout is charged, and the batch has the largest p̂(1 − p̂) among
the probed candidates (ties allowed)."""

from __future__ import annotations

import numpy as np
import pytest
from _sim_agents import B, K, N, assert_valid, run, same_state, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_env.agents.learnability import Learnability
from gps_env.spec import AgentSpec

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def env():
    return world()


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 25))
def test_valid_and_seeded_batches(env, seed, steps):
    first = run(env, Learnability(env, seed=seed), steps, seed=seed % 7)
    second = run(env, Learnability(env, seed=seed), steps, seed=seed % 7)
    for a, b in zip(first, second):
        assert_valid(a)
        assert np.array_equal(a, b)


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(0, 25))
def test_acting_twice_on_one_observation_changes_nothing(env, seed, steps):
    agent = Learnability(env, seed=seed)
    obs, _ = env.reset(seed=seed % 1000)
    for _ in range(steps):
        obs, *_ = env.step(agent.act(obs))
    first = agent.act(obs)
    state, spent = agent.state_dict(), env.ledger.rollouts["probe"]
    again = agent.act(obs)
    assert same_state(state, agent.state_dict())
    assert np.array_equal(first, again)
    assert env.ledger.rollouts["probe"] == spent  # nothing probed twice


@FAST
@given(seed=st.integers(0, 2**32), split=st.integers(0, 25))
def test_state_dict_round_trip_gives_the_same_batches(env, seed, split):
    agent = Learnability(env, seed=seed)
    obs, _ = env.reset(seed=0)
    for _ in range(split):
        obs, *_ = env.step(agent.act(obs))
    clone = Learnability(env, seed=seed + 1)
    clone.load_state_dict(agent.state_dict())
    for _ in range(8):
        a = agent.act(obs)
        b = clone.act(obs)  # same candidates: the env answers from its probe cache
        assert np.array_equal(a, b)
        obs, *_ = env.step(a)


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 30),
       candidates=st.one_of(st.floats(1.0, 30.0), st.integers(1, 30)))
def test_probes_are_charged_and_the_batch_is_the_most_learnable(seed, steps, candidates):
    env = world()
    probed: dict[int, np.ndarray] = {}

    def probe(ids):
        rewards = env.probe(ids)
        probed.update((int(i), r) for i, r in zip(ids, rewards))
        return rewards

    agent = Learnability(AgentSpec(N, B, K, probe=probe), seed=seed, candidates=candidates)
    obs, _ = env.reset(seed=seed % 5)
    size = min(N, max(B, round(candidates * B)))
    for _ in range(steps):
        probed.clear()
        before = dict(env.ledger.rollouts)
        batch = np.asarray(agent.act(obs))
        assert_valid(batch)
        assert len(probed) == size
        assert env.ledger.rollouts["probe"] - before["probe"] == K * size  # every probe rollout charged
        assert set(batch.tolist()) <= set(probed)
        p = {i: r.mean() for i, r in probed.items()}
        score = {i: q * (1 - q) for i, q in p.items()}
        chosen = min(score[int(i)] for i in batch)
        left_out = [score[i] for i in probed if i not in set(batch.tolist())]
        assert all(s <= chosen + 1e-12 for s in left_out)
        obs, _, _, _, info = env.step(batch)
        assert info["reused_probes"] == B  # trained on its probe rollouts: nothing charged twice
        assert env.ledger.rollouts["train"] == before["train"]


@pytest.mark.parametrize("kwargs, name", [
    ({"candidates": 0.5}, "candidates"), ({"candidates": 0}, "candidates"), ({"candidates": -2}, "candidates"),
    ({"candidates": float("nan")}, "candidates"), ({"candidates": float("inf")}, "candidates"),
    ({"candidates": True}, "candidates"), ({"candidates": "4"}, "candidates"), ({"seed": -1}, "seed"),
])
def test_bad_arguments_raise(env, kwargs, name):
    with pytest.raises(ValueError, match=name):
        Learnability(env, **kwargs)


@pytest.mark.parametrize("key, value", [
    ("acted_step", -2), ("acted_step", 1.0), ("acted_batch", list(range(B - 1))), ("acted_batch", [0] * B),
    ("acted_batch", [N] + list(range(B - 1))), ("learnt_step", -1), ("rng", {"bit_generator": "MT19937"}),
])
def test_bad_states_are_refused_before_anything_changes(env, key, value):
    agent = Learnability(env, seed=0)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(agent.act(obs))
    agent.act(obs)
    before = agent.state_dict()
    with pytest.raises(ValueError, match=key):
        agent.load_state_dict({**before, key: value})
    assert same_state(before, agent.state_dict())
    with pytest.raises(ValueError, match="lacks"):
        agent.load_state_dict({k: v for k, v in before.items() if k != key})
