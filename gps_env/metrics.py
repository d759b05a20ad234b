"""What is measured about a batch, shared by the env (which reports it) and the selectors (which log it).

Pure numpy and scipy; imports nothing else from the package, so the env never imports the selectors.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def effective_sample_ratio(rewards: np.ndarray) -> float:
    """Share of groups (rows of ``rewards``, one per prompt) with mixed outcomes: the groups with a
    non-zero GRPO advantage."""
    r = np.asarray(rewards)
    return float(mixed_groups(r).mean())


def mixed_groups(rewards: np.ndarray) -> np.ndarray:
    """Boolean mask of the groups (rows) whose rewards are not all equal."""
    r = np.asarray(rewards)
    return r.min(axis=1) < r.max(axis=1)


def calibration_error(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of predicted success rates: the mean over equal-width bins of the
    predictions (weighted by how many fall in each) of |mean prediction − mean observed rate|. 0 is perfect.

    A batch of B prompts is a small sample: the error of a perfect predictor is not 0 (its observed rates are
    k-rollout estimates), so compare predictors on the same batches rather than against 0.
    """
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"calibration_error needs two non-empty 1-d arrays of one length, got {x.shape} and {y.shape}")
    which = np.clip((x * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, x, bins) - np.bincount(which, y, bins))  # |Σ pred − Σ obs| per bin
    return float(gap.sum() / count.sum())


def spearman(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant.

    Sign convention: positive means prompts predicted to succeed more did succeed more (MoPPS logs the
    negative of this).
    """
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-d arrays of one length, got {x.shape} and {y.shape}")
    # zero-based ranks, so that the values (and the last bit of the result) match earlier releases
    rx, ry = rankdata(x) - 1.0, rankdata(y) - 1.0
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def batch_terms(
    utilities: np.ndarray,
    embeddings: np.ndarray,
    batch: np.ndarray,
    previous: np.ndarray | None = None,
    distance: str = "cosine",
) -> dict[str, float]:
    """The three terms of the GPS objective for one batch: mean utility, mean pairwise distance
    (dispersion) and mean distance to the previous batch (inter-step; 0 without one)."""

    def dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = 1.0 - x @ y.T
        return d if distance == "cosine" else np.sqrt(np.maximum(2.0 * d, 0.0))

    # index, then cast: casting the whole (N, d) pool first copied 80 MB per call at N = 40k
    e = np.asarray(embeddings)[np.asarray(batch)].astype(np.float64)
    b = e.shape[0]
    dispersion = 0.0
    if b > 1:
        dispersion = float(dist(e, e)[np.triu_indices(b, 1)].mean())
    inter = 0.0
    if previous is not None and len(previous) > 0:
        p = np.asarray(embeddings)[np.asarray(previous)].astype(np.float64)
        inter = float(dist(e, p).mean())
    return {
        "utility": float(np.asarray(utilities, dtype=np.float64)[np.asarray(batch)].mean()),
        "dispersion": dispersion,
        "inter_step": inter,
    }
