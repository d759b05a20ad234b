"""GRPO advantages and updates on the tiny policy."""

from __future__ import annotations

import copy
import dataclasses
import functools

import numpy as np
import pytest
import torch
from conftest import params_of, same_params
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from gps_env.engines import SamplingParams, TransformersEngine
from gps_env.grpo import GRPOConfig, GRPOTrainer, _can_share_prefix, _Rows, _SharedPrefixRows, group_advantages
from gps_env.policy import enable_checkpointing
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


# Shared-prefix update: the same log-probs and gradients as the full prompt + completion rows.

VOCAB, PAD, EOS = 40, 0, 1


@functools.cache
def random_llama(attn: str) -> LlamaForCausalLM:
    """A tiny randomly initialised Llama with sharp logits (initializer_range 0.2), so mistakes show."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         initializer_range=0.2, pad_token_id=PAD, eos_token_id=EOS, attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


@st.composite
def grouped_rows(draw, n=None):
    """``(prompts, completions, n)``: groups of n rows sharing a prompt (or not), completions ending in EOS or not."""
    n = draw(st.sampled_from([1, 2, 8])) if n is None else n
    token = st.integers(2, VOCAB - 1)
    prompts, completions = [], []
    for _ in range(draw(st.integers(1, 4))):
        shared = draw(st.lists(token, min_size=1, max_size=12))
        differ = draw(st.booleans()) and draw(st.booleans())  # a quarter of the groups: a prompt per row
        for _ in range(n):
            prompts.append(draw(st.lists(token, min_size=1, max_size=12)) if differ else shared)
            body = draw(st.lists(token, min_size=0, max_size=6))
            completions.append(body + [EOS] if draw(st.booleans()) or not body else body)
    return prompts, completions, n


@settings(max_examples=40, deadline=None)
@given(rows=grouped_rows(), attn=st.sampled_from(["sdpa", "eager"]))
def test_shared_prefix_logprobs_match_the_full_rows(rows, attn):
    prompts, completions, _ = rows
    model, cpu = random_llama(attn), torch.device("cpu")
    full, shared = _Rows(prompts, completions, PAD, cpu), _SharedPrefixRows(prompts, completions, PAD, cpu)
    with torch.no_grad():
        a, b = full.logprobs(model)[full.mask.bool()], shared.logprobs(model)[shared.mask.bool()]
    assert a.shape == b.shape == (sum(map(len, completions)),)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_every_prompt_one_token_skips_the_prefix_forward():
    prompts, completions = [[5]] * 4, [[7, EOS], [EOS], [3, 4, 5], [9]]
    shared = _SharedPrefixRows(prompts, completions, PAD, torch.device("cpu"))
    assert shared.prefix is None
    full = _Rows(prompts, completions, PAD, torch.device("cpu"))
    model = random_llama("sdpa")
    with torch.no_grad():
        torch.testing.assert_close(shared.logprobs(model)[shared.mask.bool()], full.logprobs(model)[full.mask.bool()],
                                   atol=1e-5, rtol=0)


def one_step(model, config, batch, optimizer="sgd"):
    """One ``step`` from a copy of ``model``: (stats, gradients of the last epoch, parameters, forward input shapes)."""
    model = copy.deepcopy(model)
    trainer = GRPOTrainer(model, config, PAD)
    if optimizer == "sgd":  # parameters then differ by lr x gradient rounding (Adam's first step is sign-like)
        trainer.optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    shapes = []
    model.register_forward_pre_hook(lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    stats = trainer.step(*batch)
    return stats, {k: p.grad for k, p in model.named_parameters()}, params_of(model), shapes


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("config", [
    GRPOConfig(lr=1e-2),
    GRPOConfig(lr=1e-2, epochs=2, kl_coef=0.1, micro_batch_size=3),
    GRPOConfig(lr=1e-2, epochs=2, kl_coef=0.1, micro_batch_size=20, scale_by_std=False),
], ids=["default", "epochs2-kl-micro3", "epochs2-kl-micro20"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_shared_prefix_step_matches_the_full_rows(attn, config, optimizer):
    rng = np.random.default_rng(0)
    groups, n = 6, 8
    prompts = [[int(t) for t in rng.integers(2, VOCAB, rng.integers(2, 30))] for _ in range(groups)]
    prompt_ids = [p for p in prompts for _ in range(n)]
    completion_ids = [[int(t) for t in rng.integers(2, VOCAB, rng.integers(0, 7))] + [EOS] for _ in prompt_ids]
    rewards = rng.integers(0, 2, size=(groups, n)).astype(float)
    rewards[0], rewards[1] = 1.0, 0.0  # two skipped groups
    rewards[2, :2] = [0.0, 1.0]  # at least one mixed group
    model, batch = random_llama(attn), (prompt_ids, completion_ids, rewards)
    full = one_step(model, dataclasses.replace(config, shared_prefix=False), batch, optimizer)
    shared = one_step(model, config, batch, optimizer)
    kept = shared[0].kept_groups
    assert kept == full[0].kept_groups and 0 < kept < groups
    for name in ("loss", "grad_norm", "clip_fraction", "kl"):
        assert getattr(shared[0], name) == pytest.approx(getattr(full[0], name), rel=1e-4, abs=1e-7), name
    assert shared[0].tokens == full[0].tokens == sum(map(len, completion_ids))
    for name, grad in full[1].items():
        torch.testing.assert_close(shared[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    if optimizer == "sgd":
        for name, value in full[2].items():
            torch.testing.assert_close(shared[2][name], value, rtol=0, atol=1e-7, msg=name)
    # The shared path runs one prefix row per kept prompt, then one suffix row per rollout, chunk by chunk.
    per_chunk = max(1, (config.micro_batch_size or kept * n) // n)
    chunk_groups = [min(per_chunk, kept - i) for i in range(0, kept, per_chunk)]
    assert [rows for rows, _ in shared[3][: 2 * len(chunk_groups)]] == [r for g in chunk_groups for r in (g, g * n)]


def test_gradient_checkpointing_falls_back_to_the_full_rows():
    model = copy.deepcopy(random_llama("sdpa"))
    assert _can_share_prefix(model)
    enable_checkpointing(model)  # drops the KV cache in training, so the prefix could not be shared
    assert not _can_share_prefix(model)
