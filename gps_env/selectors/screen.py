"""Screens of GPS's greedy (``greedy_diverse(screen=...)``): the pool's products with a few vectors at once.

A detail of the greedy optimiser (:mod:`gps_env.selectors.greedy`), not a score: it changes how often the
pool is read, never which batch is picked. The whole-pool greedy needs ``E @ v`` for the (N x d) embedding
matrix once per pick: 40 MiB of float32 read per pick at N = 40,960, which bounds it by memory bandwidth. One
product with a few dozen vectors costs a few times what one product with one vector does, so the greedy asks
for its running sum and its expected next picks at once and reads the pool a few times per batch. Each
screen declares an error bound on its products, which lets the greedy compute exact float32 gains only where
they decide the pick, so batches do not change.

- :class:`Float32Screen` (GPS's screen): the float32 pool itself, no copy; products off only by float32
  rounding, so the greedy's exact re-checks are few. In GPS's own loop it was 3.0x the unscreened greedy
  against bfloat16's 1.9x (``python benchmarks/greedy_screen.py --batch-size 256 --steps 200``, December
  2026, a 2-core Xeon with AVX512-BF16 and no AMX), although one isolated call with 33 vectors was about
  as fast in either type there (``python benchmarks/gps_step.py`` times one call of each): a single call's
  time does not tell which screen makes the faster greedy, so GPS does not choose by timing one.
- :class:`BFloat16Screen`: a bfloat16 copy, half the bytes per pass; its products are approximate (about
  2^-8 relative), so more prompts need exact gains and its columns are converted to float32 when read. It
  pays where bfloat16 products are fast: one call with 33 vectors took 0.69 ms on the machine of the
  November 2026 figures in docs/gps.md. ``python benchmarks/greedy_screen.py`` compares the two on GPS's
  own inputs.

The products are torch's (numpy has no bfloat16, and GPS runs numpy's BLAS on one thread during the greedy
while torch's keeps every core); torch is imported when a screen is built, not with this module, so
``import gps_env.selectors.screen`` stays torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Relative error of a float32 product per dimension, as a fraction of ||row|| * ||vector||: a sum of d
#: products in any order and with or without FMA is within d * 2^-24 / (1 - d * 2^-24) of the exact
#: one (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., §3.1); twice that keeps a margin.
F32_REL_ERROR_PER_DIM = 2.0 * 2.0**-24

#: Relative error of one bfloat16 product, as a fraction of ||row|| * ||vector||: rounding both inputs
#: to bfloat16 (2^-9 each, so 2^-8 for their product), float32 accumulation (d * 2^-24 for d <= 4096) and
#: rounding the result to bfloat16 (2^-9): under 0.0063; 2^-7 keeps a margin.
BF16_REL_ERROR = 2.0**-7


def _checked(embeddings: np.ndarray) -> tuple[np.ndarray, float]:
    """The embeddings as C-contiguous float32 (no copy when they already are) and their largest row norm, or
    ``ValueError``."""
    e = np.ascontiguousarray(embeddings, dtype=np.float32)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (N, d), got shape {e.shape}")
    if e.shape[1] > 4096:
        raise ValueError(f"the error bound assumes d <= 4096, got d = {e.shape[1]}")
    # squared row norms in float64 (no float32 value overflows there): NaN or inf in a row makes its own so,
    # so one pass checks finiteness and finds the largest norm
    squared = np.einsum("ij,ij->i", e, e, dtype=np.float64)
    if not np.isfinite(squared).all():  # then every product is finite
        raise ValueError("embeddings must be finite (no NaN or inf)")
    return e, float(np.sqrt(squared.max(initial=0.0)))


class Float32Screen:
    """``screen(vectors)[j]`` is ``embeddings @ vectors[j]`` computed in float32 by torch's BLAS, the vectors
    all at once (see :class:`~gps_env.selectors.greedy.InnerProductScreen`).

    Args:
        embeddings: (N, d) float32 pool embeddings, read in place (not copied: the caller must not change
            them while the screen is in use).

    ``rel_error`` is ``2 d 2^-24`` times ``largest_norm``, the largest row norm: float32 rounding only.
    """

    def __init__(self, embeddings: np.ndarray) -> None:
        import torch

        e, self.largest_norm = _checked(embeddings)
        self._e = torch.from_numpy(e)
        self.rel_error = F32_REL_ERROR_PER_DIM * e.shape[1] * self.largest_norm

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """(k, d) vectors give a (k, N) array whose row j is the column ``E @ vectors[j]``."""
        import torch

        v = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        return (v @ self._e.T).numpy()  # (k, N): each column of E @ V.T is a contiguous row


class BFloat16Screen:
    """``screen(vectors)[j]`` approximates ``embeddings @ vectors[j]`` (see
    :class:`~gps_env.selectors.greedy.InnerProductScreen`).

    Args:
        embeddings: (N, d) float32 pool embeddings; copied once to bfloat16 (N·d·2 bytes).

    ``rel_error`` is ``BF16_REL_ERROR`` times ``largest_norm``, the largest row norm, so that
    ``|screen(v)[i, j] − E[i] · v[j]| <= rel_error · ||v[j]||`` holds for every row.
    """

    def __init__(self, embeddings: np.ndarray) -> None:
        import torch

        e, self.largest_norm = _checked(embeddings)  # finite, so is every bfloat16 product (float32's range)
        self._e = torch.from_numpy(e).to(torch.bfloat16)
        self.rel_error = BF16_REL_ERROR * self.largest_norm

    def __call__(self, vectors: np.ndarray) -> _Columns:
        import torch

        v = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(torch.bfloat16)
        return _Columns(v @ self._e.T)  # (k, N): each column of E @ V.T is a contiguous row


class _Columns:
    """The (k, N) bfloat16 products, each read as float32 when asked for: the greedy uses some of the k, so
    converting all of them would be wasted work."""

    def __init__(self, products: torch.Tensor) -> None:
        self._products = products

    def __len__(self) -> int:
        return self._products.shape[0]

    def __getitem__(self, j: int) -> np.ndarray:
        return self._products[j].float().numpy()
