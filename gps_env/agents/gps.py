"""GPS: generalizable predictive prompt selection (a PPM, a utility, and a diverse greedy batch)."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from gps_env.agents.base import (
    SelectorAgent,
    check_array,
    check_bool,
    check_choice,
    check_ids,
    check_integer,
    check_number,
    describe,
    finite_real,
)
from gps_env.models import PPM, PPMConfig
from gps_env.selectors import candidate_count, draw_candidates, greedy_diverse, greedy_maxmin, utility
from gps_env.selectors.screen import BFloat16Screen
from gps_env.spec import AgentSpec

#: Pools at least this large are screened (``BFloat16Screen``): the same batches, fewer passes over the pool.
SCREEN_MIN_POOL = 8192


class GPS(SelectorAgent):
    """Predict every prompt's success from shared history; pick a useful, diverse batch (Qu et al., 2026).

    Algorithm (arXiv 2602.01970, §3; official code unavailable, open choices marked "ours")::

        E = WordLlama embeddings of the pool (L2-normalised, cached)
        each step t:
            observe the last batch B_{t-1} and its success s_{t-1}
                ELBO ascent on the PPM: `updates` Adam steps over the newest `replay` (H, batch) pairs
            γ̂ = PPM.predict(E | H = (E[B_{t-1}], s_{t-1}))         # whole pool, M prior draws
            B_t = greedy argmax_S  mean_S u(γ̂) + λ·[dispersion(S) + distance(S, B_{t-1})]
                  with u(γ̂) = −(γ̂ − target)²                        # gps_env.selectors.greedy_diverse

    First step (no history): the prior is N(0, I), so γ̂ is the untrained decoder's and the first batch is
    in effect chosen for diversity (ours, following the ancestors MPTS/PDTS). The predicted success of the
    chosen prompts is sent as the action's ``"predictions"``, so the env reports the Spearman correlation
    between prediction and outcome. ``last_terms`` holds the utility, dispersion and inter-step terms of the
    last batch and ``last_elbo`` the last update's −ELBO parts; ``log`` keeps one record per step.

    Args:
        env: the env or its :class:`~gps_env.spec.AgentSpec` (reads the prompt embeddings).
        seed: seeds model initialisation, latent draws and tie-breaking.
        lam: λ, weight of diversity (0.5 math-like, 1 logic-like in the paper; default 0.5).
        target: γ* of the utility.
        inter_step: include the distance-to-previous-batch term (ablation: False).
        ppm: model config, a ``PPMConfig`` or a mapping of its fields (``{"latent_mode": "none"}`` is the
            no-latent ablation; a mapping suits configs written as YAML, as for verl).
        distance: ``"cosine"`` (default) or ``"chordal"``.
        embeddings: override the pool's WordLlama embeddings (N, d), e.g. for studies at scale.
        candidates: None (the paper: the greedy runs over the whole pool) or a multiple of B: draw that many
            candidates at random each step and run the greedy over them (ours; see docs/gps.md: over the
            whole pool the greedy locks onto embedding outliers and a few hundred prompts).

    State: ``rng``, ``learnt_step``, the PPM's ``model`` and Adam ``optimizer`` state dicts, the latent draws'
    torch ``generator`` state, the ``history`` of (batch (B,) ids, success (B,)) pairs the PPM trains on and
    ``steps_seen`` (batches ever observed).

    The utility is scaled to [−1, 0] (divided by max(γ*, 1 − γ*)²; ours) so that λ weighs a unit-range
    utility against distances of order 1; with the raw (γ̂ − γ*)² ∈ [0, 0.25] diversity swamped it.
    """

    observation_keys = ("last_batch", "last_rewards")
    state_keys = (*SelectorAgent.state_keys, "model", "optimizer", "generator", "history", "steps_seen")

    def __init__(
        self,
        env: gym.Env | AgentSpec,
        seed: int = 0,
        lam: float = 0.5,
        target: float = 0.5,
        inter_step: bool = True,
        ppm: PPMConfig | Mapping[str, Any] | None = None,
        distance: str = "cosine",
        embeddings: np.ndarray | None = None,
        candidates: float | None = 4.0,
        diversity: str = "sum",
        warmup: int = 0,
        draws: str = "mean",
    ) -> None:
        super().__init__(env, seed)
        if candidates is not None:
            candidate_count(candidates, self.batch_size, self.pool_size, name="candidates")
        self.candidates = candidates
        check_number("lam", lam, 0.0)
        check_number("target", target, 0.0, 1.0)
        check_bool("inter_step", inter_step)
        check_choice("distance", distance, ("cosine", "chordal"))
        check_choice("diversity", diversity, ("sum", "min"))
        check_choice("draws", draws, ("mean", "thompson"))
        self.draws = draws
        if diversity == "min" and distance != "cosine":
            raise ValueError("diversity='min' uses the cosine distance; distance must be 'cosine'")
        self.warmup = check_integer("warmup", warmup, 0)
        self.diversity = diversity
        if ppm is not None and not isinstance(ppm, PPMConfig | Mapping):
            raise ValueError(f"ppm must be a PPMConfig, a mapping of its fields or None, got {type(ppm).__name__}")
        if isinstance(ppm, Mapping):
            unknown = sorted(map(str, set(ppm) - set(PPMConfig.__dataclass_fields__)))
            if unknown:
                raise ValueError(f"ppm has unknown fields {', '.join(unknown)}; PPMConfig has "
                                 f"{', '.join(PPMConfig.__dataclass_fields__)}")
        try:
            e = np.asarray(self.spec.embeddings if embeddings is None else embeddings, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"embeddings must be a real (N, d) array, got {describe(embeddings)}") from None
        if e.ndim != 2 or e.shape[0] != self.pool_size or e.shape[1] < 1:
            raise ValueError(f"embeddings must have shape ({self.pool_size}, d), got {e.shape}")
        if not np.all(np.isfinite(e)):
            raise ValueError("embeddings contain NaN or inf")
        self.lam, self.target, self.inter_step, self.distance = float(lam), float(target), inter_step, distance
        self.ppm_config = PPMConfig(**ppm) if isinstance(ppm, Mapping) else (ppm or PPMConfig())
        self.embeddings = e
        self._e = torch.from_numpy(e)
        self._blas = ThreadpoolController()
        whole_pool = candidates is None and distance == "cosine" and diversity == "sum"
        self._screen = BFloat16Screen(e) if whole_pool and self.pool_size >= SCREEN_MIN_POOL else None
        self.reset()

    def reset(self) -> None:
        super().reset()
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.model = PPM(self._e.shape[1], self.ppm_config)
        # foreach: all parameters in one call instead of a Python loop over them; bit-identical
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.ppm_config.lr, foreach=True)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.history: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.ppm_config.replay + 1)
        self.steps_seen = 0  # batches ever observed (the deque forgets, this does not)
        self.last_terms: dict[str, float] = {}
        self.last_elbo: dict[str, float] = {}
        self.log: list[dict[str, float]] = []

    def _context(self, entry: tuple[np.ndarray, np.ndarray] | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        if entry is None:
            return None
        batch, success = entry
        return self._e[torch.from_numpy(batch)], torch.from_numpy(success).float()

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        batch = np.asarray(obs["last_batch"], dtype=np.int64).copy()
        success = obs["last_rewards"].astype(np.float64).mean(axis=1)
        k = obs["last_rewards"].shape[1]
        self.history.append((batch, success))
        self.steps_seen += 1
        entries = list(self.history)
        # Training pairs (history before the batch, the batch); the oldest kept batch's own history is gone
        # unless it was the very first batch, whose history is empty (prior N(0, I)).
        first = 1 if self.steps_seen > len(entries) else 0
        pairs = [(entries[i - 1] if i > 0 else None, entries[i]) for i in range(first, len(entries))]
        pairs = pairs[-self.ppm_config.replay :]
        # All pairs share the batch size, so they are stacked and trained in one forward pass.
        batches = torch.from_numpy(np.stack([b for _, (b, _) in pairs]))
        successes = torch.from_numpy(np.stack([s for _, (_, s) in pairs])).float()
        has_history = torch.tensor([h is not None for h, _ in pairs])
        history_batches = torch.from_numpy(np.stack([(h or pair)[0] for h, pair in pairs]))
        history_success = torch.from_numpy(np.stack([(h or pair)[1] for h, pair in pairs])).float()
        history = (self._e[history_batches], history_success)
        embeddings = self._e[batches]
        self.model.train()
        for _ in range(self.ppm_config.updates):
            loss, parts = self.model.negative_elbo(embeddings, successes, k, history, self.generator,
                                                   has_history=has_history)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.model.eval()
        self.last_elbo = {"neg_elbo": float(loss.detach()), **parts}

    def predict_success(self, samples: int | None = None) -> np.ndarray:
        """γ̂ for every prompt of the pool given the newest history (a Monte Carlo mean over ``samples`` latent
        draws; default the PPM's M)."""
        context = self._context(self.history[-1] if self.history else None)
        return self.model.predict(self._e, context, self.generator, samples).numpy().astype(np.float64)

    def predict_for(self, embeddings: np.ndarray, samples: int | None = None) -> np.ndarray:
        """γ̂ for prompts outside the pool (test-time allocation), given their L2-normalised embeddings."""
        e = np.asarray(embeddings, dtype=np.float32)
        if e.ndim != 2 or e.shape[1] != self.embeddings.shape[1] or not np.all(np.isfinite(e)):
            raise ValueError(f"embeddings must be finite with shape (n, {self.embeddings.shape[1]}), got {e.shape}")
        context = self._context(self.history[-1] if self.history else None)
        return self.model.predict(torch.from_numpy(e), context, self.generator, samples).numpy().astype(np.float64)

    def _gamma(self, pool: np.ndarray | None) -> np.ndarray:
        """γ̂ for the prompts the greedy scores: the whole pool (``pool`` None) or the candidates (the others
        are set to the target; the greedy never reads them). ``draws="thompson"``: one latent draw."""
        samples = 1 if self.draws == "thompson" else None
        if pool is None:
            return self.predict_success(samples)
        gamma = np.full(self.pool_size, self.target)
        gamma[pool] = self.predict_for(self.embeddings[pool], samples)
        return gamma

    def select(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.steps_seen < self.warmup:  # (PDTS) the first steps are uniform; the PPM still learns from them
            batch = np.sort(self.rng.choice(self.pool_size, self.batch_size, replace=False)).astype(np.int64)
            gamma = self._gamma(batch)
            self.last_terms = {}
            self.log.append({"step": int(obs["step"][0]), **self.last_elbo})
            return {"prompts": batch, "predictions": np.clip(gamma[batch], 0.0, 1.0)}
        previous = self.history[-1][0] if (self.inter_step and self.history) else None
        pool = None
        if self.candidates is not None:  # only the candidates are scored: N/|C| cheaper
            pool = draw_candidates(self.rng, self.pool_size, self.batch_size, self.candidates, name="candidates")
        gamma = self._gamma(pool)
        # (ours) utility scaled to [-1, 0], so λ weighs a unit-range utility against O(1) distances
        scaled = utility(gamma, self.target) / max(self.target, 1.0 - self.target) ** 2
        # numpy's BLAS on one thread: its idle worker threads spin for a while after each call and starve
        # torch's (the screen's products, the PPM update, the policy): benchmarks/gps_step.py times both.
        with self._blas.limit(limits=1, user_api="blas"):
            if self.diversity == "min":
                batch, terms = greedy_maxmin(scaled, self.embeddings, self.batch_size, self.lam,
                                             previous=previous, candidates=pool)
            else:
                batch, terms = greedy_diverse(scaled, self.embeddings, self.batch_size, self.lam,
                                              previous=previous, candidates=pool, distance=self.distance,
                                              screen=self._screen)
        self.last_terms = terms
        self.log.append({"step": int(obs["step"][0]), **terms, **self.last_elbo})
        return {"prompts": batch, "predictions": np.clip(gamma[batch], 0.0, 1.0)}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "history": [(b.copy(), s.copy()) for b, s in self.history],
            "steps_seen": self.steps_seen,
        }

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        self._check_model_state(state["model"])
        self._check_optimizer_state(state["optimizer"])
        generator = state["generator"]
        own = self.generator.get_state()
        if not isinstance(generator, torch.Tensor) or generator.dtype != own.dtype or generator.shape != own.shape:
            raise ValueError(f"state 'generator' must be a torch {own.dtype} tensor of shape {tuple(own.shape)}, "
                             f"got {describe(generator)}")
        try:
            torch.Generator().set_state(generator)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError("state 'generator' is not a valid torch generator state") from None
        history, maxlen = state["history"], self.ppm_config.replay + 1
        if not isinstance(history, list | tuple | deque) or len(history) > maxlen:
            raise ValueError(f"state 'history' must be a list of at most {maxlen} (batch, success) pairs, got "
                             f"{describe(history)}")
        for i, entry in enumerate(history):
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise ValueError(f"state 'history' entry {i} must be a (batch, success) pair, got {describe(entry)}")
            check_ids(f"history[{i}] batch", entry[0], self.batch_size, self.pool_size)
            check_array(f"history[{i}] success", entry[1], (self.batch_size,), low=0.0, high=1.0)
        steps_seen = check_integer("state 'steps_seen'", state["steps_seen"], 0)
        if len(history) != min(steps_seen, maxlen):
            raise ValueError(f"state 'history' holds {len(history)} batches, but 'steps_seen' = {steps_seen} with "
                             f"replay {self.ppm_config.replay} means {min(steps_seen, maxlen)}")

    def _check_model_state(self, value: Any) -> None:
        """``value`` is a state dict of this agent's PPM: the same parameter names, shapes and dtypes, finite."""
        own = self.model.state_dict()
        if not isinstance(value, Mapping):
            raise ValueError(f"state 'model' must be the PPM's state dict, got {type(value).__name__}")
        missing, extra = sorted(set(own) - set(value)), sorted(map(str, set(value) - set(own)))
        if missing or extra:
            raise ValueError(f"state 'model' is not this PPM's (latent_mode={self.ppm_config.latent_mode!r}): "
                             f"missing {missing[:4]}, unknown {extra[:4]}")
        for name, mine in own.items():
            self._check_tensor(f"model {name!r}", value[name], mine)

    @staticmethod
    def _check_tensor(name: str, value: Any, like: torch.Tensor, low: float | None = None) -> None:
        if not isinstance(value, torch.Tensor) or value.shape != like.shape or value.dtype != like.dtype:
            got = (f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                   else type(value).__name__)
            raise ValueError(f"state {name} must be a {like.dtype} tensor of shape {tuple(like.shape)}, got {got}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"state {name} contains NaN or inf")
        if low is not None and value.numel() and bool((value < low).any()):
            raise ValueError(f"state {name} has values below {low}")

    def _check_optimizer_state(self, value: Any) -> None:
        """``value`` is an Adam state dict for this agent's PPM parameters (ids, shapes, hyperparameters)."""
        own = self.optimizer.state_dict()
        if not isinstance(value, Mapping) or set(value) != {"state", "param_groups"}:
            raise ValueError("state 'optimizer' must be the Adam state dict ('state', 'param_groups') of the PPM")
        groups = value["param_groups"]
        if not isinstance(groups, list | tuple) or len(groups) != len(own["param_groups"]):
            raise ValueError(f"state 'optimizer' must have {len(own['param_groups'])} parameter group(s)")
        params: dict[Any, torch.Tensor] = {}
        for group, mine, live in zip(groups, own["param_groups"], self.optimizer.param_groups):
            if not isinstance(group, Mapping) or list(group.get("params", ())) != mine["params"]:
                raise ValueError("state 'optimizer' is for other parameters than this PPM's")
            params.update(zip(mine["params"], live["params"]))
            for key, default in mine.items():
                if key == "params" or key not in group:
                    continue
                if not self._like(group[key], default):
                    raise ValueError(f"state 'optimizer' hyperparameter {key!r} is {describe(group[key])}, not like "
                                     f"{describe(default)}")
            check_number("state 'optimizer' lr", group.get("lr", mine["lr"]), 0.0, low_open=True)
            for key in ("amsgrad", "capturable", "differentiable", "fused"):  # they change what the state holds
                if key in group and group[key] != mine.get(key):
                    raise ValueError(f"state 'optimizer' has {key}={describe(group[key])}, this PPM's Adam "
                                     f"{describe(mine.get(key))}")
        entries = value["state"]
        if not isinstance(entries, Mapping) or not set(entries) <= set(params):
            raise ValueError("state 'optimizer' holds state for parameters this PPM does not have")
        for pid, entry in entries.items():
            if not isinstance(entry, Mapping) or set(entry) != {"step", "exp_avg", "exp_avg_sq"}:
                raise ValueError(f"state 'optimizer' entry {pid} must hold Adam's 'step', 'exp_avg', 'exp_avg_sq'")
            self._check_tensor(f"optimizer[{pid}] 'exp_avg'", entry["exp_avg"], params[pid])
            self._check_tensor(f"optimizer[{pid}] 'exp_avg_sq'", entry["exp_avg_sq"], params[pid], low=0.0)
            step = entry["step"]
            step = step.item() if isinstance(step, torch.Tensor) and step.numel() == 1 else step
            check_number(f"optimizer[{pid}] 'step'", step, 0.0)

    @staticmethod
    def _like(value: Any, default: Any) -> bool:
        """An optimizer hyperparameter of the same kind as ours (a bool, a number, a tuple of numbers, None)."""
        if isinstance(default, bool) or default is None:
            return value is None or isinstance(value, bool)
        if isinstance(default, tuple | list):
            return (isinstance(value, tuple | list) and len(value) == len(default)
                    and all(finite_real(v) is not None for v in value))
        if isinstance(default, int | float):
            return finite_real(value) is not None
        return True

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.model.load_state_dict(state["model"])
        # a copy: Adam would otherwise update the caller's tensors in place
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.generator.set_state(state["generator"])
        self.history = deque(((np.asarray(b, dtype=np.int64).copy(), np.asarray(s, dtype=np.float64).copy())
                              for b, s in state["history"]), maxlen=self.ppm_config.replay + 1)
        self.steps_seen = int(state["steps_seen"])
