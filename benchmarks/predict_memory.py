"""Whole-pool GPS in the simulated world with the PPM's prediction through reused buffers against fresh tensors.

    python benchmarks/predict_memory.py --n 40960 --batch-size 32 --steps 200

Alone, a prediction that allocates a fresh tensor for each op reuses the memory its previous call freed, and
is as fast as one through buffers (``benchmarks/gps_step.py``). In the agent's loop it is not: between two
predictions the ELBO update, the greedy and the env run, glibc's allocator hands the freed activations
(4 MiB per op and chunk at N = 40,960) back to the OS, and the next prediction takes them again page by
page, each page zeroed by the kernel on first touch. This runs ``--steps`` steps of ``env.step(agent.act(obs))``
for each variant, each in its own process (the allocator's state is per process), and prints the seconds and
minor page faults per step of the whole loop and of the prediction alone, the ratio to the buffers, and
whether the two variants picked the same batches, for ``--repeats`` pairs of runs: how much of the freed
memory glibc returns, and so the faults, differs from process to process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from gps_env.agents import GPS
from gps_env.models import ppm
from gps_env.simulated import SimulatedPromptSelectionEnv


@torch.no_grad()
def predict_fresh_tensors(model: ppm.PPM, embeddings: torch.Tensor, history: tuple[torch.Tensor, torch.Tensor],
                          generator: torch.Generator) -> torch.Tensor:
    """The prediction as it ran before the buffers: the decoder's forward pass chunk by chunk, each op
    allocating its own output (same draws, same chunks)."""
    z = model.sample_prior(history, generator)
    return torch.cat([torch.sigmoid(model.logits(rows, z)).mean(0) for rows in embeddings.split(ppm.PREDICT_CHUNK)])


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def run(variant: str, n: int, b: int, steps: int) -> dict[str, float | list[list[int]]]:
    if variant == "fresh":
        ppm.PPM.predict = predict_fresh_tensors
    env = SimulatedPromptSelectionEnv(batch_size=b, pool_size=n, max_steps=steps, time_in_info=False)
    agent = GPS(env, seed=0)
    predict, spent = agent.predict_success, {"seconds": 0.0, "faults": 0}

    def timed_predict() -> np.ndarray:
        f0, t0 = faults(), time.perf_counter()
        out = predict()
        spent["seconds"] += time.perf_counter() - t0
        spent["faults"] += faults() - f0
        return out

    agent.predict_success = timed_predict
    obs, _ = env.reset(seed=0)
    f0, t0, digest = faults(), time.perf_counter(), []  # digest: every batch
    for _ in range(steps):
        action = agent.act(obs)
        digest.append(action["prompts"].tolist())
        obs, *_ = env.step(action)
    return {"step_seconds": (time.perf_counter() - t0) / steps, "step_faults": (faults() - f0) / steps,
            "predict_seconds": spent["seconds"] / steps, "predict_faults": spent["faults"] / steps,
            "digest": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40_960)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (the page faults vary by run)")
    parser.add_argument("--variant", choices=["buffers", "fresh"], help="run one variant here (internal)")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run(args.variant, args.n, args.batch_size, args.steps)))
        return
    print(f"whole-pool GPS, simulated world, N = {args.n}, B = {args.batch_size}, {args.steps} steps, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'run':>4} {'prediction':>14} {'s/step':>8} {'faults/step':>12} {'predict s':>10} "
          f"{'predict faults':>15} {'vs buffers':>10} {'same batches':>12}")
    ratios = []
    for repeat in range(1, args.repeats + 1):
        results = {}
        for variant in ("buffers", "fresh"):
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--n", str(args.n),
                                  "--batch-size", str(args.batch_size), "--steps", str(args.steps)],
                                 check=True, capture_output=True, text=True).stdout
            results[variant] = json.loads(out.strip().splitlines()[-1])
        base, same = results["buffers"], results["buffers"]["digest"] == results["fresh"]["digest"]
        for variant, r in results.items():
            ratio = r["step_seconds"] / base["step_seconds"]
            print(f"{repeat:>4} {variant:>14} {r['step_seconds']:>8.4f} {r['step_faults']:>12.0f} "
                  f"{r['predict_seconds']:>10.4f} {r['predict_faults']:>15.0f} {ratio:>9.2f}x {str(same):>12}")
        ratios.append(results["fresh"]["step_seconds"] / base["step_seconds"])
    print(f"fresh tensors against buffers, whole step: {min(ratios):.2f}x to {max(ratios):.2f}x, "
          f"median {float(np.median(ratios)):.2f}x over {args.repeats} run(s)")

if __name__ == "__main__":
    main()
