"""Post-hoc calibration of predicted success rates from recent (prediction, outcome) pairs: isotonic or Platt.

A model that ranks prompts well can still be wrong about the *level* of their success (GPS's PPM ranks unseen
prompts at Spearman 0.78 in the arithmetic world but its γ̂ runs low, docs/gps.md). Isotonic regression
(Barlow et al., 1972; Zadrozny and Elkan, 2002, "Transforming classifier scores into accurate multiclass
probability estimates", KDD) maps predictions to observed rates with the one assumption that the map is
non-decreasing, so the ranking is kept and the level is corrected; it is flat beyond the predictions it was
fitted on. Platt scaling (Platt, 1999, "Probabilistic outputs for support vector machines") fits
σ(a·logit(γ̂) + b) instead: two parameters, smooth, and it extrapolates, which matters when the fitted pairs
come from batches a selector chose near 0.5 and the map is applied to every prompt. Pure numpy.
"""

from __future__ import annotations

import numpy as np


def isotonic_fit(predicted: np.ndarray, observed: np.ndarray,
                 weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit a non-decreasing map from ``predicted`` to ``observed`` (pool-adjacent-violators).

    Returns the knots ``(x, y)``: each block's first and last prediction (``x`` increasing) and its fitted
    rate (``y`` non-decreasing). :func:`isotonic_apply` is constant over a block and linear between blocks.

    Raises:
        ValueError: the arrays are not finite, 1-d, of one length and non-empty, or a weight is negative or all
            are zero.
    """
    x = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(observed, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.shape != w.shape or x.size == 0:
        raise ValueError(f"isotonic_fit needs non-empty 1-d arrays of one length, got {x.shape}, {y.shape}, {w.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(w))):
        raise ValueError("isotonic_fit needs finite predictions, observations and weights")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("isotonic_fit needs non-negative weights with a positive sum")
    # equal predictions become one point (their weighted mean outcome), so the knots' x increase strictly
    xs, inverse = np.unique(x, return_inverse=True)
    ws = np.bincount(inverse, w)
    ys = np.bincount(inverse, w * y) / np.where(ws > 0, ws, 1.0)
    # blocks as a stack of [weight, weighted outcome sum, first x, last x]; merge while the last two violate order
    blocks: list[list[float]] = []
    for xi, yi, wi in zip(xs, ys, ws):
        blocks.append([wi, wi * yi, xi, xi])
        while len(blocks) > 1 and blocks[-2][1] * blocks[-1][0] >= blocks[-1][1] * blocks[-2][0]:
            weight, total, _, last = blocks.pop()
            blocks[-1][0] += weight
            blocks[-1][1] += total
            blocks[-1][3] = last
    knots_x: list[float] = []
    knots_y: list[float] = []
    for weight, total, first, last in blocks:
        value = total / weight if weight > 0 else (knots_y[-1] if knots_y else 0.0)
        # constant over the block's predictions, linear between blocks (as scikit-learn's IsotonicRegression)
        for xk in ((first,) if first == last else (first, last)):
            knots_x.append(xk)
            knots_y.append(value)
    return np.asarray(knots_x), np.asarray(knots_y)


def isotonic_apply(knots: tuple[np.ndarray, np.ndarray], predicted: np.ndarray) -> np.ndarray:
    """The fitted map at ``predicted``: linear between knots, constant beyond the first and last."""
    x, y = knots
    return np.interp(np.asarray(predicted, dtype=np.float64), x, y)


def platt_fit(predicted: np.ndarray, observed: np.ndarray, ridge: float = 1e-3) -> tuple[float, float]:
    """Fit ``(a, b)`` of σ(a·logit(γ̂) + b) to observed rates by Newton's method on the Bernoulli likelihood,
    with a small ridge toward the identity (a = 1, b = 0) so that a few or separable pairs stay finite.

    Raises:
        ValueError: the arrays are not finite, 1-d, of one length and non-empty, or ``observed`` leaves [0, 1].
    """
    x = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(observed, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"platt_fit needs non-empty 1-d arrays of one length, got {x.shape}, {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any((y < 0) | (y > 1)):
        raise ValueError("platt_fit needs finite predictions and observed rates in [0, 1]")
    z = _logit(x)
    design = np.stack([z, np.ones_like(z)], axis=1)
    theta = np.array([1.0, 0.0])
    penalty = ridge * x.size
    for _ in range(50):
        q = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (q - y) + penalty * (theta - np.array([1.0, 0.0]))
        hess = (design * (q * (1.0 - q))[:, None]).T @ design + penalty * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def platt_apply(params: tuple[float, float], predicted: np.ndarray) -> np.ndarray:
    """σ(a·logit(γ̂) + b) for the fitted ``(a, b)``."""
    a, b = params
    return 1.0 / (1.0 + np.exp(-(a * _logit(np.asarray(predicted, dtype=np.float64)) + b)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1.0 - 1e-4)  # γ̂ of 0 or 1 stays finite
    return np.log(p) - np.log1p(-p)
