"""A simulated world for selector research at paper scale: an item-response model of GRPO post-training.

``"gps_env/SimulatedPromptSelection-v0"`` is a named research tool, never the default: the embedded world
(``PromptSelectionEnv``, a real LM) is the ground truth, and this model is calibrated against its measured
curves (``benchmarks/sim_calibration.py``, ``docs/simulated.md``). It presents the same observation, action,
info and probe contract, so every agent runs unchanged, and a step costs microseconds instead of a GRPO update.

**World** (fixed by ``world_seed``). Prompts fall into families (like tasks: ``easy``, ``hard``), each split
into clusters (like digit counts). Embeddings are synthetic, L2-normalised, with the cosine structure of
WordLlama on the embedded pool::

    e_τ = normalise(√c_g·G + √(c_f − c_g)·F_f(τ) + √(c_c − c_f)·M_c(τ) + √(1 − c_c)·ξ_τ)

(G, F_f, M_c orthonormal, ξ_τ a random unit vector: expected cosine c_c within a cluster, c_f within a
family, c_g across).
The initial logit of success (minus the item difficulty) is correlated with the embedding::

    ℓ⁰_τ = μ_f(τ) + σ·(√κ·u_c(τ) + √(1 − κ)·(√ρ·z_τ + √(1 − ρ)·ε_τ))

with μ_f the family's mean logit, u_c the cluster's offset (standard-normal quantiles within a family),
z_τ = x_τ·h ~ N(0, 1) the projection of the prompt's own Gaussian draw (ξ_τ = x_τ/|x_τ|) on a world
direction h (the difficulty visible in the text) and ε_τ ~ N(0, 1) the invisible rest.

**Policy** (a Rasch model with an ability that learns). Prompt τ succeeds with probability
``p_τ = sigmoid(ℓ⁰_τ + φ·e_τ + δ_τ)``: φ ∈ R^d is semantic skill (it transfers to every prompt by cosine
similarity, held-out prompts included), δ_τ is item-specific memory (pool prompts only). A step on batch S
with rewards r (B, k) and loss weights w is one GRPO update under this model: for a group with observed
success ŝ_τ, the logit gradient of the std-normalised GRPO loss is ∝ √(ŝ_τ(1 − ŝ_τ)), so::

    g_τ = w_τ·√(ŝ_τ(1 − ŝ_τ))                 # 0 for all-0 and all-1 groups: no advantage, no learning
    ḡ   = mean_S g_τ;  v ← β v + (1 − β) ḡ²;  a = (v / (1 − βᵗ))^(−α/2)   # Adam-like step-size adaptation
    m   = exp(−Λ / Λ₀);  Λ ← Λ + a·m·ḡ                                    # plasticity: diminishing returns
    φ  ← φ + η_s·a·m·mean_S g_τ e_τ;   δ_τ ← δ_τ + η_m·a·g_τ / B   (τ ∈ S)

Nothing moves when ḡ = 0. α = 0 is token-mean SGD (learning grows with the number of informative groups);
α = 1 makes the step size independent of the signal's level in the long run, as Adam does, so selection
then acts through *which* groups are informative. Plasticity makes the transferable skill grow like the
logarithm of the learning done, the shape of the embedded world's held-out curve; item memory does not
saturate. Parameters are in :class:`SimConfig`; its defaults are the calibrated values.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gps_env.env import PromptBatch, PromptSelectionEnv
from gps_env.ledger import RolloutLedger
from gps_env.selectors import spearman

_INT_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Family:
    """A family of prompts (a task): its share of every pool and its mean initial logit of success."""

    name: str
    share: float
    logit: float


@dataclass(frozen=True)
class SimConfig:
    """Parameters of the simulated world; defaults are calibrated on the embedded world (docs/simulated.md).

    Attributes:
        families: the prompt families (shares sum to 1). Calibrated: pool composition at k = 8 and 32.
        spread: σ, the sd of the initial logit within a family. Calibrated with ``families``.
        cluster_share: κ, the share of σ² between clusters of a family. Calibrated: variance of the
            embedded world's digit-group means within a task.
        text_share: ρ, the share of the within-cluster variance that is linear in the embedding (assumed).
        clusters: clusters in all (at least one per family).
        embedding_dim: d.
        cosine: expected cosine (across families, within a family, within a cluster), from WordLlama on the
            embedded pool.
        semantic_rate: η_s, learning rate of the transferable skill φ. Calibrated: the held-out curves.
        memory_rate: η_m, learning rate of item memory δ. Calibrated: the mean effective-sample ratios.
        adaptivity: α in [0, 1], how far the step size adapts to the signal's level (0: SGD, 1: Adam-like).
            Calibrated: the near-0.5 oracle's curve.
        plasticity: Λ₀ > 0, the semantic learning after which the skill's rate has fallen by e (inf: no
            decay). Calibrated: the shape of the held-out curves.
        beta: β, decay of the running mean square of the signal (Adam's β₂ in the embedded GRPO).
    """

    families: tuple[Family, ...] = (Family("easy", 0.605, 2.655), Family("hard", 0.395, -2.799))
    spread: float = 1.083
    cluster_share: float = 0.259
    text_share: float = 0.5
    clusters: int = 16
    embedding_dim: int = 256
    cosine: tuple[float, float, float] = (0.13, 0.5, 0.65)
    semantic_rate: float = 0.448
    memory_rate: float = 10.2
    adaptivity: float = 0.801
    plasticity: float = 1.92
    beta: float = 0.999

    def __post_init__(self) -> None:
        if not self.families:
            raise ValueError("need at least one family")
        shares = np.array([f.share for f in self.families], dtype=np.float64)
        if np.any(shares <= 0) or abs(shares.sum() - 1.0) > 1e-9:
            raise ValueError(f"family shares must be positive and sum to 1, got {shares.tolist()}")
        if len({f.name for f in self.families}) != len(self.families):
            raise ValueError("family names must be distinct")
        if not all(np.isfinite(f.logit) for f in self.families):
            raise ValueError("family logits must be finite")
        if not self.clusters >= len(self.families):
            raise ValueError(f"need at least one cluster per family, got {self.clusters} for {len(self.families)}")
        if self.embedding_dim < self.clusters + len(self.families) + 2:
            raise ValueError(f"embedding_dim must be >= clusters + families + 2 (orthogonal world directions), "
                             f"got {self.embedding_dim}")
        c_g, c_f, c_c = self.cosine
        if not 0.0 <= c_g <= c_f <= c_c < 1.0:
            raise ValueError(f"need 0 <= cosine across <= within family <= within cluster < 1, got {self.cosine}")
        for name in ("cluster_share", "text_share", "adaptivity"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.plasticity > 0:
            raise ValueError(f"plasticity must be > 0 (inf: no decay), got {self.plasticity}")
        for name in ("spread", "semantic_rate", "memory_rate"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")


class SimPool:
    """A simulated pool: what agents read (``len``, ``embeddings``) and the world's hidden item parameters.

    Attributes:
        embeddings: (N, d) float32, L2-normalised.
        family, cluster: (N,) int64 family and cluster of each prompt.
        family_names: name of each family index.
        initial_logit: (N,) float64 ℓ⁰ (privileged: selectors must not read it).
    """

    def __init__(self, embeddings: np.ndarray, family: np.ndarray, cluster: np.ndarray,
                 family_names: Sequence[str], initial_logit: np.ndarray) -> None:
        self.embeddings, self.family, self.cluster = embeddings, family, cluster
        self.family_names, self.initial_logit = tuple(family_names), initial_logit

    def __len__(self) -> int:
        return len(self.initial_logit)


def _apportion(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to ``shares`` summing to ``total`` (largest remainder)."""
    raw = shares * total
    counts = np.floor(raw).astype(np.int64)
    counts[np.argsort(counts - raw, kind="stable")[: total - counts.sum()]] += 1
    return counts


def make_world(config: SimConfig, sizes: Sequence[int], seed: int) -> list[SimPool]:
    """Draw the world's directions and cluster offsets once, then one pool per entry of ``sizes``."""
    rng = np.random.default_rng(seed)
    d, n_families = config.embedding_dim, len(config.families)
    shares = np.array([f.share for f in config.families])

    # orthonormal world directions (global, families, clusters, difficulty), so the cosines are as configured
    basis = np.linalg.qr(rng.standard_normal((d, 2 + n_families + config.clusters)))[0].T.astype(np.float32)
    glob, h, fam_dir, clu_dir = basis[0], basis[1], basis[2 : 2 + n_families], basis[2 + n_families :]
    clusters_per_family = _apportion(shares, config.clusters - n_families) + 1
    cluster_family = np.repeat(np.arange(n_families), clusters_per_family)
    offset = np.empty(config.clusters)
    for f, m in enumerate(clusters_per_family):  # evenly spread standard-normal quantiles, in random order
        q = np.array([NormalDist().inv_cdf((j + 0.5) / m) for j in range(m)])
        offset[cluster_family == f] = rng.permutation(q / q.std() if m > 1 else q)
    c_g, c_f, c_c = config.cosine
    kappa, rho, sigma = config.cluster_share, config.text_share, config.spread
    mu = np.array([f.logit for f in config.families])

    pools = []
    for n in sizes:
        family = np.repeat(np.arange(n_families), _apportion(shares, n))
        cluster = np.empty(n, np.int64)
        for f in range(n_families):  # round-robin over the family's clusters
            members = np.flatnonzero(family == f)
            own = np.flatnonzero(cluster_family == f)
            cluster[members] = own[np.arange(members.size) % own.size]
        order = rng.permutation(n)
        family, cluster = family[order], cluster[order]
        raw = rng.standard_normal((n, d), dtype=np.float32)
        z = (raw @ h).astype(np.float64)  # N(0, 1): the prompt's own direction along h
        own_dir = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        e = (np.sqrt(c_g) * glob + np.sqrt(c_f - c_g) * fam_dir[family] + np.sqrt(c_c - c_f) * clu_dir[cluster]
             + np.sqrt(1.0 - c_c) * own_dir)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        eps = rng.standard_normal(n)
        logit = mu[family] + sigma * (np.sqrt(kappa) * offset[cluster]
                                      + np.sqrt(1.0 - kappa) * (np.sqrt(rho) * z + np.sqrt(1.0 - rho) * eps))
        pools.append(SimPool(e.astype(np.float32), family.astype(np.int64), cluster,
                             [f.name for f in config.families], logit))
    return pools


class SimulatedPromptSelectionEnv(gym.Env):
    """Prompt selection in a simulated, calibrated item-response world (see the module docstring).

    **Contract**: the same as :class:`~gps_env.env.PromptSelectionEnv`. Action: a ``PromptBatch`` of B distinct
    indices, or ``{"prompts", "weights"?, "predictions"?}`` (validated by the same ``parse_action``; an
    invalid action raises ``ValueError`` and changes nothing). Observation: the same Dict (``last_batch``,
    ``last_rewards``, ``times_selected``, ``rollouts``, ``successes``, ``last_seen``, ``step``,
    ``rollouts_spent``; fresh arrays). Reward: the effective-sample ratio of the batch. Truncation: after
    ``max_steps`` steps or ``rollout_budget`` selector rollouts. :meth:`probe` samples k rollouts per prompt,
    charged as ``"probe"`` and reused (not charged again) if trained on in the next step. The ledger charges
    rollouts and seconds by the same rules; the world has no tokens, so token counts are 0.

    **Info**: ``step``, ``esr``, ``mean_reward``, ``batch``, ``prompt_success``, ``reused_probes``, ``tokens``
    (zeros), ``grpo`` (``kept_groups``, ``total_groups``, ``signal`` = ḡ, ``step_scale`` = a,
    ``plasticity`` = m),
    ``spearman`` (with predictions), ``verifier_timeouts`` (0), ``time`` (with ``time_in_info``),
    ``ledger``, and every ``eval_every`` steps ``eval``. :meth:`evaluate` returns the *expected* held-out
    accuracy (mean p over the held-out prompts, no sampling noise; charged as ``heldout × eval_rollouts``
    rollouts), the expected shares of held-out prompts all-solved / all-failed over ``eval_rollouts``
    samples, and ``by_task`` per family.

    Randomness: the world comes from ``world_seed``; rollouts from ``self.np_random`` (``reset(seed=...)``).
    :meth:`success_probability` gives the privileged per-prompt p for analysis (never for selectors).

    Args:
        batch_size, rollouts_per_prompt, max_steps, pool_size, heldout_size, eval_every, eval_rollouts,
            rollout_budget, world_seed, time_in_info, render_mode: as in ``PromptSelectionEnv`` (same defaults).
        config: the world's parameters (default: the calibrated :class:`SimConfig`).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    parse_action = PromptSelectionEnv.parse_action  # the very same validation as the embedded world

    def __init__(
        self,
        batch_size: int = 32,
        rollouts_per_prompt: int = 8,
        max_steps: int = 200,
        pool_size: int = 1000,
        heldout_size: int = 400,
        eval_every: int = 50,
        eval_rollouts: int = 8,
        rollout_budget: int | None = None,
        world_seed: int = 0,
        config: SimConfig | None = None,
        time_in_info: bool = True,
        render_mode: str | None = None,
    ) -> None:
        for name, value in (("rollouts_per_prompt", rollouts_per_prompt), ("max_steps", max_steps),
                            ("eval_rollouts", eval_rollouts), ("pool_size", pool_size),
                            ("heldout_size", heldout_size)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {eval_every}")
        if rollout_budget is not None and rollout_budget < 1:
            raise ValueError(f"rollout_budget must be >= 1 or None, got {rollout_budget}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.config = config or SimConfig()
        self.world_seed = int(world_seed)
        self.pool, self.heldout = make_world(self.config, (pool_size, heldout_size), self.world_seed)
        self.batch_size, self.k = int(batch_size), int(rollouts_per_prompt)
        self.max_steps, self.rollout_budget = int(max_steps), rollout_budget
        self.eval_every, self.eval_rollouts = int(eval_every), int(eval_rollouts)
        self.time_in_info, self.render_mode = time_in_info, render_mode

        n = len(self.pool)
        self.action_space = PromptBatch(n, self.batch_size)
        count = spaces.Box(0, _INT_MAX, shape=(n,), dtype=np.int64)
        self.observation_space = spaces.Dict({  # identical to PromptSelectionEnv's
            "last_batch": spaces.Box(-1, n - 1, shape=(self.batch_size,), dtype=np.int64),
            "last_rewards": spaces.Box(0.0, 1.0, shape=(self.batch_size, self.k), dtype=np.float32),
            "times_selected": count,
            "rollouts": count,
            "successes": count,
            "last_seen": spaces.Box(-1, _INT_MAX, shape=(n,), dtype=np.int64),
            "step": spaces.Box(0, _INT_MAX, shape=(1,), dtype=np.int64),
            "rollouts_spent": spaces.Box(0, _INT_MAX, shape=(1,), dtype=np.int64),
        })
        self.ledger = RolloutLedger()
        self._started = self._done = False

    # ------------------------------------------------------------------ the model
    def success_probability(self, indices: np.ndarray | None = None, heldout: bool = False) -> np.ndarray:
        """Privileged p_τ = sigmoid(ℓ⁰ + φ·e + δ) of pool prompts (all, or ``indices``), or of the held-out set."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before success_probability()")
        pool = self.heldout if heldout else self.pool
        idx = slice(None) if indices is None else np.asarray(indices, dtype=np.int64)
        logit = pool.initial_logit[idx] + pool.embeddings[idx] @ self._phi
        if not heldout:
            logit = logit + self._memory[idx]
        return 1.0 / (1.0 + np.exp(-logit))

    def _sample(self, indices: np.ndarray) -> np.ndarray:
        p = self.success_probability(indices)
        return (self.np_random.random((indices.size, self.k)) < p[:, None]).astype(np.float64)

    def _learn(self, indices: np.ndarray, rewards: np.ndarray, weights: np.ndarray) -> dict[str, float | int]:
        """One GRPO update of the model (module docstring): only groups with mixed outcomes move anything."""
        c = self.config
        success = rewards.mean(axis=1)
        signal = weights * np.sqrt(success * (1.0 - success))
        mean_signal = float(signal.mean())
        self._updates += 1
        self._v = c.beta * self._v + (1.0 - c.beta) * mean_signal**2
        adapt = plastic = 0.0
        if mean_signal > 0:
            adapt = float((self._v / (1.0 - c.beta**self._updates)) ** (-c.adaptivity / 2))
            plastic = float(np.exp(-self._learnt / c.plasticity))
            self._learnt += adapt * plastic * mean_signal
            self._phi += (c.semantic_rate * adapt * plastic / self.batch_size) * (
                signal @ self.pool.embeddings[indices])
            self._memory[indices] += (c.memory_rate * adapt / self.batch_size) * signal
        return {"kept_groups": int(np.count_nonzero(signal)), "total_groups": int(signal.size),
                "signal": mean_signal, "step_scale": adapt, "plasticity": plastic}

    # ------------------------------------------------------------------ episode control
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """The initial policy (φ = 0, δ = 0), empty history and ledger; evaluate once."""
        super().reset(seed=seed)
        n = len(self.pool)
        self._phi = np.zeros(self.config.embedding_dim)
        self._memory = np.zeros(n)
        self._v, self._updates, self._learnt = 0.0, 0, 0.0
        self.ledger.reset()
        self._times_selected = np.zeros(n, np.int64)
        self._rollouts = np.zeros(n, np.int64)
        self._successes = np.zeros(n, np.int64)
        self._last_seen = np.full(n, -1, np.int64)
        self._last_batch = np.full(self.batch_size, -1, np.int64)
        self._last_rewards = np.zeros((self.batch_size, self.k), np.float32)
        self._step = 0
        self._probe_cache: dict[int, np.ndarray] = {}
        self._last_eval: dict[str, Any] | None = None
        self._started, self._done = True, False
        info: dict[str, Any] = {"step": 0, "ledger": self.ledger.summary(seconds=self.time_in_info)}
        if self.eval_every:
            info["eval"] = self.evaluate()
            info["ledger"] = self.ledger.summary(seconds=self.time_in_info)
        self._returned_at, self._charged_then = time.perf_counter(), self._charged_seconds()
        return self._observation(), info

    def _charged_seconds(self) -> float:
        return sum(sum(phases.values()) for phases in self.ledger.seconds.values())

    def _check_running(self) -> None:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step(), probe() or evaluate()")
        if self._done:
            raise gym.error.ResetNeeded("the episode is truncated (step or rollout budget spent); call reset()")

    def step(self, action: Any):
        """Sample the batch's rollouts (reusing probes), one model update, charge, observe."""
        self._check_running()
        indices, weights, predictions = self.parse_action(action)
        step_start = time.perf_counter()
        select_seconds = max(0.0, step_start - self._returned_at - (self._charged_seconds() - self._charged_then))
        self.ledger.charge("train", "select", seconds=select_seconds)
        before = {p: dict(v) for p, v in self.ledger.seconds.items()}

        reused = np.array([i in self._probe_cache for i in indices.tolist()], dtype=bool)
        fresh = indices[~reused]
        rewards = np.empty((self.batch_size, self.k))
        if reused.any():
            rewards[reused] = np.stack([self._probe_cache[i] for i in indices[reused].tolist()])
        with self.ledger.timer("train", "generate"):
            rewards[~reused] = self._sample(fresh)
        self.ledger.charge("train", rollouts=fresh.size * self.k)
        with self.ledger.timer("train", "update"):
            stats = self._learn(indices, rewards, weights)
        self._probe_cache.clear()  # probes describe the old policy

        self._step += 1
        self._times_selected[indices] += 1
        self._rollouts[fresh] += self.k  # probed prompts were counted when probed
        self._successes[fresh] += rewards[~reused].sum(axis=1).astype(np.int64)
        self._last_seen[indices] = self._step
        self._last_batch = indices.copy()
        self._last_rewards = rewards.astype(np.float32)

        mixed = rewards.min(axis=1) < rewards.max(axis=1)
        esr = float(mixed.mean())
        self.ledger.record_groups(mixed=int(mixed.sum()), total=len(mixed))
        info: dict[str, Any] = {
            "step": self._step,
            "esr": esr,
            "mean_reward": float(rewards.mean()),
            "batch": indices.copy(),
            "prompt_success": rewards.mean(axis=1),
            "reused_probes": int(reused.sum()),
            "tokens": {"prompt": 0, "completion": 0},
            "grpo": stats,
        }
        if predictions is not None:
            rho = spearman(predictions, rewards.mean(axis=1))
            info["spearman"] = None if np.isnan(rho) else rho
        if self.eval_every and self._step % self.eval_every == 0:
            info["eval"] = self.evaluate()
        info["verifier_timeouts"] = 0
        if self.time_in_info:
            info["time"] = {ph: self.ledger.seconds["train"][ph] - before["train"][ph]
                            for ph in ("generate", "verify", "update")}
            info["time"]["eval"] = sum(self.ledger.seconds["eval"].values()) - sum(before["eval"].values())
            info["time"]["select"] = select_seconds
            info["time"]["step"] = time.perf_counter() - step_start
        info["ledger"] = self.ledger.summary(seconds=self.time_in_info)
        self._returned_at, self._charged_then = time.perf_counter(), self._charged_seconds()
        self._done = self._step >= self.max_steps or (
            self.rollout_budget is not None and self.ledger.selector_rollouts >= self.rollout_budget)
        return self._observation(), esr, False, self._done, info

    def probe(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Sample k rollouts for each of ``indices`` under the current policy; return rewards (len, k).

        Same rules as ``PromptSelectionEnv.probe``: charged as ``"probe"``, cached until the next update, reused
        by the next step, and free when probed again before it.
        """
        self._check_running()
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"probe needs a non-empty 1-d integer array of indices, got {idx!r:.80}")
        if np.any((idx < 0) | (idx >= len(self.pool))):
            raise ValueError(f"probe indices out of range [0, {len(self.pool)})")
        if len(np.unique(idx)) != idx.size:
            raise ValueError("probe indices must be distinct")
        new = np.array([i for i in idx.tolist() if i not in self._probe_cache], dtype=np.int64)
        if new.size:
            with self.ledger.timer("probe", "generate"):
                rewards = self._sample(new)
            self.ledger.charge("probe", rollouts=new.size * self.k)
            self._probe_cache.update(zip(new.tolist(), rewards))
            self._rollouts[new] += self.k
            self._successes[new] += rewards.sum(axis=1).astype(np.int64)
            self._last_seen[new] = self._step
        return np.stack([self._probe_cache[i] for i in idx.tolist()])

    def evaluate(self) -> dict[str, Any]:
        """Expected held-out success under the current policy (exact: no sampling noise); charged as eval."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before evaluate()")
        with self.ledger.timer("eval", "generate"):
            p = self.success_probability(heldout=True)
            family = self.heldout.family
            by_task = {name: float(p[family == f].mean()) for f, name in enumerate(self.heldout.family_names)
                       if np.any(family == f)}
            self._last_eval = {
                "step": self._step,
                "accuracy": float(p.mean()),
                "solved_share": float((p**self.eval_rollouts).mean()),
                "unsolved_share": float(((1.0 - p) ** self.eval_rollouts).mean()),
                "by_task": by_task,
            }
        self.ledger.charge("eval", rollouts=len(self.heldout) * self.eval_rollouts)
        return copy.deepcopy(self._last_eval)

    # ------------------------------------------------------------------ checkpointing
    @property
    def current_step(self) -> int:
        """Steps taken in this episode."""
        return self._step

    @property
    def done(self) -> bool:
        """Whether the episode is truncated (step or rollout budget spent): ``reset`` is needed."""
        return self._done

    def config_fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree with: the world (config, seed, sizes) and the RL settings."""
        return {
            "world": repr(asdict(self.config)), "world_seed": self.world_seed, "pool_size": len(self.pool),
            "heldout_size": len(self.heldout), "batch_size": self.batch_size, "k": self.k,
            "max_steps": self.max_steps, "rollout_budget": self.rollout_budget, "eval_every": self.eval_every,
            "eval_rollouts": self.eval_rollouts,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed episode needs to continue bit-identically (take it between steps)."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before state_dict(): there is no episode to save")
        if self._probe_cache:
            raise RuntimeError("probe rollouts are pending for the next step; checkpoint after step() returns")
        return {
            "fingerprint": self.config_fingerprint(),
            "model": {"phi": self._phi.copy(), "memory": self._memory.copy(), "v": self._v,
                      "updates": self._updates, "learnt": self._learnt},
            "ledger": self.ledger.state_dict(),
            "np_random": copy.deepcopy(self.np_random.bit_generator.state),
            "step": self._step,
            "done": self._done,
            "history": {
                "times_selected": self._times_selected.copy(), "rollouts": self._rollouts.copy(),
                "successes": self._successes.copy(), "last_seen": self._last_seen.copy(),
                "last_batch": self._last_batch.copy(), "last_rewards": self._last_rewards.copy(),
            },
            "last_eval": copy.deepcopy(self._last_eval),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Continue the episode saved by :meth:`state_dict`; returns its observation.

        Raises:
            ValueError: when the state comes from another world or settings (naming what differs).
        """
        theirs, ours = state.get("fingerprint", {}), self.config_fingerprint()
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if differ:
            raise ValueError(f"checkpoint is from another configuration (differs in: {', '.join(differ)})")
        model, history = state["model"], state["history"]
        self._phi = np.array(model["phi"], dtype=np.float64)
        self._memory = np.array(model["memory"], dtype=np.float64)
        self._v, self._updates, self._learnt = float(model["v"]), int(model["updates"]), float(model["learnt"])
        self.ledger.load_state_dict(state["ledger"])
        rng = np.random.Generator(getattr(np.random, state["np_random"]["bit_generator"])())
        rng.bit_generator.state = copy.deepcopy(state["np_random"])
        self.np_random = rng
        self._step, self._done, self._started = int(state["step"]), bool(state["done"]), True
        self._times_selected, self._rollouts, self._successes, self._last_seen, self._last_batch = (
            np.array(history[k], dtype=np.int64)
            for k in ("times_selected", "rollouts", "successes", "last_seen", "last_batch")
        )
        self._last_rewards = np.array(history["last_rewards"], dtype=np.float32)
        self._probe_cache = {}
        self._last_eval = copy.deepcopy(state["last_eval"])
        self._returned_at, self._charged_then = time.perf_counter(), self._charged_seconds()
        return self._observation()

    # ------------------------------------------------------------------ observation, rendering
    def _observation(self) -> dict[str, np.ndarray]:
        return {
            "last_batch": self._last_batch.copy(),
            "last_rewards": self._last_rewards.copy(),
            "times_selected": self._times_selected.copy(),
            "rollouts": self._rollouts.copy(),
            "successes": self._successes.copy(),
            "last_seen": self._last_seen.copy(),
            "step": np.array([self._step], np.int64),
            "rollouts_spent": np.array([self.ledger.selector_rollouts], np.int64),
        }

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if not self._started:
            return "SimulatedPromptSelectionEnv (not reset)"
        line = (f"step {self._step}/{self.max_steps}  rollouts {self.ledger.selector_rollouts}  "
                f"batch success {self._last_rewards.mean():.3f}  "
                f"esr {(self._last_rewards.min(1) < self._last_rewards.max(1)).mean():.3f}")
        if self._last_eval is not None:
            line += f"  held-out {self._last_eval['accuracy']:.3f} (step {self._last_eval['step']})"
        return line
