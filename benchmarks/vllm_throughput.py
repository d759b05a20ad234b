"""Rollout throughput of the vLLM engine against the transformers engine, and weight-sync time per update.

    python benchmarks/vllm_throughput.py            # needs vLLM (docs/engines.md)

Two models, both with the policy's character tokenizer: the embedded world's warm-started policy (0.86M
parameters) and a randomly initialised ~25M-parameter Llama (hidden 512, 8 layers, 8 heads). Both engines
sample the same prompts (``--prompts`` from the default task mix, ``--k`` completions each, up to
``--max-new-tokens``, temperature 1, stop at EOS); the figure is completion tokens per second, the median
over ``--repeats`` after one warm-up call, and the ratio to the transformers engine. Sync is the seconds of
one ``load_weights`` of the full state dict (median), with vLLM's prefix-cache reset included.

All transformers-engine runs come first: building a vLLM engine on CPU binds this process's OpenMP threads
(to one core by default) and turns ``torch.set_num_threads`` into a no-op. The transformers engine runs on
``--threads`` threads (default 1, like vLLM's default binding on a 2-core machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from gps_env.engines import RolloutEngine, SamplingParams, TransformersEngine, VLLMEngine
from gps_env.policy import PolicyConfig, load_policy, mixes, warm_start


def random_llama(tokenizer: PreTrainedTokenizerFast, max_positions: int, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised Llama of about 25M parameters over the policy's tokenizer."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=max_positions,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tokens_per_second(engine: RolloutEngine, prompts: list[str], k: int, sampling: SamplingParams,
                      repeats: int) -> float:
    engine.generate(prompts, k, sampling, torch.Generator().manual_seed(0))  # warm-up
    rates = []
    for r in range(repeats):
        start = time.perf_counter()
        out = engine.generate(prompts, k, sampling, torch.Generator().manual_seed(r + 1))
        rates.append(out.completion_tokens / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kv-cache-mib", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    policy_path = warm_start(PolicyConfig())
    policy, tokenizer = load_policy(policy_path)
    models: dict[str, tuple[PreTrainedModel, str | None]] = {
        "policy": (policy, str(policy_path)),
        "llama-25M": (random_llama(tokenizer, policy.config.max_position_embeddings), None),
    }
    prompts = [p.prompt for p in mixes()["default"].sample_unique(args.prompts, np.random.default_rng(0))]
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens)
    rows = args.prompts * args.k
    print(f"{args.prompts} prompts x {args.k} samples = {rows} rows, up to {args.max_new_tokens} new tokens, "
          f"T=1; transformers on {args.threads} thread(s)")

    results: list[tuple[str, int, str, float, float, float]] = []
    baseline: dict[str, float] = {}
    for name, (model, _) in models.items():
        engine = TransformersEngine(model, tokenizer)
        rate = tokens_per_second(engine, prompts, args.k, sampling, args.repeats)
        sync = median_seconds(lambda e=engine, m=model: e.load_weights(m.state_dict()), args.repeats)
        baseline[name] = rate
        results.append((name, sum(p.numel() for p in model.parameters()), "transformers fp32", rate, 1.0, sync))
    for name, (model, path) in models.items():
        for dtype in ("float32", "bfloat16"):
            engine = VLLMEngine(model, tokenizer, path, dtype=dtype, kv_cache_memory_bytes=args.kv_cache_mib << 20)
            rate = tokens_per_second(engine, prompts, args.k, sampling, args.repeats)
            sync = median_seconds(lambda e=engine, m=model: e.load_weights(m.state_dict()), args.repeats)
            engine.close()
            label = "vLLM fp32" if dtype == "float32" else "vLLM bf16"
            params = sum(p.numel() for p in model.parameters())
            results.append((name, params, label, rate, rate / baseline[name], sync))

    print(f"{'model':>10} {'params':>7} {'engine':>18} {'tok/s':>8} {'vs transformers':>15} {'sync s':>8}")
    for name, params, label, rate, ratio, sync in results:
        print(f"{name:>10} {params / 1e6:>6.2f}M {label:>18} {rate:>8.0f} {ratio:>14.2f}x {sync:>8.4f}")


if __name__ == "__main__":
    main()
