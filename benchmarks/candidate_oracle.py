"""A privileged bound for selectors that pick B of c·B random candidates: the candidates' success rates, free.

    python benchmarks/candidate_oracle.py --out docs/results/candidate_oracle_rg_v1 --seeds 0 1 2 3 4 \\
        --selectors oracle-c4

``benchmarks/headroom.py``'s free-probe bound trains on the very rollouts its probes drew, so it knows which
groups *are* mixed; no predictor can know that, only how likely a group is to be mixed. This bound knows the
likelihood as well as ``--samples`` rollouts can tell it: each step it draws c·B random candidates, samples
``--samples`` answers for each through the env's engine with its own seeded generator, **outside the ledger**
(it pays nothing: a bound, not a selector), and trains on the B with the largest chance of a mixed group of k,
1 − p̂^k − (1 − p̂)^k, on fresh rollouts that the env draws as for any other selector. It is what a selector
over the same candidate set (GPS's default reads c = 4) could reach with a perfect predictor of each prompt's
success rate and no diversity term.

It registers ``oracle-c2``, ``oracle-c4``, ``oracle-c8`` and ``oracle-c16`` (``oracle-c8-s4`` and so on with
``--samples 4``) in the bench's registry for this process only and runs ``gps-env bench`` with the Reasoning
Gym v1 head-to-head's flags (B = 32, k = 8, 100 uniform steps' rollouts, transformers engine); the rollouts of
its x-axis are the ones it trains on. ``--out`` may already hold runs of that configuration (uniform, gps,
...), which are kept.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gps_env.agents.registry import SELECTORS
from gps_env.bench.cli import main as bench_main


class CandidateOracle:
    """Train on the B of ``candidates``·B random prompts most likely to give a mixed group (rates sampled free)."""

    def __init__(self, env: Any, seed: int = 0, candidates: float = 4.0, samples: int = 16) -> None:
        self.env = env.unwrapped
        self.batch_size, self.k = self.env.batch_size, self.env.k
        self.count = int(round(candidates * self.batch_size))
        if not self.batch_size <= self.count <= len(self.env.pool):
            raise ValueError(f"candidates*B must be in [B, N], got {self.count}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.samples = samples
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        drawn = self.rng.choice(len(self.env.pool), self.count, replace=False)
        prompts = [self.env.pool[int(i)].prompt for i in drawn]
        rollouts = self.env.engine.generate(prompts, self.samples, self.env.sampling, self.generator)
        rewards = [self.env.pool.verify(int(drawn[r // self.samples]), text) for r, text in enumerate(rollouts.texts)]
        rate = np.asarray(rewards, dtype=float).reshape(self.count, self.samples).mean(axis=1)
        mixed = 1.0 - rate**self.k - (1.0 - rate) ** self.k
        return {"prompts": np.sort(drawn[np.argsort(-mixed, kind="stable")[: self.batch_size]])}


BOUNDS = {f"oracle-c{c}": partial(CandidateOracle, candidates=float(c)) for c in (2, 4, 8, 16)}
SAMPLES = 16  # the bound's default; another count is part of the selector's name (oracle-c8-s4), so that runs
# of different counts never share a name in one directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--selectors", default="oracle-c4", help=f"comma list of {', '.join(BOUNDS)} (with "
                                                                  "-s<samples> unless --samples is 16); uniform "
                                                                  "is added")
    parser.add_argument("--samples", type=int, default=SAMPLES,
                        help="answers sampled per candidate to estimate its rate")
    args = parser.parse_args()
    suffix = "" if args.samples == SAMPLES else f"-s{args.samples}"
    SELECTORS.update({name + suffix: partial(bound, samples=args.samples) for name, bound in BOUNDS.items()})
    torch.set_num_threads(1)  # the tiny policy is faster on one thread on a shared 2-core machine
    raise SystemExit(bench_main(["bench", "--world", "reasoning-gym", "--engine", "transformers", "--steps", "100",
                                 "--seeds", ",".join(map(str, args.seeds)), "--selectors", args.selectors,
                                 "--out", str(args.out)]))


if __name__ == "__main__":
    main()
