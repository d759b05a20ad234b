"""Run an unchanged gps-env agent inside an external trainer (verl, TRL).

Inside verl or TRL the trainer owns generation, rewards and the update; the selector only picks prompts. An
agent is built on an :class:`~gps_env.spec.AgentSpec` (:func:`trainer_spec`: the dataset's size, B, k and the
prompts' embeddings on first use) and learns from the observation passed to ``act``, which
:class:`FeedbackLoop` builds from the rewards the trainer computed for each finished batch, with the env's own
per-prompt history (:class:`~gps_env.history.PromptHistory`).

**Probes are not available.** An agent that looks at candidates with real rollouts before choosing
(``DynamicSampling``, ``Pairing(source="probe")``) cannot run here: inside verl or TRL only the trainer
generates, and a probe would need a rollout outside its loop. A trainer's spec has no probe, and
``spec.probe`` raises naming the trainer. DAPO's dynamic sampling exists in verl itself
(``algorithm.filter_groups``; with any agent through :mod:`gps_env.integrations.verl_v1`) and for TRL in
:class:`gps_env.integrations.trl_dynamic.DynamicSamplingGRPOTrainer`, and ``Pairing(source="history")``
measures success from the observed history instead of probes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gps_env.agents.base import SelectorAgent
from gps_env.history import PromptHistory
from gps_env.spec import AgentSpec


class MissingPromptIndexError(KeyError):
    """A trainer batch lacks the field that maps each rollout to its prompt's index in the pool."""

    def __init__(self, field: str, where: str, fix: str) -> None:
        self.field = field
        message = f"the batch has no prompt index field {field!r} ({where}); {fix}"
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def prompt_text(prompt: Any) -> str:
    """The text of a dataset prompt cell: a string, or chat messages whose string contents are joined."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt if isinstance(m.get("content"), str))


def trainer_spec(prompts: Sequence[str], batch_size: int, k: int, framework: str,
                 embeddings: np.ndarray | None = None, embedding_dim: int = 256) -> AgentSpec:
    """The :class:`~gps_env.spec.AgentSpec` of a trainer's dataset: what an agent sees from verl or TRL.

    Args:
        prompts: the prompt texts the trainer's dataset holds, in pool (index) order; their WordLlama embeddings
            are computed when an agent first reads them (only agents that read embeddings, such as GPS, do).
        batch_size: B, distinct prompts per step.
        k: rollouts per prompt (verl's ``actor_rollout_ref.rollout.n``, TRL's ``num_generations``).
        framework: named in error messages (``"verl"``, ``"TRL"``); the spec has no probe.
        embeddings: (N, d) precomputed L2-normalised embeddings, used instead of embedding ``prompts``.
        embedding_dim: WordLlama dimension when embedding ``prompts``.
    """
    texts = list(prompts)
    if not texts:
        raise ValueError("a pool needs at least one prompt")

    def embed() -> np.ndarray:
        from gps_env.pool import embed_texts

        return embed_texts(texts, embedding_dim)

    return AgentSpec(len(texts), int(batch_size), int(k), embeddings=embed if embeddings is None else embeddings,
                     probe=None, source=framework)


class FeedbackLoop:
    """Drives an agent from an external trainer: ``next_batch()`` before rollout, ``record(...)`` after.

    ``record`` takes one finished step's rollouts (each one's pool index and reward); ``next_batch`` turns every
    step recorded since the last call into an observation (a :class:`~gps_env.history.PromptHistory`, the
    env's own), lets the agent learn from it and returns the agent's next batch of B distinct pool indices. If
    a trainer asks for the next batch before the last one's rewards are in (TRL's dataloader runs one batch
    ahead), the agent picks again from what it has seen, and learns from the late step on a later call. If
    several steps arrived, the agent acts once per step and the last batch is returned, so it learns from each
    step exactly once, as in the env.

    Rewards become binary successes: ``reward > success_threshold`` (0.5 suits 0/1 and DAPO's -1/+1 scores);
    the observation's ``last_rewards`` are these successes.

    Args:
        agent: the agent, built on a trainer's spec (:func:`trainer_spec`); B, k and N are read from it.
        success_threshold: a rollout succeeds when its reward exceeds this.
    """

    def __init__(self, agent: SelectorAgent, success_threshold: float = 0.5) -> None:
        if not isinstance(agent, SelectorAgent):
            raise TypeError(f"agent must be a SelectorAgent, got {type(agent).__name__}")
        self.agent, self.spec, self.success_threshold = agent, agent.spec, float(success_threshold)
        self.history = PromptHistory(self.spec.pool_size, self.spec.batch_size, self.spec.k)
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.chosen: list[np.ndarray] = []  # every batch handed out, in order
        self.chosen_after: list[int] = []  # how many steps the agent had learnt from when it chose each one

    @property
    def step(self) -> int:
        """Steps recorded and shown to the agent."""
        return self.history.step

    def observation(self) -> dict[str, np.ndarray]:
        """The observation the env would show now (fresh arrays)."""
        return self.history.observation(rollouts_spent=int(self.history.rollouts.sum()))

    def record(self, indices: Sequence[int] | np.ndarray, rewards: Sequence[float] | np.ndarray) -> None:
        """Queue one finished step: ``indices[j]`` is rollout j's pool index, ``rewards[j]`` its reward.

        The step must hold B distinct prompts with k rollouts each (in any order); groups keep the order in
        which their prompts first appear.
        """
        idx = np.asarray(indices)
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or idx.shape != r.shape:
            raise ValueError(f"indices must be 1-d integers matching rewards' shape {r.shape}, got {idx!r:.80}")
        n, b, k = self.spec.pool_size, self.spec.batch_size, self.spec.k
        if np.any((idx < 0) | (idx >= n)):
            raise ValueError(f"prompt indices out of range [0, {n}): {idx[(idx < 0) | (idx >= n)][:5].tolist()}")
        prompts, first, counts = np.unique(idx, return_index=True, return_counts=True)
        if prompts.size != b or np.any(counts != k):
            raise ValueError(
                f"a step must hold {b} distinct prompts with {k} rollouts each; got {prompts.size} prompts with "
                f"{sorted(set(counts.tolist()))} rollouts (check the batch size and rollouts-per-prompt settings)"
            )
        batch = prompts[np.argsort(first, kind="stable")].astype(np.int64)
        success = (r > self.success_threshold).astype(np.float32)
        grouped = np.stack([success[idx == i] for i in batch.tolist()])
        self.pending.append((batch, grouped))

    def next_batch(self) -> np.ndarray:
        """Let the agent learn from the steps recorded since the last call and return its next batch."""
        steps, self.pending = self.pending, []
        if not steps:
            action = self.agent.act(self.observation())
        for batch, success in steps:
            self.history.record_batch(batch, success)
            action = self.agent.act(self.observation())
        prompts = np.asarray(action["prompts"] if isinstance(action, dict) else action, dtype=np.int64)
        if prompts.shape != (self.spec.batch_size,) or len(np.unique(prompts)) != prompts.size:
            raise ValueError(f"the agent returned {prompts!r:.80}, not {self.spec.batch_size} distinct indices")
        self.chosen.append(prompts.copy())
        self.chosen_after.append(self.step)
        return prompts
