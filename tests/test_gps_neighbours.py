"""GPS-N (ours): the neighbour-corrected prior against a brute-force reference; seeded, valid, restorable."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _sim_agents import B, K, N, assert_valid, prompts_of, run, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gps_env.agents import GPSMemory, GPSNeighbours
from gps_env.agents import gps_neighbours as neighbours_module
from gps_env.models import PPMConfig

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = PPMConfig(hidden=16, latent=4, layers=1, heads=2, samples=2, updates=1, replay=2)


def obs_of(batch, rewards, step):
    return {"last_batch": np.asarray(batch, np.int64), "last_rewards": np.asarray(rewards, np.float32),
            "times_selected": np.zeros(N, np.int64), "step": np.array([step], np.int64)}


@FAST
@given(seed=st.integers(0, 2**32 - 1), neighbours=st.integers(1, 40), weight=st.sampled_from([0.5, 4.0]),
       half_life=st.sampled_from([None, 0.7, 2.0]))
def test_the_prior_is_the_nearest_seen_prompts_memory_and_the_ppm(seed, neighbours, weight, half_life):
    rng = np.random.default_rng(seed)
    agent = GPSNeighbours(world(), seed=0, posterior="mean", candidates=None, neighbours=neighbours,
                          ppm_weight=weight, half_life=half_life, ppm=SMALL)
    arrived = np.full(N, -1)  # the steps_seen at which each prompt's latest outcome arrived
    for step in range(1, 4):  # three observed batches, some prompts twice
        batch = rng.choice(N // 2, B, replace=False)
        agent.act(obs_of(batch, (rng.random((B, K)) < rng.random((B, 1))).astype(np.float32), step))
        arrived[batch] = agent.steps_seen
    agent.last_pick = np.where(arrived >= 0, arrived - 1, -1)  # as if the agent had picked what it was shown
    state = agent.generator.get_state()
    ppm = agent.predict_success(calibrated=False)
    agent.generator.set_state(state)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(neighbours_module, "BLOCK", 7)  # the block loop runs many times
        got = agent._gamma(None)

    seen = np.flatnonzero(agent.alpha + agent.beta > 0)
    memory = agent.alpha / np.maximum(agent.alpha + agent.beta, 1e-300)
    want = np.empty(N)
    for tau in range(N):
        others = seen[seen != tau]
        k = min(neighbours, seen.size - 1)
        nearest = others[np.argsort(-(agent.embeddings[others] @ agent.embeddings[tau]), kind="stable")[:k]]
        age = agent.steps_seen - arrived[nearest]  # 0, 1 or 2 steps
        a_j = np.ones(k) if half_life is None else 0.5 ** (age / half_life)
        prior = np.clip((a_j @ memory[nearest] + weight * ppm[tau]) / (a_j.sum() + weight), 1e-3, 1 - 1e-3)
        a, b = 4.0 * prior + agent.alpha[tau], 4.0 * (1 - prior) + agent.beta[tau]
        want[tau] = a / (a + b)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_a_half_life_lets_recent_neighbours_outweigh_old_ones():
    """Old neighbours failed, the latest ones succeeded: with a short half-life the prior follows the latest."""
    env = world()
    agents = [GPSNeighbours(env, seed=0, posterior="mean", candidates=None, neighbours=2 * B, half_life=h,
                            ppm=SMALL) for h in (None, 0.5)]
    target = 150
    similar = np.argsort(-(agents[0].embeddings[:100] @ agents[0].embeddings[target]))[: 2 * B]
    for agent in agents:  # each batch as if the agent had picked it the step before
        agent.last_pick[similar[:B]] = agent.steps_seen
        agent.act(obs_of(similar[:B], np.zeros((B, K)), 1))
        agent.last_pick[similar[B:]] = agent.steps_seen
        agent.act(obs_of(similar[B:], np.ones((B, K)), 2))
    flat, recent = (agent._gamma(None)[target] for agent in agents)
    assert recent > flat + 0.2


def test_a_vanishing_half_life_keeps_only_the_last_batch_without_warnings():
    env = world(max_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = run(env, GPSNeighbours(env, seed=0, half_life=5e-324, ppm=SMALL), 3)
    for batch in batches:
        assert_valid(batch)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "2", True])
def test_a_bad_half_life_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="half_life"):
        GPSNeighbours(world(), half_life=bad, ppm=SMALL)


def test_before_any_outcome_it_is_gps_m():
    env = world(max_steps=3)
    first = run(env, GPSNeighbours(env, seed=3, ppm=SMALL), 1)
    second = run(env, GPSMemory(env, seed=3, ppm=SMALL), 1)
    assert np.array_equal(first[0], second[0])


def test_what_neighbours_did_moves_an_unseen_prompt():
    """A prompt whose nearest seen prompts all failed is predicted lower than by GPS-M, whose prior for an
    unseen prompt is the PPM's alone."""
    env = world()
    gpsn = GPSNeighbours(env, seed=0, posterior="mean", candidates=None, neighbours=4, ppm=SMALL)
    gpsm = GPSMemory(env, seed=0, posterior="mean", candidates=None, ppm=SMALL)
    target = 150
    similar = np.argsort(-(gpsn.embeddings[:100] @ gpsn.embeddings[target]))[:B]
    for agent in (gpsn, gpsm):
        agent.act(obs_of(similar, np.zeros((B, K)), 1))
    assert gpsn._gamma(None)[target] < gpsm._gamma(None)[target]


@FAST
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 5),
       config=st.sampled_from([{}, {"candidates": None, "neighbours": 3}, {"posterior": "thompson"}]))
def test_batches_are_valid_and_seeded(seed, steps, config):
    env = world(max_steps=steps)
    first = run(env, GPSNeighbours(env, seed=seed, ppm=SMALL, **config), steps)
    second = run(env, GPSNeighbours(env, seed=seed, ppm=SMALL, **config), steps)
    for a, b in zip(first, second, strict=True):
        assert_valid(a)
        assert np.array_equal(a, b)


def test_state_round_trip_continues_identically():
    env = world(max_steps=6)
    a = GPSNeighbours(env, seed=1, ppm=SMALL)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(a.act(obs))
    b = GPSNeighbours(env, seed=7, ppm=SMALL)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(prompts_of(a.act(obs)), prompts_of(b.act(obs)))
