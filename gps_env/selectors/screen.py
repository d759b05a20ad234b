"""A bfloat16 copy of the pool's embeddings that screens GPS's greedy (``greedy_diverse(screen=...)``).

A detail of the greedy optimiser (:mod:`gps_env.selectors.greedy`), not a score: it changes how often the
pool is read, never which batch is picked. The whole-pool greedy needs ``E @ v`` for the (N x d) embedding
matrix once per pick: 40 MiB of float32 read per pick at N = 40,960, which bounds it by memory bandwidth. A
bfloat16 copy is half the bytes, and one product with a few dozen vectors costs about what one product with
one vector does (on CPUs with AMX or AVX512-BF16 the arithmetic is nearly free), so the greedy asks for its
running sum and its expected next picks at once and reads the pool a few times per batch. The products are
approximate; their error bound lets the greedy compute exact float32 gains only where they decide the pick,
so batches do not change.

numpy has no bfloat16, so the products are torch's; torch is imported when a screen is built, not with this
module, so ``import gps_env.selectors.screen`` stays torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Relative error of one bfloat16 product, as a fraction of ||row|| * ||vector||: rounding both inputs
#: to bfloat16 (2^-9 each, so 2^-8 for their product), float32 accumulation (d * 2^-24 for d <= 4096) and
#: rounding the result to bfloat16 (2^-9): under 0.0063; 2^-7 keeps a margin.
BF16_REL_ERROR = 2.0**-7


class BFloat16Screen:
    """``screen(vectors)[j]`` approximates ``embeddings @ vectors[j]`` (see
    :class:`~gps_env.selectors.greedy.InnerProductScreen`).

    Args:
        embeddings: (N, d) float32 pool embeddings; copied once to bfloat16 (N·d·2 bytes).

    ``rel_error`` is ``BF16_REL_ERROR`` times the largest row norm, so that
    ``|screen(v)[i, j] − E[i] · v[j]| <= rel_error · ||v[j]||`` holds for every row.
    """

    def __init__(self, embeddings: np.ndarray) -> None:
        import torch

        e = np.asarray(embeddings, dtype=np.float32)
        if e.ndim != 2:
            raise ValueError(f"embeddings must be (N, d), got shape {e.shape}")
        if e.shape[1] > 4096:
            raise ValueError(f"the error bound assumes d <= 4096, got d = {e.shape[1]}")
        if not np.isfinite(e).all():  # then every product is finite: bfloat16 has float32's range
            raise ValueError("embeddings must be finite (no NaN or inf)")
        self._e = torch.from_numpy(e).to(torch.bfloat16)
        self.rel_error = BF16_REL_ERROR * float(np.sqrt((e.astype(np.float64) ** 2).sum(axis=1).max(initial=0.0)))

    def __call__(self, vectors: np.ndarray) -> _Columns:
        import torch

        v = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(torch.bfloat16)
        return _Columns(self._e @ v.T)


class _Columns:
    """The (N, k) bfloat16 products, read one float32 column at a time: the greedy uses a few of the k, so
    converting all of them, and then reading a column with a stride of k in numpy, would be wasted work."""

    def __init__(self, products: torch.Tensor) -> None:
        self._products = products

    def __len__(self) -> int:
        return self._products.shape[1]

    def __getitem__(self, j: int) -> np.ndarray:
        return self._products[:, j].float().numpy()
