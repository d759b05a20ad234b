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
"""

from __future__ import annotations

import copy
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
            a large model's step fit in memory.
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

    def _batch(self, prompt_ids: Sequence[list[int]], completion_ids: Sequence[list[int]]):
        rows = [p + c for p, c in zip(prompt_ids, completion_ids)]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        completion_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
            ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            attention[i, : len(p) + len(c)] = 1
            completion_mask[i, len(p) : len(p) + len(c)] = True
        return ids, attention, completion_mask

    @staticmethod
    def _token_logprobs(model: PreTrainedModel, ids, attention) -> torch.Tensor:
        return token_logprobs(model(input_ids=ids, attention_mask=attention).logits, ids)

    def step(
        self,
        prompt_ids: Sequence[list[int]],
        completion_ids: Sequence[list[int]],
        rewards: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> GRPOStats:
        """Update the policy on ``groups * n`` rollouts (``rewards`` has shape (groups, n))."""
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
        ids, attention, completion_mask = (t.to(device) for t in self._batch(
            [prompt_ids[r] for r in rows], [completion_ids[r] for r in rows]
        ))
        mask = completion_mask[:, 1:].float()
        adv = torch.tensor(advantages[kept].reshape(-1), dtype=torch.float32, device=device)[:, None]
        size = self.config.micro_batch_size or len(rows)
        chunks = [slice(i, i + size) for i in range(0, len(rows), size)]
        self.policy.train()
        with torch.no_grad():
            old = torch.cat([self._token_logprobs(self.policy, ids[c], attention[c]) for c in chunks])
            ref = (torch.cat([self._token_logprobs(self.reference, ids[c], attention[c]) for c in chunks])
                   if self.reference is not None else None)
        for _ in range(self.config.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum, clipped_tokens, kl_sum = 0.0, 0.0, 0.0
            for c in chunks:  # token-mean over the whole batch: each chunk's sum is divided by all tokens
                logp = self._token_logprobs(self.policy, ids[c], attention[c])
                ratio = torch.exp(logp - old[c])
                clipped = ratio.clamp(1 - self.config.eps_low, 1 + self.config.eps_high)
                per_token = -torch.minimum(ratio * adv[c], clipped * adv[c])
                kl = torch.zeros_like(logp)
                if ref is not None:
                    kl = torch.exp(ref[c] - logp) - (ref[c] - logp) - 1
                    per_token = per_token + self.config.kl_coef * kl
                loss = (per_token * mask[c]).sum() / total_tokens
                loss.backward()
                loss_sum += float(loss.detach())
                clipped_tokens += float(((ratio - clipped).abs() > 0).float().mul(mask[c]).sum())
                kl_sum += float((kl.detach() * mask[c]).sum())
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip)
            self.optimizer.step()
        self.policy.eval()
        masked_tokens = float(mask.sum())
        return GRPOStats(
            loss=loss_sum,
            grad_norm=float(grad_norm),
            kept_groups=int(kept.size),
            total_groups=groups,
            tokens=total_tokens,
            clip_fraction=clipped_tokens / masked_tokens,
            kl=kl_sum / masked_tokens,
        )
