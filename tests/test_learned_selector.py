"""The candidate-window view (SB3's check_env, seeding, bad actions), its features, a PPO-trained selector
saved as safetensors and run as an agent, and the permutation-equivariant candidate scorer (and the shipped one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gps_env.agents import LearnedSelector, Uniform
from gps_env.agents.learned import PRETRAINED, load_policy_file, pretrained, save_policy
from gps_env.selectors import top_scored
from gps_env.selectors.features import FEATURE_NAMES, candidate_features
from gps_env.simulated import SimulatedPromptSelectionEnv
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


def scorer(window: int = 16, hidden: int = 8, seed: int = 0):
    from gymnasium import spaces

    from gps_env.agents.candidate_scorer import CandidateScorerPolicy

    torch.manual_seed(seed)
    policy = CandidateScorerPolicy(spaces.Box(0.0, 1.0, (window, len(FEATURE_NAMES)), np.float32),
                                   spaces.Box(-1.0, 1.0, (window,), np.float32), lambda _: 1e-3, hidden=hidden)
    with torch.no_grad():  # the last layer starts at gain 0.01; make the scores spread over the action range
        policy.mlp_extractor.policy_net[-1].weight.mul_(30.0)
    return policy


def test_candidate_scorer_is_permutation_equivariant():
    policy = scorer()
    x = torch.rand(3, 16, len(FEATURE_NAMES), generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # SB3 reuses one distribution object: read it before the next call
        normal = policy.get_distribution(x).distribution
        scores, std, values = normal.mean, normal.stddev, policy.predict_values(x)
        normal = policy.get_distribution(x[:, perm]).distribution
        scores_p, std_p, values_p = normal.mean, normal.stddev, policy.predict_values(x[:, perm])
    assert scores.shape == (3, 16) and scores.std() > 0.05  # not a constant: the check below can fail
    torch.testing.assert_close(scores_p, scores[:, perm])
    torch.testing.assert_close(values_p, values)  # the critic pools over candidates
    assert std.shape == (3, 16) and std.unique().numel() == 1 and torch.equal(std_p, std)  # one shared log-std
    # the deterministic action (scores) and the B chosen are the same candidates whatever their order
    a = policy.predict(x[0].numpy(), deterministic=True)[0]
    a_p = policy.predict(x[0, perm].numpy(), deterministic=True)[0]
    np.testing.assert_allclose(a_p, a[perm.numpy()], rtol=1e-6, atol=1e-6)
    # the optimizer holds exactly the parameters used: one shared log-std, no Linear(M, M) action layer
    assert policy.log_std.shape == (1,) and isinstance(policy.action_net, torch.nn.Identity)
    held = {id(q) for group in policy.optimizer.param_groups for q in group["params"]}
    assert held == {id(q) for q in policy.parameters()}
    size = sum(q.numel() for q in policy.parameters())
    assert size == sum(q.numel() for q in scorer(window=64).parameters())  # no per-position weights


def test_candidate_scorer_save_load_round_trip(tmp_path):
    import json

    policy = scorer(seed=3)
    with torch.no_grad():
        policy.log_std.fill_(-0.7)
    loaded = load_policy_file(save_policy(policy, tmp_path / "scorer"))
    spec = json.loads((tmp_path / "scorer" / "policy.json").read_text())
    assert spec["kind"] == "scorer" and spec["hidden"] == 8 and type(loaded).__name__ == "CandidateScorerPolicy"
    x = np.random.default_rng(0).random((5, 16, len(FEATURE_NAMES))).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, deterministic=True)[0], policy.predict(x, deterministic=True)[0])
    for key, value in policy.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    fresh = scorer(seed=4)  # a different init gives different actions, so the comparison above can fail
    assert not np.allclose(fresh.predict(x, deterministic=True)[0], policy.predict(x, deterministic=True)[0])


def test_shipped_policy_is_a_candidate_scorer_and_selects_in_the_simulated_world():
    loaded = load_policy_file(PRETRAINED)
    assert type(loaded).__name__ == "CandidateScorerPolicy" and loaded.observation_space.shape == (128, 7)

    def mean_esr(make_agent, steps=60):
        env = SimulatedPromptSelectionEnv(batch_size=32, max_steps=steps, eval_every=0, time_in_info=False)
        agent = make_agent(env)
        obs, _ = env.reset(seed=5)
        rewards, truncated = [], False
        while not truncated:
            action = agent.act(obs)
            assert action.shape == (32,) and len(set(action.tolist())) == 32
            obs, reward, _, truncated, _ = env.step(action)
            rewards.append(reward)
        return float(np.mean(rewards))

    learned = mean_esr(lambda env: pretrained(env, seed=0))
    uniform = mean_esr(lambda env: Uniform(env, seed=0))
    assert learned > uniform + 0.05, (learned, uniform)  # trained to beat uniform (0.51 vs 0.35 over 300 steps)
