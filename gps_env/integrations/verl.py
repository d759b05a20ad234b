"""Run a gps-env agent as verl's prompt selector (docs/integrations.md).

Install ``pip install "gps-env[verl]"`` (verl 0.9) or ``"gps-env[verl07]"`` (verl 0.7).

**verl 0.7.x** has a curriculum-sampler hook: the trainer draws each step's prompts from the dataloader's
sampler and, after the update, calls ``sampler.update(batch)`` with the step's :class:`verl.DataProto`.
:class:`AgentCurriculumSampler` plugs into it through the config alone::

    data.dataloader_num_workers=0
    data.sampler.class_path=pkg://gps_env.integrations.verl
    data.sampler.class_name=AgentCurriculumSampler
    +data.sampler.agent=gps                    # a bench selector name, an agent class name, or "pkg.mod:name"
    +data.sampler.rollouts_per_prompt=8        # = actor_rollout_ref.rollout.n

**verl 0.9.x** removed that hook (and ignores ``data.sampler.class_path``). :class:`AgentPPOTrainer` is the
smallest change that restores it: a subclass of verl's synchronous v1 trainer that swaps the same sampler
into its dataloader and feeds it each finished step. Launch it with ``gps-env-verl`` (same Hydra overrides as
``python -m verl.trainer.main_ppo``; ``data.sampler.rollouts_per_prompt`` then defaults to
``actor_rollout_ref.rollout.n``).

Every training row must carry its pool id in ``extra_info.index`` (verl's ``RLHFDataset`` copies it into the
batch's ``non_tensor_batch["index"]``; verl's example preprocessors already write it). A rollout's reward is
its sequence score, the sum of ``token_level_scores`` (verl 0.7) or ``rm_scores`` (verl 0.9); it counts as a
success when it exceeds ``success_threshold`` (default 0.5, right for 0/1 and DAPO's -1/+1 scores).

Other ``data.sampler`` keys: ``agent_kwargs`` (a dict), ``seed`` (default ``data.seed`` or 0),
``success_threshold``, ``embeddings`` (an ``.npy`` whose row i embeds the prompt with ``extra_info.index``
i; by default the prompts' WordLlama embeddings are computed when an agent first reads them) and
``embedding_dim``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import numpy as np

from gps_env.agents.base import SelectorAgent
from gps_env.agents.registry import build_selector
from gps_env.integrations.feedback import FeedbackLoop, MissingPromptIndexError, prompt_text, trainer_spec

try:
    import verl
    from omegaconf import DictConfig, OmegaConf, open_dict
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'gps_env.integrations.verl needs verl: pip install "gps-env[verl]" (verl 0.9) or "gps-env[verl07]" '
        "(verl 0.7); install CPU or CUDA torch first, and avoid verl's cpu/vllm/sglang/fsdp/megatron extras, "
        "which pin their own torch"
    ) from e

try:  # verl < 0.8: the curriculum hook (removed in 0.8.0)
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler as _SamplerBase

    HAS_CURRICULUM_HOOK = True
except ImportError:
    from torch.utils.data import Sampler as _SamplerBase

    HAS_CURRICULUM_HOOK = False

#: The non-tensor batch field that holds each rollout's pool id (copied from the row's ``extra_info.index``).
INDEX_FIELD = "index"
_INDEX_FIX = ("verl's RLHFDataset copies it from each training row's extra_info.index: write "
              "extra_info={'index': i, ...} for every row when preparing the parquet files")


def _read_pool(data_source: Sized, prompt_key: str) -> tuple[list[str], dict[int, int]]:
    """Prompt texts in dataset order and the map pool id (``extra_info.index``) -> dataset position."""
    frame = getattr(data_source, "dataframe", None)
    if frame is None:
        raise TypeError(f"AgentCurriculumSampler needs verl's RLHFDataset (or a subclass with its .dataframe), "
                        f"got {type(data_source).__name__}")
    if "extra_info" not in frame.column_names:
        raise MissingPromptIndexError("extra_info.index", "the training dataset has no extra_info column",
                                      _INDEX_FIX)
    position: dict[int, int] = {}
    for row, info in enumerate(frame["extra_info"]):
        if not info or info.get(INDEX_FIELD) is None:
            raise MissingPromptIndexError("extra_info.index", f"training row {row} has none", _INDEX_FIX)
        pid = int(info[INDEX_FIELD])
        if pid in position:
            raise ValueError(f"extra_info.index {pid} appears in rows {position[pid]} and {row}; ids must be distinct")
        position[pid] = row
    return [prompt_text(p) for p in frame[prompt_key]], position


class AgentCurriculumSampler(_SamplerBase):
    """verl's prompt sampler driven by a gps-env agent (a curriculum sampler in verl 0.7).

    Each step the agent chooses B prompts from what it learnt of the earlier steps. One epoch is
    ``len(dataset) // B`` steps, as with verl's shuffled sampler.

    Args:
        data_source: the training dataset (verl's ``RLHFDataset``).
        data_config: verl's ``data`` config; the sampler reads ``data.sampler.*`` (module docstring).
        batch_size: B, the prompts of one trained step (default: the dataloader's batch,
            ``data.gen_batch_size`` or ``data.train_batch_size``, as in verl 0.7's loop).
    """

    def __init__(self, data_source: Sized, data_config: DictConfig, batch_size: int | None = None) -> None:
        cfg = data_config.get("sampler") or {}
        if not cfg.get("agent"):
            raise ValueError("set data.sampler.agent (e.g. +data.sampler.agent=GPS) to choose the selector agent")
        k = cfg.get("rollouts_per_prompt")
        if k is None:
            raise ValueError("set data.sampler.rollouts_per_prompt to actor_rollout_ref.rollout.n "
                             "(e.g. +data.sampler.rollouts_per_prompt=8)")
        prompts, self.position = _read_pool(data_source, data_config.get("prompt_key", "prompt"))
        embeddings = None
        if cfg.get("embeddings"):  # one row per pool id, so rows verl filters out (overlong prompts) don't shift it
            table = np.load(cfg["embeddings"], allow_pickle=False)
            ids = np.array(sorted(self.position, key=self.position.__getitem__), dtype=np.int64)
            if ids.min() < 0 or ids.max() >= len(table):
                raise ValueError(f"data.sampler.embeddings has {len(table)} rows but extra_info.index spans "
                                 f"[{ids.min()}, {ids.max()}]; row i must embed the prompt whose index is i")
            embeddings = table[ids]
        self.batch_size = int(batch_size or data_config.get("gen_batch_size") or data_config.train_batch_size)
        self.spec = trainer_spec(prompts, self.batch_size, int(k), "verl", embeddings=embeddings,
                                 embedding_dim=int(cfg.get("embedding_dim", 256)))
        seed = cfg.get("seed", data_config.get("seed"))
        kwargs = OmegaConf.to_container(cfg["agent_kwargs"]) if cfg.get("agent_kwargs") else {}
        agent = build_selector(str(cfg["agent"]), self.spec, seed=0 if seed is None else int(seed), kwargs=kwargs)
        self.loop = FeedbackLoop(agent, success_threshold=float(cfg.get("success_threshold", 0.5)))

    @property
    def agent(self) -> SelectorAgent:
        return self.loop.agent

    def __len__(self) -> int:
        return self.spec.pool_size // self.batch_size * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for _ in range(len(self) // self.batch_size):
            yield from self.loop.next_batch().tolist()

    def record(self, pool_ids: np.ndarray, scores: np.ndarray) -> None:
        """Feed one finished step: each rollout's pool id (``extra_info.index``) and sequence score."""
        try:
            rows = np.array([self.position[int(i)] for i in np.asarray(pool_ids).tolist()], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"batch prompt index {e.args[0]} is no training row's extra_info.index") from None
        self.loop.record(rows, np.asarray(scores, dtype=np.float64))

    def update(self, batch: verl.DataProto) -> None:
        """verl 0.7's hook, called after each step's update with the step's full batch."""
        if INDEX_FIELD not in batch.non_tensor_batch:
            raise MissingPromptIndexError(INDEX_FIELD, "DataProto.non_tensor_batch", _INDEX_FIX)
        scores = batch.batch["token_level_scores"].sum(dim=-1).float().cpu().numpy()
        self.record(batch.non_tensor_batch[INDEX_FIELD], scores)


def feed_from_tensordict(sampler: AgentCurriculumSampler, data: Any) -> None:
    """Feed ``sampler`` one step as verl 0.9 stores it in TransferQueue: a TensorDict with one row per
    rollout and fields ``index`` (pool id) and ``rm_scores`` (token-level scores, jagged or padded)."""
    if INDEX_FIELD not in data:
        raise MissingPromptIndexError(INDEX_FIELD, "the TransferQueue batch", _INDEX_FIX)
    scores = data["rm_scores"]
    scores = scores.to_padded_tensor(0.0) if scores.is_nested else scores
    sampler.record(np.asarray([int(i) for i in data[INDEX_FIELD]]), scores.sum(dim=-1).float().cpu().numpy())


try:  # verl >= 0.8 (tested with 0.9): the v1 trainer, which needs verl[verl-core] for TransferQueue
    import transfer_queue as tq
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    HAS_V1_TRAINER = True
except ImportError:
    HAS_V1_TRAINER = False

if HAS_V1_TRAINER:

    class AgentPPOTrainer(PPOTrainerSync):
        """verl's synchronous v1 trainer with the agent choosing each step's prompts before rollout.

        Two overrides: ``_init_dataloader`` puts an :class:`AgentCurriculumSampler` under the training
        dataloader, and ``step`` feeds it the finished step's pool ids and scores from TransferQueue (before
        the trainer clears them). Supports ``trainer.v1.trainer_mode=sync`` without
        ``algorithm.filter_groups`` (DAPO's refills break the one-batch-per-step contract).
        """

        def _init_dataloader(self) -> None:
            filter_groups = self.config.algorithm.get("filter_groups") or {}
            if filter_groups.get("enable", False) or self.trainer_mode != "sync":
                raise ValueError("AgentPPOTrainer supports trainer.v1.trainer_mode=sync without "
                                 "algorithm.filter_groups")
            with open_dict(self.config):
                if self.config.data.get("sampler") is None:
                    self.config.data.sampler = {}
                if self.config.data.sampler.get("rollouts_per_prompt") is None:
                    self.config.data.sampler.rollouts_per_prompt = self.config.actor_rollout_ref.rollout.n
            super()._init_dataloader()
            # one agent batch per trained step, which the dataloader may fetch in gen_batch_size pieces
            self.prompt_sampler = AgentCurriculumSampler(self.train_dataset, self.config.data,
                                                         batch_size=self.config.data.train_batch_size)
            default = self.train_dataloader
            self.train_dataloader = StatefulDataLoader(
                dataset=self.train_dataset, batch_size=default.batch_size, num_workers=0, drop_last=True,
                collate_fn=default.collate_fn, sampler=self.prompt_sampler,
            )

        def step(self, metrics: dict, timing_raw: dict) -> tq.KVBatchMeta:
            batch = super().step(metrics, timing_raw)
            keys = [key for key, tag in zip(batch.keys, batch.tags) if not tag.get("is_padding", False)]
            data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id,
                                   select_fields=[INDEX_FIELD, "rm_scores"])
            feed_from_tensordict(self.prompt_sampler, data)
            return batch


def main() -> None:
    """``gps-env-verl``: ``python -m verl.trainer.main_ppo`` with :class:`AgentPPOTrainer` (verl >= 0.8)."""
    if not HAS_V1_TRAINER:
        raise RuntimeError(
            f"gps-env-verl needs verl >= 0.8 with verl[verl-core] (found verl {verl.__version__}); with verl 0.7 "
            "run python -m verl.trainer.main_ppo with data.sampler.class_path=pkg://gps_env.integrations.verl"
        )
    import hydra
    import ray
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    class AgentTaskRunner(TaskRunnerV1.__ray_actor_class__):
        """verl's task runner, with the sync trainer replaced by :class:`AgentPPOTrainer` in its process."""

        def run(self, config: DictConfig) -> None:
            from verl.trainer.ppo.v1 import trainer_base

            if config.trainer.v1.trainer_mode != "sync":
                raise ValueError("gps-env-verl runs trainer.v1.trainer_mode=sync")
            trainer_base.TRAINER_REGISTRY["sync"] = AgentPPOTrainer
            super().run(config)

    @hydra.main(config_path="pkg://verl.trainer.config", config_name="ppo_trainer", version_base=None)
    def run(config: DictConfig) -> None:
        auto_set_device(config)
        validate_config(config=config, use_reference_policy=need_reference_policy(config),
                        use_critic=need_critic(config))
        if not config.trainer.use_v1:
            raise ValueError("gps-env-verl needs trainer.use_v1=true (verl's v1 trainer)")
        run_ppo(config, task_runner_class=ray.remote(AgentTaskRunner))

    run()
