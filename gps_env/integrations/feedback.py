"""Run an unchanged gps-env agent outside the env: a stand-in for the env and the observation it would show.

Inside verl or TRL the trainer owns generation, rewards and the update; the selector only picks prompts. An
agent reads four things from its env (``env.unwrapped.pool`` with its size and embeddings, ``batch_size``,
``k``) and learns from the observation passed to ``act``. :class:`FeedbackView` provides the first,
:class:`FeedbackLoop` builds the second from the rewards the trainer computed for each finished batch, with
the same keys, shapes and counting rules as :class:`gps_env.env.PromptSelectionEnv`'s observation.

**Probes are not available.** An agent that looks at candidates with real rollouts before choosing
(``DynamicSampling``, ``Pairing(source="probe")``) cannot run here: inside verl or TRL only the trainer
generates, and a probe would need a rollout outside its loop. :meth:`FeedbackView.probe` raises. DAPO's
dynamic sampling exists in verl itself (``algorithm.filter_groups``), and ``Pairing(source="history")``
measures success from the observed history instead of probes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gps_env import agents
from gps_env.agents.base import SelectorAgent


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


class FeedbackPool:
    """The pool as an agent sees it from an external trainer: N prompts, their texts, their embeddings.

    Args:
        prompts: the prompt texts, in pool (index) order; their WordLlama embeddings are computed on first use
            (only agents that read embeddings, such as GPS, use them).
        embeddings: (N, d) precomputed L2-normalised embeddings, used instead of embedding ``prompts``.
        embedding_dim: WordLlama dimension when embedding ``prompts``.
    """

    def __init__(self, prompts: Sequence[str], embeddings: np.ndarray | None = None,
                 embedding_dim: int = 256) -> None:
        if len(prompts) == 0:
            raise ValueError("a pool needs at least one prompt")
        self.prompts = list(prompts)
        self.embedding_dim = embedding_dim
        self._embeddings: np.ndarray | None = None
        if embeddings is not None:
            e = np.asarray(embeddings, dtype=np.float32)
            if e.ndim != 2 or e.shape[0] != len(self.prompts):
                raise ValueError(f"embeddings must have shape ({len(self.prompts)}, d), got {e.shape}")
            self._embeddings = e

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def embeddings(self) -> np.ndarray:
        """(N, d) float32 L2-normalised embeddings (computed from the prompt texts on first use)."""
        if self._embeddings is None:
            from gps_env.pool import embed_texts

            self._embeddings = embed_texts(self.prompts, self.embedding_dim)
        return self._embeddings


class FeedbackView:
    """What an agent reads from ``env.unwrapped`` when the env is an external trainer.

    Args:
        pool: the prompts the trainer's dataset holds, in dataset order.
        batch_size: B, distinct prompts per step.
        k: rollouts per prompt (verl's ``actor_rollout_ref.rollout.n``, TRL's ``num_generations``).
        framework: named in error messages (``"verl"``, ``"TRL"``).
    """

    def __init__(self, pool: FeedbackPool, batch_size: int, k: int, framework: str) -> None:
        if not 1 <= batch_size <= len(pool):
            raise ValueError(f"batch_size {batch_size} must be in [1, pool size {len(pool)}]")
        if k < 1:
            raise ValueError(f"k (rollouts per prompt) must be >= 1, got {k}")
        self.pool, self.batch_size, self.k, self.framework = pool, int(batch_size), int(k), framework

    @property
    def unwrapped(self) -> FeedbackView:
        return self

    def probe(self, indices: np.ndarray) -> np.ndarray:
        """Not available: inside an external trainer only the trainer generates rollouts."""
        raise NotImplementedError(
            f"this agent probes prompts with extra rollouts before choosing (env.probe), which {self.framework} "
            "cannot do from its prompt sampler: only the trainer generates. Use an agent that learns from the "
            "trained batches (Uniform, MoPPS, GPS, Pairing(source='history'), LearnedSelector); for DAPO-style "
            "dynamic sampling use the trainer's own filter (verl: algorithm.filter_groups)."
        )


def make_agent(spec: str | Callable[..., SelectorAgent], view: FeedbackView, seed: int = 0,
               kwargs: dict[str, Any] | None = None) -> SelectorAgent:
    """Build ``spec(view, seed=seed, **kwargs)``.

    ``spec`` is an agent class or factory, the name of one in :mod:`gps_env.agents` (``"MoPPS"``), or a
    ``"package.module:name"`` path to a class or factory ``(env, seed=..., **kwargs) -> agent``.
    """
    if isinstance(spec, str):
        if ":" in spec:
            module, _, name = spec.partition(":")
            factory = getattr(importlib.import_module(module), name)
        elif spec in agents.__all__:
            factory = getattr(agents, spec)
        else:
            raise ValueError(f"unknown agent {spec!r}: use one of {agents.__all__} or 'package.module:name'")
    else:
        factory = spec
    return factory(view, seed=seed, **(kwargs or {}))


class FeedbackLoop:
    """Drives an agent from an external trainer: ``next_batch()`` before rollout, ``record(...)`` after.

    ``record`` takes one finished step's rollouts (each one's pool index and reward); ``next_batch`` turns every
    step recorded since the last call into an observation, lets the agent learn from it and returns the
    agent's next batch of B distinct pool indices. If a trainer asks for the next batch before the last one's
    rewards are in (TRL's dataloader runs one batch ahead), the agent picks again from what it has seen, and
    learns from the late step on a later call. If several steps arrived, the agent acts once per step and the
    last batch is returned, so it learns from each step exactly once, as in the env.

    Rewards become binary successes: ``reward > success_threshold`` (0.5 suits 0/1 and DAPO's -1/+1 scores);
    the observation's ``last_rewards`` are these successes.

    Args:
        agent: the agent, built on ``view``.
        view: the view it was built on.
        success_threshold: a rollout succeeds when its reward exceeds this.
    """

    def __init__(self, agent: SelectorAgent, view: FeedbackView, success_threshold: float = 0.5) -> None:
        if agent.env is not view:
            raise ValueError("the agent must be built on this FeedbackView (make_agent(spec, view))")
        self.agent, self.view, self.success_threshold = agent, view, float(success_threshold)
        n, b, k = len(view.pool), view.batch_size, view.k
        self.step = 0
        self.times_selected = np.zeros(n, np.int64)
        self.rollouts = np.zeros(n, np.int64)
        self.successes = np.zeros(n, np.int64)
        self.last_seen = np.full(n, -1, np.int64)
        self.last_batch = np.full(b, -1, np.int64)
        self.last_rewards = np.zeros((b, k), np.float32)
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.chosen: list[np.ndarray] = []  # every batch handed out, in order
        self.chosen_after: list[int] = []  # how many steps the agent had learnt from when it chose each one

    def observation(self) -> dict[str, np.ndarray]:
        """The observation the env would show now (fresh arrays)."""
        return {
            "last_batch": self.last_batch.copy(),
            "last_rewards": self.last_rewards.copy(),
            "times_selected": self.times_selected.copy(),
            "rollouts": self.rollouts.copy(),
            "successes": self.successes.copy(),
            "last_seen": self.last_seen.copy(),
            "step": np.array([self.step], np.int64),
            "rollouts_spent": np.array([int(self.rollouts.sum())], np.int64),
        }

    def record(self, indices: Sequence[int] | np.ndarray, rewards: Sequence[float] | np.ndarray) -> None:
        """Queue one finished step: ``indices[j]`` is rollout j's pool index, ``rewards[j]`` its reward.

        The step must hold B distinct prompts with k rollouts each (in any order); groups keep the order in
        which their prompts first appear.
        """
        idx = np.asarray(indices)
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or idx.shape != r.shape:
            raise ValueError(f"indices must be 1-d integers matching rewards' shape {r.shape}, got {idx!r:.80}")
        n, b, k = len(self.view.pool), self.view.batch_size, self.view.k
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

    def _absorb(self, batch: np.ndarray, success: np.ndarray) -> None:
        self.step += 1
        self.times_selected[batch] += 1
        self.rollouts[batch] += self.view.k
        self.successes[batch] += success.sum(axis=1).astype(np.int64)
        self.last_seen[batch] = self.step
        self.last_batch, self.last_rewards = batch, success

    def next_batch(self) -> np.ndarray:
        """Let the agent learn from the steps recorded since the last call and return its next batch."""
        steps, self.pending = self.pending, []
        if not steps:
            action = self.agent.act(self.observation())
        for batch, success in steps:
            self._absorb(batch, success)
            action = self.agent.act(self.observation())
        prompts = np.asarray(action["prompts"] if isinstance(action, dict) else action, dtype=np.int64)
        if prompts.shape != (self.view.batch_size,) or len(np.unique(prompts)) != prompts.size:
            raise ValueError(f"the agent returned {prompts!r:.80}, not {self.view.batch_size} distinct indices")
        self.chosen.append(prompts.copy())
        self.chosen_after.append(self.step)
        return prompts
