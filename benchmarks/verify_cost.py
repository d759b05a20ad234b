"""What checking an answer costs: math-verify in its time-limited worker, and WordLlama embeddings for GPS.

    python benchmarks/verify_cost.py

Prints the math-verify worker's start-up time, the median round trip per item for a short answer and for a
3,000-character reasoning text (distinct texts, so no parse cache helps), and the exact-match verifier of
the embedded Countdown task on the same short answers as a baseline measured in the same run; then the
seconds to embed 10,000 prompts with WordLlama (what GPS pays once per pool, before the disk cache).
"""

from __future__ import annotations

import time

import numpy as np

from gps_env.pool import embed_texts
from gps_env.tasks import CountdownTask, MathTask, Problem


def median_seconds(fn, items) -> float:
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    rng = np.random.default_rng(0)
    math = MathTask()
    gold = Problem("q", "\\frac{3}{4}", math.name)
    t0 = time.perf_counter()
    math.verify("0.75", gold)  # starts the worker
    start = time.perf_counter() - t0
    short = [f"{rng.integers(1, 99)}/{rng.integers(1, 99)}" for _ in range(200)]
    filler = "We add the two fractions and simplify the result step by step. "
    long = [f"Step {i}: " + filler * 47 + f"So the answer is $\\boxed{{\\frac{{{i}}}{{4}}}}$." for i in range(50)]
    short_s = median_seconds(lambda t: math.verify(t, gold), short)
    long_s = median_seconds(lambda t: math.verify(t, gold), long)
    math.close()
    countdown = CountdownTask()
    cd = countdown.make([3, 5, 7], "3*5+7")
    baseline = median_seconds(lambda t: countdown.verify(t, cd), ["7+3*5", "3*5+7", "5*3+7", "3+5+7"] * 50)
    print(f"math-verify worker start-up: {start:.2f} s")
    print(f"math-verify per item: short answer {short_s * 1e3:.2f} ms, {len(long[0])}-character text "
          f"{long_s * 1e3:.2f} ms; Countdown verifier {baseline * 1e3:.3f} ms "
          f"({short_s / baseline:.0f}x for math-verify on short answers)")

    prompts = [f"What is {a} + {b}? Think step by step." for a, b in rng.integers(0, 10**6, size=(10_000, 2))]
    embed_texts(prompts[:10])  # loads the model
    t0 = time.perf_counter()
    embed_texts(prompts)
    print(f"WordLlama embeddings of 10,000 prompts: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
