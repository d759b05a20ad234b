"""Run a gps-env agent as the prompt sampler of TRL's ``GRPOTrainer`` (``pip install "gps-env[trl]"``).

    from gps_env.integrations.trl import AgentGRPOTrainer
    dataset = dataset.map(lambda row, i: {"prompt_index": i}, with_indices=True)   # each prompt's pool id
    trainer = AgentGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=dataset,
                               agent="GPS", agent_kwargs={"lam": 0.5})
    trainer.train()

:class:`AgentGRPOTrainer` is ``GRPOTrainer`` with two overrides. ``_get_train_sampler`` returns an
:class:`AgentRepeatSampler`, which keeps TRL's ``RepeatSampler`` layout (each generation batch is B distinct
prompts, each repeated ``num_generations`` times in a row, the whole chunk repeated ``num_iterations ×
steps_per_generation`` times) but lets the agent choose each chunk. ``_calculate_rewards`` passes every
generation batch's rewards, gathered across processes, to the agent together with the batch's
``prompt_index`` column (gathered the same way). Every process holds an identical agent (same seed, same
gathered feedback), so all ranks draw the same prompts, as ``RepeatSampler`` requires.

A rollout's reward is the weighted sum of the reward functions (``reward_weights``; None counts as 0) and
counts as a success when it exceeds ``success_threshold`` (default 0.5).

**Lag.** Accelerate's dataloader fetches one batch ahead, so with ``steps_per_generation × num_iterations ==
1`` the agent chooses batch t+1 before the rewards of batch t are in: it learns from batch t when it
chooses batch t+2. With more steps per generation, the rewards arrive in time.

Probing agents (``DynamicSampling``, ``Pairing(source="probe")``) cannot run here (see
:mod:`gps_env.integrations.feedback`); Weighted GRPO loss weights and ``"predictions"`` in an agent's
action are ignored (TRL weighs every group alike).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from gps_env.agents.base import SelectorAgent
from gps_env.agents.registry import build_selector
from gps_env.integrations.feedback import FeedbackLoop, MissingPromptIndexError, prompt_text, trainer_spec

try:
    from accelerate.utils import gather_object
    from trl import GRPOTrainer
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError('gps_env.integrations.trl needs TRL: pip install "gps-env[trl]"') from e



class AgentRepeatSampler(Sampler[int]):
    """TRL's ``RepeatSampler`` order, with the agent choosing each chunk of B prompts when it is first needed.

    Args:
        loop: the agent's feedback loop (its ``next_batch`` gives the chunk; B is its batch size).
        mini_repeat_count: ``num_generations`` (consecutive copies of each index).
        repeat_count: ``num_iterations × steps_per_generation`` (copies of each chunk).
        num_chunks: chunks per epoch (``len(dataset) // B``, as ``RepeatSampler``).
    """

    def __init__(self, loop: FeedbackLoop, mini_repeat_count: int, repeat_count: int, num_chunks: int) -> None:
        self.loop, self.mini_repeat_count, self.repeat_count = loop, mini_repeat_count, repeat_count
        self.num_chunks = num_chunks

    def __len__(self) -> int:
        return self.num_chunks * self.loop.spec.batch_size * self.mini_repeat_count * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.num_chunks):
            chunk = self.loop.next_batch().tolist()
            for _ in range(self.repeat_count):
                for index in chunk:
                    yield from [index] * self.mini_repeat_count


class AgentGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` whose training prompts are chosen by a gps-env agent.

    Takes every ``GRPOTrainer`` argument, plus (keyword-only):

    Args:
        agent: a bench selector name (``"mopps"``, ``"gps-m"``; :mod:`gps_env.agents.registry`), a class name
            in :mod:`gps_env.agents` (``"GPS"``), a ``"package.module:name"`` path, or an agent class or factory
            ``(spec, seed=..., **kwargs)``.
        agent_kwargs: extra arguments of the agent.
        agent_seed: the agent's seed (default ``args.seed``; must be the same on every process).
        index_column: the train dataset's column of distinct integer pool ids.
        success_threshold: a rollout succeeds when its (weighted) reward exceeds this.
        embeddings: (N, d) prompt embeddings in dataset order (default: WordLlama embeddings of the prompt
            texts, computed when the agent first reads them).
    """

    def __init__(self, *args: Any, agent: str | Callable[..., SelectorAgent] = "GPS",
                 agent_kwargs: dict[str, Any] | None = None, agent_seed: int | None = None,
                 index_column: str = "prompt_index", success_threshold: float = 0.5,
                 embeddings: np.ndarray | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        dataset = self.train_dataset
        if not hasattr(dataset, "column_names") or not hasattr(dataset, "__len__"):
            raise TypeError("AgentGRPOTrainer needs a map-style datasets.Dataset as train_dataset")
        if index_column not in dataset.column_names:
            raise MissingPromptIndexError(
                index_column, "not a column of train_dataset",
                "add the prompts' pool ids, e.g. dataset.map(lambda row, i: {'prompt_index': i}, "
                "with_indices=True), or name the column with index_column=",
            )
        self.index_column = index_column
        ids = [int(i) for i in dataset[index_column]]
        self.position = {pid: row for row, pid in enumerate(ids)}
        if len(self.position) != len(ids):
            raise ValueError(f"the {index_column!r} column must hold distinct ids")
        spec = trainer_spec([prompt_text(p) for p in dataset["prompt"]],
                            self.args.generation_batch_size // self.num_generations, self.num_generations, "TRL",
                            embeddings=embeddings)
        seed = self.args.seed if agent_seed is None else agent_seed
        self.prompt_loop = FeedbackLoop(build_selector(agent, spec, seed=seed, kwargs=agent_kwargs),
                                        success_threshold=success_threshold)

    @property
    def agent(self) -> SelectorAgent:
        return self.prompt_loop.agent

    def _get_train_sampler(self, dataset: Any = None) -> AgentRepeatSampler:
        dataset = self.train_dataset if dataset is None else dataset
        return AgentRepeatSampler(
            self.prompt_loop, mini_repeat_count=self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            num_chunks=len(dataset) // self.prompt_loop.spec.batch_size,
        )

    def _calculate_rewards(self, inputs: list[dict[str, Any]], prompts: list, completions: list,
                           completion_ids_list: list) -> Any:
        if self.model.training and any(self.index_column not in row for row in inputs):
            raise MissingPromptIndexError(
                self.index_column, "absent from the generation batch's inputs",
                "keep the column in the batches with GRPOConfig(remove_unused_columns=False), TRL's default",
            )
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            pool_ids = gather_object([int(row[self.index_column]) for row in inputs])
            weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
            rewards = (rewards_per_func * weights).nansum(dim=1).float().cpu().numpy()
            self.prompt_loop.record(np.array([self.position[i] for i in pool_ids], dtype=np.int64), rewards)
        return rewards_per_func
