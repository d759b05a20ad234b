"""GPS: generalizable predictive prompt selection (a PPM, a utility, and a diverse greedy batch).

Just over 400 lines: every reading of the paper's rule is an argument of this one agent (docs/gps.md), and its
checkpoint validation has to know them all.
"""

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
)
from gps_env.agents.torch_state import check_model_state, check_optimizer_state
from gps_env.metrics import calibration_error
from gps_env.models import PPM, PPMConfig
from gps_env.selectors import (
    candidate_count,
    deal_candidates,
    draw_candidates,
    greedy_diverse,
    greedy_maxmin,
    mixed_probability,
    utility,
)
from gps_env.selectors.calibration import isotonic_apply, isotonic_fit, platt_apply, platt_fit
from gps_env.selectors.greedy import MAX_LAM
from gps_env.selectors.screen import Float32Screen
from gps_env.spec import AgentSpec

#: Pools at least this large are screened (``Float32Screen``): the same batches, fewer passes over the pool.
SCREEN_MIN_POOL = 8192


def _pairs(name: str, value: Any, most: int, parts: str) -> list | tuple | deque:
    """``value`` if it is a list of at most ``most`` pairs, else ``ValueError`` naming the state key."""
    if not isinstance(value, list | tuple | deque) or len(value) > most:
        raise ValueError(f"state {name!r} must be a list of at most {most} ({parts}) pairs, got {describe(value)}")
    for i, entry in enumerate(value):
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            raise ValueError(f"state {name!r} entry {i} must be a ({parts}) pair, got {describe(entry)}")
    return value


class GPS(SelectorAgent):
    """Predict prompts' success from shared history; pick a useful, diverse batch (Qu et al., 2026).

    Algorithm (arXiv 2602.01970, §3; official code unavailable, open choices marked "ours")::

        E = WordLlama embeddings of the pool (L2-normalised, cached)
        each step t:
            observe the last batch B_{t-1} and its success s_{t-1}
                ELBO ascent on the PPM: `updates` Adam steps over the newest `replay` (H, batch) pairs
            C   = 4B prompts drawn at random                     # `candidates` (None: the whole pool) and
                                                                 # `candidate_order`; none
                                                                 # picked in the last `cooldown` steps (ours;
                                                                 # the warmup's uniform batches too)
            γ̂_C = PPM.predict(E[C] | H = (E[B_{t-1}], s_{t-1}))  # mean over M prior draws (`draws`)
            B_t = greedy argmax_{S ⊆ C}  mean_S u(γ̂) + λ·[dispersion(S) + distance(S, B_{t-1})]
                  with u(γ̂) = −(γ̂ − target)²                    # gps_env.selectors.greedy_diverse

    The paper fixes the utility, the max-sum objective and λ, and names the candidate-set size a setting that
    saturates at moderate sizes; every other choice is an argument, each reading of docs/gps.md one change from
    the default (``candidates=None``, ``diversity="min"``, ``draws="thompson"``, ``warmup``: the conventions of
    the group's earlier PDTS code). Over the whole pool the greedy locks onto a few hundred prompts in both
    embedded worlds; a fresh random candidate set each step does not (docs/gps.md, "Readings, measured").

    First step (no history): the prior is N(0, I), so γ̂ is the untrained decoder's and the first batch is
    in effect chosen for diversity (ours, following the ancestors MPTS/PDTS). The predicted success of the
    chosen prompts is sent as the action's ``"predictions"``, so the env reports the Spearman correlation
    and the calibration error of prediction against outcome. ``last_terms`` holds the utility, dispersion
    and inter-step terms of the last batch, ``last_elbo`` the last update's −ELBO parts and
    ``last_calibration`` the last batch's calibration error (raw γ̂, and calibrated where there is a map);
    ``log`` keeps one record per step.

    Args:
        env: the env or its :class:`~gps_env.spec.AgentSpec` (reads the prompt embeddings).
        seed: seeds model initialisation, latent draws, candidate draws and tie-breaking.
        lam: λ, weight of diversity (0.5 math-like, 1 logic-like in the paper; default 0.5; at most 1e30).
        target: γ* of the utility.
        inter_step: include the distance-to-previous-batch term (ablation: False).
        ppm: model config, a ``PPMConfig`` or a mapping of its fields (``{"latent_mode": "none"}`` is the
            no-latent ablation; a mapping suits configs written as YAML, as for verl).
        distance: ``"cosine"`` (default) or ``"chordal"`` (max-sum only).
        embeddings: override the pool's WordLlama embeddings (N, d), e.g. for studies at scale.
        candidates: a multiple of B (default 4): that many random candidates are drawn each step and only they
            are predicted and scored; None: the whole pool.
        candidate_order: ``"random"`` (default: a fresh random set each step) or ``"epoch"``: the next slice of a
            shuffled epoch, as the group's verl code deals its dataloader's batches (``deal_candidates``).
        diversity: ``"sum"`` (default: mean distances, the paper's Eqs. 12–14) or ``"min"`` (each pick's
            distance to the nearest pick or previous-batch prompt, PDTS's ``msd_diversified_score``).
        warmup: the first ``warmup`` steps pick B prompts uniformly at random (PDTS: the first 10%); the PPM
            learns from them.
        draws: ``"mean"`` (default: γ̂ averaged over the PPM's M prior draws) or ``"thompson"`` (one latent
            draw per step, PDTS's).
        calibration: ``"none"`` (default), ``"isotonic"`` or ``"platt"``: selection and predictions go through a
            map from γ̂ to observed success fitted on the last ``calibration_window`` batches (ours). The
            (prediction, outcome) pairs are kept either way, so a map can be switched on later
            (``agent.calibration = "isotonic"``), as ``benchmarks/test_time.py`` does.
        calibration_window: batches the map is fitted on (default 16).
        acquisition: ``"target"`` (default, the paper's u) or ``"mixed"``: 1 − γ̂^k − (1 − γ̂)^k − 1, the chance
            the prompt's group is mixed (ours).
        cooldown: a prompt picked in any of the last ``cooldown`` steps is not a candidate (ours: coverage; default 0,
            off). The greedy prefers the same embedding outliers whenever they are candidates, and the policy
            memorises what it is trained on again and again; at most ``cooldown``·B prompts are held out, so
            ``cooldown``·B must leave at least B prompts of the pool.

    State: ``rng``, ``learnt_step``, the PPM's ``model`` and Adam ``optimizer`` state dicts, the latent draws'
    torch ``generator`` state, the ``history`` of (batch (B,) ids, success (B,)) pairs the PPM trains on,
    ``steps_seen`` (batches ever observed), ``candidate_queue`` (the rest of the epoch, ids; empty when random),
    ``last_pick`` ((N,) the ``steps_seen`` at which each prompt was last picked, −1: never), ``calibration_data``
    ((prediction, success) pairs) and ``pending`` (the raw γ̂ of the batch awaiting its outcome, (B,), or empty).

    The utility is scaled to [−1, 0] (divided by max(γ*, 1 − γ*)²; ours) so that λ weighs a unit-range
    utility against distances of order 1; with the raw (γ̂ − γ*)² ∈ [0, 0.25] diversity swamped it.
    """

    observation_keys = ("last_batch", "last_rewards")
    state_keys = (*SelectorAgent.state_keys, "model", "optimizer", "generator", "history", "steps_seen",
                  "candidate_queue", "last_pick", "calibration_data", "pending")

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
        calibration: str = "none",
        calibration_window: int = 16,
        acquisition: str = "target",
        cooldown: int = 0,
        candidate_order: str = "random",
    ) -> None:
        super().__init__(env, seed)
        if candidates is not None:
            candidate_count(candidates, self.batch_size, self.pool_size, name="candidates")
        self.candidates = candidates
        self.candidate_order = check_choice("candidate_order", candidate_order, ("random", "epoch"))
        if candidate_order == "epoch" and candidates is None:
            raise ValueError("candidate_order='epoch' deals candidate sets; candidates must be a number, not None")
        check_number("lam", lam, 0.0, MAX_LAM)
        check_number("target", target, 0.0, 1.0)
        check_bool("inter_step", inter_step)
        check_choice("distance", distance, ("cosine", "chordal"))
        check_choice("diversity", diversity, ("sum", "min"))
        check_choice("draws", draws, ("mean", "thompson"))
        self.draws = draws
        self.calibration = check_choice("calibration", calibration, ("none", "isotonic", "platt"))
        self.acquisition = check_choice("acquisition", acquisition, ("target", "mixed"))
        self.calibration_window = check_integer("calibration_window", calibration_window, 1, 2**20)
        if diversity == "min" and distance != "cosine":
            raise ValueError("diversity='min' uses the cosine distance; distance must be 'cosine'")
        self.warmup = check_integer("warmup", warmup, 0)
        most = (self.pool_size - self.batch_size) // self.batch_size
        self.cooldown = check_integer("cooldown", cooldown, 0, most)
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
        self._screen = Float32Screen(e) if whole_pool and self.pool_size >= SCREEN_MIN_POOL else None
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
        self.candidate_queue = np.empty(0, dtype=np.int64)  # the rest of the epoch (candidate_order="epoch")
        self.last_pick = np.full(self.pool_size, -1, dtype=np.int64)  # steps_seen when last picked (-1: never)
        # (raw γ̂ of a batch when it was picked, its observed success): what the calibration map is fitted on
        self.calibration_data: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.calibration_window)
        self.pending = np.empty(0)  # raw γ̂ of the batch just sent, until its outcome arrives (empty: none)
        self._calibration_map: tuple[str, Any] | None = None  # (kind, fitted map), refitted after each outcome
        self.last_terms: dict[str, float] = {}
        self.last_elbo: dict[str, float] = {}
        self.last_calibration: dict[str, float] = {}
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
        self.last_calibration = {}
        if self.pending.size:
            self.last_calibration = {"calibration_error_raw": calibration_error(self.pending, success)}
            if self._calibration_map is not None:
                calibrated = self.calibrate(self.pending)
                self.last_calibration["calibration_error"] = calibration_error(calibrated, success)
            self.calibration_data.append((self.pending, success))
            self.pending = np.empty(0)
            self._calibration_map = None
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

    def predict_success(self, samples: int | None = None, calibrated: bool = True) -> np.ndarray:
        """γ̂ for every prompt of the pool given the newest history (a Monte Carlo mean over ``samples`` latent
        draws; default the PPM's M), through the calibration map if there is one and ``calibrated``."""
        context = self._context(self.history[-1] if self.history else None)
        gamma = self.model.predict(self._e, context, self.generator, samples).numpy().astype(np.float64)
        return self.calibrate(gamma) if calibrated else gamma

    def predict_for(self, embeddings: np.ndarray, samples: int | None = None, calibrated: bool = True) -> np.ndarray:
        """γ̂ for prompts outside the pool (test-time allocation), given their L2-normalised embeddings (through
        the calibration map if there is one and ``calibrated``)."""
        e = np.asarray(embeddings, dtype=np.float32)
        if e.ndim != 2 or e.shape[1] != self.embeddings.shape[1] or not np.all(np.isfinite(e)):
            raise ValueError(f"embeddings must be finite with shape (n, {self.embeddings.shape[1]}), got {e.shape}")
        context = self._context(self.history[-1] if self.history else None)
        gamma = self.model.predict(torch.from_numpy(e), context, self.generator, samples).numpy().astype(np.float64)
        return self.calibrate(gamma) if calibrated else gamma

    def _gamma(self, pool: np.ndarray | None) -> np.ndarray:
        """γ̂ for the prompts the greedy scores: the whole pool (``pool`` None) or the candidates (the others
        are set to the target; the greedy never reads them). ``draws="thompson"``: one latent draw."""
        samples = 1 if self.draws == "thompson" else None
        if pool is None:
            return self.predict_success(samples, calibrated=False)
        gamma = np.full(self.pool_size, self.target)
        gamma[pool] = self.predict_for(self.embeddings[pool], samples, calibrated=False)
        return gamma

    def calibrate(self, gamma: np.ndarray) -> np.ndarray:
        """``gamma`` through the calibration map fitted on the last ``calibration_window`` batches' (raw γ̂ when
        picked, observed success) pairs; unchanged before the first outcome or with ``calibration="none"``."""
        if self.calibration == "none" or not self.calibration_data:
            return gamma
        if self._calibration_map is None or self._calibration_map[0] != self.calibration:
            predicted = np.concatenate([p for p, _ in self.calibration_data])
            observed = np.concatenate([s for _, s in self.calibration_data])
            fit = isotonic_fit if self.calibration == "isotonic" else platt_fit
            self._calibration_map = (self.calibration, fit(predicted, observed))
        apply = isotonic_apply if self.calibration == "isotonic" else platt_apply
        return apply(self._calibration_map[1], gamma)

    def select(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pool = allowed = None  # the prompts that may be picked (None: all of them), and as a mask
        if self.cooldown:  # (ours) the prompts picked in the last `cooldown` steps sit out
            allowed = (self.last_pick < 0) | (self.steps_seen - self.last_pick > self.cooldown)
            pool = np.flatnonzero(allowed)
        size = self.pool_size if pool is None else pool.size
        if self.steps_seen < self.warmup:  # (PDTS) the first steps are uniform; the PPM still learns from them
            drawn = self.rng.choice(size, self.batch_size, replace=False)
            batch = np.sort(drawn if pool is None else pool[drawn]).astype(np.int64)
            self.last_pick[batch] = self.steps_seen
            raw = self._gamma(batch)
            self.pending = np.clip(raw[batch], 0.0, 1.0)
            self.last_terms = {}
            self.log.append({"step": int(obs["step"][0]), **self.last_elbo, **self.last_calibration})
            return {"prompts": batch, "predictions": np.clip(self.calibrate(raw)[batch], 0.0, 1.0)}
        previous = self.history[-1][0] if (self.inter_step and self.history) else None
        if self.candidates is not None and self.candidate_order == "epoch":
            count = candidate_count(self.candidates, self.batch_size, size, name="candidates")
            pool, self.candidate_queue = deal_candidates(self.rng, self.candidate_queue, self.pool_size, count,
                                                         allowed)
        elif self.candidates is not None:  # only the candidates are scored: N/|C| cheaper
            drawn = draw_candidates(self.rng, size, self.batch_size, self.candidates, name="candidates")
            pool = drawn if pool is None else pool[drawn]
        raw = self._gamma(pool)
        gamma = self.calibrate(raw)
        # (ours) utility scaled to [-1, 0], so λ weighs a unit-range utility against O(1) distances
        if self.acquisition == "mixed":  # (ours) the chance the prompt's group is mixed, less 1
            scaled = mixed_probability(gamma, self.k) - 1.0
        else:
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
        self.last_pick[batch] = self.steps_seen
        self.pending = np.clip(raw[batch], 0.0, 1.0)
        self.last_terms = terms
        self.log.append({"step": int(obs["step"][0]), **terms, **self.last_elbo, **self.last_calibration})
        return {"prompts": batch, "predictions": np.clip(gamma[batch], 0.0, 1.0)}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "history": [(b.copy(), s.copy()) for b, s in self.history],
            "steps_seen": self.steps_seen,
            "candidate_queue": self.candidate_queue.copy(),
            "last_pick": self.last_pick.copy(),
            "calibration_data": [(p.copy(), s.copy()) for p, s in self.calibration_data],
            "pending": self.pending.copy(),
        }

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        check_model_state(state["model"], self.model, self.ppm_config.latent_mode)
        check_optimizer_state(state["optimizer"], self.optimizer)
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
        for i, (batch, success) in enumerate(_pairs("history", history, maxlen, "batch, success")):
            check_ids(f"history[{i}] batch", batch, self.batch_size, self.pool_size)
            check_array(f"history[{i}] success", success, (self.batch_size,), low=0.0, high=1.0)
        steps_seen = check_integer("state 'steps_seen'", state["steps_seen"], 0)
        if len(history) != min(steps_seen, maxlen):
            raise ValueError(f"state 'history' holds {len(history)} batches, but 'steps_seen' = {steps_seen} with "
                             f"replay {self.ppm_config.replay} means {min(steps_seen, maxlen)}")
        check_ids("candidate_queue", state["candidate_queue"], None, self.pool_size)
        check_array("last_pick", state["last_pick"], (self.pool_size,), "iu", low=-1, high=steps_seen)
        pairs = _pairs("calibration_data", state["calibration_data"], self.calibration_window, "prediction, success")
        for i, entry in enumerate(pairs):
            for j, part in enumerate(("prediction", "success")):
                check_array(f"calibration_data[{i}] {part}", entry[j], (self.batch_size,), low=0.0, high=1.0)
        pending = check_array("pending", state["pending"], (None,), low=0.0, high=1.0)
        if pending.shape not in ((0,), (self.batch_size,)):
            raise ValueError(f"state 'pending' must hold {self.batch_size} predictions or none, got shape "
                             f"{pending.shape}")

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.model.load_state_dict(state["model"])
        # a copy: Adam would otherwise update the caller's tensors in place
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.generator.set_state(state["generator"])
        self.history = deque(((np.asarray(b, dtype=np.int64).copy(), np.asarray(s, dtype=np.float64).copy())
                              for b, s in state["history"]), maxlen=self.ppm_config.replay + 1)
        self.steps_seen = int(state["steps_seen"])
        self.candidate_queue = np.asarray(state["candidate_queue"], dtype=np.int64).copy()
        self.last_pick = np.asarray(state["last_pick"], dtype=np.int64).copy()
        self.calibration_data = deque(((np.asarray(p, dtype=np.float64).copy(), np.asarray(s, dtype=np.float64).copy())
                                       for p, s in state["calibration_data"]), maxlen=self.calibration_window)
        self.pending = np.asarray(state["pending"], dtype=np.float64).copy()
        self._calibration_map = None
