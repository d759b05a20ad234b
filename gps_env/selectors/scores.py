"""Acquisition scores: what each prompt is worth to the next batch, one number (or mask) per prompt.

The middle layer of the selection split (as in BoTorch): a *model* predicts per-prompt success (``gamma``,
in [0, 1]: a posterior mean, a Thompson draw, an observed rate), a *score* here turns it into a per-prompt
value, and an *optimiser* (:mod:`gps_env.selectors.optimizers`, :mod:`gps_env.selectors.greedy`) picks the
batch. Pure numpy; nothing here draws a batch.

Sources: the target utility of GPS (Qu et al., 2026, arXiv 2602.01970, Eq. 12), the Beta posteriors of
MoPPS (github.com/thu-rllab/MoPPS, ``recipe/ours/mopps.py``), the success band of DAPO's dynamic sampling
(arXiv 2503.14476; verl-recipe ``dapo``) and of MoPPS's threshold mode.
"""

from __future__ import annotations

import numpy as np


def _check_target(target: float) -> None:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target must be in [0, 1], got {target}")


def utility(gamma: np.ndarray, target: float = 0.5) -> np.ndarray:
    """``u(γ) = -(γ - target)²``: highest for prompts whose success is nearest the target (GPS Eq. 12)."""
    _check_target(target)
    gamma = np.asarray(gamma, dtype=np.float64)
    return -((gamma - target) ** 2)


def mixed_probability(gamma: np.ndarray, k: int) -> np.ndarray:
    """``1 − γ^k − (1 − γ)^k``: the chance that k rollouts at success rate γ are mixed, i.e. that the group has
    a non-zero GRPO advantage (ours as an acquisition: the expected informative share of a prompt's group).

    Flatter than :func:`utility` around 0.5 and kinder to rare successes: at k = 8 a prompt at γ = 0.15 is
    mixed 73% of the time, while −(γ − 0.5)² ranks it with the near-hopeless ones."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    gamma = np.clip(np.asarray(gamma, dtype=np.float64), 0.0, 1.0)
    return 1.0 - gamma**k - (1.0 - gamma) ** k


def band_filter(gamma: np.ndarray, low: float, high: float) -> np.ndarray:
    """Boolean mask of ``low <= gamma <= high`` (DS band-pass, MoPPS threshold mode)."""
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    gamma = np.asarray(gamma, dtype=np.float64)
    return (gamma >= low) & (gamma <= high)


def distance_to_band(gamma: np.ndarray, low: float, high: float) -> np.ndarray:
    """How far each ``gamma`` lies outside ``[low, high]`` (0 inside): the fallback ranking of band rules."""
    gamma = np.asarray(gamma, dtype=np.float64)
    distance = np.maximum(low - gamma, 0.0) + np.maximum(gamma - high, 0.0)
    return np.where(distance < 1e-12, 0.0, distance)  # 1 - c/k and (k - c)/k may differ in the last bit


def thompson_draws(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per prompt from ``Beta(alpha, beta)`` (MoPPS's posterior sampling)."""
    alpha, beta = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    if alpha.shape != beta.shape:
        raise ValueError(f"alpha and beta shapes differ: {alpha.shape} vs {beta.shape}")
    if np.any(~(alpha > 0)) or np.any(~(beta > 0)):
        raise ValueError("Beta parameters must be positive and finite")
    return rng.beta(alpha, beta)
