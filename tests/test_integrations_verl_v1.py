"""gps-env agents as verl's V1 custom replay buffer (``trainer.v1.sampler.custom_sampler``), against verl 0.9.1.

Real verl objects throughout: ``PPOTrainerSync`` built from verl's composed ``ppo_trainer`` config (its
``_build_replay_buffer`` loads :class:`AgentReplayBuffer` from the config keys), its own ``_init_dataloader``,
``prepare_step`` and refills, a live TransferQueue (Ray, CPU) and the base ``ReplayBuffer.sample`` with its DAPO
filter. Only generation is replaced: :class:`BernoulliRollout` writes each prompt's n trajectories and status
into TransferQueue as ``AgentLoopWorkerTQ`` does, each session's reward a Bernoulli draw with a per-prompt rate.

Runs where verl >= 0.9 with its V1 trainer is installed (``.venv-integrations``); skipped elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("verl")
pytest.importorskip("transfer_queue")
pytest.importorskip("verl.trainer.ppo.v1.replay_buffer")
pytest.importorskip("pyarrow")

import torch  # noqa: E402
import transfer_queue as tq  # noqa: E402
from _verl_rows import ID_OFFSET, RATES, B, K, N, write_parquet  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from tensordict import NonTensorData, NonTensorStack, TensorDict  # noqa: E402
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

from gps_env.agents import MoPPS, Uniform  # noqa: E402
from gps_env.integrations import MissingPromptIndexError  # noqa: E402
from gps_env.integrations import verl as gv  # noqa: E402
from gps_env.integrations import verl_v1 as gv1  # noqa: E402

KW = "+trainer.v1.sampler.sampler_kwargs"


def compose_config(path: str, *overrides: str):
    """verl's own ppo_trainer config with the keys docs/integrations.md gives for the V1 trainer."""
    with initialize_config_module("verl.trainer.config", version_base=None):
        return compose("ppo_trainer", overrides=[
            f"data.train_files={path}", f"data.val_files={path}", f"data.train_batch_size={B}",
            "data.dataloader_num_workers=0", "data.filter_overlong_prompts=false", f"actor_rollout_ref.rollout.n={K}",
            "trainer.v1.sampler.custom_sampler.path=pkg://gps_env.integrations.verl_v1",
            "trainer.v1.sampler.custom_sampler.name=AgentReplayBuffer", *overrides,
        ])


class BernoulliRollout:
    """Stands in for ``AgentLoopManagerTQ``: per prompt, n trajectories ``{uid}_{session}_0`` carrying the prompt's
    fields and token-level ``rm_scores`` (score on the last token), then the prompt's terminal status, as
    ``AgentLoopWorkerTQ._run_prompt`` / ``_agent_loop_postprocess`` write them.

    ``fail`` maps a dispatch number to the sessions that produce no trajectory (the group ends in "failure");
    ``corrupt`` edits the fields of the first group's trajectories (bad-input tests).
    """

    def __init__(self, seed: int = 0, fail: dict[int, range] | None = None, corrupt=None) -> None:
        self.rng, self.fail, self.corrupt = np.random.default_rng(seed), fail or {}, corrupt
        self.groups: list[tuple[str, int, np.ndarray]] = []  # (uid, row, rewards of the sessions that ran)

    def generate_sequences(self, batch: TensorDict) -> None:
        for i in range(len(batch)):
            prompt = {}  # the per-sample dict AgentLoopWorkerTQ.generate_sequences builds
            for key, v in batch.items():
                if isinstance(v, torch.Tensor):
                    prompt[key] = v[i]
                elif isinstance(v, NonTensorStack):
                    prompt[key] = v[i].data
                elif isinstance(v, NonTensorData):
                    prompt[key] = v.data
            uid, row = prompt["uid"], int(prompt["index"]) - ID_OFFSET
            failed = self.fail.get(len(self.groups), range(0))
            tq.kv_put(key=uid, partition_id="train", tag={"status": "running"})
            rewards = (self.rng.random(K) < RATES[row]).astype(np.float32)
            sessions = [s for s in range(K) if s not in failed]
            if sessions:
                fields = [{**prompt, "rm_scores": torch.tensor([0.0] * (s % 3) + [float(rewards[s])]),
                           "responses": torch.arange(s % 3 + 1)} for s in sessions]
                for field in fields if self.corrupt and not self.groups else ():
                    self.corrupt(field)
                tags = [{"status": "success", "global_steps": prompt["global_steps"], "response_len": s % 3 + 1}
                        for s in sessions]
                tq.kv_batch_put(keys=[f"{uid}_{s}_0" for s in sessions], partition_id="train",
                                fields=list_of_dict_to_tensordict(fields), tags=tags)
            tq.kv_put(key=uid, partition_id="train", tag={"status": "failure" if failed else "finished"})
            self.groups.append((uid, row, np.where(np.isin(np.arange(K), sessions), rewards, 0.0)))


@pytest.fixture(scope="module")
def transfer_queue():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield
    tq.close()
    if started:
        ray.shutdown()


@pytest.fixture
def make_trainer(tmp_path, transfer_queue):
    """A real PPOTrainerSync on a toy parquet, set up as PPOTrainer.init/fit would (minus workers and models)."""

    def make(*overrides: str, agent: str = "MoPPS", rollout: BernoulliRollout | None = None) -> PPOTrainerSync:
        config = compose_config(write_parquet(tmp_path / "train.parquet"), f"{KW}.agent={agent}", *overrides)
        trainer = PPOTrainerSync(config)  # trainer_base.py:131 builds the replay buffer from the config
        trainer.tokenizer, trainer.processor = None, None  # _init_tokenizer would load the model
        trainer._init_dataloader()
        trainer.global_steps = 1
        trainer.agent_loop_manager = rollout or BernoulliRollout()
        return trainer

    yield make
    for partition, items in (tq.kv_list() or {}).items():
        if items:
            tq.kv_clear(keys=list(items), partition_id=partition)


def train_step(trainer: PPOTrainerSync):
    """One sync V1 step as PPOTrainer.step/_step_once/fit run it: submit a batch, sample, clear TransferQueue."""
    trainer.prepare_step()
    batch, metrics = trainer.replay_buffer.sample(global_steps=trainer.global_steps, partition_id="train",
                                                  batch_size=B)
    data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["index", "rm_scores"])
    tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)  # trainer_base.py:511
    trainer.global_steps += 1
    return batch, data, metrics


def expected_history(groups, n_batches: int):
    """Per-row rollouts and successes of the first ``n_batches`` agent batches' groups (in dispatch order)."""
    rollouts, successes = np.zeros(N, np.int64), np.zeros(N, np.int64)
    for _, row, rewards in groups[:n_batches * B]:
        rollouts[row] += K
        successes[row] += int((rewards > 0.5).sum())
    return rollouts, successes


def test_config_keys_build_the_buffer_the_way_trainer_base_does(make_trainer, tmp_path):
    trainer = make_trainer(f"{KW}.seed=3", f"+{KW[1:]}.agent_kwargs={{ratio:2}}", agent="mopps")
    buffer = trainer.replay_buffer
    assert type(buffer) is gv1.AgentReplayBuffer
    assert isinstance(buffer.agent, MoPPS) and buffer.agent.ratio == 2 and buffer.agent.seed == 3
    assert (buffer.agent.pool_size, buffer.agent.batch_size, buffer.agent.k) == (N, B, K)
    assert trainer.train_dataloader.sampler is buffer.prompt_sampler
    trainer.train_dataloader.load_state_dict({"_num_yielded": 5})  # a resumed position is ignored
    assert buffer.filter_groups_metric is None and buffer.gen_batch_size == B  # the built-in buffer's settings
    # the prompts the trainer submits to rollout are the agent's batch
    batch = trainer._next_train_batch()
    np.testing.assert_array_equal(np.asarray(list(batch["index"])) - ID_OFFSET, buffer.loop.chosen[0])

    dapo = make_trainer("algorithm.filter_groups.enable=true")
    assert dapo.replay_buffer.filter_groups_metric == "reward"  # custom buffers get none from verl
    assert dapo.replay_buffer.gen_batch_size == 1 and dapo.config.data.gen_batch_size == 1
    assert dapo.replay_buffer.max_inflight_gen_batches == 1


def test_documented_8_gpu_config_builds_the_buffer(tmp_path):
    """The overrides of docs/integrations.md ("verl V1 trainer"), composed on verl's config, through verl's
    own PPOTrainerSync constructor (no workers are started)."""
    path = write_parquet(tmp_path / "train.parquet")
    with initialize_config_module("verl.trainer.config", version_base=None):
        config = compose("ppo_trainer", overrides=[
            "algorithm.adv_estimator=grpo", f"data.train_files={path}", f"data.val_files={path}",
            "data.train_batch_size=256", "data.max_prompt_length=1024", "data.max_response_length=2048",
            "trainer.use_v1=true", "trainer.v1.trainer_mode=sync",
            "trainer.v1.sampler.custom_sampler.path=pkg://gps_env.integrations.verl_v1",
            "trainer.v1.sampler.custom_sampler.name=AgentReplayBuffer", f"{KW}.agent=GPS",
            f"{KW}.agent_kwargs={{lam:0.5,candidates:16}}", f"{KW}.seed=0",
            "algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=reward",
            "algorithm.filter_groups.max_inflight_gen_batches=2",
            "actor_rollout_ref.model.path=Qwen/Qwen2.5-7B-Instruct", "actor_rollout_ref.actor.ppo_mini_batch_size=64",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4", "actor_rollout_ref.actor.use_kl_loss=False",
            "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.n=8",
            "actor_rollout_ref.rollout.tensor_model_parallel_size=2",
            "actor_rollout_ref.rollout.gpu_memory_utilization=0.6",
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
            "trainer.n_gpus_per_node=8", "trainer.nnodes=1",
        ])
    buffer = PPOTrainerSync(config).replay_buffer
    assert type(buffer) is gv1.AgentReplayBuffer
    assert (buffer.filter_groups_metric, buffer.gen_batch_size, buffer.max_inflight_gen_batches) == ("reward", 1, 2)
    assert buffer.agent_kwargs == {"agent": "GPS", "agent_kwargs": {"lam": 0.5, "candidates": 16}, "seed": 0}


def test_agent_chooses_every_prompt_and_learns_every_group(make_trainer):
    trainer = make_trainer()
    buffer, rollout = trainer.replay_buffer, trainer.agent_loop_manager
    for step in range(3):
        batch, data, _ = train_step(trainer)
        # verl rolled out and trained on exactly the agent's batch
        rolled = [row for _, row, _ in rollout.groups[step * B:(step + 1) * B]]
        np.testing.assert_array_equal(rolled, buffer.loop.chosen[step])
        assert {key.split("_")[0] for key in batch.keys} == {uid for uid, _, _ in rollout.groups[step * B:]}
        assert sorted(set(map(int, data["index"]))) == sorted(np.asarray(rolled) + ID_OFFSET)
        # the finished step waits in the loop with each prompt's success count
        (rows, success), = buffer.loop.pending
        np.testing.assert_array_equal(rows, buffer.loop.chosen[step])
        np.testing.assert_array_equal(success.sum(axis=1), [(r > 0.5).sum() for _, _, r in rollout.groups[step * B:]])
    trainer.prepare_step()  # the agent learns from the last step when it picks the next batch
    rollouts, successes = expected_history(rollout.groups, 3)
    np.testing.assert_array_equal(buffer.loop.history.rollouts, rollouts)
    np.testing.assert_array_equal(buffer.loop.history.successes, successes)
    agent = buffer.agent
    assert agent._learnt_step == 3 and buffer.loop.observation()["rollouts_spent"][0] == 3 * B * K
    assert agent.alpha.sum() - N == successes.sum() and agent.beta.sum() - N == 3 * B * K - successes.sum()


def test_dapo_filtered_and_surplus_groups_are_charged_to_the_agent(make_trainer):
    trainer = make_trainer("algorithm.filter_groups.enable=true", agent="Uniform")
    buffer, rollout = trainer.replay_buffer, trainer.agent_loop_manager
    assert isinstance(buffer.agent, Uniform)
    evicted = surplus = 0
    for _ in range(3):
        batch, data, metrics = train_step(trainer)
        evicted += metrics.get("training/filter_groups/evicted_samples", 0)
        surplus += metrics.get("training/filter_groups/discarded_surplus_samples", 0)
        # verl's DAPO filter ran: B groups trained, none of them with all rewards equal
        scores = {}
        for key, score in zip(batch.keys, data["rm_scores"]):
            scores.setdefault(key.split("_")[0], []).append(float(score.sum()))
        assert len(scores) == B and all(np.std(s) > 0 for s in scores.values())
    assert evicted > 0 and surplus > 0 and len(rollout.groups) > 3 * B  # refills were rolled out
    # a step's refills come from the agent's next batches, chosen from what it knew when the step began
    assert buffer.loop.chosen_after[:3] == [0, 0, 0]
    # every prompt verl rolled out (refills included) is the agent's, in the order it chose them
    chosen = np.concatenate(buffer.loop.chosen)
    np.testing.assert_array_equal([row for _, row, _ in rollout.groups], chosen[:len(rollout.groups)])
    # every group came back (sync DAPO drains in-flight groups) and every rollout is charged
    ledger = buffer.ledger
    assert ledger.groups_finished == len(rollout.groups) and ledger.recorded == len(rollout.groups) // B
    buffer.loop.next_batch()
    rollouts, successes = expected_history(rollout.groups, ledger.recorded)
    np.testing.assert_array_equal(buffer.loop.history.rollouts, rollouts)
    np.testing.assert_array_equal(buffer.loop.history.successes, successes)
    assert buffer.loop.observation()["rollouts_spent"][0] == ledger.recorded * B * K


def test_a_failed_group_is_charged_as_failed_rollouts(make_trainer):
    rollout = BernoulliRollout(fail={0: range(K), 1: range(2)})  # group 0 left nothing, group 1 half its sessions
    trainer = make_trainer(rollout=rollout)
    batch, _, _ = train_step(trainer)
    uids = {key.split("_")[0] for key in batch.keys}
    assert rollout.groups[0][0] not in uids and len(batch.keys) == B * K - K - 2  # verl trains what exists
    (rows, success), = trainer.replay_buffer.loop.pending
    np.testing.assert_array_equal(rows, [row for _, row, _ in rollout.groups])
    np.testing.assert_array_equal(success[0], np.zeros(K))
    np.testing.assert_array_equal(success[1], (rollout.groups[1][2] > 0.5))
    assert not success[1][:2].any()


@pytest.mark.parametrize("corrupt, error, match", [
    (lambda f: f.update(rm_scores=torch.tensor([0.0, float("nan")])), ValueError, r"'rm_scores'.*not finite"),
    (lambda f: f.update(rm_scores=torch.ones(2, 2)), ValueError, r"'rm_scores'.*shape \(2, 2\)"),
    (lambda f: f.update(index=N + ID_OFFSET + 7), ValueError, r"'index' 1031"),
    (lambda f: f.update(index="seven"), ValueError, r"'index' must hold integer"),
    (lambda f: f.pop("index"), MissingPromptIndexError, r"'index'.*extra_info\.index"),
    (lambda f: f.pop("rm_scores"), ValueError, r"no 'rm_scores'.*enable_resource_pool"),
])
def test_bad_trajectories_raise_naming_the_field(make_trainer, corrupt, error, match):
    trainer = make_trainer(rollout=BernoulliRollout(corrupt=corrupt))
    trainer.prepare_step()
    with pytest.raises(error, match=match):
        trainer.replay_buffer.sample(global_steps=1, partition_id="train", batch_size=B)


def test_group_rewards_checks_keys_fields_and_sessions():
    def data(**fields):
        return TensorDict({"index": torch.tensor([5, 5]), "rm_scores": torch.tensor([[0.0, 1.0], [0.0, 0.0]]),
                           **fields}, batch_size=[2])

    groups = gv1.group_rewards(["u_1_0", "u_0_0"], data(), k=3)
    pid, rewards = groups["u"]
    assert pid == 5 and rewards[1] == 1.0 and rewards[0] == 0.0 and np.isnan(rewards[2])
    # a multi-output session: its last output's reward
    assert gv1.group_rewards(["u_0_1", "u_0_0"], data(), k=1)["u"][1][0] == 1.0
    with pytest.raises(ValueError, match=r"session_id 3.*rollout\.n = 3"):
        gv1.group_rewards(["u_3_0", "u_0_0"], data(), k=3)
    with pytest.raises(ValueError, match=r"not \{uid\}_\{session_id\}_\{index\}"):
        gv1.group_rewards(["u-0", "u_0_0"], data(), k=3)
    with pytest.raises(MissingPromptIndexError, match=r"'index'.*extra_info\.index"):
        gv1.group_rewards(["u_0_0", "u_1_0"], data().exclude("index"), k=3)
    with pytest.raises(ValueError, match=r"no 'rm_scores'.*enable_resource_pool"):
        gv1.group_rewards(["u_0_0", "u_1_0"], data().exclude("rm_scores"), k=3)
    with pytest.raises(ValueError, match=r"'index' 5 and 6"):
        gv1.group_rewards(["u_0_0", "u_1_0"], data(index=torch.tensor([5, 6])), k=3)


def test_ledger_refuses_prompts_the_agent_did_not_choose(make_trainer):
    trainer = make_trainer()
    batch = trainer._next_train_batch()
    ledger = trainer.replay_buffer.ledger
    unchosen = int(np.setdiff1d(np.arange(N), ledger.loop.chosen[0])[0])
    with pytest.raises(ValueError, match="did not choose"):
        ledger.dispatch(["x"], [unchosen + ID_OFFSET])
    ledger.dispatch(list(batch["uid"]), [int(i) for i in batch["index"]])
    with pytest.raises(ValueError, match="did not choose"):  # each chosen slot is rolled out once
        ledger.dispatch(["y"], [int(batch["index"][0])])


def test_config_errors_name_the_keys(make_trainer, tmp_path):
    path = write_parquet(tmp_path / "train.parquet")
    with pytest.raises(ValueError, match=r"trainer\.v1\.sampler\.sampler_kwargs\.agent"):
        PPOTrainerSync(compose_config(path))
    with pytest.raises(ValueError, match=r"unknown trainer\.v1\.sampler\.sampler_kwargs keys \['rollouts'\]"):
        PPOTrainerSync(compose_config(path, f"{KW}.agent=GPS", f"{KW}.rollouts=8"))
    with pytest.raises(ValueError, match=r"trainer\.v1\.trainer_mode=sync"):
        gv1.AgentReplayBuffer("colocate_async", {}, 8, "drop", {"agent": "GPS"},
                              refill_fn=object.__new__(PPOTrainerSync)._add_prompts_to_generate)
    with pytest.raises(TypeError, match="refill_fn"):
        gv1.AgentReplayBuffer("sync", {}, 8, "drop", {"agent": "GPS"}, refill_fn=lambda n: n)
    with pytest.raises(ValueError, match=r"reward\.reward_model\.enable_resource_pool"):
        PPOTrainerSync(compose_config(path, f"{KW}.agent=GPS", "reward.reward_model.enable=true"))
    np.save(tmp_path / "emb.npy", np.ones((3, 8), np.float32))
    with pytest.raises(ValueError, match=r"trainer\.v1\.sampler\.sampler_kwargs\.embeddings has 3 rows"):
        make_trainer(f"{KW}.embeddings={tmp_path / 'emb.npy'}")
    trainer = PPOTrainerSync(compose_config(write_parquet(tmp_path / "bare.parquet", with_index=False),
                                            f"{KW}.agent=GPS"))
    trainer.tokenizer, trainer.processor = None, None
    with pytest.raises(MissingPromptIndexError, match=r"extra_info\.index"):
        trainer._init_dataloader()


@pytest.mark.skipif(not gv.HAS_V1_TRAINER, reason="verl >= 0.8 with verl-core (v1 trainer)")
def test_agent_ppo_trainer_keeps_its_own_sampler_and_refuses_the_buffer(tmp_path):
    path = write_parquet(tmp_path / "train.parquet")
    with pytest.raises(TypeError, match="AgentPPOTrainer installs its own prompt sampler"):
        gv.AgentPPOTrainer(compose_config(path, f"{KW}.agent=GPS", "+data.sampler.agent=GPS"))
    with initialize_config_module("verl.trainer.config", version_base=None):
        config = compose("ppo_trainer", overrides=[f"data.train_files={path}", f"data.val_files={path}",
                                                   "+data.sampler.agent=GPS"])
    assert type(gv.AgentPPOTrainer(config).replay_buffer).__name__ == "ReplayBuffer"
