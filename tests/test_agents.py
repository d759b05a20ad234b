"""Selector agents (Uniform) and the SelectorAgent protocol."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
from conftest import ENV_DEFAULTS

from gps_env.agents import Uniform

B, N = ENV_DEFAULTS["batch_size"], ENV_DEFAULTS["pool_size"]


@pytest.fixture
def env_obs(make_env):
    env = make_env(eval_every=0)
    obs, _ = env.reset(seed=0)
    return env, obs


def test_act_returns_valid_distinct_indices(env_obs):
    env, obs = env_obs
    agent = Uniform(env, seed=0)
    seen = set()
    for _ in range(30):
        action = agent.act(obs)
        assert isinstance(action, np.ndarray) and action.dtype == np.int64 and action.shape == (B,)
        assert len(set(action.tolist())) == B and action.min() >= 0 and action.max() < N
        assert env.action_space.contains(action)
        seen.update(action.tolist())
    assert len(seen) > B  # it does not always pick the same batch


def test_same_seed_same_actions_different_seed_differs(env_obs):
    env, obs = env_obs
    a, b, c = Uniform(env, seed=3), Uniform(env, seed=3), Uniform(env, seed=4)
    first = [a.act(obs).tolist() for _ in range(5)]
    assert first == [b.act(obs).tolist() for _ in range(5)]
    assert first != [c.act(obs).tolist() for _ in range(5)]


def test_agents_drive_an_episode_identically(make_env):
    def episode():
        env = make_env(max_steps=3, eval_every=0)
        agent = Uniform(env, seed=1)
        obs, _ = env.reset(seed=0)
        actions, truncated = [], False
        while not truncated:
            actions.append(agent.act(obs).tolist())
            obs, _, _, truncated, _ = env.step(actions[-1])
        return actions, agent.state_dict()["learnt_step"]

    first, learnt = episode()
    assert len(first) == 3 and learnt == 2  # learnt from the observations of steps 1 and 2
    assert episode() == (first, learnt)


@pytest.mark.parametrize("epochs", [False, True])
def test_state_dict_round_trip(env_obs, epochs):
    env, obs = env_obs
    agent = Uniform(env, seed=0, epochs=epochs)
    agent.act(obs)
    state = copy.deepcopy(agent.state_dict())
    expected = [agent.act(obs).tolist() for _ in range(3)]
    agent.load_state_dict(state)
    assert [agent.act(obs).tolist() for _ in range(3)] == expected
    other = Uniform(env, seed=123, epochs=epochs)
    other.load_state_dict(state)
    assert [other.act(obs).tolist() for _ in range(3)] == expected


def test_state_dict_is_a_snapshot(env_obs):
    env, obs = env_obs
    agent = Uniform(env, seed=0, epochs=True)
    state = agent.state_dict()
    saved = copy.deepcopy(state)
    agent.act(obs)
    agent.act(obs)
    assert np.array_equal(state["queue"], saved["queue"]) and state["rng"] == saved["rng"]


def test_predict_returns_action_and_state(env_obs):
    env, obs = env_obs
    agent, twin = Uniform(env, seed=0), Uniform(env, seed=0)
    action, state = agent.predict(obs)
    assert state is None and np.array_equal(action, twin.act(obs))
    action, state = agent.predict(obs, state="hidden", episode_start=np.array([True]), deterministic=True)
    assert state == "hidden" and env.action_space.contains(action)


def test_agent_accepts_wrapped_env(tiny_policy):
    env = gym.make("gps_env/PromptSelection-v0", policy=tiny_policy, **{**ENV_DEFAULTS, "eval_every": 0})
    try:
        agent = Uniform(env, seed=0)
        assert agent.pool_size == N and agent.batch_size == B and agent.spec.k == env.unwrapped.k
        assert agent.spec.can_probe and agent.spec.embeddings.shape[0] == N  # read through the wrapper
        obs, _ = env.reset(seed=0)
        env.step(agent.act(obs))
    finally:
        env.close()


def test_learnt_step_follows_episodes(make_env):
    env = make_env(eval_every=0)
    agent = Uniform(env, seed=0)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(agent.act(obs))
    obs, *_ = env.step(agent.act(obs))
    agent.act(obs)
    assert agent.state_dict()["learnt_step"] == 2
    obs, _ = env.reset(seed=0)
    agent.act(obs)
    assert agent.state_dict()["learnt_step"] == 0


def test_epochs_sweep_the_pool(make_env):
    env = make_env(pool_size=10, eval_every=0)
    obs, _ = env.reset(seed=0)
    agent = Uniform(env, seed=0, epochs=True)
    batches = [agent.act(obs).tolist() for _ in range(10)]  # 40 picks = 4 sweeps of a 10-prompt pool
    flat = [i for b in batches for i in b]
    for e in range(4):
        assert sorted(flat[10 * e: 10 * e + 10]) == list(range(10))
    assert all(len(set(b)) == B for b in batches)  # batches straddling two epochs never repeat a prompt


def test_observation_for_another_pool_is_rejected(env_obs):
    env, obs = env_obs
    agent = Uniform(env, seed=0)
    bad = {**obs, "times_selected": np.zeros(N + 1, np.int64)}
    with pytest.raises(ValueError):
        agent.act(bad)


@pytest.mark.parametrize("epochs", ["yes", 1.0, 1, None])
def test_epochs_must_be_a_bool(env_obs, epochs):
    with pytest.raises(ValueError, match="epochs"):
        Uniform(env_obs[0], epochs=epochs)


@pytest.mark.parametrize("seed", [None, True, 2.0, "0", -1, 2**64])
def test_seed_must_be_an_integer_in_range(env_obs, seed):
    with pytest.raises(ValueError, match="seed"):
        Uniform(env_obs[0], seed=seed)


def test_numpy_integer_seed_is_a_seed(env_obs):
    env, obs = env_obs
    assert np.array_equal(Uniform(env, seed=np.int64(4)).act(obs), Uniform(env, seed=4).act(obs))


@pytest.mark.parametrize(("change", "match"), [
    ({"queue": np.array([0, 1, N])}, "queue"),  # an id of a larger pool
    ({"queue": np.array([3, 3])}, "queue"),
    ({"queue": np.zeros((2, 2), np.int64)}, "queue"),
    ({"queue": np.array([0.5])}, "queue"),
    ({"learnt_step": -1}, "learnt_step"),
    ({"learnt_step": 1.5}, "learnt_step"),
    ({"rng": {"bit_generator": "MT19937"}}, "rng"),
    ({"rng": None}, "rng"),
    ({"cap_hits": 0}, "cap_hits"),  # another class's key
])
def test_bad_states_are_refused_and_change_nothing(env_obs, change, match):
    env, obs = env_obs
    agent = Uniform(env, seed=0, epochs=True)
    agent.act(obs)
    before = copy.deepcopy(agent.state_dict())
    with pytest.raises(ValueError, match=match):
        agent.load_state_dict({**before, **change})
    after = agent.state_dict()
    assert after["rng"] == before["rng"] and after["learnt_step"] == before["learnt_step"]
    assert np.array_equal(after["queue"], before["queue"])
    with pytest.raises(ValueError, match="queue"):
        agent.load_state_dict({k: v for k, v in before.items() if k != "queue"})
    assert np.array_equal(agent.state_dict()["queue"], before["queue"])
