"""Batch-acquisition rules: pure numpy functions over predictions, embeddings and history.

Agents (``gps_env.agents``) compose these: a *model* predicts per-prompt success, an *acquisition* scores
prompts, and an *optimiser* picks the batch (BoTorch's split). Nothing here touches the env or torch.
"""

from gps_env.selectors.acquisition import (
    band_filter,
    batch_terms,
    distance_to_band,
    greedy_diverse,
    pairing_choice,
    spearman,
    thompson_draws,
    top_nearest_target,
    utility,
)
from gps_env.selectors.allocation import allocate_samples

__all__ = [
    "allocate_samples",
    "band_filter",
    "batch_terms",
    "distance_to_band",
    "greedy_diverse",
    "pairing_choice",
    "spearman",
    "thompson_draws",
    "top_nearest_target",
    "utility",
]
