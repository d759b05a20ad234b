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
``p_τ = sigmoid(ℓ⁰_τ + φ·e_τ + b + δ_τ)``: φ ∈ R^d is semantic skill (it transfers to every prompt by cosine
similarity, held-out prompts included), b a shared offset (negative transfer), δ_τ is item-specific memory
(pool prompts only). A step on batch S
with rewards r (B, k) and loss weights w is one GRPO update under this model: for a group with observed
success ŝ_τ, the logit gradient of the std-normalised GRPO loss is ∝ √(ŝ_τ(1 − ŝ_τ)), so::

    g_τ = w_τ·√(ŝ_τ(1 − ŝ_τ))                 # 0 for all-0 and all-1 groups: no advantage, no learning
    ḡ   = mean_S g_τ;  v ← β v + (1 − β) ḡ²;  a = (v / (1 − βᵗ))^(−α/2)   # Adam-like step-size adaptation
    m   = exp(−Λ / Λ₀);  Λ ← Λ + a·m·ḡ                                    # plasticity: diminishing returns
    (φ, b) ← exp(−ζ·a·ḡ)·(φ, b)                                            # forgetting
    φ  ← φ + (1 + λ)·η_s·a·m·mean_S g_τ e_τ;   b ← b − λ·η_s·a·m·ḡ        # negative transfer
    δ_τ ← δ_τ + η_m·a·g_τ / B   (τ ∈ S)

so a step moves prompt τ' by η_s·a·m·mean_S g_τ·(cos(τ, τ') − λ·(1 − cos(τ, τ'))): training one family
lowers dissimilar ones when λ > 0, and skill that is no longer trained decays when ζ > 0.

Nothing moves when ḡ = 0. α = 0 is token-mean SGD (learning grows with the number of informative groups);
α = 1 makes the step size independent of the signal's level in the long run, as Adam does, so selection
then acts through *which* groups are informative. Plasticity makes the transferable skill grow like the
logarithm of the learning done, the shape of the embedded world's held-out curve; item memory does not
saturate. Parameters are in :class:`SimConfig`; its defaults are the calibrated values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.contract import (
    Evaluation,
    PromptSelectionContract,
    Sampled,
    Update,
    check_settings,
)


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
        interference: λ >= 0, negative transfer: a step on τ moves the logit of every prompt τ' by
            cos(τ, τ') − λ·(1 − cos(τ, τ')) times its positive effect on τ itself, so training one family
            lowers dissimilar families (0: the transfer is the cosine alone). Fitted: docs/simulated.md.
        forgetting: ζ >= 0, the learnt skill (φ and the shared offset b) shrinks by exp(−ζ·a·ḡ) at every
            update, so what is no longer trained decays toward the start (0: nothing is forgotten; item
            memory δ never decays). Fitted: docs/simulated.md.
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
    interference: float = 0.0
    forgetting: float = 0.0

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
        for name in ("spread", "semantic_rate", "memory_rate", "interference", "forgetting"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number) \
                    or not (np.isfinite(value) and value >= 0):
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


class SimulatedPromptSelectionEnv(PromptSelectionContract):
    """Prompt selection in a simulated, calibrated item-response world (see the module docstring).

    **Contract**: :class:`~gps_env.contract.PromptSelectionContract`, written once for both worlds (action,
    observation, reward, truncation, probes, ledger, checkpoints); the world has no tokens, so token counts are 0.

    **Info**: ``step``, ``esr``, ``mean_reward``, ``batch``, ``prompt_success``, ``reused_probes``, ``tokens``
    (zeros), ``grpo`` (``kept_groups``, ``total_groups``, ``signal`` = ḡ, ``step_scale`` = a,
    ``plasticity`` = m),
    ``spearman`` and ``calibration_error`` (with predictions), ``verifier_timeouts`` (0), ``time`` (with
    ``time_in_info``),
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
        time_in_info: bool = False,
        render_mode: str | None = None,
    ) -> None:
        check_settings(rollouts_per_prompt, max_steps, eval_every, eval_rollouts, rollout_budget, render_mode)
        for name, value in (("pool_size", pool_size), ("heldout_size", heldout_size)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.config = config or SimConfig()
        self.world_seed = int(world_seed)
        self.pool, self.heldout = make_world(self.config, (pool_size, heldout_size), self.world_seed)
        self._init_contract(len(self.pool), batch_size, rollouts_per_prompt, max_steps, rollout_budget, eval_every,
                            eval_rollouts, time_in_info, render_mode)

    # ------------------------------------------------------------------ the model
    def success_probability(self, indices: np.ndarray | None = None, heldout: bool = False) -> np.ndarray:
        """Privileged p_τ = sigmoid(ℓ⁰ + φ·e + b + δ) of pool prompts (all, or ``indices``), or of the held-out set."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before success_probability()")
        pool = self.heldout if heldout else self.pool
        idx = slice(None) if indices is None else np.asarray(indices, dtype=np.int64)
        logit = pool.initial_logit[idx] + pool.embeddings[idx] @ self._phi + self._bias
        if not heldout:
            logit = logit + self._memory[idx]
        return 1.0 / (1.0 + np.exp(-logit))

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
            if c.forgetting > 0:  # forgetting: the learnt skill shrinks toward the start at every update
                keep = float(np.exp(-c.forgetting * adapt * mean_signal))
                self._phi *= keep
                self._bias *= keep
            rate = c.semantic_rate * adapt * plastic
            self._phi += (rate * (1.0 + c.interference) / self.batch_size) * (signal @ self.pool.embeddings[indices])
            self._bias -= rate * c.interference * mean_signal  # negative transfer ∝ dissimilarity (1 − cos)
            self._memory[indices] += (c.memory_rate * adapt / self.batch_size) * signal
        return {"kept_groups": int(np.count_nonzero(signal)), "total_groups": int(signal.size),
                "signal": mean_signal, "step_scale": adapt, "plasticity": plastic}

    # ------------------------------------------------------------------ hooks of the contract
    def _world_reset(self) -> None:
        """The initial policy: φ = 0, b = 0, δ = 0, no step-size history."""
        self._phi = np.zeros(self.config.embedding_dim)
        self._bias = 0.0
        self._memory = np.zeros(len(self.pool))
        self._v, self._updates, self._learnt = 0.0, 0, 0.0

    def _world_sample(self, indices: list[int], purpose: str) -> Sampled:
        """k Bernoulli(p_τ) rewards per prompt, drawn from ``self.np_random``."""
        with self.ledger.timer(purpose, "generate"):
            idx = np.asarray(indices, dtype=np.int64)
            p = self.success_probability(idx)
            rewards = (self.np_random.random((idx.size, self.k)) < p[:, None]).astype(np.float64)
        return Sampled(rewards)

    def _world_update(self, indices: np.ndarray, rewards: np.ndarray, weights: np.ndarray,
                      payloads: list[Any]) -> Update:
        return Update(self._learn(indices, rewards, weights))

    def _world_evaluate(self) -> Evaluation:
        """Expected held-out success under the current policy (exact: no sampling noise), charged as
        ``heldout × eval_rollouts`` rollouts."""
        with self.ledger.timer("eval", "generate"):
            p = self.success_probability(heldout=True)
            family = self.heldout.family
            by_task = {name: float(p[family == f].mean()) for f, name in enumerate(self.heldout.family_names)
                       if np.any(family == f)}
            metrics = {
                "accuracy": float(p.mean()),
                "solved_share": float((p**self.eval_rollouts).mean()),
                "unsolved_share": float(((1.0 - p) ** self.eval_rollouts).mean()),
                "by_task": by_task,
            }
        return Evaluation(metrics, rollouts=len(self.heldout) * self.eval_rollouts)

    # ------------------------------------------------------------------ checkpointing
    def config_fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree with: the world (config, seed, sizes) and the RL settings."""
        return {
            "world": repr(asdict(self.config)), "world_seed": self.world_seed, "pool_size": len(self.pool),
            "heldout_size": len(self.heldout), "batch_size": self.batch_size, "k": self.k,
            "max_steps": self.max_steps, "rollout_budget": self.rollout_budget, "eval_every": self.eval_every,
            "eval_rollouts": self.eval_rollouts,
        }

    def _world_state(self) -> dict[str, Any]:
        return {"model": {"phi": self._phi.copy(), "memory": self._memory.copy(), "v": self._v,
                          "updates": self._updates, "learnt": self._learnt, "bias": self._bias}}

    def _world_check_state(self, state: Mapping[str, Any]) -> None:
        model = state.get("model")
        keys = {"phi", "memory", "v", "updates", "learnt"}  # + "bias" since the forgetting model; older ones: b = 0
        if not isinstance(model, Mapping) or set(model) not in (keys, keys | {"bias"}):
            raise ValueError("checkpoint 'model' must hold phi, memory, v, updates, learnt and bias")
        for key, shape in (("phi", (self.config.embedding_dim,)), ("memory", (len(self.pool),))):
            value = np.asarray(model[key])
            if value.shape != shape:
                raise ValueError(f"checkpoint model {key!r} has shape {value.shape}, expected {shape}")
            if not np.issubdtype(value.dtype, np.floating) or not np.all(np.isfinite(value)):
                raise ValueError(f"checkpoint model {key!r} must hold finite floats")
        for key in ("v", "learnt"):
            value = model[key]
            if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not np.isfinite(value) \
                    or value < 0:
                raise ValueError(f"checkpoint model {key!r} must be a finite number >= 0, got {value!r:.40}")
        bias = model.get("bias", 0.0)
        if isinstance(bias, bool) or not isinstance(bias, int | float | np.number) or not np.isfinite(bias) \
                or bias > 0:
            raise ValueError(f"checkpoint model 'bias' must be a finite number <= 0, got {bias!r:.40}")
        if isinstance(model["updates"], bool) or not isinstance(model["updates"], int | np.integer) \
                or model["updates"] < 0:
            raise ValueError(f"checkpoint model 'updates' must be an integer >= 0, got {model['updates']!r:.40}")

    def _world_load_state(self, state: Mapping[str, Any]) -> None:
        model = state["model"]
        self._phi = np.array(model["phi"], dtype=np.float64)
        self._memory = np.array(model["memory"], dtype=np.float64)
        self._v, self._updates, self._learnt = float(model["v"]), int(model["updates"]), float(model["learnt"])
        self._bias = float(model.get("bias", 0.0))
