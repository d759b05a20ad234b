"""GPS's readings (max-min greedy, one latent draw, candidates, uniform warm-up), GPS-M's per-prompt memory and
the isotonic calibration of γ̂."""

from __future__ import annotations

import numpy as np
import pytest
from _sim_agents import B, K, N, assert_valid, prompts_of, run, world
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gps_env.agents import GPS, GPSMemory
from gps_env.metrics import calibration_error
from gps_env.models import PPMConfig
from gps_env.selectors import greedy_maxmin, mixed_probability, utility
from gps_env.selectors.calibration import isotonic_apply, isotonic_fit, platt_apply, platt_fit

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = PPMConfig(hidden=16, latent=4, layers=1, heads=2, samples=2, updates=1, replay=2)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    e = rng.normal(size=(n, d)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def reference_maxmin(u, e, b, lam, previous=None, candidates=None):
    """The rule written out pick by pick: argmax of ½u + λ·min distance to the picks and the previous batch."""
    pool = list(range(len(u))) if candidates is None else list(candidates)
    anchors = [] if previous is None else list(previous)
    picked: list[int] = []
    for _ in range(b):
        best, best_gain = None, -np.inf
        for i in pool:
            if i in picked:
                continue
            near = min((1.0 - float(e[i] @ e[j]) for j in anchors + picked), default=0.0)
            gain = 0.5 * u[i] + lam * near
            if gain > best_gain:
                best, best_gain = i, gain
        picked.append(best)
    return picked


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(3, 30), lam=st.sampled_from([0.0, 0.1, 0.5, 2.0]),
       with_previous=st.booleans(), with_candidates=st.booleans(), data=st.data())
def test_maxmin_greedy_is_the_rule_pick_by_pick(seed, n, lam, with_previous, with_candidates, data):
    rng = np.random.default_rng(seed)
    e = unit_rows(rng, n, 5)
    u = -rng.random(n)
    candidates = np.sort(rng.choice(n, size=data.draw(st.integers(2, n)), replace=False)) if with_candidates else None
    size = n if candidates is None else candidates.size
    b = data.draw(st.integers(1, size))
    previous = rng.choice(n, size=min(3, n), replace=False) if with_previous else None
    picked, terms = greedy_maxmin(u, e, b, lam, previous=previous, candidates=candidates)
    assert picked.dtype == np.int64 and np.unique(picked).size == b
    if candidates is not None:
        assert set(picked.tolist()) <= set(candidates.tolist())
    expected = reference_maxmin(u, e, b, lam, previous, candidates)
    # float32 products against float64 ones: compare the objective reached, not indices that may tie
    assert picked.tolist() == expected or np.isclose(u[picked].sum(), u[expected].sum())
    assert {"utility", "dispersion", "inter_step", "min_distance"} <= set(terms)


def test_maxmin_avoids_the_previous_batch_and_near_duplicates():
    e = np.eye(6, dtype=np.float32)
    e = np.concatenate([e, e])  # every prompt has an exact duplicate
    u = np.zeros(12)
    picked, terms = greedy_maxmin(u, e, 4, 1.0, previous=np.array([0, 1]))
    assert not {0, 1, 6, 7} & set(picked.tolist())  # the previous batch and its duplicates are at distance 0
    assert terms["min_distance"] == pytest.approx(1.0)  # no two picks are duplicates
    top, _ = greedy_maxmin(-np.arange(12.0), e, 3, 0.0)
    assert top.tolist() == [0, 1, 2]  # λ = 0: the best utilities


def test_maxmin_refuses_bad_input_by_name():
    e = unit_rows(np.random.default_rng(0), 5, 3)
    with pytest.raises(ValueError, match="lam"):
        greedy_maxmin(np.zeros(5), e, 2, float("nan"))
    with pytest.raises(ValueError, match="utilities"):
        greedy_maxmin(np.array([0, 0, np.nan, 0, 0]), e, 2, 0.5)
    bad = e.copy()
    bad[2, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        greedy_maxmin(np.zeros(5), bad, 2, 0.5)
    with pytest.raises(ValueError, match="b=6"):
        greedy_maxmin(np.zeros(5), e, 6, 0.5)


def test_the_pdts_reading_draws_one_latent_and_runs_maxmin_over_its_candidates():
    env = world()
    assert (GPS(env).diversity, GPS(env).draws, GPS(env).candidates) == ("sum", "mean", 4.0)  # the default
    agent = GPS(env, seed=0, ppm=SMALL, diversity="min", draws="thompson", candidates=16)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(agent.act(obs))
    agent.observe(obs)
    agent._learnt_step = int(obs["step"][0])
    state, rng_state = agent.generator.get_state(), agent.rng.bit_generator.state
    pool = agent.rng.choice(N, size=min(N, 16 * B), replace=False)
    gamma = agent.predict_for(agent.embeddings[pool], samples=1)
    agent.generator.set_state(state)
    agent.rng.bit_generator.state = rng_state
    action = agent.act(obs)
    scores = np.full(N, 0.5)
    scores[pool] = gamma
    expected, _ = greedy_maxmin(utility(scores) / 0.25, agent.embeddings, B, agent.lam,
                                previous=agent.history[-1][0], candidates=pool)
    assert action["prompts"].tolist() == expected.tolist()
    np.testing.assert_allclose(action["predictions"], np.clip(scores[expected], 0, 1), atol=1e-6)


def test_one_draw_is_the_one_sample_ppm():
    """draws="thompson" is the PPM with M = 1 (the same generator draws)."""
    env = world(max_steps=4)
    one = run(env, GPS(env, seed=3, ppm=SMALL), 4)
    m1 = run(env, GPS(env, seed=3, draws="mean", ppm=PPMConfig(**{**SMALL.__dict__, "samples": 1})), 4)
    assert all(np.array_equal(a, b) for a, b in zip(one, m1))


def test_warmup_steps_are_uniform_and_the_model_still_learns():
    env = world(max_steps=6)
    agent = GPS(env, seed=4, warmup=3, ppm=SMALL)
    first = {k: v.clone() for k, v in agent.model.state_dict().items()}
    rng = np.random.default_rng(4)
    batches = run(env, agent, 5)
    for batch in batches[:3]:
        assert batch.tolist() == sorted(rng.choice(N, B, replace=False).tolist())
        assert_valid(batch)
    assert agent.steps_seen == 4 and len(agent.log) == 5 and "utility" in agent.log[-1]
    assert any(not np.array_equal(first[k].numpy(), v.numpy()) for k, v in agent.model.state_dict().items())


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(seed=5, cooldown=1, config={"warmup": 2})  # the warmup's uniform batch once ignored the cooldown
@given(seed=st.integers(0, 2**32), cooldown=st.integers(1, N // B - 1),
       config=st.sampled_from([{}, {"candidates": None}, {"candidates": 16}, {"diversity": "min"}, {"warmup": 2}]))
def test_cooldown_keeps_a_prompt_out_for_that_many_steps(seed, cooldown, config):
    steps = 8
    env = world(max_steps=steps)
    agent = GPS(env, seed=seed, ppm=SMALL, cooldown=cooldown, **config)
    batches = run(env, agent, steps, seed=seed)
    for t, batch in enumerate(batches):
        assert_valid(batch)
        recent = set(np.concatenate(batches[max(0, t - cooldown):t]).tolist()) if t else set()
        assert recent.isdisjoint(batch.tolist()), f"step {t} repeats a prompt picked in the last {cooldown} steps"
    for t in range(steps):
        assert (agent.last_pick[batches[t]] >= t).all()
    assert (agent.last_pick == -1).sum() == N - np.unique(np.concatenate(batches)).size


def test_bad_cooldowns_are_refused():
    # cooldown=0 (the default) keeping the earlier trajectories is checked against committed runs instead:
    # python benchmarks/replay_runs.py --runs docs/results/h2h_rg_v1 --steps 30 --selectors gps gps-m
    env = world(max_steps=4)
    assert GPS(env).cooldown == 0
    for bad in (-1, 1.5, N // B, float("nan"), True):
        with pytest.raises(ValueError, match="cooldown"):
            GPS(env, cooldown=bad)


def test_cooldown_state_round_trip_and_a_bad_last_pick_is_refused():
    env = world(max_steps=6)
    a = GPSMemory(env, seed=1, ppm=SMALL, cooldown=3)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(a.act(obs))
    b = GPSMemory(env, seed=7, ppm=SMALL, cooldown=3)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(b.last_pick, a.last_pick)
    assert np.array_equal(prompts_of(a.act(obs)), prompts_of(b.act(obs)))
    for bad in (np.full(N, 99, np.int64), np.full(N - 1, -1, np.int64), np.full(N, -2, np.int64),
                np.full(N, 0.5)):
        state = a.state_dict()
        state["last_pick"] = bad
        with pytest.raises(ValueError, match="last_pick"):
            b.load_state_dict(state)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), candidates=st.sampled_from([1, 2, 4, 5]), cooldown=st.sampled_from([0, 2]))
def test_epoch_order_deals_each_prompt_once_per_epoch(seed, candidates, cooldown):
    """Candidate sets dealt from a shuffled epoch are disjoint within it, so are the batches picked from them."""
    per_epoch = N // ((candidates + cooldown) * B)  # sets surely dealt from the first pass (the cooldown's
    # prompts are skipped as they come: up to cooldown·B more of the pass per set)
    steps = per_epoch + 2
    env = world(max_steps=steps)
    agent = GPS(env, seed=seed, ppm=SMALL, candidates=candidates, candidate_order="epoch", cooldown=cooldown)
    batches = run(env, agent, steps, seed=seed)
    for batch in batches:
        assert_valid(batch)
    first_epoch = np.concatenate(batches[:per_epoch])
    assert np.unique(first_epoch).size == first_epoch.size
    if not cooldown:  # the queue holds what the first sets left of the pool, then the next epoch's rest
        assert agent.candidate_queue.size < N and np.unique(agent.candidate_queue).size == agent.candidate_queue.size


def test_epoch_order_state_round_trip_and_bad_settings_are_refused():
    env = world(max_steps=6)
    a = GPSMemory(env, seed=1, ppm=SMALL, candidate_order="epoch")
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(a.act(obs))
    assert a.candidate_queue.size == N - 3 * 4 * B
    b = GPSMemory(env, seed=7, ppm=SMALL, candidate_order="epoch")
    b.load_state_dict(a.state_dict())
    assert np.array_equal(b.candidate_queue, a.candidate_queue)
    assert np.array_equal(prompts_of(a.act(obs)), prompts_of(b.act(obs)))
    for bad, match in ((np.array([0, 0]), "repeats"), (np.array([N]), "outside"), (np.array([0.5]), "integers")):
        state = a.state_dict()
        state["candidate_queue"] = bad
        before = b.state_dict()
        with pytest.raises(ValueError, match="candidate_queue"):
            b.load_state_dict(state)
        with pytest.raises(ValueError, match=match):
            b.load_state_dict(state)
        assert np.array_equal(b.state_dict()["candidate_queue"], before["candidate_queue"])
    assert GPS(env).candidate_order == "random"
    for bad in ("epochs", None, 1):
        with pytest.raises(ValueError, match="candidate_order"):
            GPS(env, candidate_order=bad)
    with pytest.raises(ValueError, match="candidate_order"):
        GPS(env, candidates=None, candidate_order="epoch")


# ------------------------------------------------------------------------------------------------ GPS-M
def obs_of(batch, rewards, step):
    return {"last_batch": np.asarray(batch, np.int64), "last_rewards": np.asarray(rewards, np.float32),
            "times_selected": np.zeros(N, np.int64), "step": np.array([step], np.int64)}


def test_gpsm_mean_is_the_ppm_for_unseen_prompts_and_the_beta_posterior_for_seen_ones():
    env = world()
    agent = GPSMemory(env, seed=0, posterior="mean", candidates=None, strength=4.0, decay=0.5, ppm=SMALL)
    batch = np.arange(B)
    rewards = np.zeros((B, K))
    rewards[0] = 1.0  # prompt 0 solved 8/8, prompt 1.. failed 0/8
    agent.act(obs_of(batch, rewards, 1))
    assert agent.alpha[0] == K and agent.beta[0] == 0 and agent.beta[1] == K and agent.alpha[B:].sum() == 0
    state = agent.generator.get_state()
    gamma = agent.predict_success()
    agent.generator.set_state(state)
    corrected = agent._gamma(None)
    prior = np.clip(gamma, 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(corrected[B:], prior[B:], rtol=1e-12)
    assert corrected[0] == pytest.approx((4 * prior[0] + K) / (4 + K))
    assert corrected[1] == pytest.approx(4 * prior[1] / (4 + K))
    agent.act(obs_of(batch, np.ones((B, K)), 2))  # decay 0.5, then 8 more successes
    assert agent.alpha[1] == K and agent.beta[1] == K / 2 and agent.alpha[0] == 1.5 * K


@FAST
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 6),
       config=st.sampled_from([{}, {"candidates": None}, {"posterior": "mean", "diversity": "sum"}]))
def test_gpsm_batches_are_valid_and_seeded(seed, steps, config):
    env = world(max_steps=steps)
    first = run(env, GPSMemory(env, seed=seed, ppm=SMALL, **config), steps)
    second = run(env, GPSMemory(env, seed=seed, ppm=SMALL, **config), steps)
    for a, b in zip(first, second):
        assert_valid(a)
        assert np.array_equal(a, b)


@FAST
@given(seed=st.integers(0, 2**32))
def test_gpsm_observing_the_same_step_twice_learns_once(seed):
    agent = GPSMemory(world(), seed=seed, ppm=SMALL)
    rng = np.random.default_rng(seed)
    obs = obs_of(rng.choice(N, B, replace=False), (rng.random((B, K)) < 0.5).astype(np.float32), 1)
    agent.act(obs)
    alpha, beta, seen = agent.alpha.copy(), agent.beta.copy(), agent.steps_seen
    agent.act(obs)
    assert np.array_equal(alpha, agent.alpha) and np.array_equal(beta, agent.beta) and agent.steps_seen == seen


def test_gpsm_state_round_trip_continues_identically():
    env = world(max_steps=6)
    a = GPSMemory(env, seed=1, ppm=SMALL)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(a.act(obs))
    b = GPSMemory(env, seed=7, ppm=SMALL)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(prompts_of(a.act(obs)), prompts_of(b.act(obs)))


# ------------------------------------------------------------------------------------------------ calibration
@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 60), weighted=st.booleans())
def test_isotonic_fit_is_monotone_and_keeps_the_weighted_mean(seed, n, weighted):
    rng = np.random.default_rng(seed)
    x = np.round(rng.random(n), 1)  # ties in x on purpose
    y = rng.random(n)
    w = rng.random(n) + 0.01 if weighted else None
    knots = isotonic_fit(x, y, w)
    assert np.all(np.diff(knots[0]) > 0) and np.all(np.diff(knots[1]) >= 0)
    fitted = isotonic_apply(knots, x)
    weights = np.ones(n) if w is None else w
    assert np.all(np.diff(fitted[np.argsort(x, kind="stable")]) >= -1e-12)
    assert np.dot(weights, fitted) == pytest.approx(np.dot(weights, y))  # PAV's blocks keep their weighted sums
    assert y.min() - 1e-12 <= fitted.min() and fitted.max() <= y.max() + 1e-12


def test_isotonic_fit_pools_adjacent_violators():
    knots = isotonic_fit(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 0.0, 1.0]))
    np.testing.assert_allclose(isotonic_apply(knots, np.array([0.1, 0.2, 0.3, 0.4])), [0.0, 0.5, 0.5, 1.0])
    increasing = isotonic_fit(np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.4, 0.6]))
    np.testing.assert_allclose(isotonic_apply(increasing, np.array([0.0, 0.3, 1.0])), [0.2, 0.3, 0.6])
    for bad in [(np.array([]), np.array([])), (np.array([0.1, np.nan]), np.array([0.0, 1.0])),
                (np.array([0.1]), np.array([0.0, 1.0]))]:
        with pytest.raises(ValueError, match="isotonic_fit"):
            isotonic_fit(*bad)
    with pytest.raises(ValueError, match="weights"):
        isotonic_fit(np.array([0.1, 0.2]), np.array([0.0, 1.0]), np.array([-1.0, 1.0]))


def test_calibration_error_of_perfect_and_biased_predictions():
    observed = np.array([0.0, 0.25, 0.25, 1.0])
    assert calibration_error(observed, observed) == 0.0
    assert calibration_error(np.clip(observed - 0.1, 0, 1), observed) == pytest.approx(0.075)  # 0 stays in bin 0
    assert calibration_error(np.full(4, 0.5), observed) == pytest.approx(0.125)  # one bin, |0.5 - 0.375|
    with pytest.raises(ValueError, match="calibration_error"):
        calibration_error(np.zeros(3), np.zeros(4))


def test_isotonic_calibration_fits_recent_batches_and_reports_its_error():
    env = world(max_steps=8)
    agent = GPS(env, seed=2, ppm=SMALL, calibration="isotonic", calibration_window=3)
    plain = GPS(env, seed=2, ppm=SMALL)
    obs, _ = env.reset(seed=0)
    for _ in range(6):
        action = agent.act(obs)
        obs, _, _, _, info = env.step(action)
        assert 0.0 <= info["calibration_error"] <= 1.0
    assert len(agent.calibration_data) == 3 and agent.pending.shape == (B,)
    assert {"calibration_error_raw", "calibration_error"} <= set(agent.log[-1])
    raw = agent.predict_success(calibrated=False)
    preds = np.concatenate([p for p, _ in agent.calibration_data])
    success = np.concatenate([s for _, s in agent.calibration_data])
    assert np.allclose(agent.calibrate(raw), isotonic_apply(isotonic_fit(preds, success), raw))
    assert agent.calibrate(raw).min() >= success.min() and agent.calibrate(raw).max() <= success.max()
    assert plain.calibrate(raw) is raw  # calibration="none" leaves γ̂ alone
    with pytest.raises(ValueError, match="calibration"):
        GPS(env, calibration="beta")
    with pytest.raises(ValueError, match="calibration_window"):
        GPS(env, calibration_window=0)


def test_mixed_probability_is_the_chance_of_a_mixed_group():
    gamma = np.array([0.0, 0.15, 0.5, 1.0])
    np.testing.assert_allclose(mixed_probability(gamma, 8), [0.0, 1 - 0.15**8 - 0.85**8, 1 - 2 * 0.5**8, 0.0])
    rng = np.random.default_rng(0)
    draws = rng.random((20000, 8)) < 0.3
    mixed = (draws.any(axis=1) & ~draws.all(axis=1)).mean()
    assert mixed == pytest.approx(mixed_probability(np.array([0.3]), 8)[0], abs=0.01)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="k"):
            mixed_probability(gamma, bad)


def test_mixed_acquisition_scores_prompts_by_their_chance_of_a_mixed_group():
    env = world()
    agent = GPS(env, seed=0, ppm=SMALL, acquisition="mixed", lam=0.0, candidates=None)
    obs, _ = env.reset(seed=0)
    state = agent.generator.get_state()
    gamma = agent.predict_success()
    agent.generator.set_state(state)
    batch = agent.act(obs)["prompts"]
    best = np.argsort(-mixed_probability(gamma, K), kind="stable")[:B]
    assert set(batch.tolist()) == set(best.tolist())
    with pytest.raises(ValueError, match="acquisition"):
        GPS(env, acquisition="ucb")


def test_platt_fit_recovers_a_known_map_and_extrapolates():
    rng = np.random.default_rng(0)
    gamma = rng.uniform(0.05, 0.95, 4000)
    truth = platt_apply((0.6, -0.4), gamma)  # a model that is overconfident and too high
    observed = (rng.random(gamma.size) < truth).astype(float)
    a, b = platt_fit(gamma, observed)
    assert a == pytest.approx(0.6, abs=0.08) and b == pytest.approx(-0.4, abs=0.08)
    fitted = platt_apply((a, b), np.array([0.001, 0.5, 0.999]))
    assert 0 < fitted[0] < fitted[1] < fitted[2] < 1  # monotone, and defined beyond the fitted range
    assert platt_fit(np.array([0.2, 0.8]), np.array([0.0, 1.0]))[0] > 1  # separable pairs stay finite
    with pytest.raises(ValueError, match="platt_fit"):
        platt_fit(np.array([0.2, 0.8]), np.array([0.0, 1.5]))


def test_platt_calibration_maps_through_the_agent():
    env = world(max_steps=8)
    agent = GPS(env, seed=2, ppm=SMALL, calibration="platt")
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(agent.act(obs))
    raw = agent.predict_success(calibrated=False)
    preds = np.concatenate([p for p, _ in agent.calibration_data])
    success = np.concatenate([s for _, s in agent.calibration_data])
    np.testing.assert_allclose(agent.calibrate(raw), platt_apply(platt_fit(preds, success), raw))
    agent.calibration = "isotonic"  # switching the kind refits
    np.testing.assert_allclose(agent.calibrate(raw), isotonic_apply(isotonic_fit(preds, success), raw))
