"""Prompt Replay: protocol properties on the simulated world, and its own invariants over random reward sequences
(hypothesis): no replay inside the cooldown or past the reuse cap, B distinct ids every step, no prompt at its cap
in the buffer."""

from __future__ import annotations

import numpy as np
import pytest
from _sim_agents import B, N, assert_valid, run, same_state, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_env.agents.prompt_replay import PromptReplay
from gps_env.spec import AgentSpec

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def env():
    return world()


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 30))
def test_valid_and_seeded_batches(env, seed, steps):
    first = run(env, PromptReplay(env, seed=seed), steps)
    second = run(env, PromptReplay(env, seed=seed), steps)
    for a, b in zip(first, second):
        assert_valid(a)
        assert np.array_equal(a, b)


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(0, 25))
def test_acting_twice_on_one_observation_changes_nothing(env, seed, steps):
    agent = PromptReplay(env, seed=seed, cooldown=2)
    obs, _ = env.reset(seed=seed % 1000)
    for _ in range(steps):
        obs, *_ = env.step(agent.act(obs))
    first = agent.act(obs)
    state = agent.state_dict()
    again = agent.act(obs)
    assert same_state(state, agent.state_dict())
    assert np.array_equal(first["prompts"], again["prompts"])


@FAST
@given(seed=st.integers(0, 2**32), split=st.integers(0, 25))
def test_state_dict_round_trip_gives_the_same_batches(env, seed, split):
    agent = PromptReplay(env, seed=seed, cooldown=2)
    obs, _ = env.reset(seed=0)
    for _ in range(split):
        obs, *_ = env.step(agent.act(obs))
    clone = PromptReplay(env, seed=seed + 1, cooldown=2)
    clone.load_state_dict(agent.state_dict())
    for _ in range(10):
        a, b = agent.act(obs), clone.act(obs)
        assert np.array_equal(a["prompts"], b["prompts"])
        assert np.array_equal(a["predictions"], b["predictions"])
        obs, *_ = env.step(a)


def test_replays_happen_on_the_simulated_world(env):
    agent = PromptReplay(env, seed=0)
    obs, _ = env.reset(seed=0)
    replays = 0
    for step in range(40):
        action = agent.act(obs)
        if step < agent.cooldown:
            assert agent.last_replayed.size == 0  # nothing is out of its cooldown yet
        replays += agent.last_replayed.size
        assert agent.last_replayed.size <= agent.replay_budget == B // 2
        assert np.array_equal(action["prompts"][: agent.last_replayed.size], agent.last_replayed)
        obs, *_ = env.step(action)
    assert replays > 0


@pytest.mark.parametrize("kwargs, name", [
    ({"replay_fraction": -0.1}, "replay_fraction"), ({"replay_fraction": 1.5}, "replay_fraction"),
    ({"replay_fraction": float("nan")}, "replay_fraction"), ({"cooldown": 0}, "cooldown"),
    ({"cooldown": -3}, "cooldown"), ({"cooldown": 2.0}, "cooldown"), ({"max_reuse": 0}, "max_reuse"),
    ({"max_reuse": True}, "max_reuse"), ({"window": (0.7, 0.2)}, "window"), ({"window": (0.2, 1.2)}, "window"),
    ({"window": 0.5}, "window"), ({"seed": -1}, "seed"),
])
def test_bad_arguments_raise(env, kwargs, name):
    with pytest.raises(ValueError, match=name):
        PromptReplay(env, **kwargs)


def test_bad_states_are_refused_before_anything_changes(env):
    agent = PromptReplay(env, seed=0, max_reuse=3)
    run(env, agent, 12)
    good = agent.state_dict()
    bad = [
        ("queue", np.array([1, 1])), ("queue", np.array([N])), ("pass_rate", np.full(N, 1.5)),
        ("pass_rate", np.zeros(N - 1)), ("last_step", np.full(N, -2)), ("reuse", np.full(N, 4)),
        ("reuse", np.zeros(N)), ("pending", np.arange(B)),
    ]
    for key, value in bad:
        with pytest.raises(ValueError, match=key):
            agent.load_state_dict({**good, key: value})
        assert same_state(good, agent.state_dict())
    with pytest.raises(ValueError, match="lacks"):
        agent.load_state_dict({k: v for k, v in good.items() if k != "reuse"})


def test_new_episode_forgets(env):
    agent = PromptReplay(env, seed=0)
    run(env, agent, 10)
    obs, _ = env.reset(seed=1)
    agent.act(obs)
    assert np.all(agent.last_step == -1) and np.all(agent.reuse == 0)


# -- the method's invariants over random reward sequences -----------------------------------------------------------


def observation(step: int, batch: np.ndarray, rewards: np.ndarray, n: int) -> dict[str, np.ndarray]:
    b = batch.size
    return {
        "last_batch": batch.astype(np.int64),
        "last_rewards": rewards.astype(np.float32),
        "times_selected": np.zeros(n, np.int64),
        "step": np.array([step], np.int64),
        "rollouts_spent": np.array([step * b * rewards.shape[1]], np.int64),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    seed=st.integers(0, 2**32),
    n=st.integers(8, 40),
    b=st.integers(2, 8),
    k=st.integers(1, 8),
    cooldown=st.integers(1, 6),
    max_reuse=st.integers(1, 4),
    fraction=st.floats(0.0, 1.0),
    steps=st.integers(1, 40),
)
def test_replay_respects_cooldown_cap_window_and_distinctness(data, seed, n, b, k, cooldown, max_reuse, fraction,
                                                              steps):
    b = min(b, n)
    lo = data.draw(st.floats(0.0, 1.0))
    hi = data.draw(st.floats(lo, 1.0))
    spec = AgentSpec(pool_size=n, batch_size=b, k=k)
    agent = PromptReplay(spec, seed=seed, replay_fraction=fraction, cooldown=cooldown, max_reuse=max_reuse,
                         window=(lo, hi))
    last_used: dict[int, int] = {}   # the test's own record: step of each prompt's last training
    last_pass: dict[int, float] = {}
    replays: dict[int, int] = {}
    obs = observation(0, np.arange(b), np.zeros((b, k)), n)
    for step in range(steps):
        action = agent.act(obs)
        batch = action["prompts"]
        assert_valid(batch, n, b)
        replayed = agent.last_replayed
        assert replayed.size <= min(int(np.floor(b * fraction)), b // 2)
        assert np.isin(replayed, batch).all()
        for i in replayed.tolist():
            assert step - last_used[i] >= cooldown          # never inside its cooldown
            assert replays.get(i, 0) < max_reuse            # never past its cap
            assert last_pass[i] > 0 and lo <= last_pass[i] <= hi
            replays[i] = replays.get(i, 0) + 1
        # rollouts of the batch: random per-prompt success counts (hypothesis-chosen)
        counts = np.array(data.draw(st.lists(st.integers(0, k), min_size=b, max_size=b)))
        rewards = (np.arange(k)[None, :] < counts[:, None]).astype(np.float64)
        for i, c in zip(batch.tolist(), counts.tolist()):
            last_used[i], last_pass[i] = step, c / k
        obs = observation(step + 1, batch, rewards, n)
        agent.act(obs)  # observe (the next batch is chosen again at the top of the loop: same answer)
        buffer = agent.buffer
        assert np.all(agent.reuse[buffer] < max_reuse)  # the buffer never holds a prompt at its cap
        assert all(replays.get(i, 0) < max_reuse for i in buffer.tolist())
        assert np.array_equal(agent.reuse, np.array([replays.get(i, 0) for i in range(n)]))
