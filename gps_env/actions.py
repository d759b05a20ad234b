"""The action of every prompt-selection env: its space (:class:`PromptBatch`) and its validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

MAX_WEIGHT = 1e6  # per-prompt loss weights above this would overflow float32 advantages


class PromptBatch(spaces.Space[np.ndarray]):
    """A batch of ``batch_size`` distinct prompt indices in ``[0, n)`` (int64, shape ``(batch_size,)``)."""

    def __init__(self, n: int, batch_size: int, seed: int | np.random.Generator | None = None) -> None:
        if not 1 <= batch_size <= n:
            raise ValueError(f"need 1 <= batch_size <= pool size, got batch_size={batch_size}, n={n}")
        self.n, self.batch_size = int(n), int(batch_size)
        super().__init__(shape=(self.batch_size,), dtype=np.int64, seed=seed)

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        if mask is not None or probability is not None:
            raise NotImplementedError("PromptBatch.sample takes no mask or probability")
        return self.np_random.choice(self.n, size=self.batch_size, replace=False).astype(np.int64)

    def contains(self, x: Any) -> bool:
        x = np.asarray(x)
        return (
            x.shape == self.shape
            and np.issubdtype(x.dtype, np.integer)
            and bool(np.all((x >= 0) & (x < self.n)))
            and len(np.unique(x)) == self.batch_size
        )

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"PromptBatch(n={self.n}, batch_size={self.batch_size})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptBatch) and (other.n, other.batch_size) == (self.n, self.batch_size)



def parse_action(action: Any, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate an action over a pool of ``n`` prompts and batches of ``batch_size``.

    Returns ``(indices, weights, predictions)`` (int64, float64 weights defaulting to 1, float64 predictions or
    None), or raises ``ValueError`` naming what is wrong.
    """
    weights = predictions = None
    if isinstance(action, Mapping):
        unknown = set(action) - {"prompts", "weights", "predictions"}
        if "prompts" not in action or unknown:
            raise ValueError(
                f"a dict action needs key 'prompts' and optionally 'weights', 'predictions'; got {sorted(action)}"
            )
        action, weights, predictions = action["prompts"], action.get("weights"), action.get("predictions")
    indices = np.asarray(action)
    if indices.dtype == object or not (np.issubdtype(indices.dtype, np.integer)):
        raise ValueError(f"prompt indices must be integers, got dtype {indices.dtype}")
    if indices.shape != (batch_size,):
        raise ValueError(f"expected {batch_size} prompt indices, got shape {indices.shape}")
    out_of_range = indices[(indices < 0) | (indices >= n)]
    if out_of_range.size:
        raise ValueError(f"prompt indices out of range [0, {n}): {out_of_range[:5].tolist()}")
    values, counts = np.unique(indices, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"prompt indices must be distinct; repeated: {values[counts > 1][:5].tolist()}")
    if weights is None:
        w = np.ones(batch_size)
    else:
        w = np.asarray(weights)
        if w.dtype == object or not (np.issubdtype(w.dtype, np.number) and not np.iscomplexobj(w)):
            raise ValueError(f"weights must be real numbers, got dtype {w.dtype}")
        w = w.astype(np.float64)
        if w.shape != (batch_size,):
            raise ValueError(f"expected {batch_size} weights, got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite (no NaN or inf)")
        if np.any(w < 0):
            raise ValueError(f"weights must be non-negative, got min {w.min()}")
        if np.any(w > MAX_WEIGHT):
            raise ValueError(f"weights must be at most {MAX_WEIGHT:g} (float32 update), got {w.max():g}")
    if predictions is not None:
        predictions = np.asarray(predictions)
        if (predictions.dtype == object or not np.issubdtype(predictions.dtype, np.number)
                or np.iscomplexobj(predictions)):
            raise ValueError(f"predictions must be real numbers, got dtype {predictions.dtype}")
        predictions = predictions.astype(np.float64)
        if predictions.shape != (batch_size,):
            raise ValueError(f"expected {batch_size} predictions, got shape {predictions.shape}")
        if not np.all((predictions >= 0) & (predictions <= 1)):
            raise ValueError("predictions must be success probabilities in [0, 1]")
    return indices.astype(np.int64), w, predictions
