"""A prototype, not a selector of the library: pick the batch by one sampled answer's probability (charged).

    python benchmarks/readout_prototype.py --out docs/results/readout_rg_v1 --seeds 0 1 2 3 4 \\
        --selectors readout-c2,readout-c4,gps-readout

``benchmarks/signal_ceiling.py`` found that, in the Reasoning Gym world, the probability q of one sampled
answer ranks which prompts' groups will be mixed about as well as a k-rollout probe, at an eighth of its cost,
while nothing in the prompt's text does late in the run. This asks whether that buys held-out accuracy at
matched rollouts. Each step the prototype draws candidates, samples one answer for each through the env's
engine with its own seeded generator, **charges those rollouts to the env's ledger as probes** (so the bench
matches rollouts: at 2B candidates a step costs 1.25 uniform steps), and trains on the B candidates with
the largest 1 − |2q − 1| (ours; the score of ``signal_ceiling.py``). The readout rollouts are not reused
for training (the env's probes are k rollouts; a one-rollout probe that the next step tops up is not in
its API), so the prototype pays for them in full.

- ``readout-c2``, ``readout-c4``: 2B / 4B random candidates, all read out.
- ``gps-readout``: GPS's PPM (its defaults, fed every step's outcomes) ranks 8B random candidates by its
  utility, and the 2B it rates best are read out.

It registers these names in the bench's registry for this process only and runs ``gps-env bench`` with the
Reasoning Gym v1 head-to-head's flags (B = 32, k = 8, 100 uniform steps' rollouts, transformers engine);
``--out`` may already hold runs of that configuration (uniform, gps, ...), which are kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gps_env.agents import GPS
from gps_env.agents.registry import SELECTORS
from gps_env.bench.cli import main as bench_main


class Readout:
    """Train on the B of ``candidates``·B prompts whose one sampled answer's probability is nearest 1/2."""

    def __init__(self, env: Any, seed: int = 0, candidates: float = 2.0, prefilter: float | None = None) -> None:
        self.env = env.unwrapped
        self.batch_size = self.env.batch_size
        self.count = int(round(candidates * self.batch_size))
        self.drawn = self.count if prefilter is None else int(round(prefilter * self.batch_size))
        if not self.batch_size <= self.count <= self.drawn <= len(self.env.pool):
            raise ValueError(f"need B <= candidates*B <= prefilter*B <= N, got {self.count}, {self.drawn}")
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.gps = GPS(env, seed) if prefilter is not None else None
        self.seen_step = 0

    def readout(self, ids: np.ndarray) -> np.ndarray:
        """1 − |2q − 1| for one sampled answer per prompt, its rollouts charged to the ledger as probes."""
        ledger = self.env.ledger
        prompts = [self.env.pool[int(i)].prompt for i in ids]
        with ledger.timer("probe", "generate"):
            rollouts = self.env.engine.generate(prompts, 1, self.env.sampling, self.generator)
        ledger.charge("probe", rollouts=len(rollouts), prompt_tokens=rollouts.prompt_tokens,
                      completion_tokens=rollouts.completion_tokens)
        q = np.exp([float(np.sum(lp)) for lp in rollouts.logprobs])
        return 1.0 - np.abs(2.0 * q - 1.0)

    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        step = int(obs["step"][0])
        drawn = self.rng.choice(len(self.env.pool), self.drawn, replace=False)
        if self.gps is not None:
            if step > self.seen_step:  # the PPM learns each step's outcomes once
                self.gps.observe(obs)
                self.seen_step = step
            gamma = self.gps.predict_for(self.gps.embeddings[drawn])
            drawn = drawn[np.argsort((gamma - self.gps.target) ** 2, kind="stable")[: self.count]]
        score = self.readout(drawn)
        return {"prompts": np.sort(drawn[np.argsort(-score, kind="stable")[: self.batch_size]])}


PROTOTYPES = {
    "readout-c2": lambda env, seed=0: Readout(env, seed, candidates=2.0),
    "readout-c4": lambda env, seed=0: Readout(env, seed, candidates=4.0),
    "gps-readout": lambda env, seed=0: Readout(env, seed, candidates=2.0, prefilter=8.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--selectors", default=",".join(PROTOTYPES), help="comma list; uniform is added")
    args = parser.parse_args()
    SELECTORS.update(PROTOTYPES)
    torch.set_num_threads(1)  # the tiny policy is faster on one thread on a shared 2-core machine
    raise SystemExit(bench_main(["bench", "--world", "reasoning-gym", "--engine", "transformers", "--steps", "100",
                                 "--seeds", ",".join(map(str, args.seeds)), "--selectors", args.selectors,
                                 "--out", str(args.out)]))


if __name__ == "__main__":
    main()
