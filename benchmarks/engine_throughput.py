"""Sampling throughput of the transformers engine against ``model.generate`` on the same model and prompts.

    python benchmarks/engine_throughput.py --sequences 256 --repeats 5

Both sample at temperature 1 with a KV cache up to ``--max-new-tokens`` and stop rows at EOS; the figure is
generated completion tokens per second (median over repeats), and the ratio engine / generate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gps_env.engines import SamplingParams, TransformersEngine
from gps_env.policy import PolicyConfig, load_policy, mixes, warm_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, tokenizer = load_policy(warm_start(PolicyConfig()))
    engine = TransformersEngine(model, tokenizer)
    problems = mixes()["default"].sample_unique(max(args.sequences) // args.k, np.random.default_rng(0))
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens)
    print(f"{'sequences':>9} {'engine tok/s':>13} {'generate tok/s':>15} {'ratio':>6}")
    for total in args.sequences:
        prompts = [p.prompt for p in problems[: total // args.k]]
        engine_rates, hf_rates = [], []
        for r in range(args.repeats):
            start = time.perf_counter()
            out = engine.generate(prompts, args.k, sampling, torch.Generator().manual_seed(r))
            engine_rates.append(out.completion_tokens / (time.perf_counter() - start))

            batch = tokenizer([tokenizer.bos_token + p for p in prompts], return_tensors="pt", padding=True,
                              add_special_tokens=False)
            torch.manual_seed(r)
            start = time.perf_counter()
            with torch.inference_mode():
                seqs = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                      max_new_tokens=args.max_new_tokens, num_return_sequences=args.k,
                                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            elapsed = time.perf_counter() - start
            new = seqs[:, batch["input_ids"].shape[1]:]
            is_eos = new == tokenizer.eos_token_id  # count tokens up to and including the first EOS
            lengths = torch.where(is_eos.any(-1), is_eos.int().argmax(-1) + 1, new.shape[1])
            tokens = int(lengths.sum())
            hf_rates.append(tokens / elapsed)
        e, h = float(np.median(engine_rates)), float(np.median(hf_rates))
        print(f"{total:>9} {e:>13.0f} {h:>15.0f} {e / h:>6.2f}")


if __name__ == "__main__":
    main()
