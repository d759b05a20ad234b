"""Any local Hugging Face causal LM as the policy: another architecture without BOS, chat templates, extra
stop ids, bf16, gradient checkpointing and micro-batched GRPO (CPU stand-ins for a GPU run)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import LENIENT, params_of
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from gps_env.engines import SamplingParams
from gps_env.env import PromptSelectionEnv
from gps_env.grpo import GRPOConfig, GRPOTrainer
from gps_env.policy import enable_checkpointing, load_policy
from gps_env.pool import PromptPool
from gps_env.tasks import AdditionTask, Problem

SPECIALS = ["<pad>", "<eos>", "<user>", "<assistant>", "<end>"]
TEMPLATE = ("{% for m in messages %}<user>{{ m['content'] }}<end>{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """A random 2-layer Qwen2 with a char tokenizer that has no BOS, a chat template and two stop ids."""
    vocab = {t: i for i, t in enumerate([*SPECIALS, *"0123456789+-*=,:>"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        additional_special_tokens=SPECIALS[2:])
    tokenizer.chat_template = TEMPLATE
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         bos_token_id=None, eos_token_id=vocab["<eos>"], pad_token_id=vocab["<pad>"])
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = [vocab["<eos>"], vocab["<end>"]]
    path = tmp_path_factory.mktemp("qwen")
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def lenient_pools():
    task, rng = AdditionTask(width=2), np.random.default_rng(0)
    problems = list({p.prompt: Problem(p.prompt, p.answer, LENIENT.name) for p in
                     (task.sample(rng) for _ in range(200))}.values())
    return PromptPool(problems[:24], [LENIENT]), PromptPool(problems[24:32], [LENIENT])


def test_another_architecture_with_a_chat_template_runs_in_the_env(qwen_dir):
    pool, heldout = lenient_pools()
    env = PromptSelectionEnv(pool=pool, heldout=heldout, policy=qwen_dir, batch_size=4, rollouts_per_prompt=4,
                             max_steps=2, eval_every=1, chat_template=True, engine="transformers",
                             time_in_info=False, progress=False)
    assert type(env.policy).__name__ == "Qwen2ForCausalLM" and env.tokenizer.bos_token_id is None
    assert env.engine.stop_ids == sorted(env.tokenizer.convert_tokens_to_ids(["<eos>", "<end>"]))
    formatted = env._format("12+3=")
    assert formatted == "<user>12+3=<end><assistant>"
    rollouts = env.engine.generate([formatted], 8, SamplingParams(max_new_tokens=12), torch.Generator())
    assert rollouts.prompt_ids[0] == env.tokenizer(formatted, add_special_tokens=False)["input_ids"]  # no BOS
    stops = set(env.engine.stop_ids)
    for ids in rollouts.completion_ids:
        assert not stops.intersection(ids[:-1])  # a row ends at its first stop id
    obs, _ = env.reset(seed=0)
    before = params_of(env.policy)
    obs, _, _, truncated, info = env.step(np.arange(4))
    assert info["eval"]["accuracy"] >= 0 and not truncated
    if info["grpo"]["kept_groups"]:
        assert any(not torch.equal(before[k], v) for k, v in params_of(env.policy).items())
    env.close()


def test_chat_template_needs_one(tiny_policy):
    with pytest.raises(ValueError, match="no chat template"):
        PromptSelectionEnv(policy=tiny_policy, pool_size=16, heldout_size=8, batch_size=4, chat_template=True,
                           engine="transformers", progress=False)


def test_dtype_and_gradient_checkpointing(qwen_dir):
    model, _ = load_policy(qwen_dir, dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with pytest.raises(ValueError, match="dtype"):
        load_policy(qwen_dir, dtype="int8")
    checkpointed, _ = load_policy(qwen_dir, gradient_checkpointing=True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.modules())


def grpo_batch(tokenizer, groups=6, n=4, seed=0):
    rng = np.random.default_rng(seed)
    digits = tokenizer.convert_tokens_to_ids(list("0123456789"))
    prompt_ids = [[int(t) for t in rng.choice(digits, rng.integers(2, 6))] for _ in range(groups * n)]
    completion_ids = [[int(t) for t in rng.choice(digits, rng.integers(1, 7))] for _ in range(groups * n)]
    rewards = rng.integers(0, 2, size=(groups, n)).astype(float)
    rewards[0] = [1, 0, 0, 1]  # at least one informative group
    return prompt_ids, completion_ids, rewards


@pytest.mark.parametrize("variant", ["micro_batch", "gradient_checkpointing", "both"])
def test_memory_savers_give_the_same_update(qwen_dir, variant):
    model, tokenizer = load_policy(qwen_dir)
    batch = grpo_batch(tokenizer)
    reference = copy.deepcopy(model)
    GRPOTrainer(reference, GRPOConfig(lr=1e-2, kl_coef=0.1), tokenizer.pad_token_id).step(*batch)
    saver = copy.deepcopy(model)
    if variant != "micro_batch":
        enable_checkpointing(saver)
    micro = None if variant == "gradient_checkpointing" else 5
    stats = GRPOTrainer(saver, GRPOConfig(lr=1e-2, kl_coef=0.1, micro_batch_size=micro),
                        tokenizer.pad_token_id).step(*batch)
    assert stats.kept_groups >= 1
    # Compare the gradients the update used (Adam's first step is ~lr·sign(g), which turns float rounding
    # in near-zero gradients into ±lr, so parameters are not the place to compare).
    grads = {n: p.grad for n, p in reference.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values())
    for name, p in saver.named_parameters():
        if grads[name] is None:
            assert p.grad is None or not p.grad.any()
        else:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="micro_batch_size"):
        GRPOConfig(micro_batch_size=0)
