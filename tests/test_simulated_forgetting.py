"""The simulated world's forgetting: negative transfer (interference λ) and decay of what is not trained (ζ)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gps_env.simulated import Family, SimConfig, SimulatedPromptSelectionEnv

#: two families that both start mid-way, so either can learn and either can lose
BASE = SimConfig(families=(Family("a", 0.5, 0.0), Family("b", 0.5, 0.0)), embedding_dim=64, interference=0.0,
                 forgetting=0.0)


def make(config: SimConfig) -> SimulatedPromptSelectionEnv:
    return SimulatedPromptSelectionEnv(batch_size=16, pool_size=400, heldout_size=200, max_steps=400, eval_every=0,
                                       world_seed=3, config=config, time_in_info=False)


def train(env: SimulatedPromptSelectionEnv, family: int | None, steps: int, rng: np.random.Generator) -> None:
    """``steps`` updates on random batches of one family (None: of the whole pool)."""
    members = np.arange(len(env.pool)) if family is None else np.flatnonzero(env.pool.family == family)
    for _ in range(steps):
        env.step(rng.choice(members, env.batch_size, replace=False))


def by_family(env: SimulatedPromptSelectionEnv) -> np.ndarray:
    p = env.success_probability(heldout=True)
    return np.array([p[env.heldout.family == f].mean() for f in range(2)])


@pytest.mark.parametrize("interference", [0.0, 0.5])
def test_training_one_family_lowers_the_other_only_with_interference(interference):
    env = make(replace(BASE, interference=interference))
    env.reset(seed=0)
    before = by_family(env)
    train(env, 0, 60, np.random.default_rng(0))
    after = by_family(env)
    assert after[0] > before[0] + 0.05  # the trained family learns either way
    if interference == 0:
        assert after[1] > before[1]  # the cosine alone transfers positively
    else:
        assert after[1] < before[1] - 0.02  # negative transfer to the dissimilar family


@pytest.mark.parametrize("forgetting", [0.0, 0.05])
def test_what_is_no_longer_trained_is_forgotten_only_with_forgetting(forgetting):
    env = make(replace(BASE, forgetting=forgetting))
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    train(env, None, 40, rng)
    learnt = by_family(env)
    train(env, 0, 150, rng)
    later = by_family(env)
    if forgetting == 0:
        assert later[1] >= learnt[1]
    else:
        assert later[1] < learnt[1] - 0.02


def test_same_seed_same_trajectory_with_forgetting_on():
    config = replace(BASE, interference=0.3, forgetting=0.02)
    runs = []
    for _ in range(2):
        env = make(config)
        env.reset(seed=7)
        rng, rewards = np.random.default_rng(2), []
        for _ in range(20):
            _, esr, *_ = env.step(rng.choice(len(env.pool), env.batch_size, replace=False))
            rewards.append(esr)
        runs.append((rewards, env.success_probability(), env.success_probability(heldout=True)))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


def test_uninformative_batches_move_nothing_even_when_forgetting():
    config = SimConfig(families=(Family("solved", 0.5, 60.0), Family("unsolved", 0.5, -60.0)), spread=0.0,
                       embedding_dim=64, interference=0.5, forgetting=0.5)
    env = make(config)
    env.reset(seed=0)
    before = env.state_dict()["model"]
    train(env, None, 5, np.random.default_rng(0))
    after = env.state_dict()["model"]
    assert np.array_equal(before["phi"], after["phi"]) and before["bias"] == after["bias"] == 0.0


@pytest.mark.parametrize("field", ["interference", "forgetting"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "0.1"])
def test_bad_forgetting_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SimConfig(**{field: value})


def test_checkpoint_carries_the_shared_offset():
    env = make(replace(BASE, interference=0.5))
    env.reset(seed=0)
    train(env, 0, 10, np.random.default_rng(0))
    state = env.state_dict()
    assert state["model"]["bias"] < 0
    other = make(replace(BASE, interference=0.5))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.success_probability(heldout=True), env.success_probability(heldout=True))
    state["model"]["bias"] = float("nan")
    with pytest.raises(ValueError, match="bias"):
        make(replace(BASE, interference=0.5)).load_state_dict(state)
