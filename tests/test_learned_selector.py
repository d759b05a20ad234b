"""The candidate-window view (SB3's check_env, seeding, bad actions), its features, and a PPO-trained selector
saved as safetensors and run as an agent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gps_env.agents import LearnedSelector
from gps_env.agents.learned import load_policy_file, save_policy
from gps_env.selectors.features import FEATURE_NAMES, candidate_features, top_scored
from gps_env.wrappers import CandidateWindow

sb3 = pytest.importorskip("stable_baselines3")


def test_check_env_and_seeding(make_env):
    from stable_baselines3.common.env_checker import check_env

    env = CandidateWindow(make_env(lenient=True, max_steps=50, eval_every=0), candidates=2)
    check_env(env, warn=True)
    a, _ = env.reset(seed=3)
    first = env.unwrapped.current_step, env._candidates.copy()
    b, _ = env.reset(seed=3)
    assert np.array_equal(a, b) and np.array_equal(first[1], env._candidates)
    assert a.shape == (8, len(FEATURE_NAMES)) and env.observation_space.contains(a)


def test_bad_actions_leave_the_env_untouched(make_env):
    env = CandidateWindow(make_env(lenient=True, eval_every=0), candidates=2)
    with pytest.raises(Exception, match="reset"):
        env.step(np.zeros(8))
    env.reset(seed=0)
    candidates = env._candidates.copy()
    for bad in (np.zeros(7), np.full(8, np.nan)):
        with pytest.raises(ValueError):
            env.step(bad)
    assert env.unwrapped.current_step == 0 and np.array_equal(candidates, env._candidates)
    _, _, _, _, info = env.step(np.linspace(-1, 1, 8))
    assert np.array_equal(np.sort(info["prompts"]), np.sort(candidates[4:]))  # the four highest scores


def test_features_and_top_scored():
    obs = {"rollouts": np.array([0, 8, 16, 8]), "successes": np.array([0, 8, 4, 0]),
           "last_seen": np.array([-1, 3, 1, 3]), "step": np.array([4]),
           "last_batch": np.array([1, 3]), "last_rewards": np.array([[1.0] * 8, [0.0] * 8])}
    f = candidate_features(obs, np.array([0, 1, 2, 3]))
    assert f.shape == (4, len(FEATURE_NAMES)) and f.dtype == np.float32 and f.min() >= 0 and f.max() <= 1
    col = {name: f[:, i] for i, name in enumerate(FEATURE_NAMES)}
    np.testing.assert_allclose(col["posterior_mean"], [0.5, 0.9, 5 / 18, 0.1])
    assert col["seen"].tolist() == [0, 1, 1, 1] and col["in_last_batch"].tolist() == [0, 1, 0, 1]
    assert col["last_success"].tolist() == [0, 1, 0, 0] and col["staleness"].tolist() == [1, 0.25, 0.75, 0.25]
    assert top_scored(np.array([7, 8, 9]), np.array([0.1, 0.9, 0.1]), 2).tolist() == [8, 7]
    with pytest.raises(ValueError):
        top_scored(np.array([7, 8]), np.array([0.1]), 1)


@pytest.mark.slow
def test_ppo_selector_trains_saves_and_runs_as_an_agent(make_env, tmp_path):
    from stable_baselines3 import PPO

    env = CandidateWindow(make_env(lenient=True, max_steps=8, eval_every=0), candidates=2)
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=8, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]})
    model.learn(16)
    loaded = load_policy_file(save_policy(model.policy, tmp_path / "ppo"))
    assert not (tmp_path / "ppo" / "policy.pkl").exists()
    x = np.random.default_rng(0).random((5, 8, len(FEATURE_NAMES))).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, deterministic=True)[0], model.predict(x, deterministic=True)[0])

    inner = env.unwrapped
    agent = LearnedSelector(inner, loaded, seed=0, candidates=2)
    obs, _ = inner.reset(seed=0)
    for _ in range(3):
        action = agent.act(obs)
        assert len(set(action.tolist())) == inner.batch_size
        obs, *_ = inner.step(action)
    with pytest.raises(ValueError, match="shape"):
        LearnedSelector(inner, loaded, candidates=3)
    torch.testing.assert_close(dict(loaded.state_dict())["action_net.weight"],
                               dict(model.policy.state_dict())["action_net.weight"])
