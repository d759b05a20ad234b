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
        prefill_once: run each prompt's prefill once and repeat its KV cache for its ``n`` rows (False: prefill
            every row, the reference tests/test_engine.py compares against). The
            sampled tokens are the same either way: the same logits up to float rounding, drawn in the same order.

    Tensors live on the model's device; token draws use the caller's CPU ``torch.Generator`` (probabilities
    are moved to the CPU for the draw), so a seed gives the same completions wherever the model runs.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_batch_rows: int = 1024,
        prefill_once: bool = True,
    ) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_batch_rows = max_batch_rows
        self.prefill_once = prefill_once
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
        per_chunk = max(1, self.max_batch_rows // n)  # prompts (n rows each) per chunk, at least one
        parts = [
            self._sample(encoded[i : i + per_chunk], n, sampling, generator) for i in range(0, len(encoded), per_chunk)
        ]
        completion_ids = [c for ids, _ in parts for c in ids]
        logprobs = [lp for _, lps in parts for lp in lps]
        texts = self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        return Rollouts(rows, completion_ids, logprobs, texts, n)

    def _sample(
        self, prompts: list[list[int]], n: int, sampling: SamplingParams, generator: torch.Generator
    ) -> tuple[list[list[int]], list[np.ndarray]]:
        """``n`` completions of each prompt (row ``i * n + j`` is prompt ``i``) and their log-probs."""
        pad = self.tokenizer.pad_token_id
        stop = torch.tensor(self.stop_ids, device=self.device)
        rows, width = len(prompts) * n, max(map(len, prompts))
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt) :] = torch.tensor(prompt)
            mask[i, width - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # Prompt rows are repeated n times before the prefill (reference) or its KV cache and logits after.
        before, after = (1, n) if self.prefill_once else (n, 1)
        ids, mask, positions = (x.repeat_interleave(before, 0) for x in (ids, mask, positions))
        cache = DynamicCache()
        prefill = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             use_cache=True)
        cache.batch_repeat_interleave(after)
        next_logits = prefill.logits[:, -1].repeat_interleave(after, 0)
        # One preallocated mask: prompt part, then ones for generated positions (finished rows feed pads that
        # nothing reads).
        full_mask = torch.cat([mask.repeat_interleave(after, 0),
                               torch.ones((rows, sampling.max_new_tokens), dtype=torch.long, device=self.device)], -1)
        last_position = positions[:, -1:].repeat_interleave(after, 0)
        tokens, logps = [], []
        done = torch.zeros(rows, dtype=torch.bool, device=self.device)
        pad_column = torch.full((rows,), pad, dtype=torch.long, device=self.device)
        for t in range(sampling.max_new_tokens):
            if t:
                next_logits = self.model(
                    input_ids=tokens[-1].unsqueeze(-1),
                    attention_mask=full_mask[:, : width + t],
                    position_ids=last_position + t,
                    past_key_values=cache,
                    use_cache=True,
                ).logits[:, -1]
            logits = next_logits.float() / sampling.temperature
            logp_all = torch.log_softmax(logits, -1)
            probs = _top_p_filter(logits, sampling.top_p).softmax(-1)
            token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(self.device)
            token = torch.where(done, pad_column, token)
            tokens.append(token)
            logps.append(logp_all.gather(-1, token.unsqueeze(-1)).squeeze(-1))
            done = done | torch.isin(token, stop)
            if bool(done.all()):
                break
        token_matrix = torch.stack(tokens, 1).tolist()
        logp_matrix = torch.stack(logps, 1).cpu().numpy()
        completions, logprobs = [], []
        stop_set = set(self.stop_ids)
        for i, row in enumerate(token_matrix):
            length = next((j + 1 for j, tok in enumerate(row) if tok in stop_set), len(row))
            completions.append(row[:length])
            logprobs.append(logp_matrix[i, :length].copy())
        return completions, logprobs
