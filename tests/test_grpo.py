"""GRPO advantages and updates on the tiny policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import params_of, same_params

from gps_env.engines import SamplingParams, TransformersEngine
from gps_env.grpo import GRPOConfig, GRPOTrainer, group_advantages
from gps_env.tasks import AdditionTask


def test_group_advantages_values():
    rewards = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=float)
    adv = group_advantages(rewards, scale_by_std=True)
    assert np.array_equal(adv[0], np.zeros(4)) and np.array_equal(adv[1], np.zeros(4))
    np.testing.assert_allclose(adv[2], np.array([0.75, -0.25, -0.25, -0.25]) / np.sqrt(3 / 16), rtol=1e-5)
    np.testing.assert_allclose(adv[3], [1, 1, -1, -1], rtol=1e-5)
    np.testing.assert_allclose(adv.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(adv[2:].std(axis=1), 1, rtol=1e-5)
    raw = group_advantages(rewards, scale_by_std=False)
    np.testing.assert_allclose(raw[2], [0.75, -0.25, -0.25, -0.25])
    np.testing.assert_allclose(raw[3], [0.5, 0.5, -0.5, -0.5])
    assert np.all(raw[:2] == 0)


def test_group_advantages_random_groups_have_zero_mean():
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 2, size=(50, 8)).astype(float)
    adv = group_advantages(rewards)
    np.testing.assert_allclose(adv.mean(axis=1), 0, atol=1e-9)
    constant = rewards.min(axis=1) == rewards.max(axis=1)
    assert np.all(adv[constant] == 0)
    assert np.all(np.sign(adv) == np.sign(rewards - rewards.mean(axis=1, keepdims=True)))


PROMPTS = [p.prompt for p in (AdditionTask(width=3).sample(np.random.default_rng(s)) for s in range(8))]
SAMPLING = SamplingParams(max_new_tokens=6)


@pytest.fixture
def setup(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    return model, tokenizer, TransformersEngine(model, tokenizer)


def rollouts(engine, seed=0, n=4, prompts=PROMPTS):
    return engine.generate(prompts, n, SAMPLING, torch.Generator().manual_seed(seed))


def test_constant_rewards_do_not_update(setup):
    model, tokenizer, engine = setup
    trainer = GRPOTrainer(model, GRPOConfig(lr=1e-2), tokenizer.pad_token_id)
    r = rollouts(engine)
    before = params_of(model)
    for fill in (0.0, 1.0):
        rewards = np.full((len(PROMPTS), 4), fill)
        rewards[0] = 1 - fill  # constant within every group, different across groups
        stats = trainer.step(r.prompt_ids, r.completion_ids, rewards)
        assert stats.kept_groups == 0 and stats.total_groups == len(PROMPTS)
        assert stats.loss == 0.0 and stats.tokens == r.completion_tokens
    assert same_params(params_of(model), before)
    assert not trainer.optimizer.state  # no optimiser step was taken


def test_zero_weights_do_not_update(setup):
    model, tokenizer, engine = setup
    trainer = GRPOTrainer(model, GRPOConfig(lr=1e-2), tokenizer.pad_token_id)
    r = rollouts(engine)
    rewards = np.tile([1.0, 0.0, 0.0, 1.0], (len(PROMPTS), 1))
    before = params_of(model)
    stats = trainer.step(r.prompt_ids, r.completion_ids, rewards, weights=np.zeros(len(PROMPTS)))
    assert stats.kept_groups == 0
    assert same_params(params_of(model), before)
    # The same batch with non-zero weights does update (so the check above can fail).
    weights = np.zeros(len(PROMPTS))
    weights[3] = 1.0
    stats = trainer.step(r.prompt_ids, r.completion_ids, rewards, weights=weights)
    assert stats.kept_groups == 1
    assert not same_params(params_of(model), before)


def test_mixed_groups_update_and_report_stats(setup):
    model, tokenizer, engine = setup
    trainer = GRPOTrainer(model, GRPOConfig(lr=1e-3, kl_coef=0.1), tokenizer.pad_token_id)
    assert trainer.reference is not None
    r = rollouts(engine)
    rewards = np.zeros((len(PROMPTS), 4))
    rewards[[0, 2, 5], 1] = 1.0
    before = params_of(model)
    stats = trainer.step(r.prompt_ids, r.completion_ids, rewards)
    assert stats.kept_groups == 3 and stats.total_groups == len(PROMPTS)
    assert stats.tokens == r.completion_tokens
    assert np.isfinite(stats.loss) and stats.grad_norm > 0
    assert stats.kl == pytest.approx(0.0, abs=1e-6)  # first step: policy == reference
    assert stats.clip_fraction == 0.0  # one epoch: ratio is exactly 1
    assert set(stats.as_dict()) == {"loss", "grad_norm", "kept_groups", "total_groups", "tokens", "clip_fraction",
                                    "kl"}
    assert not same_params(params_of(model), before)
    assert not model.training
    # The reference stays the initial policy.
    assert same_params(params_of(trainer.reference), before)
    stats2 = trainer.step(r.prompt_ids, r.completion_ids, rewards)
    assert stats2.kl > 0


def test_grpo_learns_a_learnable_preference(setup):
    """Reward completions that start with "7" (about 6% of the warm start's samples): GRPO must raise that."""
    model, tokenizer, engine = setup
    trainer = GRPOTrainer(model, GRPOConfig(lr=1e-2), tokenizer.pad_token_id)

    def rate(seed: int) -> float:
        r = rollouts(engine, seed=seed, n=64)
        return float(np.mean([t.startswith("7") for t in r.texts]))

    initial = rate(123)
    generator = torch.Generator().manual_seed(1)
    kept = 0
    for _ in range(15):
        r = engine.generate(PROMPTS, 8, SAMPLING, generator)
        rewards = np.array([t.startswith("7") for t in r.texts], dtype=float).reshape(len(PROMPTS), 8)
        kept += trainer.step(r.prompt_ids, r.completion_ids, rewards).kept_groups
        engine.load_weights(model.state_dict())
    final = rate(123)
    assert kept > 0
    assert initial < 0.15
    assert final > initial + 0.3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [7, 40, 1 << 24])
def test_token_logprobs_match_the_plain_form_bit_for_bit(monkeypatch, dtype, chunk):
    """Chunked, checkpointed log-probs: the same values and logit gradients as log_softmax over everything."""
    from gps_env import grpo

    monkeypatch.setattr(grpo, "LOGPROB_CHUNK_ELEMENTS", chunk * 11)  # chunk positions at a vocabulary of 11
    g = torch.Generator().manual_seed(0)
    base = (3 * torch.randn(3, 9, 11, generator=g)).to(dtype)
    ids = torch.randint(0, 11, (3, 9), generator=g)
    weights = torch.randn(3, 8, generator=g)

    def run(fn):
        logits = base.clone().requires_grad_(True)
        out = fn(logits)
        (out * weights).sum().backward()
        return out.detach(), logits.grad

    plain = run(lambda x: torch.log_softmax(x[:, :-1].float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1))
    ours = run(lambda x: grpo.token_logprobs(x, ids))
    assert ours[0].dtype == torch.float32 and ours[0].shape == (3, 8)
    assert torch.equal(ours[0], plain[0])
    assert torch.equal(ours[1], plain[1])
    with torch.no_grad():
        assert torch.equal(grpo.token_logprobs(base, ids), plain[0])
