"""The selection layer: pure numpy functions over predictions, embeddings and history (no env, no torch).

Agents (``gps_env.agents``) compose it as BoTorch does: a *model* (the agent's: Beta posteriors, the PPM,
a policy) predicts per-prompt success, a *score* values each prompt, and an *optimiser* picks the batch.

- :mod:`~gps_env.selectors.scores`: per-prompt acquisition scores (``utility``, ``mixed_probability``,
  ``thompson_draws``, ``band_filter``, ``distance_to_band``).
- :mod:`~gps_env.selectors.optimizers`: batch optimisers (``top_nearest_target``, ``pairing_choice``,
  ``top_scored``) and the random candidate sets they run over (``candidate_count``, ``draw_candidates``,
  ``deal_candidates``: the next slice of a shuffled epoch).
- :mod:`~gps_env.selectors.greedy`: GPS's greedy diversification, max-sum (``greedy_diverse``);
  :mod:`~gps_env.selectors.maxmin`: the max-min form of GPS's ancestor PDTS (``greedy_maxmin``).
- :mod:`~gps_env.selectors.screen`: the greedy's screens over large pools, ``Float32Screen`` and ``BFloat16Screen``,
  GPS's is the float32 one (imports torch when one is built; not re-exported here, so that this package stays
  torch-free).
- :mod:`~gps_env.selectors.features`: per-prompt features for learned selectors.
- :mod:`~gps_env.selectors.allocation`: test-time allocation of a sampling budget.
- :mod:`~gps_env.selectors.neighbours`: (ours) unseen prompts' success from their nearest trained prompts, for
  test-time allocation.

``spearman`` and ``batch_terms`` are :mod:`gps_env.metrics`'s, re-exported for convenience.
"""

from gps_env.metrics import batch_terms, spearman
from gps_env.selectors.allocation import allocate_samples
from gps_env.selectors.greedy import greedy_diverse
from gps_env.selectors.maxmin import greedy_maxmin
from gps_env.selectors.optimizers import (
    candidate_count,
    deal_candidates,
    draw_candidates,
    pairing_choice,
    top_nearest_target,
    top_scored,
)
from gps_env.selectors.scores import band_filter, distance_to_band, mixed_probability, thompson_draws, utility

__all__ = [
    "allocate_samples",
    "band_filter",
    "batch_terms",
    "candidate_count",
    "deal_candidates",
    "distance_to_band",
    "draw_candidates",
    "greedy_diverse",
    "greedy_maxmin",
    "mixed_probability",
    "pairing_choice",
    "spearman",
    "thompson_draws",
    "top_nearest_target",
    "top_scored",
    "utility",
]
