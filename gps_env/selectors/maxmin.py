"""Greedy max-min diversification with utility: the optimiser of GPS's ancestor PDTS (thu-rllab/PDTS).

The max-min form of :mod:`gps_env.selectors.greedy`: each pick is rewarded by its distance to the *nearest*
prompt already picked (or in the previous batch). :func:`greedy_maxmin` updates every candidate's distance
to the nearest pick with one product per pick; from ``SCREEN_MIN_CANDIDATES`` rows it reads them through a
float32 screen a few times per batch instead (:func:`_screened_maxmin`), with the same batch. Pure numpy
(torch only inside the screen, where it is used).
"""

from __future__ import annotations

import numpy as np

from gps_env.metrics import batch_terms
from gps_env.selectors import greedy
from gps_env.selectors import screen as screen_module
from gps_env.selectors.greedy import ALIGN, LOOKAHEAD, SPECULATE, _checked_inputs, _finite, _row_dots
from gps_env.selectors.screen import F32_REL_ERROR_PER_DIM, Float32Screen


def greedy_maxmin(
    utilities: np.ndarray,
    embeddings: np.ndarray,
    b: int,
    lam: float,
    previous: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Greedy max-min diversification with utility (the rule of thu-rllab/PDTS, ``msd_diversified_score``).

    Picks one prompt at a time, each the argmax (the lowest index among equal gains) over the prompts not
    yet picked of

        ½·u_τ + λ · min_{s ∈ S ∪ P} d(τ, s)            (d = 1 − cos on L2-normalised embeddings)

    with ``S`` the picks so far and ``P`` the previous batch (the min over an empty set is 0, so without a
    previous batch the first pick is the best utility). Unlike the max-sum form, a prompt next to *any* pick
    or to any prompt of the previous batch gains nothing from diversity: re-picking last step's prompts, or
    filling the batch from one dense region, costs up to λ per pick. PDTS has no previous-batch term and
    uses raw Euclidean features; the term and the cosine distance are ours (as in
    :func:`~gps_env.selectors.greedy.greedy_diverse`). Each pick costs one (N × d) mat-vec (the running
    minimum is updated with the newest pick); from ``greedy.SCREEN_MIN_CANDIDATES`` rows (the pool or the
    candidate set) the rows are read through a float32 screen a few times per batch instead, with the same
    batch (:func:`_screened_maxmin`).

    Returns ``(indices, terms)`` with the batch's ``utility``, ``dispersion`` and ``inter_step`` terms (the
    means of :func:`gps_env.metrics.batch_terms`, so the two forms are logged alike) and ``min_distance``,
    the smallest distance between two picks.
    """
    u, e, pool = _checked_inputs(utilities, embeddings, b, lam, candidates)
    ec, uc = (e, u) if candidates is None else (e[pool], u[pool])
    nearest = None  # min distance to S ∪ P (0 while both are empty)
    if previous is not None and len(previous) > 0 and lam > 0:
        p = e[np.asarray(previous, dtype=np.int64)]
        nearest = (1.0 - _finite(ec @ p.T)).min(axis=1).astype(np.float64)
    half = 0.5 * uc
    if lam > 0 and b > 1 and pool.shape[0] >= greedy.SCREEN_MIN_CANDIDATES:
        picked = _screened_maxmin(half, ec, b, lam, nearest, screen_module.Float32Screen(ec))
    else:
        picked = []
        current = np.zeros(pool.shape[0]) if nearest is None else nearest
        for _ in range(b):
            gain = half + lam * current
            gain[picked] = -np.inf
            best = int(np.argmax(gain))
            picked.append(best)
            if lam > 0:
                to_best = (1.0 - _finite(ec @ ec[best])).astype(np.float64)
                current = to_best if nearest is None and len(picked) == 1 else np.minimum(current, to_best)
    _finite(ec[picked])
    chosen = pool[np.asarray(picked)].astype(np.int64)
    terms = batch_terms(u, embeddings, chosen, previous, "cosine")
    rows = e[chosen].astype(np.float64)
    pair = 1.0 - rows @ rows.T
    terms["min_distance"] = float(pair[np.triu_indices(b, 1)].min()) if b > 1 else 0.0
    return chosen, terms


def _screened_maxmin(half: np.ndarray, e: np.ndarray, b: int, lam: float, previous_nearest: np.ndarray | None,
                     screen: Float32Screen) -> list[int]:
    """:func:`greedy_maxmin`'s picks (row indices into ``e``; λ > 0, b > 1) reading ``e`` through a screen.

    The distance to the previous batch (``previous_nearest``, or None) is the unscreened greedy's own. The
    distance to the nearest pick comes from the screen's products, within ``ε`` of the exact ones, so each
    gain is within ``δ = λ·ε`` and only rows whose screened gain is within ``2δ`` of the best can be the pick.
    Those get exact gains: their distance to every pick computed as the unscreened greedy computes it (one
    product per pick, bit for bit: :func:`~gps_env.selectors.greedy._row_dots`), kept per row and brought up
    to date with the picks made since it was last needed. One screen call returns the products with the
    newest pick and with the ``SPECULATE`` picks the greedy is expected to make next (simulated over the
    ``LOOKAHEAD`` best gains); while the picks stay among them the rows are not read again.
    """
    n, largest = e.shape[0], screen.largest_norm
    # |screened − exact| of a distance: the screen's bound, the exact product's float32 bound (Higham, as in
    # gps_env.selectors.screen) and float32's rounding of 1 − product
    epsilon = (screen.rel_error * largest + F32_REL_ERROR_PER_DIM * e.shape[1] * largest**2
               + 2.0**-23 * (1.0 + largest**2))
    approx = None if previous_nearest is None else previous_nearest.copy()  # screened distance to S ∪ P
    exact = np.full(n, np.inf) if previous_nearest is None else previous_nearest.copy()  # per row, ...
    stamp = np.zeros(n, dtype=np.int64)  # ... over the first stamp[row] picks
    picked: list[int] = []
    columns, column_of = None, {}
    for size in range(b):
        gain = half.copy() if approx is None else half + lam * approx
        gain[picked] = -np.inf
        rows = np.flatnonzero(gain >= gain.max() - 2.0 * lam * epsilon)
        _bring_up_to_date(e, rows, picked, exact, stamp)
        nearest = exact[rows] if approx is not None else np.zeros(rows.shape[0])
        best = int(rows[int(np.argmax(half[rows] + lam * nearest))])  # the lowest index among ties
        picked.append(best)
        if size == b - 1:
            break
        if best in column_of:  # speculated: its column is at hand
            column = columns[column_of.pop(best)]
        else:  # a new screen call: the newest pick and the picks expected next
            ahead = _lookahead(half, approx, e, lam, picked)
            columns = screen(np.concatenate([e[best][None], e[ahead]]))
            column_of = {int(row): j + 1 for j, row in enumerate(ahead)}
            column = columns[0]
        distance = 1.0 - np.asarray(column, dtype=np.float64)
        approx = distance if approx is None else np.minimum(approx, distance)
    return picked


def _bring_up_to_date(e: np.ndarray, rows: np.ndarray, picked: list[int], exact: np.ndarray,
                      stamp: np.ndarray) -> None:
    """``exact[rows]``: the min of what it was and each row's float32 distance to the picks it has not seen,
    the same numbers as the unscreened greedy's ``1.0 − E @ e_pick``, one product per row: the picks' rows
    times the row's embedding. BLAS sums a row of a product in an order set by the row's place (rows left
    over after the kernel's groups take another), and the products commute, so the picks' rows are padded
    to whole blocks and a row of ``e`` in its own last, partial block is computed pick by pick instead."""
    count, whole_blocks = len(picked), e.shape[0] - e.shape[0] % ALIGN
    for row in rows[stamp[rows] < count]:
        new = picked[stamp[row] :]
        if row < whole_blocks:
            padded = np.zeros((-(-len(new) // ALIGN) * ALIGN, e.shape[1]), dtype=e.dtype)
            padded[: len(new)] = e[new]
            dots = (padded @ e[row])[: len(new)]
        else:
            dots = np.array([_row_dots(e, np.array([row]), e[pick])[0] for pick in new])
        exact[row] = min(exact[row], float((1.0 - _finite(dots)).min()))
    stamp[rows] = count


def _lookahead(half: np.ndarray, approx: np.ndarray | None, e: np.ndarray, lam: float,
               picked: list[int]) -> np.ndarray:
    """The next ``SPECULATE`` picks of the max-min greedy simulated over the ``LOOKAHEAD`` best gains after the
    newest pick ``picked[-1]`` (not in ``approx`` yet). A guess: it only decides what to screen."""
    to_newest = 1.0 - (e @ e[picked[-1]]).astype(np.float64) if approx is None else None  # once per batch
    current = to_newest if approx is None else approx
    gain = half + lam * current
    gain[picked] = -np.inf
    m = min(LOOKAHEAD, int(np.isfinite(gain).sum()))
    if m == 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-gain, m - 1)[:m]
    rows = e[top].astype(np.float64)
    near = current[top] if approx is None else np.minimum(current[top], 1.0 - rows @ e[picked[-1]])
    distances = 1.0 - rows @ rows.T
    taken = np.zeros(m, dtype=bool)
    ahead = []
    for _ in range(min(SPECULATE, m)):
        simulated = np.where(taken, -np.inf, half[top] + lam * near)
        j = int(np.argmax(simulated))
        ahead.append(top[j])
        taken[j] = True
        near = np.minimum(near, distances[j])
    return np.asarray(ahead, dtype=np.int64)
