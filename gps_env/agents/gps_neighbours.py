"""GPS-N (ours): GPS-M whose prior for a prompt is corrected by its nearest already-seen prompts."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import check_integer, check_number
from gps_env.agents.gps_memory import GPSMemory
from gps_env.spec import AgentSpec

#: Candidate rows per block of similarities with the seen prompts (BLOCK x |seen| float32).
BLOCK = 1024


class GPSNeighbours(GPSMemory):
    """GPS-M with a neighbour-corrected prior (ours).

    GPS's PPM sees the history through a latent fitted to the last few batches, and GPS-M adds each prompt's
    own outcomes; neither uses what the selector has learnt about a prompt's *neighbours* in earlier
    batches. At test time the nearest trained prompts' outcomes rank unseen prompts better than the PPM
    (Spearman 0.64 against 0.50 on the Reasoning Gym world; ``benchmarks/test_time.py``). GPS-N puts them
    into the prior::

        m_j = α_j / (α_j + β_j)                           a seen prompt's discounted success (GPS-M's memory)
        each step t, for each candidate τ:
            N(τ) = the ``neighbours`` seen prompts most cosine-similar to τ, τ itself excluded
            γ̄_τ = (Σ_{j ∈ N(τ)} a_j m_j + w · γ̂_τ) / (Σ_{j ∈ N(τ)} a_j + w)   γ̂_τ: the PPM's, w: ``ppm_weight``,
                  a_j = 1, or 2^(−age_j / ``half_life``), age_j the steps since j's latest outcome arrived
                  (0: it was in the last batch)
            GPS-M's step with γ̄ in place of γ̂: Beta(c γ̄ + α_τ, c (1 − γ̄) + β_τ), then GPS's greedy

    Before any prompt is seen, γ̄ = γ̂ (GPS-M). The prompt's own outcomes stay GPS-M's evidence (α_τ, β_τ),
    so they are not counted twice.

    Args:
        env, seed, and every GPS-M and GPS argument: as :class:`~gps_env.agents.gps_memory.GPSMemory`.
        neighbours: seen prompts per prior (default 64: the count leave-one-out chose on the trained prompts
            of the Reasoning Gym world's test-time run, ``benchmarks/test_time.py``).
        ppm_weight: w > 0, the PPM prediction's weight in neighbour-equivalents (default 4).
        half_life: None (default: every neighbour counts 1) or h > 0: a neighbour's outcome counts
            2^(−age / h), age the steps since it arrived (0 for the last batch), so that the prior follows the
            policy as a family is learnt (an outcome from long ago says little about the prompt now; the PPM's
            γ̂, conditioned on the latest batch, then weighs more).

    State: GPS-M's, the same model and memory (the neighbours are recomputed from ``alpha`` and ``beta``), so
    a GPS-M state restores into GPS-N and back.
    """

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        neighbours: int = 64,
        ppm_weight: float = 4.0,
        half_life: float | None = None,
        **memory_kwargs: Any,
    ) -> None:
        self.neighbours = check_integer("neighbours", neighbours, 1)
        self.ppm_weight = float(check_number("ppm_weight", ppm_weight, 0.0, low_open=True))
        self.half_life = None if half_life is None else float(check_number("half_life", half_life, 0.0,
                                                                           low_open=True))
        super().__init__(env, seed, **memory_kwargs)

    def _gamma(self, pool: np.ndarray | None) -> np.ndarray:
        gamma = super(GPSMemory, self)._gamma(pool)  # the PPM's γ̂ (GPS), corrected here, then GPS-M's Beta
        rows = np.arange(self.pool_size) if pool is None else pool
        gamma[rows] = self._neighbour_prior(rows, gamma[rows])
        return self._memory_posterior(gamma, rows)

    def _neighbour_prior(self, rows: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """γ̄ for ``rows``: their nearest seen prompts' discounted success, with the PPM's γ̂ as ``ppm_weight``
        pseudo-neighbours. (Not :func:`gps_env.selectors.neighbours.neighbour_success`: each row leaves itself
        out, and the prior is per prompt, not one mean.)"""
        counts = self.alpha + self.beta
        seen = np.flatnonzero(counts > 0)
        k = min(self.neighbours, seen.size - 1)
        if k < 1:
            return predicted
        memory = self.alpha[seen] / counts[seen]
        weight = None
        if self.half_life is not None:  # a prompt picked at step s reported its outcome at step s + 1 (a
            # warmup batch is marked picked before it is scored: its seen prompts count as the latest)
            age = np.maximum(self.steps_seen - self.last_pick[seen] - 1, 0)
            with np.errstate(over="ignore"):  # a tiny half-life: age / h overflows to inf, the weight to 0
                weight = 0.5 ** (age / self.half_life)
            memory = weight * memory
        position = np.full(self.pool_size, -1)
        position[seen] = np.arange(seen.size)
        seen_rows = self.embeddings[seen]
        out = np.empty(rows.shape[0])
        for start in range(0, rows.shape[0], BLOCK):
            block = rows[start : start + BLOCK]
            similarity = self.embeddings[block] @ seen_rows.T
            own = position[block]
            is_seen = np.flatnonzero(own >= 0)
            similarity[is_seen, own[is_seen]] = -np.inf  # the prompt's own outcomes are GPS-M's evidence
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            prior = self.ppm_weight * predicted[start : start + BLOCK]
            count = k if weight is None else weight[nearest].sum(axis=1)
            out[start : start + BLOCK] = (memory[nearest].sum(axis=1) + prior) / (count + self.ppm_weight)
        return out
