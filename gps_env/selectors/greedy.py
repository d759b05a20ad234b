"""Greedy diversification with utility: GPS's batch optimisers (max-sum, GPS Eqs. 12–14; max-min, PDTS).

An *optimiser* of the selection split (as in BoTorch: a model predicts, a score values each prompt, an
optimiser picks the batch): given per-prompt utilities (:func:`gps_env.selectors.scores.utility` of the
predicted success) and the pool's embeddings, :func:`greedy_diverse` picks a batch that is useful, spread
out and far from the previous batch. The greedy is that of Borodin, Lee and Ye (2012, "Max-sum
diversification, monotone submodular functions and dynamic updates", PODS); the objective is GPS's
(Qu et al., 2026, arXiv 2602.01970), with our normalisation. An optional :class:`InnerProductScreen`
(:mod:`gps_env.selectors.screen`: float32 or bfloat16) lets it read large pools a few times per batch instead
of once per pick, with the same result. The max-min form of the group's earlier code (PDTS),
:func:`~gps_env.selectors.maxmin.greedy_maxmin`, is in :mod:`gps_env.selectors.maxmin`. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from gps_env.metrics import batch_terms
from gps_env.selectors.optimizers import _check_count

#: Screened greedy: columns per screen call (the running sum plus the picks the greedy is expected to make
#: next) and how many of the best approximate gains the speculation simulates the greedy over.
SPECULATE = 32
LOOKAHEAD = 128
#: The largest λ: the gains multiply float32 products by λ in float32, which overflows (and turns gains into NaN,
#: so that a prompt could be picked twice) from about 1e38; at 1e30 a utility of size 1 is already nothing.
MAX_LAM = 1e30
#: A candidate set of at least this many rows is screened too (a float32 screen over the copied rows), by both
#: greedies: below it one product per pick is faster (``python benchmarks/candidate_screen.py``: 0.44x at
#: 1,024 rows, 0.70x at 2,048, 1.53x at 4,096, at B = 256).
SCREEN_MIN_CANDIDATES = 4096


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


#: Gains within this much (relative to the float32 products behind them) of the best are a tie, broken by the
#: lowest index. Equal rows give products that differ in the last bits depending on where BLAS meets them (the
#: whole pool vs the screened rows), so exact ties would otherwise be broken differently by the two greedies.
TIE = 1e-6


def _tie_tolerance(lw: float, size: int, running_norm: float, lam: float, b: int,
                   previous_norm: float | None, previous_count: int) -> float:
    """How far below the best gain a pick still ties: TIE times the scale of the float32 products in it
    (``running_norm``, ``previous_norm``: the norms of the picks' and of the previous batch's sums, None:
    no previous batch)."""
    tol = lw * TIE * (size + running_norm)
    if previous_norm is not None and lam > 0:
        tol += 0.5 * lam * TIE * (previous_count + previous_norm) / (b * previous_count)
    return tol


def _norm(x: np.ndarray) -> float:
    """``float(np.linalg.norm(x))`` of a 1-D vector, bit for bit (numpy computes ``sqrt(x.dot(x))`` there),
    without its argument handling: the greedy asks for a few norms per pick."""
    return float(np.sqrt(x.dot(x)))


def _first_best(values: np.ndarray, tol: float) -> int:
    """The lowest index whose value is within ``tol`` of the maximum (``argmax`` if a NaN hides it: the caller's
    finiteness check then raises)."""
    near = np.flatnonzero(values >= values.max() - tol)
    return int(near[0]) if near.size else int(np.argmax(values))


def _finite(values: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ValueError("embeddings must be finite (no NaN or inf)")
    return values


def _checked_inputs(utilities: np.ndarray, embeddings: np.ndarray, b: int, lam: float,
                    candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both greedies' arguments as (float64 utilities, float32 embeddings, candidate ids), or ``ValueError``."""
    if not 0 <= lam <= MAX_LAM:  # also NaN
        raise ValueError(f"lam must be a finite number in [0, {MAX_LAM:g}], got {lam}")
    u = np.asarray(utilities, dtype=np.float64)
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 2 or e.shape[0] != u.shape[0]:
        raise ValueError(f"embeddings must be (N, d) with N = {u.shape[0]}, got {e.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("utilities must be finite (no NaN or inf)")
    pool = np.arange(u.shape[0]) if candidates is None else np.asarray(candidates, dtype=np.int64)
    _check_count(b, pool.shape[0])
    return u, e, pool


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
    :class:`gps_env.selectors.screen.Float32Screen`. The greedy then reads the pool through the screen, a
    few times per batch instead of once per pick, and computes the exact gains only for the prompts the
    bound cannot rule out: the same batch as without a screen (see :func:`_screened_greedy`). A candidate
    set of ``SCREEN_MIN_CANDIDATES`` rows or more is screened the same way without being asked (a float32
    screen over its rows): the same batch, faster.

    Returns ``(indices, terms)`` with the batch's ``utility``, ``dispersion`` and ``inter_step`` terms.
    """
    if distance not in ("cosine", "chordal"):
        raise ValueError(f"distance must be 'cosine' or 'chordal', got {distance!r}")
    u, e, pool = _checked_inputs(utilities, embeddings, b, lam, candidates)
    ec, uc = (e, u) if candidates is None else (e[pool], u[pool])  # no 40 MB copy for the whole pool
    p = None  # the previous batch's rows (outside a candidate set, so checked here)
    if previous is not None and len(previous) > 0 and lam > 0:
        p = _finite(e[np.asarray(previous, dtype=np.int64)])
    if distance == "cosine" and lam > 0 and b > 1:
        if screen is not None and candidates is None:
            picked_rows = _screened_greedy(u, e, b, lam, p, screen)
            return picked_rows, batch_terms(u, embeddings, picked_rows, previous, distance)
        if candidates is not None and pool.shape[0] >= SCREEN_MIN_CANDIDATES:
            from gps_env.selectors.screen import Float32Screen  # torch, only where it is used

            chosen = pool[_screened_greedy(uc, ec, b, lam, p, Float32Screen(ec))]
            return chosen, batch_terms(u, embeddings, chosen, previous, distance)
    pair_weight = 2.0 / (b * (b - 1)) if b > 1 else 0.0
    # Modular part: utility plus the inter-step term (distance to the previous batch, one mat-vec).
    modular = uc / b
    psum_norm, count = None, 0
    if p is not None:
        psum, count = p.sum(axis=0), p.shape[0]
        psum_norm = _norm(psum)
        # the first distances read every candidate row: they are checked
        modular = modular + lam * _distances_to(ec, psum, count, distance, p, check=True) / (b * count)
    picked: list[int] = []
    running = np.zeros(e.shape[1], dtype=np.float32)  # float32 like E: a float64 vector would upcast E every pick
    half_modular = 0.5 * modular  # a picked prompt's entry becomes -inf, so every later gain excludes it
    lw = lam * pair_weight
    for size in range(b):
        gain = half_modular
        if size and lam > 0:
            anchors = ec[picked] if distance == "chordal" else None  # cosine reads only the running sum
            gain = half_modular + lw * _distances_to(ec, running, size, distance, anchors, check=size == 1)
        best = _first_best(gain, _tie_tolerance(lw, size, _norm(running), lam, b, psum_norm, count))
        picked.append(best)
        half_modular[best] = -np.inf
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


def _screened_greedy(u: np.ndarray, e: np.ndarray, b: int, lam: float, previous_rows: np.ndarray | None,
                     screen: InnerProductScreen) -> np.ndarray:
    """:func:`greedy_diverse` (cosine, λ > 0, b > 1) over the rows of ``e`` (the pool, or a candidate set's
    rows), reading them through a screen built on ``e``; ``previous_rows``: the previous batch's embeddings.
    Returns row indices into ``e``.

    Each pick's gain is ``half_τ + λw·(|S| − e_τ · R)`` with ``R`` the running sum of the picks. Screened
    gains ``ĝ`` come from the screen's products, within ``δ`` of the exact ones; the exact gain of the best
    prompt is at least ``max ĝ − δ``, so only prompts with ``ĝ >= max ĝ − 2δ`` (a few dozen) can be picked
    and only they get exact gains, computed as the unscreened greedy computes them, bit for bit
    (:func:`_row_dots`): the same batch, ties included. One screen call returns the products with ``R`` and
    with the ``SPECULATE`` prompts the greedy is expected to pick next (it is simulated over the ``LOOKAHEAD``
    best gains); while the picks stay among them, ``ĝ`` is updated from their columns and the pool is not
    read again.
    """
    n = u.shape[0]
    pair_weight = 2.0 / (b * (b - 1))
    lw = lam * pair_weight
    fp32_slack = 1e-5  # the exact gains are float32 products: their own rounding, relative to |S| + ||R||

    p, psum, psum_norm = previous_rows, None, None
    if p is not None:
        psum = p.sum(axis=0)
        psum_norm = _norm(psum)
    half_exact = np.full(n, np.nan)

    def exact_half(rows: np.ndarray) -> np.ndarray:
        missing = rows[np.isnan(half_exact[rows])]
        if missing.size:
            modular = u[missing] / b
            if p is not None:
                modular = modular + lam * (p.shape[0] - _row_dots(e, missing, psum)) / (b * p.shape[0])
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
        half_error = 0.5 * lam * (screen.rel_error + fp32_slack) * psum_norm / (b * p.shape[0])

    picked: list[int] = []
    running = np.zeros(e.shape[1], dtype=np.float32)
    # ĝ / λw less |S|, which every prompt has (the window and the argmax do not need it): a column updates
    # it with one subtraction
    gain = half / lw
    gain_error = 0.0  # bound on |ĝ's products − e·R|
    for size in range(b):
        running_norm = _norm(running)
        delta = (half_error + lw * gain_error + lw * fp32_slack * (size + running_norm)
                 + 1e-6 * lam / b)  # and an absolute floor for the float32 rounding of the inter-step term
        rows = np.flatnonzero(gain >= gain.max() - 2.0 * delta / lw)
        exact = exact_half(rows)
        if size:
            exact = exact + lw * (size - _row_dots(e, rows, running))
        best = int(rows[_first_best(exact, _tie_tolerance(lw, size, running_norm, lam, b, psum_norm,
                                                           0 if p is None else p.shape[0]))])
        picked.append(best)
        running += e[best]
        gain[best] = -np.inf
        if size == b - 1:
            break
        if best in column_of:  # speculated: update ĝ from its column
            gain -= columns[column_of.pop(best)]
            gain_error += screen.rel_error * _norm(e[best])
        else:  # a new screen call: products with R and with the expected next picks
            ahead = _lookahead(gain, e, 1.0, SPECULATE, LOOKAHEAD)
            columns = screen(np.concatenate([running[None], e[ahead]]))
            column_of = {int(row): j + 1 for j, row in enumerate(ahead)}
            gain = half / lw - columns[0]
            gain[picked] = -np.inf
            gain_error = screen.rel_error * _norm(running)  # running has changed since running_norm
    return np.asarray(picked, dtype=np.int64)


#: Rows per aligned block of the screened greedy's exact products. BLAS computes a row's product with a kernel
#: chosen by the row's place in the matrix (rows left over after the kernel's groups of 4, 8 or 16 take another
#: summation order), so a few rows gathered on their own would differ in the last bits from the same rows in
#: the product over all rows, and a near-tie could then go the other way.
ALIGN = 16


def _row_dots(e: np.ndarray, rows: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(e @ v)[rows]`` bit for bit, reading only the aligned blocks of ``ALIGN`` rows that hold ``rows``.

    Each block is read in place (a slice), so every row keeps its place modulo ``ALIGN``; the matrix's last,
    partial block is read after the whole block before it, so that it stays last and is never a matrix of
    one row (numpy takes a dot product for those). With numpy's BLAS on one thread, as GPS runs the greedy;
    tests/test_screen.py checks the identity on this machine's BLAS."""
    if rows.shape[0] == 1:  # the usual window (a few numpy calls fewer: the greedy makes one or two a pick)
        row = int(rows[0])
        first = _block_start(row, e.shape[0])
        return (e[first : row // ALIGN * ALIGN + ALIGN] @ v)[row - first : row - first + 1]
    out = np.empty(rows.shape[0], dtype=np.result_type(e.dtype, v.dtype))
    blocks = rows // ALIGN
    for block in np.unique(blocks):
        first = _block_start(int(block) * ALIGN, e.shape[0])
        inside = blocks == block
        out[inside] = (e[first : int(block) * ALIGN + ALIGN] @ v)[rows[inside] - first]
    return out


def _block_start(row: int, n: int) -> int:
    """Where :func:`_row_dots` starts reading ``row``'s block: the block's start, or the whole block before it
    when the block is the matrix's last and partial."""
    start = row // ALIGN * ALIGN
    return start - ALIGN if start + ALIGN > n and start > 0 else start


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
