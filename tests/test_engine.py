"""TransformersEngine (KV-cached batched sampling) on the tiny warm-started policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import params_of, same_params

from gps_env.engines import RolloutEngine, Rollouts, SamplingParams, TransformersEngine
from gps_env.policy import encode, load_policy

# Different lengths, so rows are left-padded against each other.
PROMPTS = ["12000+30000=", "3,5,7>22:", "1+2=", "46600+87540=", "9,8>17:"]


@pytest.fixture
def engine(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    return TransformersEngine(model, tokenizer)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_engine_satisfies_protocol(engine):
    assert isinstance(engine, RolloutEngine)


def test_shapes_and_row_layout(engine):
    n, sp = 3, SamplingParams(max_new_tokens=6)
    r = engine.generate(PROMPTS, n, sp, gen(0))
    assert len(r) == len(PROMPTS) * n
    assert r.n == n
    assert len(r.prompt_ids) == len(r.completion_ids) == len(r.logprobs) == len(r.texts) == len(PROMPTS) * n
    tok = engine.tokenizer
    for row in range(len(r)):
        assert r.prompt_ids[row] == encode(tok, PROMPTS[row // n])
        assert r.prompt_ids[row][0] == tok.bos_token_id
        assert r.texts[row] == tok.decode(r.completion_ids[row], skip_special_tokens=True)
    assert r.prompt_tokens == sum(len(encode(tok, p)) for p in PROMPTS) * n
    assert r.completion_tokens == sum(map(len, r.completion_ids))


def test_completions_end_at_eos_or_max_new_tokens(engine):
    sp = SamplingParams(max_new_tokens=4)
    r = engine.generate(PROMPTS, 8, sp, gen(1))
    eos = engine.tokenizer.eos_token_id
    ended, capped = 0, 0
    for ids in r.completion_ids:
        assert 1 <= len(ids) <= sp.max_new_tokens
        assert eos not in ids[:-1]  # nothing after an EOS
        if ids[-1] == eos:
            ended += 1
        else:
            assert len(ids) == sp.max_new_tokens
            capped += 1
    assert ended > 0 and capped > 0  # both ways of stopping occur in this batch


def test_logprobs_finite_nonpositive_and_aligned(engine):
    r = engine.generate(PROMPTS, 4, SamplingParams(temperature=0.8, max_new_tokens=6), gen(2))
    for ids, lp in zip(r.completion_ids, r.logprobs):
        assert isinstance(lp, np.ndarray) and lp.shape == (len(ids),)
        assert np.all(np.isfinite(lp)) and np.all(lp <= 0)


def test_same_seed_same_output_and_different_seed_differs(engine):
    sp = SamplingParams(max_new_tokens=8)
    a = engine.generate(PROMPTS, 4, sp, gen(3))
    b = engine.generate(PROMPTS, 4, sp, gen(3))
    c = engine.generate(PROMPTS, 4, sp, gen(4))
    assert a.completion_ids == b.completion_ids and a.texts == b.texts
    assert all(np.array_equal(x, y) for x, y in zip(a.logprobs, b.logprobs))
    assert a.completion_ids != c.completion_ids


def test_generator_state_advances(engine):
    g = gen(5)
    sp = SamplingParams(max_new_tokens=8)
    first = engine.generate(PROMPTS, 4, sp, g)
    second = engine.generate(PROMPTS, 4, sp, g)
    assert first.completion_ids != second.completion_ids


def teacher_forced(model, prompt_ids, completion_ids, temperature):
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float() / temperature
    logp = torch.log_softmax(logits, -1)
    start = len(prompt_ids) - 1
    positions = range(start, start + len(completion_ids))
    return (np.array([logp[p, t].item() for p, t in zip(positions, completion_ids)]),
            [int(logits[p].argmax()) for p in positions])


def test_logprobs_match_teacher_forced_recomputation(engine, tiny_policy):
    reference, _ = load_policy(tiny_policy)  # an independent copy of the weights
    temperature = 0.7
    r = engine.generate(PROMPTS, 2, SamplingParams(temperature=temperature, max_new_tokens=8), gen(6))
    for row in range(len(r)):
        expected, _ = teacher_forced(reference, r.prompt_ids[row], r.completion_ids[row], temperature)
        np.testing.assert_allclose(r.logprobs[row], expected, atol=1e-4, rtol=0)


def test_tiny_top_p_is_greedy(engine, tiny_policy):
    sp = SamplingParams(top_p=1e-6, max_new_tokens=8)
    a = engine.generate(PROMPTS, 3, sp, gen(7))
    b = engine.generate(PROMPTS, 3, sp, gen(8))
    assert a.completion_ids == b.completion_ids
    reference, _ = load_policy(tiny_policy)
    for row in range(len(a)):
        _, argmax = teacher_forced(reference, a.prompt_ids[row], a.completion_ids[row], 1.0)
        assert a.completion_ids[row] == argmax
        # The n samples of one prompt are identical under greedy decoding.
        assert a.completion_ids[row] == a.completion_ids[row - row % 3]
    # Batch composition does not change a row's greedy decode (padding and position ids are right).
    single = engine.generate([PROMPTS[2]], 1, sp, gen(9))
    assert single.completion_ids[0] == a.completion_ids[2 * 3]


def test_chunking_matches_one_batch_under_greedy(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    sp = SamplingParams(top_p=1e-6, max_new_tokens=6)
    whole = TransformersEngine(model, tokenizer).generate(PROMPTS, 3, sp, gen(0))
    chunked = TransformersEngine(model, tokenizer, max_batch_rows=4).generate(PROMPTS, 3, sp, gen(0))
    assert chunked.completion_ids == whole.completion_ids
    assert chunked.prompt_ids == whole.prompt_ids
    for x, y in zip(chunked.logprobs, whole.logprobs):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_load_weights_changes_outputs_without_aliasing(model_and_tokenizer, tiny_policy):
    model, tokenizer = model_and_tokenizer
    source_before = params_of(model)
    engine = TransformersEngine(model, tokenizer)
    sp = SamplingParams(max_new_tokens=8)
    before = engine.generate(PROMPTS, 4, sp, gen(10))

    other, _ = load_policy(tiny_policy)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    other_before = params_of(other)
    engine.load_weights(other.state_dict())
    after = engine.generate(PROMPTS, 4, sp, gen(10))
    assert after.completion_ids != before.completion_ids
    assert same_params(params_of(engine.model), other_before)
    # Neither the constructor's model nor the loaded state were touched, and they do not alias the engine.
    assert same_params(params_of(model), source_before)
    assert same_params(params_of(other), other_before)
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
        for p in model.parameters():
            p.zero_()
    again = engine.generate(PROMPTS, 4, sp, gen(10))
    assert again.completion_ids == after.completion_ids


def test_load_weights_missing_tensor(engine):
    state = dict(engine.model.state_dict())
    state.pop(next(iter(state)))
    with pytest.raises(ValueError, match="missing"):
        engine.load_weights(state)


def test_prompt_too_long(engine):
    assert engine.max_positions == 64
    ok = "1" * (64 - 1 - 8)  # BOS + prompt + max_new_tokens == 64
    engine.generate([ok], 1, SamplingParams(max_new_tokens=8), gen(0))
    with pytest.raises(ValueError, match="positions"):
        engine.generate([ok + "1"], 1, SamplingParams(max_new_tokens=8), gen(0))
    with pytest.raises(ValueError, match="positions"):
        engine.generate(["1+1=", "2" * 200], 2, SamplingParams(max_new_tokens=8), gen(0))


def test_bad_n(engine):
    with pytest.raises(ValueError):
        engine.generate(PROMPTS, 0, SamplingParams(), gen(0))


@pytest.mark.parametrize("kwargs", [dict(temperature=0), dict(temperature=-1), dict(top_p=0), dict(top_p=1.5),
                                    dict(max_new_tokens=0)])
def test_sampling_params_validation(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)


def test_rollouts_select_and_concat(engine):
    r = engine.generate(PROMPTS[:3], 2, SamplingParams(max_new_tokens=5), gen(11))
    picked = r.select([2, 0])
    assert len(picked) == 4 and picked.n == 2
    assert picked.texts == [r.texts[4], r.texts[5], r.texts[0], r.texts[1]]
    assert picked.completion_ids == [r.completion_ids[i] for i in (4, 5, 0, 1)]
    joined = Rollouts.concat([r.select([0]), r.select([1, 2])])
    assert joined.completion_ids == r.completion_ids and joined.prompt_ids == r.prompt_ids
    other = engine.generate(PROMPTS[:1], 3, SamplingParams(max_new_tokens=5), gen(11))
    with pytest.raises(ValueError, match="different n"):
        Rollouts.concat([r, other])


@pytest.mark.parametrize("n, sampling, max_batch_rows", [
    (1, SamplingParams(max_new_tokens=8), 1024),
    (3, SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=6), 1024),
    (8, SamplingParams(max_new_tokens=8), 1024),
    (4, SamplingParams(temperature=1.3, max_new_tokens=5), 6),  # chunks of one prompt
])
def test_prefill_once_samples_what_prefilling_every_row_samples(model_and_tokenizer, n, sampling, max_batch_rows):
    """Each prompt prefilled once, its KV cache repeated n times: the same draws as n prefills, same seed."""
    model, tokenizer = model_and_tokenizer
    once = TransformersEngine(model, tokenizer, max_batch_rows=max_batch_rows)
    every = TransformersEngine(model, tokenizer, max_batch_rows=max_batch_rows, prefill_once=False)
    assert once.prefill_once and not every.prefill_once
    prompts = PROMPTS + ["7+8=", PROMPTS[0]]  # a repeated prompt too
    for seed in range(3):
        a = once.generate(prompts, n, sampling, gen(seed))
        b = every.generate(prompts, n, sampling, gen(seed))
        assert a.texts == b.texts and a.completion_ids == b.completion_ids and a.prompt_ids == b.prompt_ids
        for x, y in zip(a.logprobs, b.logprobs):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)
