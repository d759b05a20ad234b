"""The framework-free core of the verl/TRL adapters: an unchanged agent driven by recorded trainer steps."""

from __future__ import annotations

import numpy as np
import pytest

from gps_env.agents import GPS, MoPPS
from gps_env.agents.registry import build_selector
from gps_env.integrations import FeedbackLoop, trainer_spec
from gps_env.spec import AgentSpec

N, B, K = 10, 2, 3


def view() -> AgentSpec:
    embeddings = np.eye(N, 4, dtype=np.float32) + 0.1
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return trainer_spec([f"{i}+1=" for i in range(N)], B, K, "test", embeddings=embeddings)


def rollouts(batch: np.ndarray, successes: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-rollout (index, reward), groups interleaved as a trainer may reorder them."""
    idx = np.tile(batch, K)
    rewards = np.array([1.0 if j // B < successes[i] else 0.0 for j, i in enumerate(idx.tolist())])
    return idx, rewards


def test_steps_become_the_envs_observation_and_the_agent_learns_each_once():
    v = view()
    loop = FeedbackLoop(build_selector("MoPPS", v, seed=0))
    first = loop.next_batch()
    loop.record(*rollouts(first, {int(first[0]): 3, int(first[1]): 1}))
    second = loop.next_batch()
    obs = loop.observation()
    np.testing.assert_array_equal(obs["last_batch"], first)
    np.testing.assert_array_equal(obs["last_rewards"].sum(axis=1), [3, 1])
    assert obs["step"][0] == 1 and obs["rollouts_spent"][0] == B * K
    np.testing.assert_array_equal(obs["last_seen"][first], [1, 1])
    agent: MoPPS = loop.agent
    np.testing.assert_array_equal(agent.alpha[first], [4.0, 2.0])  # Beta(1, 1) + successes

    # two steps recorded before the next choice (a lagging trainer): both are learnt, in order, once each
    loop.record(*rollouts(second, dict.fromkeys(second.tolist(), 0)))
    loop.record(*rollouts(second, dict.fromkeys(second.tolist(), 3)))
    loop.next_batch()
    assert loop.step == 3 and agent._learnt_step == 3 and loop.chosen_after == [0, 1, 3]
    assert agent.alpha.sum() - N == 3 + 1 + 0 + B * K  # every success, once
    assert agent.alpha.sum() + agent.beta.sum() - 2 * N == 3 * B * K  # every rollout, once


def test_gps_reads_the_views_embeddings():
    v = view()
    loop = FeedbackLoop(build_selector(GPS, v, seed=1, kwargs={"lam": 0.3}))
    batch = loop.next_batch()
    loop.record(*rollouts(batch, dict.fromkeys(batch.tolist(), 2)))
    loop.next_batch()
    assert loop.agent.steps_seen == 1 and loop.agent.embeddings.shape == (N, 4)


def test_bad_steps_and_agents_are_refused():
    v = view()
    loop = FeedbackLoop(build_selector("Uniform", v))
    batch = loop.next_batch()
    idx, rewards = rollouts(batch, dict.fromkeys(batch.tolist(), 1))
    with pytest.raises(ValueError, match="2 distinct prompts with 3 rollouts"):
        loop.record(idx[:-1], rewards[:-1])
    with pytest.raises(ValueError, match="out of range"):
        loop.record(idx + N, rewards)
    with pytest.raises(ValueError, match="unknown selector"):
        build_selector("NoSuchAgent", v)
    with pytest.raises(NotImplementedError, match="probes"):
        FeedbackLoop(build_selector("DynamicSampling", v)).next_batch()
    with pytest.raises(TypeError, match="SelectorAgent"):
        FeedbackLoop(object())
