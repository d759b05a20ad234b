"""PromptSelectionEnv: the Gymnasium contract, determinism, actions, probes, budgets and evaluation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ENV_DEFAULTS, params_of, same_params
from gymnasium.utils.env_checker import check_env, data_equivalence

import gps_env
from gps_env.engines import TransformersEngine
from gps_env.env import PromptBatch, PromptSelectionEnv
from gps_env.ledger import RolloutLedger
from gps_env.policy import load_policy

B, K, N = ENV_DEFAULTS["batch_size"], ENV_DEFAULTS["rollouts_per_prompt"], ENV_DEFAULTS["pool_size"]
OBS_KEYS = {"last_batch", "last_rewards", "times_selected", "rollouts", "successes", "last_seen", "step",
            "rollouts_spent"}


def fixed_actions(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(N, size=B, replace=False).astype(np.int64) for _ in range(count)]


# ---------------------------------------------------------------- Gymnasium contract


@pytest.mark.parametrize("lenient", [False, True])
def test_check_env_passes(make_env, lenient):
    env = make_env(lenient=lenient)
    check_env(env.unwrapped)


def test_gym_make_after_import(tiny_policy):
    assert "gps_env/PromptSelection-v0" in gym.registry
    env = gym.make("gps_env/PromptSelection-v0", policy=tiny_policy, **ENV_DEFAULTS)
    try:
        assert isinstance(env.unwrapped, PromptSelectionEnv)
        assert env.unwrapped.policy_path == tiny_policy
        obs, info = env.reset(seed=0)
        assert set(obs) == OBS_KEYS and env.observation_space.contains(obs)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs["step"].tolist() == [1] and 0.0 <= reward <= 1.0
        assert terminated is False and truncated is False
    finally:
        env.close()
    assert gps_env.__version__


def test_spaces(make_env):
    env = make_env()
    assert env.action_space == PromptBatch(N, B)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert set(env.observation_space.spaces) == OBS_KEYS
    assert env.observation_space["last_rewards"].shape == (B, K)
    assert env.observation_space["times_selected"].shape == (N,)


@pytest.mark.parametrize(
    "kwargs",
    [dict(rollouts_per_prompt=0), dict(max_steps=0), dict(eval_rollouts=0), dict(eval_every=-1),
     dict(rollout_budget=0), dict(render_mode="human"), dict(engine="nope"), dict(task_mix="nope"),
     dict(batch_size=49), dict(batch_size=0)],
)
def test_constructor_validation(make_env, kwargs):
    with pytest.raises(ValueError):
        make_env(**kwargs)


def test_engine_factory(make_env):
    calls = []

    def factory(model, tokenizer):
        calls.append(model)
        return TransformersEngine(model, tokenizer, max_batch_rows=3)

    env = make_env(engine=factory, lenient=True)
    assert calls == [env.policy] and env.engine.max_batch_rows == 3
    env.reset(seed=0)
    _, _, _, _, info = env.step(fixed_actions(1)[0])
    assert info["ledger"]["rollouts"]["train"] == B * K


# ---------------------------------------------------------------- steps


def test_step_observation_reward_and_info(make_env):
    env = make_env(lenient=True, eval_every=0)
    obs, info = env.reset(seed=0)
    assert obs["last_batch"].tolist() == [-1] * B and not obs["last_rewards"].any()
    assert obs["step"].tolist() == [0] and obs["rollouts_spent"].tolist() == [0]
    assert np.all(obs["last_seen"] == -1)
    actions = fixed_actions(3)
    counts, successes = np.zeros(N, np.int64), np.zeros(N, np.int64)
    for t, action in enumerate(actions, start=1):
        obs, reward, terminated, truncated, info = env.step(action)
        counts[action] += 1
        successes[action] += obs["last_rewards"].sum(axis=1).astype(np.int64)
        assert env.observation_space.contains(obs)
        assert obs["last_batch"].tolist() == action.tolist() and info["batch"].tolist() == action.tolist()
        rewards = obs["last_rewards"]
        assert rewards.shape == (B, K) and set(np.unique(rewards)) <= {0.0, 1.0}
        mixed = rewards.min(axis=1) < rewards.max(axis=1)
        assert reward == info["esr"] == pytest.approx(mixed.mean())
        assert info["grpo"]["kept_groups"] == mixed.sum()
        assert info["mean_reward"] == pytest.approx(rewards.mean())
        np.testing.assert_allclose(info["prompt_success"], rewards.mean(axis=1))
        assert np.array_equal(obs["times_selected"], counts)
        assert obs["rollouts"].sum() == t * B * K and np.all(obs["rollouts"] == counts * K)
        assert np.array_equal(obs["successes"], successes)
        assert np.all(obs["last_seen"][action] == t)
        assert obs["step"].tolist() == [t] and obs["rollouts_spent"].tolist() == [t * B * K]
        assert info["step"] == t and info["reused_probes"] == 0
        assert info["ledger"]["rollouts"] == {"train": t * B * K, "probe": 0, "eval": 0, "selector": t * B * K}
        assert "seconds" not in info["ledger"] and "time" not in info
        assert terminated is False and truncated is False
    assert 0 < obs["successes"].sum() < obs["rollouts"].sum()  # lenient task: a mix of successes and failures


def test_time_in_info(make_env):
    env = make_env(time_in_info=True, eval_every=1)
    _, info = env.reset(seed=0)
    assert "seconds" in info["ledger"]
    _, _, _, _, info = env.step(fixed_actions(1)[0])
    assert set(info["time"]) == {"generate", "verify", "update", "eval", "select", "step"}
    assert all(v >= 0 for v in info["time"].values())
    assert info["time"]["eval"] > 0 and info["time"]["generate"] > 0


def test_step_before_reset(make_env):
    env = make_env()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(fixed_actions(1)[0])
    with pytest.raises(gym.error.ResetNeeded):
        env.probe([0, 1])


def test_max_steps_truncation(make_env):
    env = make_env(max_steps=3, eval_every=0)
    env.reset(seed=0)
    truncs = [env.step(a)[3] for a in fixed_actions(3)]
    assert truncs == [False, False, True]
    with pytest.raises(gym.error.ResetNeeded):
        env.step(fixed_actions(1)[0])
    with pytest.raises(gym.error.ResetNeeded):
        env.probe([0])
    env.reset(seed=0)
    assert env.step(fixed_actions(1)[0])[3] is False


def test_rollout_budget_truncation(make_env):
    env = make_env(rollout_budget=20, eval_every=0)  # 16 rollouts per step
    env.reset(seed=0)
    a, b = fixed_actions(2)
    assert env.step(a)[3] is False
    obs, _, _, truncated, info = env.step(b)
    assert truncated is True and info["ledger"]["rollouts"]["selector"] == 32
    assert obs["rollouts_spent"].tolist() == [32]
    with pytest.raises(gym.error.ResetNeeded):
        env.step(a)
    env.reset(seed=0)
    assert env.ledger.selector_rollouts == 0
    assert env.step(a)[3] is False


# ---------------------------------------------------------------- determinism and reset


def run_episode(env, seed, actions):
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for action in actions:
        out.append(env.step(action))
    return out


def test_same_seed_same_trajectory(make_env):
    actions = fixed_actions(3)
    first = run_episode(make_env(lenient=True, eval_every=1), 0, actions)
    second = run_episode(make_env(lenient=True, eval_every=1), 0, actions)
    assert data_equivalence(first, second)
    for a, b in zip(first[1:], second[1:]):
        for key in OBS_KEYS:
            assert np.array_equal(a[0][key], b[0][key])
        assert a[1] == b[1]
        assert a[4]["eval"]["accuracy"] == b[4]["eval"]["accuracy"]
    # The trajectory is not trivially constant: the policy trains and eval accuracy moves off 0/1.
    assert sum(step[4]["grpo"]["kept_groups"] for step in first[1:]) > 0
    assert 0 < first[0][1]["eval"]["accuracy"] < 1
    other = run_episode(make_env(lenient=True, eval_every=1), 1, actions)
    assert not data_equivalence(first, other)


def test_reset_restores_initial_state(make_env, tiny_policy):
    env = make_env(lenient=True, eval_every=2)
    obs0, info0 = env.reset(seed=0)
    initial = params_of(env.policy)
    assert same_params(initial, params_of(load_policy(tiny_policy)[0]))
    episode = [env.step(a) for a in fixed_actions(4)]
    assert sum(s[4]["grpo"]["kept_groups"] for s in episode) > 0
    assert not same_params(params_of(env.policy), initial)
    assert not same_params(params_of(env.engine.model), initial)
    assert env.ledger.rollouts["train"] == 4 * B * K

    obs1, info1 = env.reset(seed=0)
    assert same_params(params_of(env.policy), initial)
    assert same_params(params_of(env.engine.model), initial)
    assert data_equivalence(obs0, obs1) and data_equivalence(info0, info1)
    assert env.ledger.summary(seconds=False) == info0["ledger"]
    assert info1["ledger"]["rollouts"]["train"] == info1["ledger"]["rollouts"]["probe"] == 0
    assert not env.trainer.optimizer.state  # a fresh optimiser
    # The replayed episode is identical to the first one.
    again = [env.step(a) for a in fixed_actions(4)]
    assert data_equivalence(episode, again)


def test_reset_without_eval_zeroes_ledger(make_env):
    env = make_env(eval_every=0)
    _, info = env.reset(seed=0)
    assert "eval" not in info
    env.step(fixed_actions(1)[0])
    env.reset(seed=0)
    assert env.ledger.summary() == RolloutLedger().summary()
    assert env.ledger.summary()["rollouts"] == {"train": 0, "probe": 0, "eval": 0, "selector": 0}
    assert all(v == 0 for per in env.ledger.seconds.values() for v in per.values())


# ---------------------------------------------------------------- invalid actions

VALID = np.array([4, 5, 6, 7])
BAD_ACTIONS = {
    "wrong_length": np.arange(3),
    "too_long": np.arange(5),
    "two_dim": np.arange(4).reshape(2, 2),
    "scalar": 3,
    "empty": [],
    "out_of_range": np.array([0, 1, 2, N]),
    "negative": np.array([-1, 0, 1, 2]),
    "duplicate": np.array([0, 0, 1, 2]),
    "float_dtype": np.array([0.0, 1.0, 2.0, 3.0]),
    "float_in_list": [0, 1, 2, 3.5],
    "bool_dtype": np.array([True, False, True, False]),
    "string": "0123",
    "string_list": ["0", "1", "2", "3"],
    "none": None,
    "nan_weights": {"prompts": VALID, "weights": [1.0, np.nan, 1.0, 1.0]},
    "inf_weights": {"prompts": VALID, "weights": [1.0, np.inf, 1.0, 1.0]},
    "negative_weights": {"prompts": VALID, "weights": [1.0, -0.5, 1.0, 1.0]},
    "weights_wrong_shape": {"prompts": VALID, "weights": np.ones(3)},
    "weights_2d": {"prompts": VALID, "weights": np.ones((4, 1))},
    "weights_strings": {"prompts": VALID, "weights": ["1", "1", "1", "1"]},
    "weights_complex": {"prompts": VALID, "weights": np.ones(4, dtype=complex)},
    "unknown_dict_key": {"prompts": VALID, "weights": np.ones(4), "temperature": 0.5},
    "missing_prompts_key": {"weights": np.ones(4)},
    "dict_with_bad_prompts": {"prompts": np.array([0, 0, 1, 2])},
    "predictions_out_of_range": {"prompts": VALID, "predictions": [0.5, 1.5, 0.0, 0.0]},
    "predictions_nan": {"prompts": VALID, "predictions": [0.5, np.nan, 0.0, 0.0]},
    "predictions_wrong_shape": {"prompts": VALID, "predictions": [0.5, 0.5]},
}


def snapshot(env):
    return {
        "obs": env._observation(),
        "ledger": env.ledger.summary(seconds=True),
        "params": params_of(env.policy),
        "engine": params_of(env.engine.model),
        "generator": env._generator.get_state().clone(),
        "np_random": env.np_random.bit_generator.state,
        "probe_cache": sorted(env._probe_cache),
        "step": env.current_step,
    }


def assert_same_snapshot(a, b):
    assert data_equivalence(a["obs"], b["obs"])
    assert a["ledger"] == b["ledger"]
    assert same_params(a["params"], b["params"]) and same_params(a["engine"], b["engine"])
    assert np.array_equal(a["generator"].numpy(), b["generator"].numpy())
    assert a["np_random"] == b["np_random"] and a["probe_cache"] == b["probe_cache"] and a["step"] == b["step"]


@pytest.fixture(scope="module")
def reference_step(tiny_policy, lenient_pools):
    """Result of reset(seed=5), step(first), step(VALID) in an env that never saw a bad action."""
    env = PromptSelectionEnv(policy=tiny_policy, pool=lenient_pools[0], heldout=lenient_pools[1],
                             **{**ENV_DEFAULTS, "eval_every": 2})
    env.reset(seed=5)
    env.step(fixed_actions(1)[0])
    result = env.step(VALID)
    return result, params_of(env.policy)


@pytest.mark.parametrize("name", list(BAD_ACTIONS))
def test_bad_action_raises_and_leaves_state_untouched(make_env, reference_step, name):
    env = make_env(lenient=True, eval_every=2)
    env.reset(seed=5)
    env.step(fixed_actions(1)[0])
    env.probe([10, 11])  # a probe cache, which a bad action must not consume
    before = snapshot(env)
    with pytest.raises(ValueError):
        env.step(BAD_ACTIONS[name])
    assert_same_snapshot(before, snapshot(env))
    assert before["probe_cache"] == [10, 11]
    if not isinstance(BAD_ACTIONS[name], dict):
        assert not env.action_space.contains(BAD_ACTIONS[name])


@pytest.mark.parametrize("name", ["duplicate", "nan_weights", "unknown_dict_key", "float_dtype"])
def test_valid_step_after_bad_action_matches_fresh_env(make_env, reference_step, name):
    env = make_env(lenient=True, eval_every=2)
    env.reset(seed=5)
    env.step(fixed_actions(1)[0])
    for bad in BAD_ACTIONS.values():  # every bad action, then the one named (order does not matter)
        with pytest.raises(ValueError):
            env.step(bad)
    with pytest.raises(ValueError):
        env.step(BAD_ACTIONS[name])
    result = env.step(VALID)
    expected, expected_params = reference_step
    assert data_equivalence(result, expected)
    assert result[4]["grpo"] == expected[4]["grpo"] and "eval" in result[4]
    assert same_params(params_of(env.policy), expected_params)


def test_weighted_action(make_env):
    env = make_env(lenient=True, eval_every=0)
    env.reset(seed=0)
    initial = params_of(env.policy)
    _, _, _, _, info = env.step({"prompts": VALID, "weights": np.zeros(4)})
    assert info["grpo"]["kept_groups"] == 0
    assert same_params(params_of(env.policy), initial)  # zero weights: no update
    assert info["ledger"]["rollouts"]["train"] == B * K  # but the rollouts were spent
    _, _, _, _, info = env.step({"prompts": [0, 1, 2, 3], "weights": [1, 1, 1, 1]})  # ints, lists are fine
    assert info["grpo"]["total_groups"] == 4


def test_predictions_give_spearman(make_env):
    env = make_env(lenient=True, eval_every=0)
    env.reset(seed=0)
    _, _, _, _, info = env.step({"prompts": VALID, "predictions": [0.1, 0.2, 0.3, 0.4]})
    assert "spearman" in info
    assert info["spearman"] is None or -1.0 <= info["spearman"] <= 1.0
    _, _, _, _, info = env.step(fixed_actions(1)[0])
    assert "spearman" not in info


# ---------------------------------------------------------------- probes


def test_probe_charges_and_is_reused(make_env):
    env = make_env(lenient=True, eval_every=0)
    env.reset(seed=0)
    rewards = env.probe(np.array([0, 1, 2]))
    assert rewards.shape == (3, K) and set(np.unique(rewards)) <= {0.0, 1.0}
    summary = env.ledger.summary(seconds=False)
    assert summary["rollouts"] == {"train": 0, "probe": 3 * K, "eval": 0, "selector": 3 * K}
    assert summary["completion_tokens"]["probe"] > 0
    obs = env._observation()
    assert obs["rollouts"][[0, 1, 2]].tolist() == [K] * 3 and obs["rollouts"].sum() == 3 * K
    assert obs["successes"][[0, 1, 2]].tolist() == rewards.sum(axis=1).astype(int).tolist()
    assert obs["rollouts_spent"].tolist() == [3 * K] and obs["times_selected"].sum() == 0

    # Probing again (same policy) returns the cached rewards at no cost.
    again = env.probe([2, 0])
    assert np.array_equal(again, rewards[[2, 0]])
    assert env.ledger.rollouts["probe"] == 3 * K

    obs, _, _, _, info = env.step(np.array([0, 1, 5, 6]))
    assert info["reused_probes"] == 2
    assert info["ledger"]["rollouts"] == {"train": 2 * K, "probe": 3 * K, "eval": 0, "selector": 5 * K}
    assert np.array_equal(obs["last_rewards"][:2], rewards[:2])
    assert obs["rollouts"][[0, 1, 2, 5, 6]].tolist() == [K] * 5  # probed-then-trained prompts counted once
    assert obs["times_selected"][[0, 1, 2, 5, 6]].tolist() == [1, 1, 0, 1, 1]
    assert obs["rollouts_spent"].tolist() == [5 * K]
    # After the update the cache is gone: probing prompt 2 again is a fresh, charged probe.
    env.probe([2])
    assert env.ledger.rollouts["probe"] == 4 * K
    _, _, _, _, info = env.step(np.array([3, 4, 7, 8]))
    assert info["reused_probes"] == 0


@pytest.mark.parametrize("bad", [[], [[0, 1]], [0, 0], [0, N], [-1], [0.0, 1.0], "01", [True, False]])
def test_probe_validation(make_env, bad):
    env = make_env(eval_every=0)
    env.reset(seed=0)
    before = env.ledger.summary()
    with pytest.raises(ValueError):
        env.probe(bad)
    assert env.ledger.summary() == before


# ---------------------------------------------------------------- evaluation


def test_eval_schedule(make_env):
    env = make_env(lenient=True, eval_every=2, max_steps=4, eval_rollouts=3)
    _, info = env.reset(seed=0)
    assert info["eval"]["step"] == 0 and 0 <= info["eval"]["accuracy"] <= 1
    assert {"step", "accuracy", "by_task"} <= set(info["eval"])
    assert info["eval"]["by_task"] == {"starts_digit": info["eval"]["accuracy"]}
    heldout = len(env.heldout)
    assert info["ledger"]["rollouts"] == {"train": 0, "probe": 0, "eval": 3 * heldout, "selector": 0}
    evals = []
    for t, action in enumerate(fixed_actions(4), start=1):
        _, _, _, _, info = env.step(action)
        evals.append("eval" in info)
        if "eval" in info:
            assert info["eval"]["step"] == t
    assert evals == [False, True, False, True]
    assert info["ledger"]["rollouts"]["eval"] == 3 * 3 * heldout
    assert info["ledger"]["rollouts"]["selector"] == 4 * B * K  # eval is not the selector's cost


def test_evaluate_is_repeatable_under_the_same_policy(make_env):
    env = make_env(lenient=True)
    _, info = env.reset(seed=0)
    assert env.evaluate() == info["eval"]
    env2 = make_env(lenient=True)
    _, info2 = env2.reset(seed=0)
    assert info2["eval"] == info["eval"]


def test_default_world_eval_has_both_tasks(make_env):
    env = make_env()
    _, info = env.reset(seed=0)
    assert set(info["eval"]["by_task"]) <= {"addition", "countdown"}
    assert {p.task for p in env.pool.problems} == {"addition", "countdown"}
    assert not {p.uid for p in env.pool.problems} & {p.uid for p in env.heldout.problems}


# ---------------------------------------------------------------- rendering and observations


def test_render_ansi(make_env):
    env = make_env(render_mode="ansi")
    assert isinstance(env.render(), str)
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and "step 0/6" in text and "held-out" in text
    env.step(fixed_actions(1)[0])
    assert "step 1/6" in env.render()
    assert make_env().render() is None


def test_observations_are_fresh_arrays(make_env):
    env = make_env(lenient=True, eval_every=0)
    obs, _ = env.reset(seed=0)
    for value in obs.values():
        value.fill(7)
    action = fixed_actions(1)[0]
    obs, *_ = env.step(action)
    assert obs["times_selected"].sum() == B and obs["rollouts"].sum() == B * K
    assert set(np.unique(obs["last_seen"])) == {-1, 1}
    assert obs["step"].tolist() == [1] and obs["rollouts_spent"].tolist() == [B * K]
    kept = {k: v.copy() for k, v in obs.items()}
    for value in obs.values():
        value.fill(3)
    assert data_equivalence(env._observation(), kept)
    assert all(not np.shares_memory(a, b) for a, b in zip(env._observation().values(), kept.values()))


# ---------------------------------------------------------------- the action space


def test_prompt_batch_space():
    space = PromptBatch(10, 4, seed=0)
    samples = [space.sample() for _ in range(50)]
    for s in samples:
        assert s.dtype == np.int64 and s.shape == (4,) and len(set(s.tolist())) == 4
        assert space.contains(s) and s in space
    again = PromptBatch(10, 4, seed=0)
    assert [again.sample().tolist() for _ in range(50)] == [s.tolist() for s in samples]
    assert len({tuple(s) for s in samples}) > 1
    assert space.contains([0, 1, 2, 9]) and space.contains(np.array([3, 2, 1, 0], dtype=np.int32))
    for bad in ([0, 1, 2], [0, 1, 2, 10], [-1, 0, 1, 2], [0, 0, 1, 2], [0.0, 1.0, 2.0, 3.0], [[0, 1, 2, 3]],
                ["a", "b", "c", "d"]):
        assert not space.contains(bad), bad
    with pytest.raises(NotImplementedError):
        space.sample(mask=np.ones(10))
    with pytest.raises(ValueError):
        PromptBatch(3, 4)
    assert PromptBatch(10, 4) == space and PromptBatch(10, 5) != space
    assert sorted(PromptBatch(4, 4).sample().tolist()) == [0, 1, 2, 3]


# ---------------------------------------------------------------- regressions of bugs found by the first test pass


def test_huge_finite_weights_do_not_corrupt_the_policy(make_env):
    env = make_env(lenient=True, eval_every=0)
    env.reset(seed=0)
    try:
        env.step({"prompts": [0, 1, 2, 3], "weights": [1e39] * 4})
    except ValueError:
        return  # rejecting the action is a fix too
    assert all(torch.isfinite(p).all() for p in env.policy.parameters())


def test_evaluate_before_reset_raises_reset_needed(make_env):
    env = make_env()
    with pytest.raises(gym.error.ResetNeeded):
        env.evaluate()


def test_probes_that_exhaust_the_budget_still_let_the_step_finish(make_env):
    env = make_env(lenient=True, eval_every=0, rollout_budget=24)
    env.reset(seed=0)
    _, _, _, truncated, _ = env.step(np.arange(B))
    assert not truncated and env.ledger.selector_rollouts == B * K
    env.probe(np.array([4, 5]))  # spends the rest of the budget (24 rollouts)
    _, _, _, truncated, info = env.step(np.array([4, 5, 6, 7]))
    assert truncated and info["reused_probes"] == 2
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.arange(B))


def test_fractional_rollouts_rejected():
    with pytest.raises(ValueError, match="rollouts"):
        RolloutLedger().charge("train", rollouts=2.7)
