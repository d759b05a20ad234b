"""One GRPO update from scored rollouts (Shao et al., 2024; DAPO's clip-higher and token-mean).

For a group of ``n`` rollouts of one prompt with binary rewards ``r``:

    A_i      = w_prompt * (r_i - mean(r)) / (std(r) + eps)       # std term optional (Dr. GRPO drops it)
    ratio_t  = exp(logp_t - logp_old_t)
    L        = - sum_t min(ratio_t * A, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A)  / T_batch
               + kl_coef * sum_t k3(pi_theta || pi_ref)_t / T_batch

``T_batch`` counts every completion token of the batch, including those of zero-advantage groups (token-mean
as in DAPO/verl), so a batch with few informative groups moves the policy less: this is the waste that
prompt selection removes. Zero-advantage groups contribute no gradient and are skipped in the forward pass.
With one update per batch ``logp_old`` is the current policy's (detached), so the ratio is 1 and the clip
only matters for ``epochs > 1``.

The n rollouts of a group share their prompt, and prompts are usually much longer than completions, so by
default (``GRPOConfig.shared_prefix``) each distinct prompt is run once per forward and its KV cache is
shared by its rollouts (:class:`_SharedPrefixRows`); gradients flow through that prompt forward, so the
update is the one of the plain per-row forward (:class:`_Rows`) up to float rounding.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

#: Logit elements (positions x vocabulary) turned into log-probs at a time by :func:`token_logprobs`.
LOGPROB_CHUNK_ELEMENTS = 1 << 24


def _chunk_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t + 1] | ids[:, :t + 1]) from logits (rows, T, V): shape (rows, T - 1), float32.

    Computed in chunks of positions, each recomputed in the backward pass (activation checkpointing) when
    gradients are on, so only the model's own logits stay in memory. The plain ``log_softmax(logits.float())``
    holds a float32 copy and a float32 output of the whole (rows, T, V) tensor: at a 152k-token vocabulary
    and 4k-token completions that is 5 GB per row; here it is one chunk. Per position the arithmetic is the
    same, so the values and gradients are bit-identical to the plain form.
    """
    rows, length, vocab = logits.shape
    flat = logits.reshape(rows * length, vocab)
    targets = torch.cat([ids[:, 1:], ids[:, :1]], dim=1).reshape(-1)  # the last position's target is dropped
    size = max(1, LOGPROB_CHUNK_ELEMENTS // vocab)
    if flat.shape[0] <= size:
        out = _chunk_logprobs(flat, targets)
    else:
        remember = torch.is_grad_enabled() and logits.requires_grad
        out = torch.cat([
            checkpoint(_chunk_logprobs, x, y, use_reentrant=False, preserve_rng_state=False) if remember
            else _chunk_logprobs(x, y)
            for x, y in zip(flat.split(size), targets.split(size))
        ])
    return out.reshape(rows, length)[:, :-1]


@dataclass(frozen=True)
class GRPOConfig:
    """Hyperparameters of the update.

    Attributes:
        lr: Adam learning rate.
        eps_low, eps_high: asymmetric ratio clip (DAPO clip-higher).
        kl_coef: weight of the k3 KL estimate to the initial policy (0 disables it and the reference copy).
        grad_clip: max global gradient norm.
        scale_by_std: divide advantages by the group's standard deviation.
        epochs: optimisation passes over each batch.
        adv_eps: added to the std.
        micro_batch_size: rollouts per forward/backward pass (None: the whole batch at once). Gradients are
            accumulated over micro-batches, so the update is the same up to float rounding; this is what lets
            a large model's step fit in memory. With ``shared_prefix`` a micro-batch holds whole groups:
            ``max(1, micro_batch_size // n)`` of them (at most ``micro_batch_size`` rollouts, or ``n`` when it
            is smaller than ``n``), plus one prompt row per distinct prompt among them.
        shared_prefix: run each distinct prompt once and its rollouts' completions on its KV cache, instead
            of every prompt + completion row in full. Models whose forward takes no ``past_key_values`` or
            ``logits_to_keep``, models with gradient checkpointing on (which drops the cache) and batches with
            an empty prompt use the full rows.
    """

    lr: float = 1e-4
    eps_low: float = 0.2
    eps_high: float = 0.28
    kl_coef: float = 0.0
    grad_clip: float = 1.0
    scale_by_std: bool = True
    epochs: int = 1
    adv_eps: float = 1e-6
    micro_batch_size: int | None = None
    shared_prefix: bool = True

    def __post_init__(self) -> None:
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1 or None, got {self.micro_batch_size}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


def group_advantages(rewards: np.ndarray, scale_by_std: bool = True, eps: float = 1e-6) -> np.ndarray:
    """Per-rollout advantages from ``rewards`` of shape (groups, n)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    if scale_by_std:
        centred = centred / (rewards.std(axis=1, keepdims=True) + eps)
    return centred


@dataclass
class GRPOStats:
    loss: float
    grad_norm: float
    kept_groups: int
    total_groups: int
    tokens: int
    clip_fraction: float
    kl: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _right_padded(rows: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention)`` of ``rows`` padded on the right to the longest."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[i, : len(row)] = 1
    return ids, attention


class _Rows:
    """Prompt + completion rows, right-padded, in one forward: the reference path.

    ``logprobs(model)[i, t]`` is the log-prob of ``ids[i, t + 1]``; ``mask`` (float) marks completion tokens.
    """

    def __init__(self, prompts: Sequence[list[int]], completions: Sequence[list[int]], pad_token_id: int,
                 device: torch.device) -> None:
        self.ids, self.attention = (t.to(device) for t in _right_padded(
            [p + c for p, c in zip(prompts, completions)], pad_token_id))
        completion = torch.zeros_like(self.attention, dtype=torch.bool)
        for i, (p, c) in enumerate(zip(prompts, completions)):
            completion[i, len(p) : len(p) + len(c)] = True
        self.mask = completion[:, 1:].float()

    def logprobs(self, model: PreTrainedModel) -> torch.Tensor:
        return token_logprobs(model(input_ids=self.ids, attention_mask=self.attention).logits, self.ids)


class _SharedPrefixRows:
    """The same log-probs with each distinct prompt's prefix computed once.

    The prefix (a prompt without its last token) of every distinct prompt is right-padded and run causally
    with no padding mask: a real token never attends to the padding after it. Its KV cache is gathered to one
    entry per rollout, and the suffix (the last prompt token, then the completion) runs on top with its true
    positions and a mask that hides the prefix padding. The suffix starts at the last prompt token so that its
    first logit predicts the first completion token: ``logprobs(model)[i, t]`` is the log-prob of
    ``ids[i, t + 1]``, completion token ``t``, and ``mask`` marks the real ones. Prompts must be non-empty.
    """

    def __init__(self, prompts: Sequence[list[int]], completions: Sequence[list[int]], pad_token_id: int,
                 device: torch.device) -> None:
        distinct: dict[tuple[int, ...], int] = {}
        index = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
        self.index = torch.tensor(index, device=device)
        prefix, prefix_attention = _right_padded([p[:-1] for p in distinct], pad_token_id)
        self.prefix = prefix.to(device) if prefix.shape[1] else None  # None: every prompt is one token
        ids, suffix_attention = _right_padded([[p[-1], *c] for p, c in zip(prompts, completions)], pad_token_id)
        self.ids = ids.to(device)
        self.attention = torch.cat([prefix_attention[index], suffix_attention], 1).to(device)
        lengths = torch.tensor([len(p) for p in prompts])
        self.positions = (lengths[:, None] - 1 + torch.arange(ids.shape[1])).to(device)
        self.mask = suffix_attention[:, 1:].float().to(device)

    def logprobs(self, model: PreTrainedModel) -> torch.Tensor:
        cache = None
        if self.prefix is not None:
            cache = model(input_ids=self.prefix, use_cache=True, logits_to_keep=1).past_key_values
            cache.batch_select_indices(self.index)  # one entry per rollout; the backward sums them per prompt
        logits = model(input_ids=self.ids, attention_mask=self.attention, position_ids=self.positions,
                       past_key_values=cache, use_cache=cache is not None).logits
        return token_logprobs(logits, self.ids)


def _can_share_prefix(model: PreTrainedModel) -> bool:
    """Whether the model's forward takes a KV cache and keeps it in training (gradient checkpointing drops it)."""
    accepted = inspect.signature(model.forward).parameters
    return ("past_key_values" in accepted and "logits_to_keep" in accepted
            and not getattr(model, "is_gradient_checkpointing", False))


class GRPOTrainer:
    """Owns the policy's optimiser (and the frozen reference when ``kl_coef > 0``)."""

    def __init__(self, policy: PreTrainedModel, config: GRPOConfig, pad_token_id: int) -> None:
        self.policy = policy
        self.config = config
        self.pad_token_id = pad_token_id
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
        self.reference = None
        if config.kl_coef > 0:
            self.reference = copy.deepcopy(policy).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)

    def _micro_batches(self, prompts: list[list[int]], completions: list[list[int]], n: int,
                       device: torch.device) -> list[tuple[slice, _Rows | _SharedPrefixRows]]:
        """The kept rows (whole groups of ``n``, in order) split into micro-batches, each with its inputs."""
        size = self.config.micro_batch_size or len(prompts)
        kind: type[_Rows] | type[_SharedPrefixRows] = _Rows
        if self.config.shared_prefix and all(prompts) and _can_share_prefix(self.policy):
            kind, size = _SharedPrefixRows, n * max(1, size // n)  # a group's rows stay together
        return [(c, kind(prompts[c], completions[c], self.pad_token_id, device))
                for c in (slice(i, i + size) for i in range(0, len(prompts), size))]

    def step(
        self,
        prompt_ids: Sequence[list[int]],
        completion_ids: Sequence[list[int]],
        rewards: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> GRPOStats:
        """Update the policy on ``groups * n`` rollouts (``rewards`` has shape (groups, n)).

        Row ``g * n + j`` is rollout ``j`` of group ``g``; with ``shared_prefix`` its rows are expected to share
        their prompt ids (rows whose prompts differ are still right, only not shared).
        """
        rewards = np.asarray(rewards, dtype=np.float64)
        groups, n = rewards.shape
        weights = np.ones(groups) if weights is None else np.asarray(weights, dtype=np.float64)
        advantages = group_advantages(rewards, self.config.scale_by_std, self.config.adv_eps) * weights[:, None]
        total_tokens = sum(len(c) for c in completion_ids)
        kept = np.flatnonzero(np.abs(advantages).sum(axis=1) > 0)
        if kept.size == 0:
            return GRPOStats(0.0, 0.0, 0, groups, total_tokens, 0.0, 0.0)
        rows = [g * n + j for g in kept for j in range(n)]
        device = next(self.policy.parameters()).device
        chunks = self._micro_batches([prompt_ids[r] for r in rows], [completion_ids[r] for r in rows], n, device)
        adv = torch.tensor(advantages[kept].reshape(-1), dtype=torch.float32, device=device)[:, None]
        self.policy.train()
        with torch.no_grad():
            old = [batch.logprobs(self.policy) for _, batch in chunks]
            ref = ([batch.logprobs(self.reference) for _, batch in chunks] if self.reference is not None
                   else [None] * len(chunks))
        for _ in range(self.config.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum, clipped_tokens, kl_sum = 0.0, 0.0, 0.0
            for (c, batch), old_c, ref_c in zip(chunks, old, ref):
                # token-mean over the whole batch: each chunk's sum is divided by all tokens
                logp = batch.logprobs(self.policy)
                ratio = torch.exp(logp - old_c)
                clipped = ratio.clamp(1 - self.config.eps_low, 1 + self.config.eps_high)
                per_token = -torch.minimum(ratio * adv[c], clipped * adv[c])
                kl = torch.zeros_like(logp)
                if ref_c is not None:
                    kl = torch.exp(ref_c - logp) - (ref_c - logp) - 1
                    per_token = per_token + self.config.kl_coef * kl
                loss = (per_token * batch.mask).sum() / total_tokens
                loss.backward()
                loss_sum += float(loss.detach())
                clipped_tokens += float(((ratio - clipped).abs() > 0).float().mul(batch.mask).sum())
                kl_sum += float((kl.detach() * batch.mask).sum())
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip)
            self.optimizer.step()
        self.policy.eval()
        masked_tokens = float(sum(batch.mask.sum() for _, batch in chunks))
        return GRPOStats(
            loss=loss_sum,
            grad_norm=float(grad_norm),
            kept_groups=int(kept.size),
            total_groups=groups,
            tokens=total_tokens,
            clip_fraction=clipped_tokens / masked_tokens,
            kl=kl_sum / masked_tokens,
        )
