"""Seconds per GRPO update: every prompt + completion row in full against each prompt's prefix run once.

    python benchmarks/grpo_prefix.py --threads 2 --steps 10

The policy is the embedded architecture at the Reasoning Gym world's size (Llama, hidden 128, 4 layers,
vocabulary 512), randomly initialised. Each step gets a synthetic batch: ``--batch-size`` groups of ``--k``
rollouts, prompts of 20-45 tokens, completions of 2-8 tokens (EOS last), and ``--mixed`` groups with mixed
rewards (the rest constant, so skipped). Both variants (``GRPOConfig.shared_prefix`` False / True) train their
own copy of the same weights on the same batches, alternating step by step so that load from other jobs on
the machine hits both alike; the figures are median seconds per ``GRPOTrainer.step`` and the ratio full /
shared (the baseline, full rows, is measured in the same run).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gps_env.grpo import GRPOConfig, GRPOTrainer

VOCAB, PAD, EOS = 512, 0, 1


def synthetic_batch(rng: np.random.Generator, groups: int, k: int, mixed: int) -> tuple:
    """``(prompt_ids, completion_ids, rewards)`` with ``mixed`` groups of mixed 0/1 rewards."""
    prompts = [rng.integers(2, VOCAB, rng.integers(20, 46)).tolist() for _ in range(groups)]
    prompt_ids = [p for p in prompts for _ in range(k)]
    completion_ids = [[*rng.integers(2, VOCAB, rng.integers(1, 8)).tolist(), EOS] for _ in prompt_ids]
    rewards = np.repeat(rng.integers(0, 2, (groups, 1)), k, axis=1).astype(float)
    for g in rng.choice(groups, mixed, replace=False):
        rewards[g] = rng.permutation(np.arange(k) < rng.integers(1, k))
    return prompt_ids, completion_ids, rewards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--mixed", type=int, default=10, help="groups with mixed rewards per batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         pad_token_id=PAD, eos_token_id=EOS, attn_implementation=args.attn)
    model = LlamaForCausalLM(config)
    trainers = {shared: GRPOTrainer(copy.deepcopy(model), GRPOConfig(shared_prefix=shared), PAD)
                for shared in (False, True)}
    rng = np.random.default_rng(0)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    kept = []
    for i in range(args.warmup + args.steps):
        batch = synthetic_batch(rng, args.batch_size, args.k, args.mixed)
        for shared, trainer in trainers.items():
            start = time.perf_counter()
            stats = trainer.step(*batch)
            if i >= args.warmup:
                seconds[shared].append(time.perf_counter() - start)
        kept.append(stats.kept_groups)
    full, shared = np.median(seconds[False]), np.median(seconds[True])
    print(f"GRPO step, Llama hidden 128 x 4 layers, vocab {VOCAB}, {args.attn}, {args.threads} thread(s); "
          f"B={args.batch_size}, k={args.k}, {np.mean(kept):.1f} kept groups per step; "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'variant':>14} {'s/step':>8}")
    print(f"{'full rows':>14} {full:>8.4f}")
    print(f"{'shared prefix':>14} {shared:>8.4f}")
    print(f"full / shared = {full / shared:.2f}x")


if __name__ == "__main__":
    main()
