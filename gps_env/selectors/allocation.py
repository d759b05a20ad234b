"""Test-time allocation: spend a sampling budget where predicted difficulty says it pays (GPS §3.4)."""

from __future__ import annotations

import numpy as np


def allocate_samples(
    gamma: np.ndarray,
    budget: int,
    mode: str = "coverage",
    min_samples: int = 1,
    max_samples: int | None = None,
    window: tuple[float, float] = (0.05, 0.6),
    boost: float = 4.0,
) -> np.ndarray:
    """Samples per prompt, summing exactly to ``budget``, from predicted success ``gamma``.

    Modes:
        ``"coverage"`` (ours): maximise the predicted share of prompts solved at least once,
            ``Σ_τ 1 − (1 − γ̂_τ)^{s_τ}``. The marginal gain of a prompt's j-th sample, ``γ̂(1 − γ̂)^{j−1}``,
            falls with j, so taking the largest marginal gains overall is optimal; prompts predicted
            near 1 need one sample, near 0 are not worth many, hard-but-solvable ones get the most.
        ``"window"`` (the paper's binning, inferred): prompts with γ̂ in ``window`` (hard but solvable)
            get ``boost`` times the share of the others.

    Every prompt gets at least ``min_samples`` and at most ``max_samples``.

    Raises:
        ValueError: when the budget cannot be met within the bounds, or on bad arguments.
    """
    gamma = np.asarray(gamma, dtype=np.float64)
    n = gamma.shape[0]
    if gamma.ndim != 1 or n == 0 or not np.all((gamma >= 0) & (gamma <= 1)):
        raise ValueError("gamma must be a non-empty 1-d array of probabilities in [0, 1]")
    max_samples = budget if max_samples is None else max_samples
    if min_samples < 0 or max_samples < min_samples:
        raise ValueError(f"need 0 <= min_samples <= max_samples, got {min_samples}, {max_samples}")
    if not n * min_samples <= budget <= n * max_samples:
        raise ValueError(f"budget {budget} must lie in [{n * min_samples}, {n * max_samples}] for {n} prompts")
    extra = budget - n * min_samples
    if mode == "coverage":
        j = np.arange(min_samples, max_samples)  # samples already given -> gain of the next one
        gains = gamma[:, None] * (1.0 - gamma[:, None]) ** j[None, :]
        gains -= 1e-12 * j[None, :]  # strictly decreasing rows, so the top picks form per-prompt prefixes
        counts = np.full(n, min_samples)
        if extra:
            flat = np.argpartition(-gains.ravel(), extra - 1)[:extra]
            counts += np.bincount(flat // gains.shape[1], minlength=n)
        return counts.astype(np.int64)
    if mode == "window":
        if not 0 <= window[0] <= window[1] <= 1 or boost < 1:
            raise ValueError(f"need 0 <= window low <= high <= 1 and boost >= 1, got {window}, {boost}")
        share = np.where((gamma >= window[0]) & (gamma <= window[1]), boost, 1.0)
        counts = np.full(n, min_samples, dtype=np.int64)
        remaining = extra
        while remaining > 0:  # largest-remainder rounding, re-spread whatever max_samples caps off
            room = max_samples - counts
            weights = np.where(room > 0, share, 0.0)
            ideal = remaining * weights / weights.sum()
            add = np.minimum(np.floor(ideal).astype(np.int64), room)
            leftover = remaining - add.sum()
            if leftover > 0:
                order = np.argsort(-(ideal - np.floor(ideal)) - 1e-9 * np.arange(n))
                order = order[(room - add)[order] > 0][:leftover]
                add[order] += 1
            counts += add
            remaining -= int(add.sum())
        return counts
    raise ValueError(f"mode must be 'coverage' or 'window', got {mode!r}")
