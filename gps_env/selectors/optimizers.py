"""Batch optimisers: from per-prompt scores to a batch of distinct pool indices (and the candidates to score).

The last layer of the selection split (as in BoTorch): a *model* predicts, a *score*
(:mod:`gps_env.selectors.scores`) values each prompt, and an optimiser here picks the batch: the top-k
nearest a target (MoPPS, github.com/thu-rllab/MoPPS), positive–negative pairs (Sheng et al., 2026,
arXiv 2602.03452), the top-scored candidates (the learned selector), and the random candidate sets most
selectors score instead of the whole pool. GPS's greedy diversification is in :mod:`gps_env.selectors.greedy`.

Conventions: ``gamma`` is a predicted (or sampled, or observed) success probability per prompt in [0, 1],
indexed by pool index; functions return int64 pool indices; ties are broken by ``rng`` when one is given,
else by index.
"""

from __future__ import annotations

import math

import numpy as np

from gps_env.selectors.scores import _check_target, distance_to_band


def _check_count(b: int, n: int) -> None:
    if not 1 <= b <= n:
        raise ValueError(f"cannot pick b={b} from {n} candidates (need 1 <= b <= n)")


def _order(score: np.ndarray, rng: np.random.Generator | None, then: np.ndarray | None = None) -> np.ndarray:
    """Indices sorting ``score`` ascending, then by ``then``; remaining ties in random (rng) or index order."""
    tie = rng.random(score.shape[0]) if rng is not None else np.arange(score.shape[0])
    return np.lexsort((tie, score) if then is None else (tie, then, score))


def candidate_count(ratio: float, batch_size: int, pool_size: int, *, name: str = "ratio") -> int:
    """How many random candidates a selector scores: ``ratio`` × B rounded, at least B, at most the pool.

    Raises:
        ValueError: ``ratio`` (called ``name`` in the message) is not a finite number >= 1.
    """
    try:
        valid = (not isinstance(ratio, bool | np.bool_ | str | bytes) and np.ndim(ratio) == 0
                 and math.isfinite(float(ratio)) and ratio >= 1)
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        text = repr(ratio)
        raise ValueError(f"{name} (candidates per batch slot) must be a finite number >= 1, got "
                         f"{text if len(text) <= 80 else text[:77] + '...'}")
    wanted = ratio * batch_size
    if wanted >= pool_size:  # the whole pool (round() of a float overflowing to inf would raise)
        return int(pool_size)
    return int(min(pool_size, max(batch_size, round(wanted))))


def draw_candidates(rng: np.random.Generator, pool_size: int, batch_size: int, ratio: float, *,
                    name: str = "ratio") -> np.ndarray:
    """:func:`candidate_count` distinct pool indices drawn uniformly at random (one ``rng.choice`` call).

    The candidate set of MoPPS (``ratio`` × B, as in its official code), GPS's ``candidates`` mode,
    Pairing's measured prompts, the learned selector and :class:`~gps_env.wrappers.CandidateWindow`.
    """
    return rng.choice(pool_size, size=candidate_count(ratio, batch_size, pool_size, name=name), replace=False)


def deal_candidates(rng: np.random.Generator, queue: np.ndarray, pool_size: int, count: int,
                    allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The next ``count`` prompts of a shuffled epoch, as a dataloader deals its batches; and the queue left.

    MoPPS's official code (github.com/thu-rllab/MoPPS, ``recipe/ours/our_ray_trainer.py``) scores the batches
    of verl's dataloader, made ``ts_ratio`` × B large, over a ``RandomSampler``: each candidate set is the
    next slice of a shuffled epoch, so every prompt is a candidate once per epoch. ``queue`` is the rest of
    the current epoch (distinct pool ids; empty at the start); when it runs out a fresh permutation follows,
    the prompts already dealt in this call moved to its end (no candidate twice in a set; the tail of an epoch
    starts the next, as :class:`~gps_env.agents.Uniform` ``(epochs=True)``). ``allowed`` (a boolean mask over
    the pool) drops the prompts it excludes as they are dealt: they miss this pass. At most ``allowed.sum()``
    are returned.
    """
    queue = np.asarray(queue, dtype=np.int64)
    if allowed is not None:
        count = min(count, int(np.count_nonzero(allowed)))
    dealt: list[np.ndarray] = []
    have = 0
    while have < count:
        if queue.size == 0:
            fresh = rng.permutation(pool_size).astype(np.int64)
            if dealt:
                seen = np.isin(fresh, np.concatenate(dealt))
                fresh = np.concatenate([fresh[~seen], fresh[seen]])
            queue = fresh
        head, queue = queue[: count - have], queue[count - have :]
        if allowed is not None:
            head = head[allowed[head]]
        dealt.append(head)
        have += head.size
    return np.concatenate(dealt) if dealt else np.empty(0, dtype=np.int64), queue


def top_nearest_target(
    gamma: np.ndarray,
    b: int,
    target: float = 0.5,
    candidates: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The ``b`` prompts (among ``candidates``, default all) whose ``gamma`` is nearest ``target`` (MoPPS top-k).

    ``gamma`` is indexed by pool index; no pick is farther from the target than a candidate left out.
    """
    _check_target(target)
    gamma = np.asarray(gamma, dtype=np.float64)
    pool = np.arange(gamma.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.int64)
    _check_count(b, pool.shape[0])
    distance = np.abs(gamma[pool] - target)
    return pool[_order(distance, rng)[:b]].astype(np.int64)


def pairing_choice(
    success: np.ndarray,
    k: int,
    n_pairs: int,
    c: int = 2,
    candidates: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive–negative pairing (Sheng et al., 2026): ``n_pairs`` anchors q⁺ and ``n_pairs`` q⁻.

    q⁺ is hard but solvable: success in ``[1/k, c/k]`` (at least one, at most c successes of k);
    q⁻ is easy but brittle: success in ``[1 - c/k, 1 - 1/k]``. Within each band the hardest q⁺ and the
    easiest q⁻ come first. When a band has too few prompts, the rest are filled by the candidates nearest
    the band, never repeating a prompt. ``success`` is indexed by pool index.
    """
    if k < 2:
        raise ValueError(f"pairing needs k >= 2 samples per prompt to see both outcomes, got {k}")
    if not 1 <= c < k:
        raise ValueError(f"need 1 <= c < k, got c={c}, k={k}")
    gamma = np.asarray(success, dtype=np.float64)
    pool = np.arange(gamma.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.int64)
    _check_count(2 * n_pairs, pool.shape[0])
    g = gamma[pool]
    # Rank by distance outside the band first, then by the within-band preference.
    pos_order = _order(distance_to_band(g, 1 / k, c / k), rng, then=g)
    positives = pool[pos_order[:n_pairs]]
    remaining = np.setdiff1d(np.arange(pool.shape[0]), pos_order[:n_pairs], assume_unique=True)
    neg_distance = distance_to_band(g, 1 - c / k, 1 - 1 / k)
    neg_order = remaining[_order(neg_distance[remaining], rng, then=-g[remaining])]
    negatives = pool[neg_order[:n_pairs]]
    return positives.astype(np.int64), negatives.astype(np.int64)


def top_scored(candidates: np.ndarray, scores: np.ndarray, batch_size: int) -> np.ndarray:
    """The ``batch_size`` candidates with the highest scores (ties to the earlier candidate), as int64."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape != (len(candidates),):
        raise ValueError(f"expected {len(candidates)} scores, got shape {np.shape(scores)}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    order = np.argsort(-scores, kind="stable")[:batch_size]
    return np.asarray(candidates, dtype=np.int64)[order]
