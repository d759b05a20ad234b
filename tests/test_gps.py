"""GPS: the PPM learns and generalises; the agent follows the selection contract; bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ENV_DEFAULTS

from gps_env.agents import GPS
from gps_env.metrics import spearman
from gps_env.models import PPM, PPMConfig
from gps_env.models import ppm as ppm_module
from gps_env.pool import PromptPool
from gps_env.selectors import greedy_diverse, utility
from gps_env.tasks import AdditionTask

B, K, N = ENV_DEFAULTS["batch_size"], ENV_DEFAULTS["rollouts_per_prompt"], ENV_DEFAULTS["pool_size"]


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    e = rng.normal(size=(n, d)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.parametrize("mode", ["stochastic", "none"])
def test_ppm_elbo_rises_on_a_fixed_batch_and_predictions_are_probabilities(mode):
    rng = np.random.default_rng(0)
    e = torch.from_numpy(unit_rows(rng, 32, 16))
    success = torch.from_numpy((rng.random(32) < 0.5).astype(np.float32) * 0.75 + 0.125)
    torch.manual_seed(0)
    model = PPM(16, PPMConfig(hidden=32, latent=4, latent_mode=mode))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    history = (e[:8], success[:8])

    def neg_elbo() -> float:
        g = torch.Generator().manual_seed(1)
        return float(np.mean([model.negative_elbo(e, success, 8, history, g)[0].item() for _ in range(8)]))

    start = neg_elbo()
    for _ in range(150):
        loss, _ = model.negative_elbo(e, success, 8, history, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert neg_elbo() < start - 0.5
    gamma = model.predict(e, history, generator)
    assert gamma.shape == (32,) and torch.all((gamma >= 0) & (gamma <= 1))
    assert spearman(gamma.numpy(), success.numpy()) > 0.8  # it fits the batch it was trained on


def test_ppm_prediction_is_seeded_and_first_step_uses_the_standard_normal_prior():
    model = PPM(8, PPMConfig(hidden=16, latent=4))
    prior = model.prior(None)
    assert torch.equal(prior.loc, torch.zeros(4)) and torch.equal(prior.scale, torch.ones(4))
    e = torch.from_numpy(unit_rows(np.random.default_rng(0), 10, 8))
    a = model.predict(e, None, torch.Generator().manual_seed(3))
    b = model.predict(e, None, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("rows", [37, 300])
def test_ppm_prediction_in_chunks_is_the_decoders_mean_probability_bit_for_bit(monkeypatch, rows):
    """predict() runs the decoder through reused buffers, chunk by chunk: the result must be exactly the
    decoder's own forward pass over the same chunks with the same latent draws (a short last chunk too)."""
    rng = np.random.default_rng(4)
    model = PPM(16, PPMConfig(hidden=32, latent=4, samples=3))
    e = torch.from_numpy(unit_rows(rng, rows, 16))
    history = (e[:8], torch.from_numpy(rng.random(8).astype(np.float32)))
    monkeypatch.setattr(ppm_module, "PREDICT_CHUNK", 16)
    got = model.predict(e, history, torch.Generator().manual_seed(5))
    with torch.no_grad():
        prior = model.prior(history)
        eps = torch.randn((3, 4), generator=torch.Generator().manual_seed(5))
        z = prior.loc + prior.scale * eps
        want = torch.cat([torch.sigmoid(model.logits(rows, z)).mean(0) for rows in e.split(16)])
    assert torch.equal(got, want)


def test_ppm_config_validation():
    with pytest.raises(ValueError, match="latent_mode"):
        PPMConfig(latent_mode="deterministic")
    with pytest.raises(ValueError, match="divisible"):
        PPMConfig(hidden=30, heads=4)


@pytest.mark.parametrize(("field", "bad"), [
    ("lr", float("nan")), ("lr", float("inf")), ("lr", 0.0), ("lr", -1e-3), ("lr", "1e-3"), ("lr", None),
    ("lr", True), pytest.param("lr", 10**400, id="lr-10**400"), ("kl_weight", float("nan")),
    ("kl_weight", float("inf")), ("kl_weight", -0.5), ("kl_weight", "1"), ("hidden", 64.0), ("hidden", True),
    ("latent", "16"), ("samples", 0), ("updates", 1.5), pytest.param("replay", 2**70, id="replay-2**70"),
    ("layers", None), ("latent_mode", ["none"]), ("set_size", 0), ("set_size", 8.0), ("set_size", True),
])
def test_ppm_config_refuses_bad_fields_by_name(field, bad):
    with pytest.raises(ValueError, match=field):
        PPMConfig(**{field: bad})


def test_ppm_config_takes_numpy_numbers_as_python_ones():
    config = PPMConfig(hidden=np.int64(32), samples=np.int32(2), lr=np.float32(0.5))
    assert type(config.hidden) is int and type(config.samples) is int and type(config.lr) is float
    assert config == PPMConfig(hidden=32, samples=2, lr=0.5)


def test_ppm_set_size_at_or_above_the_batch_changes_nothing_and_draws_nothing():
    """B ≤ set_size reads the whole set with no random draw: the same loss, gradients and generator state as
    without a cap (the committed B = 32 runs replay under the default cap)."""
    rng = np.random.default_rng(2)
    e = torch.from_numpy(unit_rows(rng, 3 * 12, 16)).view(3, 12, 16)
    success = torch.from_numpy(rng.random((3, 12)).astype(np.float32))
    history = (e.roll(1, 0), success.roll(1, 0))
    results = []
    for cap in (None, 12, 64):
        torch.manual_seed(0)
        model = PPM(16, PPMConfig(hidden=16, latent=4, set_size=cap))
        generator = torch.Generator().manual_seed(7)
        loss, _ = model.negative_elbo(e, success, 8, history, generator, has_history=torch.tensor([0, 1, 1]) > 0)
        loss.backward()
        gamma = model.predict(e[0], (e[1], success[1]), generator)
        results.append((loss.detach(), [p.grad for p in model.parameters()], gamma, generator.get_state()))
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0]) and torch.equal(other[2], results[0][2])
        assert all(torch.equal(a, b) for a, b in zip(other[1], results[0][1]))
        assert torch.equal(other[3], results[0][3])


def test_ppm_set_size_reads_a_seeded_random_subset_of_each_set():
    model = PPM(4, PPMConfig(hidden=8, latent=2, heads=2, set_size=5))
    e = torch.arange(2 * 9 * 4, dtype=torch.float32).view(2, 9, 4)  # row r of set i: 36 i + 4 r + (0..3)
    success = torch.arange(18, dtype=torch.float32).view(2, 9)
    kept_e, kept_s = model.encoded_set(e, success, torch.Generator().manual_seed(0))
    assert kept_e.shape == (2, 5, 4) and kept_s.shape == (2, 5)
    for i in range(2):
        members = kept_s[i].long() - 9 * i
        assert members.unique().numel() == 5 and bool(((members >= 0) & (members < 9)).all())  # distinct members
        assert torch.equal(kept_e[i], e[i, members])  # each embedding stays with its own success
    again = model.encoded_set(e, success, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], kept_e) and torch.equal(again[1], kept_s)
    other = model.encoded_set(e, success, torch.Generator().manual_seed(1))
    assert not torch.equal(other[1], kept_s)
    single_e, single_s = model.encoded_set(e[0], success[0], torch.Generator().manual_seed(0))  # unbatched
    assert single_e.shape == (5, 4) and torch.equal(single_e, e[0, single_s.long()])
    with pytest.raises(ValueError, match="generator"):
        model.encoded_set(e, success, None)
    with torch.no_grad():  # the encoders read the subset: the prior over 9 members is the prior over those 5
        generator = torch.Generator().manual_seed(3)
        capped = model.prior((e[0], success[0]), generator=generator)
        subset = model.encoded_set(e[0], success[0], torch.Generator().manual_seed(3))
        whole = model.prior_encoder(*subset)
    assert torch.equal(capped.loc, whole.loc) and torch.equal(capped.scale, whole.scale)


def synthetic_obs(batch: np.ndarray, success: np.ndarray, step: int, n: int) -> dict[str, np.ndarray]:
    rewards = (np.arange(K)[None, :] < np.round(success * K)[:, None]).astype(np.float32)
    zeros = np.zeros(n, np.int64)
    return {"last_batch": batch.astype(np.int64), "last_rewards": rewards, "times_selected": zeros,
            "rollouts": zeros, "successes": zeros, "last_seen": zeros - 1, "step": np.array([step], np.int64),
            "rollouts_spent": np.array([step * len(batch) * K], np.int64)}


def test_gps_generalises_to_prompts_it_never_saw(make_env):
    """Success depends on the digit count, which WordLlama sees in the text: after training on batches of
    some prompts, GPS ranks prompts it never observed by difficulty (Spearman > 0.4)."""
    task = AdditionTask(width=5)
    rng = np.random.default_rng(0)
    seen, problems = set(), []
    while len(problems) < 400:
        p = task.sample(rng)
        if p.uid not in seen:
            seen.add(p.uid)
            problems.append(p)
    pool = PromptPool(problems, [task])
    truth = np.array([1.0 - 0.2 * (p.meta["digits"] - 1) for p in problems])  # 1.0 ... 0.2
    env = make_env(pool=pool, heldout=pool, batch_size=32)
    agent = GPS(env, seed=0, ppm=PPMConfig(updates=8))
    train_ids, test_ids = np.arange(300), np.arange(300, 400)
    for step in range(1, 41):
        batch = rng.choice(train_ids, size=32, replace=False)
        agent.observe(synthetic_obs(batch, truth[batch], step, len(pool)))
    gamma = agent.predict_success()
    assert spearman(gamma[test_ids], truth[test_ids]) > 0.4


def test_gps_acts_through_the_env_and_reports_spearman(make_env):
    env = make_env(lenient=True, max_steps=3)
    agent = GPS(env, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = agent.act(obs)
        batch = action["prompts"]
        assert env.action_space.contains(batch)
        assert np.all((action["predictions"] >= 0) & (action["predictions"] <= 1))
        obs, _, _, truncated, info = env.step(action)
        assert "spearman" in info
    assert truncated and len(agent.log) == 3 and {"utility", "dispersion", "inter_step"} <= set(agent.log[-1])
    assert agent.last_elbo["neg_elbo"] > 0


def test_gps_with_zero_lambda_picks_top_b_by_predicted_utility(make_env):
    env = make_env()
    agent = GPS(env, seed=0, lam=0.0, candidates=None, draws="mean")
    obs, _ = env.reset(seed=0)
    agent.generator.manual_seed(0)
    gamma = agent.predict_success()
    agent.generator.manual_seed(0)  # the same latent draws inside act
    action = agent.act(obs)
    expected, _ = greedy_diverse(utility(gamma), agent.embeddings, B, 0.0)
    assert set(action["prompts"].tolist()) == set(expected.tolist())


def test_gps_candidates_score_only_the_candidates_as_the_whole_pool_would(make_env):
    env = make_env(lenient=True)
    agent = GPS(env, seed=0, candidates=2, diversity="sum", draws="mean")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(agent.act(obs))  # some history, so the prior is not N(0, I)
    agent.observe(obs)
    agent._learnt_step = int(obs["step"][0])
    state, rng_state = agent.generator.get_state(), agent.rng.bit_generator.state
    gamma = agent.predict_success()
    pool = agent.rng.choice(agent.pool_size, size=2 * B, replace=False)  # the candidates act will draw
    agent.generator.set_state(state)
    agent.rng.bit_generator.state = rng_state
    action = agent.act(obs)
    assert set(action["prompts"].tolist()) <= set(pool.tolist())
    np.testing.assert_allclose(action["predictions"], np.clip(gamma[action["prompts"]], 0, 1), atol=1e-6)
    expected, _ = greedy_diverse(utility(gamma) / 0.25, agent.embeddings, B, agent.lam,
                                 previous=agent.history[-1][0], candidates=pool)
    assert action["prompts"].tolist() == expected.tolist()


def test_gps_takes_a_numpy_seed(make_env):
    env = make_env()
    obs, _ = env.reset(seed=0)
    assert GPS(env, seed=np.int64(3)).act(obs)["prompts"].tolist() == GPS(env, seed=3).act(obs)["prompts"].tolist()


def test_gps_refuses_the_state_of_another_model_and_changes_nothing(make_env):
    env = make_env(lenient=True)
    agent, other = GPS(env, seed=0), GPS(env, seed=0, ppm={"latent_mode": "none"})
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(agent.act(obs))
    agent.act(obs)
    other.act(obs)
    before = agent.state_dict()
    for state, match in [(other.state_dict(), "model"),
                         ({**before, "history": [(np.arange(B + 1), np.zeros(B + 1))] * 2}, "history"),
                         ({**before, "optimizer": other.state_dict()["optimizer"]}, "optimizer")]:
        with pytest.raises(ValueError, match=match):
            agent.load_state_dict(state)
        after = agent.state_dict()
        assert all(torch.equal(after["model"][k], v) for k, v in before["model"].items())
        assert torch.equal(after["generator"], before["generator"]) and after["steps_seen"] == before["steps_seen"]
        assert all(np.array_equal(a, b) for pair in zip(after["history"], before["history"]) for a, b in zip(*pair))


def test_gps_state_dict_round_trip(make_env):
    env = make_env(lenient=True, max_steps=6)
    a = GPS(env, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, *_ = env.step(a.act(obs))
    b = GPS(env, seed=5)
    b.load_state_dict(a.state_dict())
    first, second = a.act(obs), b.act(obs)
    assert np.array_equal(first["prompts"], second["prompts"])
    assert np.allclose(first["predictions"], second["predictions"])


def test_gps_bad_input(make_env):
    env = make_env()
    for bad in (float("nan"), float("inf"), "4", True, 0.5):
        with pytest.raises(ValueError, match="candidates"):
            GPS(env, candidates=bad)
    with pytest.raises(ValueError, match="learning_rate"):
        GPS(env, ppm={"learning_rate": 1e-3})  # an unknown field, not a TypeError
    with pytest.raises(ValueError, match="lr"):
        GPS(env, ppm={"lr": float("nan")})
    with pytest.raises(ValueError, match="ppm"):
        GPS(env, ppm="small")
    with pytest.raises(ValueError, match="seed"):
        GPS(env, seed=None)
    with pytest.raises(ValueError, match="inter_step"):
        GPS(env, inter_step="no")
    with pytest.raises(ValueError, match="lam"):
        GPS(env, lam=-0.1)
    with pytest.raises(ValueError, match="target"):
        GPS(env, target=2.0)
    bad = unit_rows(np.random.default_rng(0), N, 8)
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GPS(env, embeddings=bad)
    with pytest.raises(ValueError, match="shape"):
        GPS(env, embeddings=unit_rows(np.random.default_rng(0), N - 1, 8))


def test_empty_prompt_gets_a_finite_embedding():
    from gps_env.pool import embed_texts

    e = embed_texts(["", "12+3="])
    assert np.all(np.isfinite(e)) and np.linalg.norm(e[1]) == pytest.approx(1.0, abs=1e-5)
