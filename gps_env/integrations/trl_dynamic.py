"""DAPO's dynamic sampling in TRL's ``GRPOTrainer``, with a gps-env agent choosing every prompt.

    from gps_env.integrations.trl_dynamic import DynamicSamplingGRPOTrainer
    dataset = dataset.map(lambda row, i: {"prompt_index": i}, with_indices=True)   # each prompt's pool id
    trainer = DynamicSamplingGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...),
                                         train_dataset=dataset, max_rounds=4)    # agent="uniform": DAPO itself
    trainer.train()
    trainer.dynamic_sampling.discarded_rollouts   # rollouts generated but never trained on

TRL has no dynamic sampling (huggingface/trl#3708, #3973, #4764: ``frac_reward_zero_std`` is only logged).
DAPO (Yu et al. 2025, arXiv:2503.14476, §3.2) over-samples and drops every group whose accuracy is 0 or 1,
and keeps sampling until the batch is full. :class:`DynamicSamplingGRPOTrainer` does this for one
generation batch of B = ``generation_batch_size / num_generations`` prompts, G = ``num_generations`` rollouts
each::

    round 1           the B prompts the agent chose through the sampler (AgentGRPOTrainer)
    round r = 2..R    (R = max_rounds), while fewer than B mixed groups are kept: the agent's next B prompts
                      (FeedbackLoop.next_batch), rolled out and scored the same way
    every round       TRL's own _generate_and_score_completions (generation, rewards, group advantages,
                      log-probs); the agent records every group of every round, kept or discarded
    mixed group       its rewards' std is not zero: TRL's own test behind frac_reward_zero_std
                      (isclose(std, 0)); with 0/1 rewards, 0 < accuracy < 1 as in DAPO
    batch             the first B mixed groups in generation order; surplus mixed groups are discarded (DAPO)
    cap               after R rounds with fewer than B mixed groups: fallback="fill" (default) trains the mixed
                      groups found plus the earliest zero-variance ones; fallback="raise" raises RuntimeError
                      (what verl-recipe's DAPO does at its cap)

Filled zero-variance groups have zero advantage under ``scale_rewards="group"`` or ``"none"``, so they add no
policy gradient, but their tokens still count in the loss's normaliser (``loss_type="dapo"``, ``"bnpo"``) and
in the KL term (``beta > 0``), exactly as in plain TRL. With ``scale_rewards="batch"`` the advantages are
recomputed over the kept batch, as TRL computes them over its batch; ``normalize_then_sum`` is refused.

**Counters.** :attr:`DynamicSamplingGRPOTrainer.dynamic_sampling` (:class:`DynamicSamplingStats`) holds the
run's totals, ``generated_rollouts == trained_rollouts + discarded_rollouts``; they are logged as
``dynamic_sampling/<name>`` at every logging step, with ``dynamic_sampling/rounds_per_batch`` (mean rounds per
generation batch) and ``dynamic_sampling/frac_trained_zero_std``. TRL's own metrics (``reward``,
``frac_reward_zero_std``, completion lengths) are appended once per round: they describe every generated
rollout, discarded ones included. The counters are not part of checkpoints (nor is the agent).

**Hook.** Written against TRL 1.16.0: it overrides ``GRPOTrainer._generate_and_score_completions``
(trl/trainer/grpo_trainer.py:2324), which ``_prepare_inputs`` (line 1522) calls once per generation batch
before shuffling and splitting it into ``steps_per_generation`` steps. Each round's output (per-process rows)
is gathered across processes, the kept groups' rows are re-padded (prompts left, completions right) and
concatenated, ``num_items_in_batch`` is recomputed over them, and each process takes back its own slice, so
groups may span processes. Only text batches are handled: an output key outside :data:`_LEFT`,
:data:`_RIGHT` (images, token type ids) raises ``NotImplementedError``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from gps_env.agents.base import SelectorAgent
from gps_env.integrations.trl import AgentGRPOTrainer

try:
    from trl.trainer.utils import nanstd
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError('gps_env.integrations.trl_dynamic needs TRL: pip install "gps-env[trl]"') from e

#: Row tensors of TRL 1.16's generation output padded on the left (prompts) and on the right (completion
#: tokens), with their padding value (None: the tokenizer's pad id), as TRL pads them.
_LEFT: dict[str, float | None] = {"prompt_ids": None, "prompt_mask": 0}
_RIGHT: dict[str, float | None] = {
    "completion_ids": None, "completion_mask": 0, "tool_mask": 1, "old_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0, "ref_per_token_logps": 0.0, "importance_sampling_ratio": 1.0,
}
_OTHER = {"advantages", "num_items_in_batch"}


@dataclass
class DynamicSamplingStats:
    """The run's dynamic-sampling totals (identical on every process: they count the global batch).

    Attributes:
        generation_batches: generation batches built (one per ``steps_per_generation × num_iterations`` steps).
        rounds: generation rounds run (each one TRL generation of B prompts × G rollouts).
        generated_rollouts: rollouts generated and scored (``rounds × B × G``).
        trained_rollouts: rollouts that reached the loss (``generation_batches × B × G``).
        discarded_rollouts: ``generated_rollouts - trained_rollouts``: zero-variance and surplus mixed groups.
        filled_rollouts: zero-variance rollouts trained because the round cap was hit (part of ``trained``).
        cap_hits: generation batches that hit ``max_rounds`` with fewer than B mixed groups.
    """

    generation_batches: int = 0
    rounds: int = 0
    generated_rollouts: int = 0
    trained_rollouts: int = 0
    discarded_rollouts: int = 0
    filled_rollouts: int = 0
    cap_hits: int = 0

    def as_logs(self) -> dict[str, float]:
        """The counters as log entries, ``dynamic_sampling/<name>``."""
        return {f"dynamic_sampling/{k}": float(v) for k, v in asdict(self).items()}


class DynamicSamplingGRPOTrainer(AgentGRPOTrainer):
    """``trl.GRPOTrainer`` with DAPO's dynamic sampling; a gps-env agent picks every prompt it rolls out.

    Takes every :class:`~gps_env.integrations.trl.AgentGRPOTrainer` argument (so every ``GRPOTrainer`` one,
    and ``index_column``, ``success_threshold``, ``agent_seed``, ``embeddings``), plus (keyword-only):

    Args:
        max_rounds: generation rounds per generation batch, the first included (>= 1; with 1 there are no
            refills: plain TRL's batch under ``fallback="fill"``, still counted). DAPO's setting of 3 × B
            prompts per draw and up to 10 draws corresponds to up to 30 rounds here.
        fallback: at the cap, ``"fill"`` trains the zero-variance groups in place of the missing mixed ones
            (earliest first); ``"raise"`` raises ``RuntimeError``.
        agent: as in ``AgentGRPOTrainer``; default ``"uniform"`` with ``epochs=True`` (when ``agent_kwargs`` is
            None): prompts in shuffled sweeps of the dataset, as DAPO's dataloader gives them.
        agent_kwargs: extra arguments of the agent.

    Raises:
        ValueError: ``max_rounds`` not an integer >= 1, an unknown ``fallback``, or
            ``multi_objective_aggregation="normalize_then_sum"``; in training, a reward function that returns an
            infinite reward (``reward_funcs``; None, TRL's "unscorable", is allowed).
    """

    def __init__(self, *args: Any, max_rounds: int = 4, fallback: Literal["fill", "raise"] = "fill",
                 agent: str | Callable[..., SelectorAgent] = "uniform", agent_kwargs: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, numbers.Integral) or max_rounds < 1:
            raise ValueError(f"max_rounds must be an integer >= 1 (generation rounds per batch, the first "
                             f"included), got {max_rounds!r}")
        if fallback not in ("fill", "raise"):
            raise ValueError(f"fallback must be 'fill' or 'raise', got {fallback!r}")
        if agent_kwargs is None and agent in ("uniform", "Uniform"):
            agent_kwargs = {"epochs": True}
        super().__init__(*args, agent=agent, agent_kwargs=agent_kwargs, **kwargs)
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"multi_objective_aggregation={self.multi_objective_aggregation!r} normalises rewards over the "
                "whole generation batch before the groups are chosen; dynamic sampling needs 'sum_then_normalize'"
            )
        self.max_rounds, self.fallback = int(max_rounds), fallback
        self.dynamic_sampling = DynamicSamplingStats()
        self._round_rewards: torch.Tensor | None = None

    def _calculate_rewards(self, inputs: list[dict[str, Any]], prompts: list, completions: list,
                           completion_ids_list: list) -> torch.Tensor:
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # The weighted sum TRL's "sum_then_normalize" normalises; rows no reward function scored stay NaN.
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        if self.model.training and torch.isinf(rewards).any():
            bad = rewards[torch.isinf(rewards)][:3].tolist()
            raise ValueError(f"reward_funcs returned non-finite rewards {bad}: dynamic sampling cannot tell "
                             "whether their groups are mixed (return None for an unscorable completion)")
        self._round_rewards = rewards
        return rewards_per_func

    def _next_round_inputs(self, local_size: int) -> list[dict[str, Any]]:
        """This process's rows of one more generation batch: the agent's next B prompts, G copies each."""
        chosen = self.prompt_loop.next_batch()
        rows = [int(i) for i in chosen.tolist() for _ in range(self.num_generations)]
        start = self.accelerator.process_index * local_size
        return [self.train_dataset[i] for i in rows[start:start + local_size]]

    def _gather_rows(self, output: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The row tensors of one round's output, gathered (and padded alike) across processes."""
        unknown = set(output) - set(_LEFT) - set(_RIGHT) - _OTHER
        if unknown:
            raise NotImplementedError(
                f"dynamic sampling handles text batches only; TRL's generation output has {sorted(unknown)}, "
                "which cannot be re-batched by group (multimodal or token-type inputs)"
            )
        rows: dict[str, torch.Tensor] = {"advantages": self.accelerator.gather(output["advantages"])}
        for key, value in {**_LEFT, **_RIGHT}.items():
            if output.get(key) is None:
                continue
            pad = self._tokenizer.pad_token_id if value is None else value
            tensor = self.accelerator.pad_across_processes(output[key], dim=1, pad_index=pad, pad_first=key in _LEFT)
            rows[key] = self.accelerator.gather(tensor)
        return rows

    def _concat(self, key: str, parts: list[torch.Tensor]) -> torch.Tensor:
        """``parts`` stacked on rows, padded to one width on the side and with the value TRL pads ``key``."""
        if key not in _LEFT and key not in _RIGHT:
            return torch.cat(parts)
        value = {**_LEFT, **_RIGHT}[key]
        value = self._tokenizer.pad_token_id if value is None else value
        width = max(p.shape[1] for p in parts)
        padded = []
        for p in parts:
            extra = width - p.shape[1]
            padded.append(F.pad(p, (extra, 0) if key in _LEFT else (0, extra), value=value) if extra else p)
        return torch.cat(padded)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        b, g = self.prompt_loop.spec.batch_size, self.num_generations
        rounds: list[dict[str, torch.Tensor]] = []
        round_rewards: list[torch.Tensor] = []
        mixed: list[tuple[int, int]] = []  # (round, group) in generation order
        flat: list[tuple[int, int]] = []
        round_inputs = inputs
        while len(mixed) < b and len(rounds) < self.max_rounds:
            if rounds:
                round_inputs = self._next_round_inputs(len(inputs))
            self._round_rewards = None
            output = super()._generate_and_score_completions(round_inputs)
            rewards = self._round_rewards
            if rewards is None or rewards.numel() != b * g:
                raise RuntimeError(f"expected {b * g} gathered rewards from _calculate_rewards, got "
                                   f"{None if rewards is None else rewards.numel()} (TRL version mismatch?)")
            std = nanstd(rewards.view(b, g), dim=1)
            is_flat = torch.isclose(std, torch.zeros_like(std)) | torch.isnan(std)
            r = len(rounds)
            for group, zero in enumerate(is_flat.tolist()):
                (flat if zero else mixed).append((r, group))
            rounds.append(self._gather_rows(output))
            round_rewards.append(rewards)

        kept = mixed[:b]
        missing = b - len(kept)
        if missing:
            if self.fallback == "raise":
                raise RuntimeError(
                    f"dynamic sampling found {len(kept)} of {b} mixed-reward groups in max_rounds={self.max_rounds} "
                    "rounds; raise max_rounds, or pass fallback='fill' to train zero-variance groups in their place"
                )
            kept += flat[:missing]

        def rows(per_round: list[Any], key: str | None = None) -> list[torch.Tensor]:  # the kept groups' rows
            return [(per_round[rnd] if key is None else per_round[rnd][key])[grp * g:(grp + 1) * g]
                    for rnd, grp in kept]

        batch = {key: self._concat(key, rows(rounds, key)) for key in rounds[0]}
        if self.scale_rewards == "batch":  # TRL scales by the std of the whole batch: recompute over the kept one
            rewards = torch.cat(rows(round_rewards)).to(batch["advantages"].device)
            centred = rewards.view(b, g) - torch.nanmean(rewards.view(b, g), dim=1, keepdim=True)
            batch["advantages"] = torch.nan_to_num(centred.reshape(-1) / (nanstd(rewards) + 1e-4), nan=0.0)
        loss_mask = batch["completion_mask"] * batch["tool_mask"] if "tool_mask" in batch else batch["completion_mask"]
        start = self.accelerator.process_index * len(inputs)
        out: dict[str, Any] = {key: t[start:start + len(inputs)] for key, t in batch.items()}
        out["num_items_in_batch"] = loss_mask.sum()

        stats, n = self.dynamic_sampling, len(rounds)
        stats.generation_batches += 1
        stats.rounds += n
        stats.generated_rollouts += n * b * g
        stats.trained_rollouts += b * g
        stats.discarded_rollouts += (n - 1) * b * g
        stats.filled_rollouts += missing * g
        stats.cap_hits += bool(missing)
        self._metrics["train"]["dynamic_sampling/rounds_per_batch"].append(float(n))
        self._metrics["train"]["dynamic_sampling/frac_trained_zero_std"].append(missing / b)
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:
            logs.update(self.dynamic_sampling.as_logs())
        super().log(logs, start_time)
