"""A gps-env agent as the prompt selector of verl's V1 trainer, plugged in as its custom replay buffer.

Matched against verl 0.9.1 (``pip install "gps-env[verl]"``), files under ``verl/trainer/ppo/v1/``:

- ``trainer_base.py:139-185`` ``PPOTrainer._build_replay_buffer`` loads ``trainer.v1.sampler.custom_sampler.
  {path,name}`` with ``load_extern_type`` and calls it with ``trainer_mode``, ``trainer_config``,
  ``max_off_policy_threshold``, ``max_off_policy_strategy``, ``sampler_kwargs`` (``trainer.v1.sampler.
  sampler_kwargs``) and ``refill_fn`` (the trainer's bound ``_add_prompts_to_generate``, line 161) only: a custom
  buffer gets no ``filter_groups_metric`` and so, left alone, no DAPO filtering (lines 163-165).
- ``replay_buffer.py:64`` ``ReplayBuffer``; ``sample(global_steps, partition_id, batch_size) -> (KVBatchMeta,
  metrics)`` (line 422) picks *finished* prompt groups from TransferQueue, evicting DAPO's zero-variance groups
  through ``_clear_groups(partition_id, uids)`` (line 241) and asking ``refill_fn(n)`` for n more prompts; the
  groups it returns leave through ``_materialize_batch(partition_id, selected_prompt_uids, snapshot)`` (line
  394). Prompts are keyed ``{uid}``, trajectories ``{uid}_{session_id}_{index}``; each trajectory stores its
  prompt's dataset fields (``index``, the row's ``extra_info.index``) and ``rm_scores``, token-level scores whose
  sum is its reward (``agent_loop_tq.py:160-193``, ``experimental/agent_loop/agent_loop.py:147``).
- The prompts that get rolled out come from the trainer's dataloader, not from the buffer: ``prepare_step``
  (``trainer_base.py:1525``) and ``refill_fn`` draw them through ``_fetch_one_gen_batch`` (line 1466, which
  gives each a fresh ``uid``) and ``_submit_batch_to_rollout`` (line 1496).

So the buffer's own interface cannot choose prompts before rollout. :class:`AgentReplayBuffer` reaches the
trainer through ``refill_fn.__self__`` and, on construction, wraps two of that trainer's methods (instance
attributes; the class is untouched):

- ``_init_dataloader``: after verl builds its loaders, the training loader draws from the agent
  (:class:`~gps_env.integrations.verl.AgentCurriculumSampler`, one agent batch of B = ``data.train_batch_size``
  prompts at a time), so every prompt verl rolls out, the refills included, is one the agent chose;
- ``_submit_batch_to_rollout``: notes each dispatched prompt's ``uid`` and pool id, so every group is charged to
  the agent batch it came from, even one whose rollouts all failed.

It samples exactly as verl's built-in sync ``ReplayBuffer`` does, with the settings the trainer gives the built-in
one (``trainer_base.py:165-184``). Every group that leaves the buffer (trained, DAPO-evicted, surplus, failed) is
read first: each session's reward is the sum of its last trajectory's ``rm_scores``; a session with no trajectory
counts as a failed rollout. Once all B groups of an agent batch are back, the batch goes to the agent's
:class:`~gps_env.integrations.feedback.FeedbackLoop` as one step, and the agent learns from it when it next picks.

**Charging.** Every rollout verl generates belongs to an agent batch and is recorded in the agent's history
(``rollouts``, ``successes``, ``rollouts_spent``), trained on or not. With ``algorithm.filter_groups.enable=true``
the buffer filters as verl's does (``replay_buffer.py:104-113``): the agent picks the prompts; a finished group
whose rewards are all equal is evicted, refills of up to 2 prompts per eviction are drawn from the agent (its next
batches) until B groups with signal are in, and the drained surplus is discarded. The evicted and discarded
groups' rollouts still count and their rewards reach the agent. A step's refills are drawn while its batches are
still out, so they are chosen from what the agent knew when the step began (``FeedbackLoop.chosen_after`` records
it); the agent learns from each batch, refills included, once all its groups are back.

Config (``sampler_kwargs`` is ``{}`` in verl's schema, hence the ``+``)::

    trainer.v1.sampler.custom_sampler.path=pkg://gps_env.integrations.verl_v1
    trainer.v1.sampler.custom_sampler.name=AgentReplayBuffer
    +trainer.v1.sampler.sampler_kwargs.agent=GPS       # a bench name, an agent class name, or "pkg.mod:name"

Other ``sampler_kwargs``: ``agent_kwargs`` (a dict), ``seed`` (default ``data.seed`` or 0), ``success_threshold``
(default 0.5: a rollout succeeds when its reward exceeds it), ``embeddings`` (an ``.npy`` whose row i embeds the
prompt with ``extra_info.index`` i) and ``embedding_dim``. k is ``actor_rollout_ref.rollout.n``.

Requires ``trainer.v1.trainer_mode=sync`` and rewards computed during rollout (rule-based, or
``reward.reward_model.enable_resource_pool=true``), as verl's own DAPO path does. Not for
:class:`~gps_env.integrations.verl.AgentPPOTrainer`, which installs its own sampler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from gps_env.agents.base import SelectorAgent
from gps_env.integrations import verl as _verl
from gps_env.integrations.feedback import FeedbackLoop, MissingPromptIndexError
from gps_env.integrations.verl import INDEX_FIELD, AgentCurriculumSampler

try:
    import transfer_queue as tq
    from torchdata.stateful_dataloader import StatefulDataLoader
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
except ImportError as e:  # pragma: no cover - exercised only without verl's V1 trainer
    raise ImportError('gps_env.integrations.verl_v1 needs verl >= 0.9 with its V1 trainer and TransferQueue: '
                      'pip install "gps-env[verl]" (install CPU or CUDA torch first)') from e

logger = logging.getLogger(__name__)

KWARGS_KEY = "trainer.v1.sampler.sampler_kwargs"
SAMPLER_KWARGS = ("agent", "agent_kwargs", "seed", "success_threshold", "embeddings", "embedding_dim")
REWARD_FIELD = "rm_scores"
_INDEX_FIX = ("verl's RLHFDataset copies it from each training row's extra_info.index and the agent loop stores "
              "it with every trajectory: write extra_info={'index': i, ...} for every row")


def _integers(values: Any, field: str, where: str) -> list[int]:
    """``values`` (a tensor, a NonTensorStack or a sequence) as Python ints, else ValueError naming ``field``."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    out = []
    for v in items:
        v = v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            raise ValueError(f"{where} field {field!r} must hold integer pool ids, got {v!r:.60}")
        out.append(int(v))
    return out


def group_rewards(keys: list[str], data: Mapping[str, Any], k: int) -> dict[str, tuple[int, np.ndarray]]:
    """Per prompt group (``uid``): its pool id and its k sessions' rewards (NaN where a session left no trajectory).

    ``keys`` are TransferQueue trajectory keys ``{uid}_{session_id}_{index}`` and ``data`` their ``index`` and
    ``rm_scores`` fields, row for row (``tq.kv_batch_get``). A session's reward is the sum of its last output's
    ``rm_scores`` (verl's validation reads the same, ``trainer_base.py:1088``).

    Raises:
        MissingPromptIndexError: ``data`` has no ``index``.
        ValueError: a malformed key, a session id outside [0, k), a group with two pool ids, ``rm_scores``
            missing, not token-level (more than 1-d) or not finite; the message names the field and key.
    """
    if INDEX_FIELD not in data:
        raise MissingPromptIndexError(INDEX_FIELD, "the TransferQueue trajectories", _INDEX_FIX)
    if REWARD_FIELD not in data:
        raise ValueError(f"the TransferQueue trajectories have no {REWARD_FIELD!r}: rewards must be computed during "
                         "rollout (rule-based, or reward.reward_model.enable_resource_pool=true)")
    ids = _integers(data[INDEX_FIELD], INDEX_FIELD, "trajectory")
    scores = list(data[REWARD_FIELD])
    if not len(ids) == len(scores) == len(keys):
        raise ValueError(f"{len(keys)} trajectory keys but {len(ids)} {INDEX_FIELD!r} and {len(scores)} "
                         f"{REWARD_FIELD!r} values")
    groups: dict[str, tuple[int, np.ndarray]] = {}
    last_output: dict[tuple[str, int], int] = {}
    for key, pid, score in zip(keys, ids, scores):
        parts = key.split("_")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ValueError(f"trajectory key {key!r} is not {{uid}}_{{session_id}}_{{index}}")
        uid, session, output = parts[0], int(parts[1]), int(parts[2])
        if session >= k:
            raise ValueError(f"trajectory {key!r} has session_id {session}, but actor_rollout_ref.rollout.n = {k}")
        s = np.asarray(score.detach().cpu() if hasattr(score, "detach") else score, dtype=np.float64)
        if s.ndim > 1:
            raise ValueError(f"{REWARD_FIELD!r} of trajectory {key!r} has shape {s.shape}; expected token-level "
                             "scores of shape (response_length,)")
        reward = float(s.sum())
        if not np.isfinite(reward):
            raise ValueError(f"{REWARD_FIELD!r} of trajectory {key!r} is not finite (sum {reward})")
        old_pid, rewards = groups.setdefault(uid, (pid, np.full(k, np.nan)))
        if old_pid != pid:
            raise ValueError(f"group {uid!r} has trajectories with {INDEX_FIELD!r} {old_pid} and {pid}")
        if output >= last_output.get((uid, session), -1):
            last_output[(uid, session)] = output
            rewards[session] = reward
    return groups


class GroupLedger:
    """Charges each rollout group to the agent batch it was drawn from and records complete batches, in order.

    The agent hands out batches of B distinct rows (``loop.chosen``); the trainer dispatches those rows in that
    order, each as a group with a fresh ``uid``. :meth:`dispatch` binds each uid to the earliest undispatched slot
    holding its row; :meth:`finish` fills the slot with the group's k rewards; once every slot of the oldest open
    batch is filled, :meth:`finish` hands it to ``loop.record`` (rows repeated k times, rewards flattened).

    Args:
        loop: the agent's feedback loop.
        position: pool id (``extra_info.index``) -> dataset row.
    """

    def __init__(self, loop: FeedbackLoop, position: Mapping[int, int]) -> None:
        self.loop, self.position, self.k = loop, position, loop.spec.k
        self.rewards: dict[int, np.ndarray] = {}  # open batch number -> (B, k), NaN where not back
        self.taken: dict[int, np.ndarray] = {}  # open batch number -> (B,) bool, slot dispatched
        self.filled: dict[int, np.ndarray] = {}  # open batch number -> (B,) bool, group back
        self.uid_slot: dict[str, tuple[int, int]] = {}
        self.recorded = 0  # batches handed to the loop
        self.groups_finished = 0

    def _open(self) -> None:
        b, k = self.loop.spec.batch_size, self.k
        for j in range(self.recorded + len(self.rewards), len(self.loop.chosen)):
            self.rewards[j] = np.full((b, k), np.nan)
            self.taken[j], self.filled[j] = np.zeros(b, bool), np.zeros(b, bool)

    def _row(self, pool_id: int) -> int:
        try:
            return self.position[pool_id]
        except KeyError:
            raise ValueError(f"{INDEX_FIELD!r} {pool_id} is no training row's extra_info.index") from None

    def dispatch(self, uids: Iterable[str], pool_ids: Iterable[int]) -> None:
        """Bind each dispatched prompt (``uid``, pool id) to the first undispatched slot of its row."""
        self._open()
        for uid, pid in zip(uids, pool_ids, strict=True):
            row = self._row(pid)
            for j in sorted(self.rewards):
                hits = np.flatnonzero((self.loop.chosen[j] == row) & ~self.taken[j])
                if hits.size:
                    self.taken[j][hits[0]] = True
                    self.uid_slot[uid] = (j, int(hits[0]))
                    break
            else:
                raise ValueError(f"verl rolled out the prompt with extra_info.index {pid}, which the agent did not "
                                 "choose: something other than AgentReplayBuffer's sampler feeds "
                                 "trainer.train_dataloader")

    def finish(self, uid: str, pool_id: int | None, rewards: np.ndarray | None) -> None:
        """Group ``uid`` is back with its k rewards (NaN or None: sessions without a trajectory, failures)."""
        if uid not in self.uid_slot:
            if pool_id is None:
                raise ValueError(f"group {uid!r} has no trajectories and was not dispatched through "
                                 "AgentReplayBuffer; its prompt is unknown")
            self.dispatch([uid], [pool_id])
        j, p = self.uid_slot.pop(uid)
        if pool_id is not None and self.loop.chosen[j][p] != self._row(pool_id):
            raise ValueError(f"group {uid!r} was dispatched for another prompt than its {INDEX_FIELD!r} {pool_id}")
        r = np.full(self.k, np.nan) if rewards is None else np.asarray(rewards, dtype=np.float64)
        self.rewards[j][p] = np.where(np.isnan(r), self.loop.success_threshold, r)  # not above it: a failure
        self.filled[j][p] = True
        self.groups_finished += 1
        while self.recorded in self.filled and self.filled[self.recorded].all():
            j = self.recorded
            self.loop.record(np.repeat(self.loop.chosen[j], self.k), self.rewards.pop(j).reshape(-1))
            del self.taken[j], self.filled[j]
            self.recorded += 1


class _AgentDataLoader(StatefulDataLoader):
    """The training loader over the agent's sampler; a restored position is ignored (the agent's state is not in
    verl's checkpoint, and fast-forwarding would spend agent batches that are never rolled out)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        logger.warning("AgentReplayBuffer: the training dataloader starts afresh on resume (agent state is not "
                       "checkpointed)")


class AgentReplayBuffer(ReplayBuffer):
    """verl's sync V1 replay buffer with a gps-env agent choosing the prompts it is filled with.

    Constructed by ``PPOTrainer._build_replay_buffer`` from ``trainer.v1.sampler.custom_sampler.{path,name}``; the
    arguments are those verl passes (module docstring). ``buffer_kwargs`` (``filter_groups_metric``,
    ``train_batch_size``, ``gen_batch_size``, ``max_inflight_gen_batches``, ``sync_refill_failed_groups``), when
    not given, are what the trainer gives its built-in buffer.

    Raises:
        TypeError: ``refill_fn`` is not a bound method of verl's V1 ``PPOTrainer``, or the trainer is an
            ``AgentPPOTrainer``.
        ValueError: no ``sampler_kwargs.agent``, an unknown ``sampler_kwargs`` key, ``trainer_mode`` not sync,
            or rewards computed after sampling (a colocated reward model); the message names the config key.
    """

    def __init__(self, trainer_mode: str, trainer_config: DictConfig, max_off_policy_threshold: int | None,
                 max_off_policy_strategy: str, sampler_kwargs: DictConfig | Mapping[str, Any] | None,
                 poll_interval: float = 2.0, refill_fn: Callable[[int], int] | None = None,
                 **buffer_kwargs: Any) -> None:
        trainer = getattr(refill_fn, "__self__", None)
        if not isinstance(trainer, PPOTrainer):
            raise TypeError("AgentReplayBuffer needs refill_fn bound to verl's V1 PPOTrainer (its "
                            f"_add_prompts_to_generate, as trainer_base.py passes it), got {refill_fn!r:.80}")
        if isinstance(trainer, getattr(_verl, "AgentPPOTrainer", ())):
            raise TypeError("AgentPPOTrainer installs its own prompt sampler: use it with verl's default "
                            "replay buffer, or AgentReplayBuffer with verl's own trainer")
        if trainer_mode != "sync":
            raise ValueError(f"AgentReplayBuffer runs trainer.v1.trainer_mode=sync, got {trainer_mode!r}")
        kwargs = {} if sampler_kwargs is None else sampler_kwargs
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"{KWARGS_KEY} must be a mapping, got {type(kwargs).__name__}")
        kwargs = OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else dict(kwargs)
        unknown = sorted(set(map(str, kwargs)) - set(SAMPLER_KWARGS))
        if unknown:
            raise ValueError(f"unknown {KWARGS_KEY} keys {unknown}; known: {list(SAMPLER_KWARGS)}")
        if not kwargs.get("agent"):
            raise ValueError(f"set {KWARGS_KEY}.agent (e.g. +{KWARGS_KEY}.agent=GPS) to choose the selector agent")
        config = trainer.config
        reward_model = config.reward.reward_model
        if reward_model.enable and not reward_model.enable_resource_pool:
            raise ValueError("AgentReplayBuffer reads rewards when groups finish: use rule-based rewards or "
                             "reward.reward_model.enable_resource_pool=true (a colocated reward model scores after "
                             "sampling)")
        if not buffer_kwargs:  # what trainer_base.py:165-184 gives the built-in sync buffer
            metric = trainer._resolve_filter_groups_metric()
            refill_failed = bool(config.trainer.v1.sampler.get("sync_refill_failed_groups", False))
            b = int(config.data.train_batch_size)
            buffer_kwargs = dict(
                filter_groups_metric=metric, sync_refill_failed_groups=refill_failed, train_batch_size=b,
                gen_batch_size=1 if metric is not None or refill_failed else (config.data.get("gen_batch_size") or b),
                max_inflight_gen_batches=config.algorithm.filter_groups.get("max_inflight_gen_batches", 1)
                if metric is not None else 1)
        super().__init__(trainer_mode, trainer_config, max_off_policy_threshold, max_off_policy_strategy,
                         sampler_kwargs, poll_interval=poll_interval, refill_fn=refill_fn, **buffer_kwargs)
        self.agent_kwargs = kwargs
        self.prompt_sampler: AgentCurriculumSampler | None = None
        self.ledger: GroupLedger | None = None
        init_dataloader, submit = trainer._init_dataloader, trainer._submit_batch_to_rollout

        def _init_dataloader() -> None:
            init_dataloader()
            self.attach(trainer)

        def _submit_batch_to_rollout(batch: Any) -> int:
            if self.ledger is None:
                raise RuntimeError("AgentReplayBuffer: prompts dispatched before the agent was attached (the "
                                   "trainer's _init_dataloader must run first, as PPOTrainer.init does)")
            if INDEX_FIELD not in batch:
                raise MissingPromptIndexError(INDEX_FIELD, "the prompt batch", _INDEX_FIX)
            self.ledger.dispatch(list(batch["uid"]), _integers(batch[INDEX_FIELD], INDEX_FIELD, "prompt batch"))
            return submit(batch)

        trainer._init_dataloader, trainer._submit_batch_to_rollout = _init_dataloader, _submit_batch_to_rollout

    @property
    def loop(self) -> FeedbackLoop:
        if self.prompt_sampler is None:
            raise RuntimeError("the agent is built in the trainer's _init_dataloader (PPOTrainer.init), not yet run")
        return self.prompt_sampler.loop

    @property
    def agent(self) -> SelectorAgent:
        return self.loop.agent

    def attach(self, trainer: PPOTrainer) -> None:
        """Build the agent on ``trainer.train_dataset`` and put its sampler under ``trainer.train_dataloader``."""
        config = trainer.config
        b, k = int(config.data.train_batch_size), int(config.actor_rollout_ref.rollout.n)
        gen_batch_size = int(config.data.get("gen_batch_size") or b)
        if b % gen_batch_size:
            raise ValueError(f"data.train_batch_size ({b}) must be a multiple of data.gen_batch_size "
                             f"({gen_batch_size}): the agent chooses whole batches of data.train_batch_size")
        data_config = OmegaConf.create({
            "sampler": {**self.agent_kwargs, "rollouts_per_prompt": k}, "train_batch_size": b,
            "prompt_key": config.data.get("prompt_key", "prompt"), "seed": config.data.get("seed")})
        try:
            sampler = AgentCurriculumSampler(trainer.train_dataset, data_config, batch_size=b)
        except (TypeError, ValueError) as e:  # the 0.7 sampler names its keys data.sampler.*
            raise type(e)(str(e).replace("data.sampler.", f"{KWARGS_KEY}.")) from e
        self.prompt_sampler, self.ledger = sampler, GroupLedger(sampler.loop, sampler.position)
        default = trainer.train_dataloader
        trainer.train_dataloader = _AgentDataLoader(
            dataset=trainer.train_dataset, batch_size=gen_batch_size, num_workers=0, drop_last=True,
            collate_fn=default.collate_fn, sampler=sampler)
        trainer.train_dataloader_it = None

    def _finish_groups(self, partition_id: str, uids: Iterable[str], keys: list[str]) -> None:
        """Read the rewards of the groups ``uids`` (trajectory ``keys``) and charge them to the agent."""
        if self.ledger is None:
            raise RuntimeError("AgentReplayBuffer sampled before its agent was attached: the trainer's "
                               "_init_dataloader must run first (PPOTrainer.init)")
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id,
                               select_fields=[INDEX_FIELD, REWARD_FIELD]) if keys else {}
        groups = group_rewards(keys, data, self.ledger.k) if keys else {}
        for uid in uids:
            pid, rewards = groups.get(uid, (None, None))
            self.ledger.finish(uid, pid, rewards)

    def _clear_groups(self, partition_id: str, uids: set[str]) -> None:
        """Evicted (DAPO, failed) and surplus groups: charged to the agent, then cleared as verl does."""
        if partition_id == "train" and uids:
            keys = [key for key in self.partitions[partition_id] if key.split("_")[0] in uids]
            self._finish_groups(partition_id, sorted(uids), keys)
        super()._clear_groups(partition_id, uids)

    def _materialize_batch(self, partition_id: str, selected_prompt_uids: list[str],
                           partition_snapshot: dict[str, dict]) -> KVBatchMeta:
        """The groups verl trains on: their rewards go to the agent as well."""
        batch = super()._materialize_batch(partition_id, selected_prompt_uids, partition_snapshot)
        if partition_id == "train":
            self._finish_groups(partition_id, selected_prompt_uids, list(batch.keys))
        return batch
