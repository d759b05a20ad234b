"""Acquisition rules shared by the selector agents (sources in ``shared/research/algorithms.md``).

Conventions: ``gamma`` is a predicted (or sampled, or observed) success probability per prompt in [0, 1];
functions return int64 pool indices; ties are broken by ``rng`` when one is given, else by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

#: Screened greedy: columns per screen call (the running sum plus the picks the greedy is expected to make
#: next) and how many of the best approximate gains the speculation simulates the greedy over.
SPECULATE = 32
LOOKAHEAD = 128


def _check_target(target: float) -> None:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target must be in [0, 1], got {target}")


def _check_count(b: int, n: int) -> None:
    if not 1 <= b <= n:
        raise ValueError(f"cannot pick b={b} from {n} candidates (need 1 <= b <= n)")


def utility(gamma: np.ndarray, target: float = 0.5) -> np.ndarray:
    """``u(γ) = -(γ - target)²``: highest for prompts whose success is nearest the target (GPS Eq. 12)."""
    _check_target(target)
    gamma = np.asarray(gamma, dtype=np.float64)
    return -((gamma - target) ** 2)


def _order(score: np.ndarray, rng: np.random.Generator | None, then: np.ndarray | None = None) -> np.ndarray:
    """Indices sorting ``score`` ascending, then by ``then``; remaining ties in random (rng) or index order."""
    tie = rng.random(score.shape[0]) if rng is not None else np.arange(score.shape[0])
    return np.lexsort((tie, score) if then is None else (tie, then, score))


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


def _distances_to(e: np.ndarray, anchors_sum: np.ndarray, count: int, kind: str, anchors: np.ndarray | None,
                  check: bool = False) -> np.ndarray:
    """Summed distance of every row of ``e`` to a set of anchors (given by their sum for cosine, which does
    not read ``anchors``).

    ``check``: raise if a dot product is not finite. That is how the greedy checks embeddings where it reads
    them, not with a pass over all N x d per call: a row with a NaN or inf has a non-finite dot product with
    any vector (checked before the chordal clip, which would turn inf into 1)."""
    dots = e @ anchors_sum if kind == "cosine" else e @ anchors.T
    if check:
        _finite(dots)
    if kind == "cosine":
        return count - dots
    # chordal: ||x - y|| = sqrt(2 - 2 cos) for unit vectors; a metric, but not linear in the anchors
    return np.sqrt(np.maximum(2.0 - 2.0 * np.clip(dots, -1.0, 1.0), 0.0)).sum(axis=1)


def _finite(values: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ValueError("embeddings must be finite (no NaN or inf)")
    return values


def greedy_diverse(
    utilities: np.ndarray,
    embeddings: np.ndarray,
    b: int,
    lam: float,
    previous: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    distance: str = "cosine",
    screen: InnerProductScreen | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Greedy max-sum diversification with utility (GPS Eqs. 12–14; Borodin et al., 2012; our normalisation).

    Maximises, over batches S of size b,

        F(S) = mean_{τ∈S} u_τ + λ · [ mean_{i<j∈S} d(i, j) + mean_{i∈S, j∈P} d(i, j) ]

    with ``P`` the previous batch. Means (not sums) keep λ scale-free: both terms are O(1) whatever b is.
    The utility and inter-step terms are modular (a per-prompt score m_τ); the greedy of Borodin et al. picks
    ``argmax_τ ½·m_τ + λ·w·Σ_{s∈S} d(τ, s)`` (w = 2 / (b(b−1))), which is a 1/2-approximation when d is a
    metric and m ≥ 0. ``distance="cosine"`` (default) is ``1 − cos`` on L2-normalised embeddings, which
    is not a metric, so the guarantee is formally for ``distance="chordal"`` (``‖x − y‖``). With cosine each
    pick costs one (N × d) mat-vec, since the summed distance to the picks is ``|S| − E · Σ_{s∈S} e_s``;
    chordal costs O(N·|S|·d) per pick.

    ``screen`` (cosine, whole pool, λ > 0): approximate products ``E @ v`` with an error bound, e.g.
    :class:`gps_env.agents.screen.BFloat16Screen`. The greedy then reads the pool through the screen, a
    few times per batch instead of once per pick, and computes the exact gains only for the prompts the
    bound cannot rule out: the same batch as without a screen (see :func:`_screened_greedy`).

    Returns ``(indices, terms)`` with the batch's ``utility``, ``dispersion`` and ``inter_step`` terms.
    """
    if lam < 0 or not np.isfinite(lam):
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    if distance not in ("cosine", "chordal"):
        raise ValueError(f"distance must be 'cosine' or 'chordal', got {distance!r}")
    u = np.asarray(utilities, dtype=np.float64)
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 2 or e.shape[0] != u.shape[0]:
        raise ValueError(f"embeddings must be (N, d) with N = {u.shape[0]}, got {e.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("utilities must be finite (no NaN or inf)")
    pool = np.arange(u.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.int64)
    _check_count(b, pool.shape[0])
    ec, uc = (e, u) if candidates is None else (e[pool], u[pool])  # no 40 MB copy for the whole pool
    if screen is not None and candidates is None and distance == "cosine" and lam > 0 and b > 1:
        picked_rows = _screened_greedy(u, e, b, lam, previous, screen)
        return picked_rows, batch_terms(u, embeddings, picked_rows, previous, distance)
    pair_weight = 2.0 / (b * (b - 1)) if b > 1 else 0.0
    # Modular part: utility plus the inter-step term (distance to the previous batch, one mat-vec).
    modular = uc / b
    if previous is not None and len(previous) > 0 and lam > 0:
        p = e[np.asarray(previous, dtype=np.int64)]
        # the first distances read every candidate row (and the previous batch's): they are checked
        modular = modular + lam * _distances_to(ec, p.sum(axis=0), p.shape[0], distance, p, check=True) / (
            b * p.shape[0])
    picked: list[int] = []
    running = np.zeros(e.shape[1], dtype=np.float32)  # float32 like E: a float64 vector would upcast E every pick
    half_modular = 0.5 * modular
    for size in range(b):
        if size and lam > 0:
            gain = half_modular + lam * pair_weight * _distances_to(ec, running, size, distance, ec[picked],
                                                                    check=size == 1)
        else:
            gain = half_modular.copy()
        gain[picked] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        running += ec[best]
    _finite(ec[picked])  # lam = 0 or b = 1: only the batch's rows were read (in the terms)
    chosen = pool[np.asarray(picked)]
    return chosen.astype(np.int64), batch_terms(u, embeddings, chosen, previous, distance)


class InnerProductScreen(Protocol):
    """Approximate inner products of every pool row with a few vectors, and a bound on their error.

    ``screen(vectors)`` with ``vectors`` of shape (k, d) returns columns: ``screen(vectors)[j]`` is an (N,)
    float array ``A`` with ``|A[i] - E[i] · vectors[j]| <= screen.rel_error * ||vectors[j]||`` for every
    row ``i`` (the bound includes the rows' norms). It is built from the embeddings given to the greedy,
    and its constructor rejects non-finite ones (the greedy then reads exactly only the rows that can be
    picked)."""

    rel_error: float

    def __call__(self, vectors: np.ndarray) -> Sequence[np.ndarray]: ...


def _screened_greedy(u: np.ndarray, e: np.ndarray, b: int, lam: float, previous: np.ndarray | None,
                     screen: InnerProductScreen) -> np.ndarray:
    """:func:`greedy_diverse` (cosine, whole pool, λ > 0, b > 1) reading the pool through a screen.

    Each pick's gain is ``half_τ + λw·(|S| − e_τ · R)`` with ``R`` the running sum of the picks. Screened
    gains ``ĝ`` come from the screen's products, within ``δ`` of the exact ones; the exact gain of the best
    prompt is at least ``max ĝ − δ``, so only prompts with ``ĝ >= max ĝ − 2δ`` (a few dozen) can be picked
    and only they get exact gains, computed as the unscreened greedy computes them: the same batch, ties
    included. One screen call returns the products with ``R`` and with the ``SPECULATE`` prompts the greedy
    is expected to pick next (it is simulated over the ``LOOKAHEAD`` best gains); while the picks stay among
    them, ``ĝ`` is updated from their columns and the pool is not read again.
    """
    n = u.shape[0]
    pair_weight = 2.0 / (b * (b - 1))
    lw = lam * pair_weight
    fp32_slack = 1e-5  # the exact gains are float32 products: their own rounding, relative to |S| + ||R||

    p = psum = None
    if previous is not None and len(previous) > 0:
        p = e[np.asarray(previous, dtype=np.int64)]
        psum = p.sum(axis=0)
    half_exact = np.full(n, np.nan)

    def exact_half(rows: np.ndarray) -> np.ndarray:
        missing = rows[np.isnan(half_exact[rows])]
        if missing.size:
            modular = u[missing] / b
            if p is not None:
                modular = modular + lam * _distances_to(e[missing], psum, p.shape[0], "cosine", p) / (b * p.shape[0])
            half_exact[missing] = 0.5 * modular
        return half_exact[rows]

    half = 0.5 * (u / b)
    half_error = 0.0
    # The first call: the inter-step term's products (if any), and the first picks expected from utility.
    ahead = _lookahead(half, e, lw, SPECULATE, LOOKAHEAD)
    columns = screen(e[ahead] if p is None else np.concatenate([psum[None], e[ahead]]))
    column_of = {int(row): j + (p is not None) for j, row in enumerate(ahead)}
    if p is not None:
        half = half + 0.5 * lam * (p.shape[0] - columns[0].astype(np.float64)) / (b * p.shape[0])
        half_error = 0.5 * lam * (screen.rel_error + fp32_slack) * float(np.linalg.norm(psum)) / (b * p.shape[0])

    picked: list[int] = []
    running = np.zeros(e.shape[1], dtype=np.float32)
    # ĝ / λw less |S|, which every prompt has (the window and the argmax do not need it): a column updates
    # it with one subtraction
    gain = half / lw
    gain_error = 0.0  # bound on |ĝ's products − e·R|
    for size in range(b):
        delta = (half_error + lw * gain_error + lw * fp32_slack * (size + float(np.linalg.norm(running)))
                 + 1e-6 * lam / b)  # and an absolute floor for the float32 rounding of the inter-step term
        rows = np.flatnonzero(gain >= gain.max() - 2.0 * delta / lw)
        exact = exact_half(rows)
        if size:
            exact = exact + lw * _distances_to(e[rows], running, size, "cosine", None)
        best = int(rows[np.argmax(exact)])
        picked.append(best)
        running += e[best]
        gain[best] = -np.inf
        if size == b - 1:
            break
        if best in column_of:  # speculated: update ĝ from its column
            gain -= columns[column_of.pop(best)]
            gain_error += screen.rel_error * float(np.linalg.norm(e[best]))
        else:  # a new screen call: products with R and with the expected next picks
            ahead = _lookahead(gain, e, 1.0, SPECULATE, LOOKAHEAD)
            columns = screen(np.concatenate([running[None], e[ahead]]))
            column_of = {int(row): j + 1 for j, row in enumerate(ahead)}
            gain = half / lw - columns[0]
            gain[picked] = -np.inf
            gain_error = screen.rel_error * float(np.linalg.norm(running))
    return np.asarray(picked, dtype=np.int64)


def _lookahead(gain: np.ndarray, e: np.ndarray, lw: float, k: int, m: int) -> np.ndarray:
    """The next ``k`` picks of the greedy simulated over the ``m`` best gains (a guess: only what to screen).

    Picked prompts have gain −inf; at most the finite ones are taken, so none of them is."""
    m = min(m, int(np.isfinite(gain).sum()))
    top = np.argpartition(-gain, m - 1)[:m] if m < gain.shape[0] else np.arange(gain.shape[0])
    distances = 1.0 - e[top] @ e[top].T
    simulated = gain[top].copy()
    ahead = []
    for _ in range(min(k, top.shape[0])):
        j = int(np.argmax(simulated))
        ahead.append(top[j])
        simulated += lw * distances[j]
        simulated[j] = -np.inf
    return np.asarray(ahead, dtype=np.int64)


def batch_terms(
    utilities: np.ndarray,
    embeddings: np.ndarray,
    batch: np.ndarray,
    previous: np.ndarray | None = None,
    distance: str = "cosine",
) -> dict[str, float]:
    """The three terms of the GPS objective for one batch (logged every step)."""

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


def spearman(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant.

    Sign convention: positive means prompts predicted to succeed more did succeed more (MoPPS logs the
    negative of this).
    """
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-d arrays of one length, got {x.shape} and {y.shape}")
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.shape[0], dtype=np.float64)
    ranks[order] = np.arange(values.shape[0], dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]
