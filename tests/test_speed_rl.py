"""SPEED-RL: protocol properties on the simulated world (hypothesis over seeds and run lengths), and its own
invariants: every screening rollout is charged (k per newly screened prompt), and the trained prompts come from
mixed screens (this step's, or queued from an earlier one) whenever enough were found."""

from __future__ import annotations

import numpy as np
import pytest
from _sim_agents import B, K, N, assert_valid, run, same_state, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_env.agents.speed_rl import SpeedRL
from gps_env.spec import AgentSpec

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def env():
    return world()


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 25), carry=st.booleans())
def test_valid_and_seeded_batches(env, seed, steps, carry):
    first = run(env, SpeedRL(env, seed=seed, carry_over=carry), steps, seed=seed % 7)
    second = run(env, SpeedRL(env, seed=seed, carry_over=carry), steps, seed=seed % 7)
    for a, b in zip(first, second):
        assert_valid(a)
        assert np.array_equal(a, b)


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(0, 25))
def test_acting_twice_on_one_observation_changes_nothing(env, seed, steps):
    agent = SpeedRL(env, seed=seed)
    obs, _ = env.reset(seed=seed % 1000)
    for _ in range(steps):
        obs, *_ = env.step(agent.act(obs))
    first = agent.act(obs)
    state, spent = agent.state_dict(), env.ledger.rollouts["probe"]
    again = agent.act(obs)
    assert same_state(state, agent.state_dict())
    assert np.array_equal(first, again)
    assert env.ledger.rollouts["probe"] == spent  # nothing screened twice


@FAST
@given(seed=st.integers(0, 2**32), split=st.integers(0, 25))
def test_state_dict_round_trip_gives_the_same_batches(env, seed, split):
    agent = SpeedRL(env, seed=seed)
    obs, _ = env.reset(seed=0)
    for _ in range(split):
        obs, *_ = env.step(agent.act(obs))
    clone = SpeedRL(env, seed=seed + 1)
    clone.load_state_dict(agent.state_dict())
    assert same_state(agent.state_dict(), clone.state_dict())
    for _ in range(8):
        # Both act on the same world state: the clone's screens are the env's cached probes of the agent's.
        a = agent.act(obs)
        b = clone.act(obs)
        assert np.array_equal(a, b)
        assert np.array_equal(agent.queue, clone.queue)
        obs, *_ = env.step(a)


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 30), g=st.integers(B, 40), carry=st.booleans(),
       max_rounds=st.integers(0, 3))
def test_screens_are_charged_and_batches_come_from_mixed_screens(seed, steps, g, carry, max_rounds):
    env = world()
    screens: dict[int, np.ndarray] = {}

    def probe(ids):
        rewards = env.probe(ids)
        screens.update((int(i), r) for i, r in zip(ids, rewards))
        return rewards

    spec = AgentSpec(N, B, K, probe=probe)
    agent = SpeedRL(spec, seed=seed, gen_batch_size=g, max_rounds=max_rounds, carry_over=carry)
    obs, _ = env.reset(seed=seed % 5)
    queued_mixed: set[int] = set()  # prompts whose (earlier) screen was mixed and that wait in the queue
    for _ in range(steps):
        screens.clear()
        before = env.ledger.rollouts["probe"]
        queue_before = {int(i) for i in agent.queue}
        assert queue_before <= queued_mixed
        batch = np.asarray(agent.act(obs))
        assert_valid(batch)
        # Every screening rollout is charged: k per newly screened prompt, and screens are new prompts.
        assert env.ledger.rollouts["probe"] - before == K * len(agent.last_screened) == K * len(screens)
        assert set(screens) == {int(i) for i in agent.last_screened}
        assert not set(screens) & queue_before
        mixed_now = {i for i, r in screens.items() if 0 < r.sum() < K}
        eligible = queue_before | mixed_now
        if len(eligible) >= B:
            assert not agent.last_cap_hit
            assert set(batch.tolist()) <= eligible
            # FIFO: the queue opens the batch.
            assert agent.last_from_queue == min(B, len(queue_before))
        else:
            assert agent.last_cap_hit
            assert eligible <= set(batch.tolist())  # every mixed prompt is trained
        if max_rounds:
            assert agent.last_rounds <= max_rounds
        left = {int(i) for i in agent.queue}
        assert left == (eligible - set(batch.tolist()) if carry else queue_before - set(batch.tolist()))
        if not carry:
            assert not left
        queued_mixed = left
        obs, *_ = env.step(batch)


def test_queued_prompts_are_trained_on_fresh_rollouts_and_screens_reused():
    env = world()
    agent = SpeedRL(env, seed=3)
    obs, _ = env.reset(seed=0)
    carried = 0
    for _ in range(15):
        train_before = env.ledger.rollouts["train"]
        batch = agent.act(obs)
        from_queue = agent.last_from_queue
        obs, _, _, _, info = env.step(batch)
        # Fresh screens of the batch are reused; queued prompts (screened before the last update) are sampled anew.
        assert info["reused_probes"] == B - from_queue
        assert env.ledger.rollouts["train"] - train_before == K * from_queue
        carried += from_queue
    assert carried > 0  # the default g = 4B leaves surplus qualified prompts to carry over


def test_new_episode_empties_the_queue():
    env = world()
    agent = SpeedRL(env, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(agent.act(obs))
    assert agent.queue.size > 0
    obs, _ = env.reset(seed=1)
    agent.act(obs)
    assert agent.cap_hits <= 1 and agent.last_from_queue == 0


@pytest.mark.parametrize("kwargs, name", [
    ({"gen_batch_size": B - 1}, "gen_batch_size"), ({"gen_batch_size": N + 1}, "gen_batch_size"),
    ({"gen_batch_size": 16.0}, "gen_batch_size"), ({"max_rounds": -1}, "max_rounds"),
    ({"max_rounds": 1.5}, "max_rounds"), ({"max_rounds": True}, "max_rounds"), ({"carry_over": 1}, "carry_over"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments_raise(env, kwargs, name):
    with pytest.raises(ValueError, match=name):
        SpeedRL(env, **kwargs)


@pytest.mark.parametrize("key, value", [
    ("queue", [1, 1]), ("queue", [N]), ("queue", [0.5]), ("cap_hits", -1), ("acted_step", -2),
    ("acted_batch", list(range(B - 1))), ("acted_batch", [0] * B), ("rng", {"bit_generator": "MT19937"}),
])
def test_bad_states_are_refused_before_anything_changes(env, key, value):
    agent = SpeedRL(env, seed=0)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(agent.act(obs))
    agent.act(obs)
    before = agent.state_dict()
    with pytest.raises(ValueError, match=key):
        agent.load_state_dict({**before, key: value})
    assert same_state(before, agent.state_dict())
    with pytest.raises(ValueError, match="lacks"):
        agent.load_state_dict({k: v for k, v in before.items() if k != key})
