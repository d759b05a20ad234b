"""The rollout-engine contract: sample completions for prompts, take new policy weights in place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled.

    Attributes:
        temperature: softmax temperature (> 0).
        top_p: nucleus mass kept (0 < top_p <= 1).
        max_new_tokens: completion length limit, EOS included.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Rollouts:
    """``len(prompts) * n`` completions, row ``r`` answering prompt ``r // n``.

    Attributes:
        prompt_ids: token ids of each row's prompt (BOS included).
        completion_ids: sampled token ids, the EOS included when one was sampled.
        logprobs: per-token log-probabilities under the sampling distribution (temperature applied).
        texts: decoded completions without special tokens.
        n: completions per prompt.
    """

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    logprobs: list[np.ndarray]
    texts: list[str]
    n: int

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def completion_tokens(self) -> int:
        return sum(map(len, self.completion_ids))

    @property
    def prompt_tokens(self) -> int:
        return sum(map(len, self.prompt_ids))

    def select(self, prompt_positions: Sequence[int]) -> Rollouts:
        """The rollouts of the given prompts (positions in the original prompt list), in that order."""
        rows = [p * self.n + j for p in prompt_positions for j in range(self.n)]
        return Rollouts(
            [self.prompt_ids[r] for r in rows],
            [self.completion_ids[r] for r in rows],
            [self.logprobs[r] for r in rows],
            [self.texts[r] for r in rows],
            self.n,
        )

    @staticmethod
    def concat(parts: Sequence[Rollouts]) -> Rollouts:
        n = {p.n for p in parts}
        if len(n) != 1:
            raise ValueError(f"cannot concatenate rollouts with different n: {sorted(n)}")
        return Rollouts(
            [x for p in parts for x in p.prompt_ids],
            [x for p in parts for x in p.completion_ids],
            [x for p in parts for x in p.logprobs],
            [x for p in parts for x in p.texts],
            n.pop(),
        )


@runtime_checkable
class RolloutEngine(Protocol):
    """What the env needs from an inference engine (transformers here, vLLM on GPUs)."""

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams, generator: torch.Generator
    ) -> Rollouts:
        """Sample ``n`` completions for each prompt, drawing randomness from ``generator``."""
        ...

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the engine's policy weights in place."""
        ...


def stop_token_ids(model: object, tokenizer: object) -> list[int]:
    """The ids that end a completion: the tokenizer's EOS and any in the model's ``generation_config``
    (chat models add end-of-turn ids there)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    extra = eos if isinstance(eos, list) else [] if eos is None else [eos]
    ids = sorted({getattr(tokenizer, "eos_token_id", None), *extra} - {None})
    if not ids:
        raise ValueError("the tokenizer has no EOS token and the model's generation config names none")
    return ids


def encode_prompts(tokenizer: object, prompts: Sequence[str], n: int, max_new_tokens: int,
                   max_positions: int) -> list[list[int]]:
    """Token ids of each prompt, BOS prepended where the tokenizer has one and the prompt (e.g. a chat
    template) does not start with it; checks ``n`` and that prompt plus completion fit the model."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    bos = tokenizer.bos_token_id
    encoded = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        encoded.append(ids if bos is None or ids[:1] == [bos] else [bos, *ids])
    longest = max(map(len, encoded), default=0)
    if longest + max_new_tokens > max_positions:
        raise ValueError(f"prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                         f"model's {max_positions} positions")
    return encoded
