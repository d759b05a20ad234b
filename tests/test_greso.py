"""GRESO (probabilistic pre-rollout skipping): protocol properties on the simulated world, in both modes, and
its invariants: a prompt never seen is never skipped; with probes every probe rollout is on the ledger."""

from __future__ import annotations

import numpy as np
import pytest
from _sim_agents import B, K, N, assert_valid, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_env.agents.greso import GRESO
from gps_env.spec import AgentSpec

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LEARNT = ("learnt_step", "p_easy", "p_hard", "easy_run", "hard_run")
MODES = [{}, {"probe": True}, {"probe": True, "gen_batch_size": 16, "max_rounds": 2}]




def random_obs(rng: np.random.Generator, step: int) -> dict[str, np.ndarray]:
    kind = rng.integers(0, 3, size=(B, 1))  # all wrong, all right, or mixed
    mixed = (rng.random((B, K)) < 0.5).astype(np.float32)
    rewards = np.where(kind == 0, 0.0, np.where(kind == 1, 1.0, mixed)).astype(np.float32)
    return {"last_batch": rng.choice(N, size=B, replace=False).astype(np.int64), "last_rewards": rewards,
            "times_selected": np.zeros(N, np.int64), "step": np.array([step], np.int64)}




def run(seed: int, steps: int, **kwargs) -> list[np.ndarray]:
    env = world(max_steps=steps)
    obs, _ = env.reset(seed=0)
    agent = GRESO(env, seed=seed, **kwargs)
    batches = []
    for _ in range(steps):
        batch = agent.act(obs)
        assert_valid(batch)
        batches.append(batch)
        obs, *_ = env.step(batch)
    return batches


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 40), mode=st.sampled_from(range(len(MODES))))
def test_batches_are_valid_and_seeded(seed, steps, mode):
    first, second = run(seed, steps, **MODES[mode]), run(seed, steps, **MODES[mode])
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(0, 30), mode=st.sampled_from(range(len(MODES))))
def test_same_observation_twice_does_not_learn_twice(seed, steps, mode):
    """What the agent learnt is unchanged by a second ``act`` on the same step (its shuffled pass and the
    pending probe outcomes do move: a second ``act`` is a second selection)."""
    env = world()
    obs, _ = env.reset(seed=0)
    agent = GRESO(env, seed=seed, **MODES[mode])
    for _ in range(steps):
        obs, *_ = env.step(agent.act(obs))
    agent.act(obs)
    learnt = agent.state_dict()
    agent.act(obs)
    again = agent.state_dict()
    for key in LEARNT:
        assert np.array_equal(learnt[key], again[key])


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(0, 30), mode=st.sampled_from(range(len(MODES))))
def test_state_dict_round_trips_exactly(seed, steps, mode):
    """A clone loaded from the state picks the same next batches (probing again is free: the env caches)."""
    env = world()
    obs, _ = env.reset(seed=0)
    agent, clone = GRESO(env, seed=seed, **MODES[mode]), GRESO(env, seed=seed + 1, **MODES[mode])
    for _ in range(steps):
        obs, *_ = env.step(agent.act(obs))
    clone.load_state_dict(agent.state_dict())
    for _ in range(3):
        a, b = agent.act(obs), clone.act(obs)
        assert np.array_equal(a, b)
        obs, *_ = env.step(a)


@pytest.mark.parametrize("kwargs, name", [
    ({"p_easy": 1.5}, "p_easy"), ({"p_easy": -0.1}, "p_easy"), ({"p_hard": float("nan")}, "p_hard"),
    ({"step_size": 2.0}, "step_size"), ({"bounds": (0.9, 0.1)}, "bounds"), ({"bounds": 0.5}, "bounds"),
    ({"target_zero_variance": 1.1}, "target_zero_variance"), ({"keep_floor": -0.01}, "keep_floor"),
    ({"keep_floor": "0.01"}, "keep_floor"), ({"probe": 1}, "probe"), ({"gen_batch_size": 4}, "gen_batch_size"),
    ({"gen_batch_size": N + 1}, "gen_batch_size"), ({"max_rounds": 0}, "max_rounds"), ({"seed": -1}, "seed"),
])
def test_bad_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GRESO(world(), **kwargs)


class CountingProbe:
    """The env's probe, recording every id it is asked for and every reward it returns."""

    def __init__(self, env) -> None:
        self.env, self.calls = env, []

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        rewards = self.env.probe(indices)
        self.calls.append((np.asarray(indices).copy(), rewards))
        return rewards


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(5, 50), probe=st.booleans(),
       p=st.sampled_from([0.05, 0.3, 0.5]))
def test_never_seen_prompts_are_never_skipped(seed, steps, probe, p):
    """Only prompts whose last rolled-out group was all correct or all wrong are skipped; never a prompt no
    rollout has touched (low keep bases make skips frequent)."""
    env = world(max_steps=steps)
    obs, _ = env.reset(seed=0)
    counting = CountingProbe(env)
    agent = GRESO(AgentSpec(N, B, K, probe=counting), seed=seed, probe=probe, p_easy=p, p_hard=p)
    seen: set[int] = set()
    skipped_total = 0
    for _ in range(steps):
        calls_before = len(counting.calls)
        batch = agent.act(obs)
        assert_valid(batch)
        skipped = set(agent.last_skipped.tolist())
        skipped_total += len(skipped)
        assert not skipped & (set(range(N)) - seen)
        runs = (agent.easy_run > 0) | (agent.hard_run > 0)  # as act's selection saw them (after learning)
        assert runs[list(skipped)].all() if skipped else True
        for ids, _ in counting.calls[calls_before:]:
            seen |= set(ids.tolist())
        obs, *_ = env.step(batch)
        seen |= set(obs["last_batch"].tolist())
    if steps >= 40 and p == 0.05:
        assert skipped_total > 0  # the property was exercised


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 30), gen=st.sampled_from([B, 2 * B]),
       rounds=st.integers(1, 4))
def test_probe_mode_charges_every_probe_rollout(seed, steps, gen, rounds):
    env = world(max_steps=steps)
    obs, _ = env.reset(seed=0)
    counting = CountingProbe(env)
    agent = GRESO(AgentSpec(N, B, K, probe=counting), seed=seed, probe=True, gen_batch_size=gen,
                  max_rounds=rounds)
    for _ in range(steps):
        probe_before, train_before = env.ledger.rollouts["probe"], env.ledger.rollouts["train"]
        calls_before = len(counting.calls)
        batch = agent.act(obs)
        probed = np.concatenate([ids for ids, _ in counting.calls[calls_before:]])
        assert np.unique(probed).size == probed.size  # each candidate probed once per step
        assert env.ledger.rollouts["probe"] - probe_before == probed.size * K
        obs, _, _, _, info = env.step(batch)
        unprobed = np.setdiff1d(batch, probed).size  # only the last-resort fill is unprobed
        assert env.ledger.rollouts["train"] - train_before == unprobed * K
        assert info["reused_probes"] == B - unprobed
        success = obs["last_rewards"].mean(axis=1)
        mixed_probed = {int(i) for ids, r in counting.calls[calls_before:] for i, s in zip(ids, r.mean(axis=1))
                        if 0 < s < 1}
        dead = np.count_nonzero((success == 0) | (success == 1))
        assert dead == 0 or not mixed_probed - set(batch.tolist())  # no dead group while a mixed one waits


def test_all_wrong_groups_count_as_hard_under_a_zero_one_verifier():
    """The reference's bug, fixed: all-0 groups are "hard", so a hard share above 2α/3 lowers p_h."""
    agent = GRESO(world(), seed=0)
    agent.act(random_obs(np.random.default_rng(0), step=0))  # step 0: nothing to learn
    agent.epoch = 1  # past the first pass: adaptation is on
    obs = random_obs(np.random.default_rng(1), step=1)
    obs["last_rewards"][:] = 0.0
    agent.act(obs)
    assert agent.p_hard == pytest.approx(0.49) and agent.p_easy == pytest.approx(0.51)
    assert np.all(agent.hard_run[obs["last_batch"]] == 1) and np.all(agent.easy_run == 0)
    keep = agent.keep_probability()
    assert np.allclose(keep[obs["last_batch"]], 0.49) and keep.sum() == pytest.approx(N - B + B * 0.49)
    obs = {**obs, "step": np.array([2], np.int64), "last_rewards": np.ones((B, K), np.float32)}
    agent.act(obs)  # all correct now: the hard run resets, the easy run starts
    assert np.all(agent.easy_run[obs["last_batch"]] == 1) and np.all(agent.hard_run == 0)
    assert agent.p_easy == pytest.approx(0.50)


def test_no_adaptation_during_the_first_pass():
    """p_e and p_h stay put until a full pass over the pool is done (the reference adapts from epoch 1)."""
    agent = GRESO(world(), seed=0)
    rng = np.random.default_rng(0)
    for step in range(1, 80):
        epoch_at_observe = agent.epoch
        agent.act(random_obs(rng, step))
        if epoch_at_observe < 1:
            assert agent.p_easy == 0.5 and agent.p_hard == 0.5
    assert agent.epoch >= 2 and agent.p_easy != 0.5  # it did adapt later


@pytest.mark.parametrize("key, value", [
    ("p_easy", 1.5), ("easy_run", -np.ones(N, np.int64)), ("hard_run", np.ones(N)),
    ("order", np.arange(10)), ("order", np.zeros(N, np.int64)), ("cursor", N + 1), ("epoch", -2),
    ("pending_ids", np.array([N])), ("pending_rewards", np.zeros((3, K))),
])
def test_bad_states_are_refused_before_anything_changes(key, value):
    agent = GRESO(world(), seed=0)
    agent.act(random_obs(np.random.default_rng(0), step=1))
    before = agent.state_dict()
    with pytest.raises(ValueError, match=key):
        agent.load_state_dict({**before, key: value})
    after = agent.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before if k != "rng")
