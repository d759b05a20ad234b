"""The simulated world: Gymnasium contract, seeding, every agent, learning only from informative groups,
untouched state after bad actions, probes, checkpoints and the world's semantic structure."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence

import gps_env  # noqa: F401  (registers the ids)
from gps_env.agents import GPS, DynamicSampling, MoPPS, Pairing, Uniform
from gps_env.simulated import Family, SimConfig, SimulatedPromptSelectionEnv

SMALL = dict(batch_size=8, rollouts_per_prompt=4, pool_size=300, heldout_size=100, max_steps=12, eval_every=4,
             time_in_info=False)
OBS_KEYS = {"last_batch", "last_rewards", "times_selected", "rollouts", "successes", "last_seen", "step",
            "rollouts_spent"}
AGENTS = {
    "uniform": lambda env: Uniform(env, seed=1),
    "ds": lambda env: DynamicSampling(env, seed=1),
    "mopps": lambda env: MoPPS(env, seed=1),
    "pairing": lambda env: Pairing(env, seed=1, refresh_every=3),
    "gps": lambda env: GPS(env, seed=1),
}


def make(**overrides) -> SimulatedPromptSelectionEnv:
    return SimulatedPromptSelectionEnv(**{**SMALL, **overrides})


def snapshot(env: SimulatedPromptSelectionEnv) -> dict:
    return {**env.state_dict(), "p": env.success_probability(), "held": env.success_probability(heldout=True)}


def test_check_env_passes():
    check_env(gym.make("gps_env/SimulatedPromptSelection-v0", **SMALL).unwrapped)


def test_registered_and_same_contract_as_the_embedded_env():
    assert "gps_env/SimulatedPromptSelection-v0" in gym.registry
    env = gym.make("gps_env/SimulatedPromptSelection-v0", **SMALL)
    obs, info = env.reset(seed=0)
    assert set(obs) == OBS_KEYS and env.observation_space.contains(obs)
    assert set(info) == {"step", "ledger", "eval"} and obs["last_batch"].tolist() == [-1] * 8
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs["step"].tolist() == [1] and 0.0 <= reward <= 1.0 and not terminated and not truncated
    assert {"step", "esr", "mean_reward", "batch", "prompt_success", "reused_probes", "tokens", "grpo",
            "verifier_timeouts", "ledger"} <= set(info)
    assert info["ledger"]["rollouts"]["train"] == 8 * 4 and obs["rollouts_spent"].tolist() == [32]
    assert env.unwrapped.render() is None


def test_seeding_is_reproducible():
    def run(world_seed: int, seed: int) -> list:
        env = make(world_seed=world_seed)
        agent = MoPPS(env, seed=0)
        obs, info = env.reset(seed=seed)
        out = [obs, info]
        for _ in range(6):
            obs, *rest = env.step(agent.act(obs))
            out += [obs, *rest]
        return out

    assert data_equivalence(run(0, 5), run(0, 5))
    assert not data_equivalence(run(0, 5), run(0, 6))  # rollouts come from reset's seed
    a, b = make(world_seed=0), make(world_seed=1)
    assert not np.array_equal(a.pool.embeddings, b.pool.embeddings)
    assert np.array_equal(a.pool.embeddings, make(world_seed=0).pool.embeddings)


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_agent_runs(name):
    env = make(max_steps=4)
    agent = AGENTS[name](env)
    obs, _ = env.reset(seed=0)
    truncated = False
    while not truncated:
        obs, reward, _, truncated, info = env.step(agent.act(obs))
        assert env.observation_space.contains(obs) and 0.0 <= reward <= 1.0
    assert obs["step"].tolist() == [4] and info["eval"]["accuracy"] > 0
    if name == "ds":
        assert env.ledger.rollouts["probe"] > 0 and info["reused_probes"] > 0


def test_only_informative_groups_teach():
    # every prompt's success is 0 or 1 to machine precision: all groups are all-0 or all-1
    extreme = SimConfig(families=(Family("solved", 0.5, 60.0), Family("unsolved", 0.5, -60.0)), spread=0.0)
    env = make(config=extreme, max_steps=40)
    agent = Uniform(env, seed=0)
    obs, _ = env.reset(seed=0)
    before = snapshot(env)
    truncated = False
    while not truncated:
        obs, esr, _, truncated, info = env.step(agent.act(obs))
        assert esr == 0.0 and info["grpo"]["kept_groups"] == 0
    after = snapshot(env)
    assert np.array_equal(before["model"]["phi"], after["model"]["phi"])
    assert np.array_equal(before["model"]["memory"], after["model"]["memory"])
    assert np.array_equal(before["p"], after["p"]) and np.array_equal(before["held"], after["held"])

    env = make(max_steps=40)  # the calibrated world: mixed groups do teach
    obs, _ = env.reset(seed=0)
    start = env.success_probability(heldout=True).mean()
    for _ in range(40):
        obs, *_ = env.step(Uniform(env, seed=0).act(obs))
    assert env.success_probability(heldout=True).mean() > start
    assert env.ledger.mixed_groups > 0


def test_zero_weights_teach_nothing():
    env = make()
    env.reset(seed=0)
    before = snapshot(env)
    _, _, _, _, info = env.step({"prompts": np.arange(8), "weights": np.zeros(8)})
    assert info["grpo"]["signal"] == 0.0 and np.array_equal(before["p"], env.success_probability())


def test_invalid_actions_raise_and_leave_the_state_untouched():
    env = make()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.arange(8))
    env.reset(seed=0)
    env.step(np.arange(8))
    before = snapshot(env)
    bad_actions = [
        np.arange(7), np.arange(9), np.array([0, 0, 1, 2, 3, 4, 5, 6]), np.arange(8) + 295, np.arange(8) - 1,
        np.arange(8, dtype=float), {"prompts": np.arange(8), "weights": -np.ones(8)},
        {"prompts": np.arange(8), "weights": np.full(8, np.nan)}, {"prompts": np.arange(8), "bogus": 1},
        {"prompts": np.arange(8), "predictions": np.full(8, 1.5)}, {"weights": np.ones(8)},
    ]
    for action in bad_actions:
        with pytest.raises(ValueError):
            env.step(action)
    for bad in (np.array([1, 1]), np.array([300]), np.array([], dtype=np.int64), np.array([0.5])):
        with pytest.raises(ValueError):
            env.probe(bad)
    assert data_equivalence(before, snapshot(env))


def test_probes_are_charged_once_and_reused():
    env = make()
    env.reset(seed=0)
    first = env.probe(np.array([3, 4, 5]))
    assert first.shape == (3, 4) and env.ledger.rollouts["probe"] == 12
    assert np.array_equal(env.probe(np.array([5, 3])), first[[2, 0]]) and env.ledger.rollouts["probe"] == 12
    obs, _, _, _, info = env.step(np.arange(8))
    assert info["reused_probes"] == 3 and env.ledger.rollouts["train"] == 5 * 4
    assert np.array_equal(obs["last_rewards"][3:6], first) and obs["rollouts"][:8].tolist() == [4] * 8
    env.probe(np.array([0]))
    with pytest.raises(RuntimeError, match="pending"):
        env.state_dict()


def test_checkpoint_resumes_identically():
    env = make()
    agent = MoPPS(env, seed=0)
    obs, _ = env.reset(seed=2)
    for _ in range(3):
        obs, *_ = env.step(agent.act(obs))
    state, agent_state = env.state_dict(), agent.state_dict()

    def run(e: SimulatedPromptSelectionEnv, obs: dict) -> list:
        out = []
        for _ in range(3):
            step = e.step(agent.act(obs))
            obs = step[0]
            out.append(step[:4])
        return out

    tail = run(env, obs)
    other = make()
    resumed = other.load_state_dict(state)
    agent.load_state_dict(agent_state)
    again = run(other, resumed)
    assert data_equivalence(tail, again)
    with pytest.raises(ValueError, match="batch_size"):
        make(batch_size=4).load_state_dict(state)


def test_world_structure():
    config = SimConfig(embedding_dim=64)
    env = SimulatedPromptSelectionEnv(pool_size=4000, heldout_size=1000, config=config)
    pool, held = env.pool, env.heldout
    np.testing.assert_allclose(np.linalg.norm(pool.embeddings, axis=1), 1.0, atol=1e-5)
    assert np.bincount(pool.family).tolist() == [round(4000 * f.share) for f in config.families]
    assert len(np.unique(pool.cluster)) == config.clusters
    cos = pool.embeddings[:500] @ pool.embeddings[:500].T
    same_cluster = pool.cluster[:500, None] == pool.cluster[None, :500]
    same_family = pool.family[:500, None] == pool.family[None, :500]
    off = ~np.eye(500, dtype=bool)
    for mask, expected in ((~same_family, 0.13), (same_family & ~same_cluster, 0.5), (same_cluster & off, 0.65)):
        assert abs(cos[mask].mean() - expected) < 0.03
    # difficulty is predictable from the embedding: a least-squares fit on the pool generalises to held-out
    w, *_ = np.linalg.lstsq(pool.embeddings, pool.initial_logit, rcond=None)
    assert np.corrcoef(held.embeddings @ w, held.initial_logit)[0, 1] > 0.9


@pytest.mark.parametrize("bad", [
    dict(families=(Family("a", 0.5, 0.0),)), dict(families=(Family("a", 0.5, 0.0), Family("a", 0.5, 1.0))),
    dict(cosine=(0.5, 0.4, 0.6)), dict(adaptivity=1.5), dict(plasticity=0.0), dict(clusters=1),
    dict(semantic_rate=-1.0), dict(beta=1.0),
])
def test_bad_config_raises(bad):
    with pytest.raises(ValueError):
        SimConfig(**bad)


def test_defaults_are_the_documented_calibration():
    fitted = json.loads((Path(__file__).parent.parent / "docs/results/sim_calibration.json").read_text())["config"]
    defaults = asdict(SimConfig())
    for key in ("spread", "cluster_share", "semantic_rate", "memory_rate", "adaptivity", "plasticity"):
        assert defaults[key] == pytest.approx(fitted[key], rel=0.01), key
    for mine, theirs in zip(defaults["families"], fitted["families"]):
        assert mine == {k: pytest.approx(v, abs=1e-3) if isinstance(v, float) else v for k, v in theirs.items()}
