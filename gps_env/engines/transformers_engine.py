"""A KV-cached batched sampler over any transformers causal LM: the CPU engine and parity reference."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from gps_env.engines.base import Rollouts, SamplingParams, encode_prompts, stop_token_ids


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask (to -inf) the tokens outside the smallest set whose probability reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


class TransformersEngine:
    """Batched sampling with a KV cache, left padding and explicit position ids.

    The engine owns a private copy of the policy (as vLLM does); :meth:`load_weights` copies new weights
    into it in place, so the trainer's parameters and the sampler's never alias.

    Args:
        model: a causal LM; it is deep-copied.
        tokenizer: its tokenizer. The engine prepends BOS where the tokenizer has one and the prompt does
            not already start with it (a chat template may include it); EOS, and any end-of-turn ids in the
            model's ``generation_config.eos_token_id``, stop a row.
        max_batch_rows: rows sampled at once; larger requests are split into chunks.

    Tensors live on the model's device; token draws use the caller's CPU ``torch.Generator`` (probabilities
    are moved to the CPU for the draw), so a seed gives the same completions wherever the model runs.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_batch_rows: int = 1024,
    ) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_batch_rows = max_batch_rows
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.device = next(self.model.parameters()).device

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self.model.state_dict()
        missing = set(own) - set(state)
        if missing:
            raise ValueError(f"load_weights: missing tensors {sorted(missing)[:5]}")
        with torch.no_grad():
            for name, tensor in own.items():
                tensor.copy_(state[name])

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        sampling: SamplingParams,
        generator: torch.Generator,
    ) -> Rollouts:
        encoded = encode_prompts(self.tokenizer, prompts, n, sampling.max_new_tokens, self.max_positions)
        rows = [ids for ids in encoded for _ in range(n)]
        per_chunk = max(n, self.max_batch_rows - self.max_batch_rows % n)
        parts = [
            self._sample(rows[i : i + per_chunk], sampling, generator) for i in range(0, len(rows), per_chunk)
        ]
        completion_ids = [c for ids, _ in parts for c in ids]
        logprobs = [lp for _, lps in parts for lp in lps]
        texts = self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        return Rollouts(rows, completion_ids, logprobs, texts, n)

    def _sample(
        self, rows: list[list[int]], sampling: SamplingParams, generator: torch.Generator
    ) -> tuple[list[list[int]], list[np.ndarray]]:
        pad = self.tokenizer.pad_token_id
        stop = torch.tensor(self.stop_ids, device=self.device)
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # One preallocated mask: prompt part, then ones for generated positions (finished rows feed pads that
        # nothing reads).
        full_mask = torch.cat(
            [mask, torch.ones((len(rows), sampling.max_new_tokens), dtype=torch.long, device=self.device)], -1
        )
        cache = DynamicCache()
        tokens, logps = [], []
        done = torch.zeros(len(rows), dtype=torch.bool, device=self.device)
        pad_column = torch.full((len(rows),), pad, dtype=torch.long, device=self.device)
        step_input, step_positions = ids, positions
        for t in range(sampling.max_new_tokens):
            out = self.model(
                input_ids=step_input,
                attention_mask=full_mask[:, : width + t],
                position_ids=step_positions,
                past_key_values=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1].float() / sampling.temperature
            logp_all = torch.log_softmax(logits, -1)
            probs = _top_p_filter(logits, sampling.top_p).softmax(-1)
            token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(self.device)
            token = torch.where(done, pad_column, token)
            tokens.append(token)
            logps.append(logp_all.gather(-1, token.unsqueeze(-1)).squeeze(-1))
            done = done | torch.isin(token, stop)
            if bool(done.all()):
                break
            step_input = token.unsqueeze(-1)
            step_positions = step_positions[:, -1:] + 1
        token_matrix = torch.stack(tokens, 1).tolist()
        logp_matrix = torch.stack(logps, 1).cpu().numpy()
        completions, logprobs = [], []
        stop_set = set(self.stop_ids)
        for i, row in enumerate(token_matrix):
            length = next((j + 1 for j, tok in enumerate(row) if tok in stop_set), len(row))
            completions.append(row[:length])
            logprobs.append(logp_matrix[i, :length].copy())
        return completions, logprobs
