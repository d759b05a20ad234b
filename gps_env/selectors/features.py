"""Per-prompt features from the shared observation, for learned selectors (pure numpy, all in [0, 1]).

They use only what every env in the package observes (per-prompt rollouts and successes, the last batch
and its rewards, when each prompt was last seen), so a selector trained in the simulated world can be
evaluated in the embedded one.
"""

from __future__ import annotations

import numpy as np

FEATURE_NAMES = (
    "posterior_mean",   # (successes + 1) / (rollouts + 2): Beta(1, 1) posterior mean
    "posterior_sd",     # its standard deviation, times 2 (so it spans [0, 1])
    "log_rollouts",     # log1p(rollouts) / log1p(1024), clipped to 1
    "seen",             # 1 if the prompt was ever rolled out
    "in_last_batch",    # 1 if it was in the last batch
    "last_success",     # its success rate in the last batch (0 if not in it)
    "staleness",        # (step - last seen) / step, 1 if never seen
)


def candidate_features(obs: dict[str, np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """(len(candidates), len(FEATURE_NAMES)) float32 features of the candidate prompts."""
    c = np.asarray(candidates, dtype=np.int64)
    rollouts = obs["rollouts"][c].astype(np.float64)
    successes = obs["successes"][c].astype(np.float64)
    mean = (successes + 1.0) / (rollouts + 2.0)
    sd = np.sqrt(mean * (1.0 - mean) / (rollouts + 3.0))
    step = max(int(obs["step"][0]), 1)
    last_seen = obs["last_seen"][c]
    staleness = np.where(last_seen >= 0, (step - np.maximum(last_seen, 0)) / step, 1.0)
    in_last = np.zeros(len(c))
    last_success = np.zeros(len(c))
    last_batch = np.asarray(obs["last_batch"])
    valid = last_batch >= 0
    if valid.any():
        rate = dict(zip(last_batch[valid].tolist(), obs["last_rewards"][valid].mean(axis=1).tolist()))
        for j, i in enumerate(c.tolist()):
            if i in rate:
                in_last[j], last_success[j] = 1.0, rate[i]
    features = np.stack([
        mean, 2.0 * sd, np.minimum(np.log1p(rollouts) / np.log1p(1024.0), 1.0), (rollouts > 0).astype(float),
        in_last, last_success, np.clip(staleness, 0.0, 1.0),
    ], axis=1)
    return features.astype(np.float32)
