"""Selector agents: invariants over random histories and seeds (hypothesis), DS/MoPPS/Pairing specifics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ENV_DEFAULTS, LENIENT, _lenient_problems
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_env.agents import DynamicSampling, MoPPS, Pairing, Uniform
from gps_env.grpo import GRPOConfig, GRPOTrainer
from gps_env.policy import load_policy
from gps_env.pool import PromptPool
from gps_env.spec import AgentSpec

B, K, N = ENV_DEFAULTS["batch_size"], ENV_DEFAULTS["rollouts_per_prompt"], ENV_DEFAULTS["pool_size"]
HISTORY_FREE = [
    lambda env, seed: Uniform(env, seed=seed),
    lambda env, seed: Uniform(env, seed=seed, epochs=True),
    lambda env, seed: MoPPS(env, seed=seed),
    lambda env, seed: MoPPS(env, seed=seed, mode="threshold", decay=0.5, decay_every_step=True),
    lambda env, seed: Pairing(env, seed=seed, source="history"),
]
hypothesis_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def random_obs(rng: np.random.Generator, step: int, n: int = N, b: int = B, k: int = K) -> dict[str, np.ndarray]:
    rollouts = rng.integers(0, 5, size=n) * k
    return {
        "last_batch": rng.choice(n, size=b, replace=False).astype(np.int64),
        "last_rewards": (rng.random((b, k)) < rng.random((b, 1))).astype(np.float32),
        "times_selected": rollouts // k,
        "rollouts": rollouts,
        "successes": rng.binomial(rollouts, rng.random(n)).astype(np.int64),
        "last_seen": np.where(rollouts > 0, rng.integers(0, max(step, 1), size=n), -1),
        "step": np.array([step], np.int64),
        "rollouts_spent": np.array([step * b * k], np.int64),
    }


def prompts_of(action) -> np.ndarray:
    return np.asarray(action["prompts"] if isinstance(action, dict) else action)


@hypothesis_settings
@given(seed=st.integers(0, 2**31), which=st.integers(0, len(HISTORY_FREE) - 1), steps=st.integers(1, 6))
def test_batches_are_valid_and_seeded(make_env, seed, which, steps):
    env = make_env()
    rng = np.random.default_rng(seed)
    observations = [random_obs(rng, step) for step in range(1, steps + 1)]
    runs = []
    for _ in range(2):
        agent = HISTORY_FREE[which](env, seed)
        actions = [prompts_of(agent.act(obs)) for obs in observations]
        runs.append(actions)
        for batch in actions:
            assert batch.shape == (B,) and batch.dtype == np.int64
            assert len(np.unique(batch)) == B and batch.min() >= 0 and batch.max() < N
            assert env.action_space.contains(batch)
    assert all(np.array_equal(a, b) for a, b in zip(*runs))  # same seed, same batches


@hypothesis_settings
@given(seed=st.integers(0, 2**31), which=st.integers(0, len(HISTORY_FREE) - 1))
def test_same_observation_twice_does_not_learn_twice(make_env, seed, which):
    env = make_env()
    agent = HISTORY_FREE[which](env, seed)
    obs = random_obs(np.random.default_rng(seed), step=1)
    agent.act(obs)
    learnt = {k: v for k, v in agent.state_dict().items() if k != "rng"}
    agent.act(obs)
    again = {k: v for k, v in agent.state_dict().items() if k != "rng"}
    for key in ("alpha", "beta", "learnt_step"):
        if key in learnt:
            assert np.array_equal(learnt[key], again[key])


@hypothesis_settings
@given(seed=st.integers(0, 2**31), which=st.integers(0, len(HISTORY_FREE) - 1))
def test_state_dict_round_trips_exactly(make_env, seed, which):
    env = make_env()
    rng = np.random.default_rng(seed)
    agent = HISTORY_FREE[which](env, seed)
    for step in (1, 2, 3):
        agent.act(random_obs(rng, step))
    clone = HISTORY_FREE[which](env, seed + 1)
    clone.load_state_dict(agent.state_dict())
    for step in (4, 5):
        obs = random_obs(rng, step)
        a, b = agent.act(obs), clone.act(obs)
        assert np.array_equal(prompts_of(a), prompts_of(b))


@hypothesis_settings
@given(seed=st.integers(0, 2**31), successes=st.integers(0, K))
def test_mopps_posterior_moves_with_outcomes(make_env, seed, successes):
    env = make_env()
    agent = MoPPS(env, seed=seed, decay=0.7)
    obs = random_obs(np.random.default_rng(seed), step=1)
    obs["last_rewards"][:] = 0.0
    obs["last_rewards"][0, :successes] = 1.0
    before = agent.posterior_mean.copy()
    agent.act(obs)
    moved = agent.posterior_mean[obs["last_batch"][0]] - before[obs["last_batch"][0]]
    prior_mean = 0.5
    if successes / K > prior_mean:
        assert moved > 0
    elif successes / K < prior_mean:
        assert moved < 0
    others = np.setdiff1d(np.arange(N), obs["last_batch"])
    assert np.array_equal(agent.posterior_mean[others], before[others])  # decay only on observation


def test_mopps_update_is_correct_for_k_equal_one(make_env):
    env = make_env(rollouts_per_prompt=1)
    agent = MoPPS(env, seed=0)
    obs = random_obs(np.random.default_rng(0), step=1, k=1)
    obs["last_rewards"][:] = 1.0
    agent.act(obs)
    batch = obs["last_batch"]
    assert np.allclose(agent.alpha[batch], 2.0) and np.allclose(agent.beta[batch], 1.0)  # not set to 8


def test_mopps_sends_predictions_and_env_reports_spearman(make_env):
    env = make_env(lenient=True)
    agent = MoPPS(env, seed=0)
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
    assert set(action) == {"prompts", "predictions"}
    assert np.all((action["predictions"] >= 0) & (action["predictions"] <= 1))
    _, _, _, _, info = env.step(action)
    assert "spearman" in info


def test_dynamic_sampling_keeps_mixed_groups_and_pays_for_every_probe(make_env):
    env = make_env(lenient=True, max_steps=4)
    obs, _ = env.reset(seed=0)
    probed_rollouts = []
    original_probe = env.probe

    def counting_probe(indices):
        rewards = original_probe(indices)
        probed_rollouts.append(rewards.size)
        probed_success = rewards.mean(axis=1)
        counting_probe.mixed |= set(np.asarray(indices)[(probed_success > 0) & (probed_success < 1)].tolist())
        return rewards

    # the agent sees the env through its spec: give it a spec whose probe counts what it spends
    agent = DynamicSampling(AgentSpec(env.pool_size, env.batch_size, env.k, probe=counting_probe), seed=0, max_rounds=0)
    for _ in range(3):
        counting_probe.mixed = set()
        probe_before = env.ledger.rollouts["probe"]
        train_before = env.ledger.rollouts["train"]
        action = agent.act(obs)
        obs, reward, _, _, info = env.step(action)
        assert env.ledger.rollouts["probe"] - probe_before == sum(probed_rollouts[-agent.last_rounds:])
        assert env.ledger.rollouts["train"] == train_before  # every trained group came from a probe
        assert info["reused_probes"] == B
        trained_success = obs["last_rewards"].mean(axis=1)
        zero_variance = np.sum((trained_success == 0) | (trained_success == 1))
        left_out_mixed = counting_probe.mixed - set(obs["last_batch"].tolist())
        assert zero_variance == 0 or not left_out_mixed  # never a dead group while a mixed one waits


def test_dynamic_sampling_cap_fills_without_duplicates(make_env):
    env = make_env()  # the real tasks: the tiny policy solves nothing, so no group is ever mixed
    agent = DynamicSampling(env, seed=0, max_rounds=2)
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
    assert agent.last_cap_hit and agent.cap_hits == 1 and agent.last_rounds == 2
    assert len(np.unique(action)) == B
    assert env.ledger.rollouts["probe"] == 2 * B * K  # discarded groups are paid for
    env.step(action)
    assert env.ledger.rollouts["train"] == 0


def test_pairing_fixed_pair_and_weights(make_env):
    env = make_env(lenient=True, max_steps=5)
    agent = Pairing(env, seed=0, lambda_neg=3.0)
    obs, _ = env.reset(seed=0)
    first = agent.act(obs)
    assert env.ledger.rollouts["probe"] == min(N, 4 * B) * K
    assert first["weights"].tolist() == [1.0] * (B - B // 2) + [3.0] * (B // 2)
    obs, *_ = env.step(first)
    second = agent.act(obs)
    assert np.array_equal(first["prompts"], second["prompts"])  # fixed once, as in the paper
    assert env.ledger.rollouts["probe"] == min(N, 4 * B) * K  # no new probes


def test_pairing_refreshes(make_env):
    env = make_env(lenient=True, max_steps=5)
    agent = Pairing(env, seed=0, refresh_every=2)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(agent.act(obs))
    assert env.ledger.rollouts["probe"] == 2 * min(N, 4 * B) * K


def test_weighted_grpo_weights_change_the_gradient_linearly(tiny_policy):
    """Per-prompt weights scale each group's contribution: grad(w) = Σ_g w_g grad_g (token-mean is linear)."""
    model, tokenizer = load_policy(tiny_policy)
    pool = PromptPool(_lenient_problems(2, seed=5), [LENIENT])
    prompt_ids = [[tokenizer.bos_token_id, *tokenizer(p.prompt, add_special_tokens=False)["input_ids"]]
                  for p in pool.problems for _ in range(4)]
    completion_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                      for t in ["1", "2", "+", "="] * 2]
    rewards = np.array([[1, 0, 0, 0], [1, 1, 1, 0]], dtype=float)

    def delta(weights):
        m, _ = load_policy(tiny_policy)
        trainer = GRPOTrainer(m, GRPOConfig(grad_clip=1e9), tokenizer.pad_token_id)
        trainer.optimizer = torch.optim.SGD(m.parameters(), lr=1.0)
        before = torch.nn.utils.parameters_to_vector(m.parameters()).detach().clone()
        trainer.step(prompt_ids, completion_ids, rewards, np.asarray(weights, dtype=float))
        return torch.nn.utils.parameters_to_vector(m.parameters()).detach() - before

    d10, d01, d21 = delta([1, 0]), delta([0, 1]), delta([2, 1])
    assert d10.abs().sum() > 0 and d01.abs().sum() > 0
    assert torch.allclose(d21, 2 * d10 + d01, atol=1e-6)
    assert not torch.allclose(delta([1, 1]), d21, atol=1e-6)  # the weights change the update


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda env: MoPPS(env, target=1.5), "target"),
        (lambda env: MoPPS(env, ratio=0.5), "ratio"),
        (lambda env: MoPPS(env, decay=2.0), "decay"),
        (lambda env: MoPPS(env, prior=(0.0, 1.0)), "prior"),
        (lambda env: MoPPS(env, mode="best"), "mode"),
        (lambda env: DynamicSampling(env, gen_batch_size=1), "gen_batch_size"),
        (lambda env: DynamicSampling(env, max_rounds=-1), "max_rounds"),
        (lambda env: DynamicSampling(env, band=(0.9, 0.1)), "low"),
        (lambda env: Pairing(env, c=K), "c must"),
        (lambda env: Pairing(env, lambda_neg=-1.0), "lambda_neg"),
        (lambda env: Pairing(env, source="oracle"), "source"),
        (lambda env: Pairing(env, candidates=0.5), "candidates"),
        (lambda env: MoPPS(env, ratio=float("inf")), "ratio"),
        (lambda env: MoPPS(env, ratio=float("nan")), "ratio"),
        (lambda env: MoPPS(env, ratio="16"), "ratio"),
        (lambda env: MoPPS(env, prior=(1.0, 1.0, 1.0)), "prior"),
        (lambda env: MoPPS(env, prior=("1", "1")), "prior"),
        (lambda env: MoPPS(env, prior=(1.0, float("nan"))), "prior"),
        (lambda env: MoPPS(env, prior=(1.0, -2.0)), "prior"),
        (lambda env: MoPPS(env, target=float("nan")), "target"),
        (lambda env: MoPPS(env, band=(0.2, float("nan"))), "band"),
        (lambda env: MoPPS(env, band=(-0.5, 0.5)), "band"),
        (lambda env: MoPPS(env, seed=None), "seed"),
        (lambda env: DynamicSampling(env, max_rounds=2.5), "max_rounds"),
        (lambda env: DynamicSampling(env, max_rounds="4"), "max_rounds"),
        (lambda env: DynamicSampling(env, gen_batch_size=4.5), "gen_batch_size"),
        (lambda env: DynamicSampling(env, band=("a", "b")), "band"),
        (lambda env: DynamicSampling(env, seed=1.0), "seed"),
        (lambda env: Pairing(env, lambda_neg=1e7), "lambda_neg"),
        (lambda env: Pairing(env, lambda_neg=float("inf")), "lambda_neg"),
        (lambda env: Pairing(env, lambda_neg=float("nan")), "lambda_neg"),
        (lambda env: Pairing(env, candidates=float("inf")), "candidates"),
        (lambda env: Pairing(env, candidates=float("nan")), "candidates"),
        (lambda env: Pairing(env, candidates="4"), "candidates"),
        (lambda env: Pairing(env, seed=True), "seed"),
    ],
)
def test_bad_constructor_arguments(make_env, factory, match):
    with pytest.raises(ValueError, match=match):
        factory(make_env())


def test_observation_from_another_env_is_refused(make_env):
    agent = Uniform(make_env(), seed=0)
    other = random_obs(np.random.default_rng(0), step=1, n=N + 3)
    with pytest.raises(ValueError, match="pool"):
        agent.act(other)


@pytest.mark.parametrize("factory", HISTORY_FREE)
@pytest.mark.parametrize(("shape", "key"), [({"b": B + 1}, "last_batch"), ({"k": K + 2}, "last_rewards")])
def test_observation_of_another_batch_size_or_k_is_refused_before_anything_changes(make_env, factory, shape, key):
    agent = factory(make_env(), 0)
    rng = np.random.default_rng(0)
    agent.act(random_obs(rng, step=1))
    before = agent.state_dict()
    with pytest.raises(ValueError, match=key):
        agent.act(random_obs(rng, step=2, **shape))
    after = agent.state_dict()
    assert after.keys() == before.keys() and after["learnt_step"] == 1 and after["rng"] == before["rng"]
    for name in ("alpha", "beta", "queue", "batch"):
        if name in before:
            assert np.array_equal(after[name], before[name])


@pytest.mark.parametrize("key", ["last_batch", "last_rewards", "step"])
def test_observation_without_a_key_the_agent_reads_is_a_value_error(make_env, key):
    agent = MoPPS(make_env(), seed=0)
    obs = random_obs(np.random.default_rng(0), step=1)
    del obs[key]
    with pytest.raises(ValueError, match=key):
        agent.act(obs)
    assert agent.state_dict()["learnt_step"] == 0 and np.all(agent.alpha == 1.0)
