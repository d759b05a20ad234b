"""Peak memory of one GRPO update at a real vocabulary: chunked log-probs against the plain log-softmax.

    python benchmarks/grpo_memory.py                     # ~2 minutes on 2 cores, < 10 GB of RAM

A real-scale policy (Qwen2.5 / DeepSeek-R1-Distill-Qwen: 151,936-token vocabulary) spends most of a GRPO
step's activation memory on the logits: rows x positions x vocabulary. This measures, on the CPU, the peak
resident memory one ``GRPOTrainer.step`` adds, for a small randomly initialised Qwen2 with that vocabulary
(hidden 128, 2 layers; bf16 like a GPU run), with the package's chunked, checkpointed
:func:`gps_env.grpo.token_logprobs` and with the plain ``log_softmax(logits.float()).gather(...)`` it
replaced, in fresh subprocesses. It prints the peak and bytes per logit element (peak / (rows x positions x
vocabulary)), and the ratio plain / chunked. The per-element figure is what carries over to a 1.5B model on
a GPU (docs/engines.md: memory for a 1.5B GRPO step).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

VOCAB = 151_936


def measure(variant: str, rows: int, completion: int, prompt: int) -> dict:
    """Run in a subprocess: peak RSS added by one GRPO step (micro-batch = all rows)."""
    import numpy as np
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from gps_env import grpo

    if variant == "plain":
        def plain(logits, ids):
            return torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        grpo.token_logprobs = plain
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=prompt + completion,
                         tie_word_embeddings=False)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    trainer = grpo.GRPOTrainer(model, grpo.GRPOConfig(), pad_token_id=0)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, VOCAB, (prompt,), generator=g).tolist() for _ in range(rows)]
    completions = [torch.randint(1, VOCAB, (completion,), generator=g).tolist() for _ in range(rows)]
    rewards = np.array([[1.0, 0.0] * (rows // 2)])
    # One warm-up step on a tiny batch allocates the optimiser state and the kernels' workspaces.
    trainer.step([p[:4] for p in prompts[:2]], [c[:4] for c in completions[:2]], np.array([[1.0, 0.0]]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import time
    start = time.perf_counter()
    trainer.step(prompts, completions, rewards)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    elements = rows * (prompt + completion) * VOCAB
    added = (peak - before) * 1024
    return {"variant": variant, "rows": rows, "positions": prompt + completion, "added_bytes": added,
            "bytes_per_logit": added / elements, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--completion", type=int, default=896)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.completion, args.prompt)))
        return
    print(f"Qwen2 (hidden 128, 2 layers, vocabulary {VOCAB:,}), bf16, {args.prompt} prompt + {args.completion} "
          "completion tokens per row, one GRPO step over all rows")
    print(f"{'rows':>4} {'variant':>8} {'peak added':>11} {'bytes/logit':>11} {'seconds':>8} {'plain/chunked':>13}")
    for rows in args.rows:
        results = {}
        for variant in ("plain", "chunked"):
            out = subprocess.run([sys.executable, __file__, "--completion", str(args.completion), "--prompt",
                                  str(args.prompt), "--child", variant, str(rows)],
                                 capture_output=True, text=True, check=True)
            results[variant] = r = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = results["plain"]["added_bytes"] / r["added_bytes"] if variant == "chunked" else 1.0
            print(f"{rows:>4} {variant:>8} {r['added_bytes'] / 2**30:>9.2f} GiB {r['bytes_per_logit']:>11.2f} "
                  f"{r['seconds']:>8.1f} {ratio:>12.2f}x")


if __name__ == "__main__":
    main()
