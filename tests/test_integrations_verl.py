"""gps-env agents as verl's prompt sampler, driven by real verl objects: RLHFDataset over a parquet file,
verl's own sampler factory and dataloader, DataProto batches (verl 0.7) and the v1 trainer's batch fetch
(verl 0.9). Only generation is replaced: each rollout's score is a Bernoulli draw with a per-prompt rate.

Runs where verl is installed (``.venv-integrations`` has verl 0.9, ``.venv-verl07`` verl 0.7; see
docs/integrations.md); skipped elsewhere.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("verl")
pytest.importorskip("pyarrow")

import torch  # noqa: E402
from _verl_rows import ID_OFFSET, RATES, B, K, N, write_parquet  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402

from gps_env.agents import GPS, MoPPS  # noqa: E402
from gps_env.integrations import MissingPromptIndexError  # noqa: E402
from gps_env.integrations import verl as gv  # noqa: E402

needs_07 = pytest.mark.skipif(not gv.HAS_CURRICULUM_HOOK, reason="verl < 0.8 (curriculum sampler hook)")
needs_v1 = pytest.mark.skipif(not gv.HAS_V1_TRAINER, reason="verl >= 0.8 with verl-core (v1 trainer)")


def data_config(agent: str = "MoPPS", **sampler) -> OmegaConf:
    return OmegaConf.create({
        "train_batch_size": B, "gen_batch_size": None, "dataloader_num_workers": 0, "shuffle": True, "seed": 0,
        "prompt_key": "prompt", "filter_overlong_prompts": False, "max_prompt_length": 64,
        "sampler": {"class_path": "pkg://gps_env.integrations.verl", "class_name": "AgentCurriculumSampler",
                    "agent": agent, "rollouts_per_prompt": K, **sampler},
    })


def scored_batch(batch_dict: dict, rng: np.random.Generator):
    """What verl's fit loop holds at the sampler hook: the step's prompts repeated n times, with scores."""
    from verl import DataProto

    batch = DataProto.from_single_dict(batch_dict)
    batch.non_tensor_batch["uid"] = np.array([f"u{i}" for i in range(len(batch))], dtype=object)
    batch = batch.repeat(repeat_times=K, interleave=True)
    rows = np.asarray(batch.non_tensor_batch["index"], dtype=np.int64) - ID_OFFSET
    scores = torch.zeros(len(batch), 6)
    scores[:, -1] = torch.from_numpy((rng.random(len(rows)) < RATES[rows]).astype(np.float32))
    batch.batch["token_level_scores"] = scores
    return batch, rows


@needs_07
def test_verl07_sampler_runs_the_agent_through_verls_own_dataloader(tmp_path):
    from verl.trainer.main_ppo import create_rl_sampler

    config = data_config("MoPPS")
    dataset = RLHFDataset(write_parquet(tmp_path / "train.parquet"), tokenizer=None, config=config)
    sampler = create_rl_sampler(config, dataset)  # verl's factory loads the class from data.sampler
    assert isinstance(sampler, gv.AgentCurriculumSampler) and isinstance(sampler.agent, MoPPS)
    loader = StatefulDataLoader(dataset=dataset, batch_size=B, num_workers=0, drop_last=True,
                                collate_fn=collate_fn, sampler=sampler)
    assert len(loader) == N // B
    rng, successes = np.random.default_rng(0), 0
    for step, batch_dict in enumerate(loader):
        # the rows verl is about to roll out are exactly the agent's choice
        np.testing.assert_array_equal(np.asarray(batch_dict["index"]) - ID_OFFSET, sampler.loop.chosen[step])
        batch, rows = scored_batch(batch_dict, rng)
        sampler.update(batch)  # verl 0.7's hook, after the update
        successes += int(batch.batch["token_level_scores"].sum())
    assert len(sampler.loop.chosen) == N // B
    # the last step's scores wait for the next choice (the next epoch's first batch)
    assert sampler.loop.step == N // B - 1 and len(sampler.loop.pending) == 1
    next(iter(loader))
    agent = sampler.agent
    assert agent._learnt_step == sampler.loop.step == N // B
    # MoPPS's Beta posteriors absorbed every rollout verl scored: successes into α, failures into β
    assert agent.alpha.sum() - N == successes
    assert agent.alpha.sum() + agent.beta.sum() - 2 * N == (N // B) * B * K


@needs_07
def test_verl07_gps_learns_from_grouped_scores(tmp_path):
    from hydra import compose, initialize_config_module
    from verl.trainer.main_ppo import create_rl_sampler

    table = np.random.default_rng(1).normal(size=(ID_OFFSET + N, 8)).astype(np.float32)  # row = pool id
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    np.save(tmp_path / "emb.npy", table)
    path = write_parquet(tmp_path / "train.parquet")
    # verl's own ppo_trainer config with the overrides docs/integrations.md gives
    with initialize_config_module("verl.trainer.config", version_base=None):
        config = compose("ppo_trainer", overrides=[
            f"data.train_files={path}", f"data.train_batch_size={B}", "data.dataloader_num_workers=0",
            "data.filter_overlong_prompts=false", f"actor_rollout_ref.rollout.n={K}",
            "data.sampler.class_path=pkg://gps_env.integrations.verl",
            "data.sampler.class_name=AgentCurriculumSampler", "+data.sampler.agent=GPS",
            "+data.sampler.rollouts_per_prompt=${actor_rollout_ref.rollout.n}", "+data.sampler.seed=3",
            "+data.sampler.agent_kwargs={lam:0.2}", f"+data.sampler.embeddings={tmp_path / 'emb.npy'}",
        ])
    dataset = RLHFDataset(path, tokenizer=None, config=config.data)
    sampler = create_rl_sampler(config.data, dataset)
    assert isinstance(sampler.agent, GPS) and sampler.agent.lam == 0.2
    np.testing.assert_array_equal(sampler.agent.embeddings, table[ID_OFFSET:])
    loader = StatefulDataLoader(dataset=dataset, batch_size=B, num_workers=0, drop_last=True,
                                collate_fn=collate_fn, sampler=sampler)
    rng = np.random.default_rng(0)
    for batch_dict in loader:
        batch, rows = scored_batch(batch_dict, rng)
        sampler.update(batch)
    # GPS saw every step but the last (it learns when it chooses the next batch) with the verl scores
    agent = sampler.agent
    assert agent.steps_seen == N // B - 1
    batch, success = agent.history[-1]
    np.testing.assert_array_equal(batch, sampler.loop.chosen[-2])


@needs_07
def test_verl07_missing_index_field_names_the_field_and_config(tmp_path):
    config = data_config("Uniform")
    dataset = RLHFDataset(write_parquet(tmp_path / "train.parquet"), tokenizer=None, config=config)
    sampler = gv.AgentCurriculumSampler(dataset, config)
    loader = StatefulDataLoader(dataset=dataset, batch_size=B, num_workers=0, drop_last=True,
                                collate_fn=collate_fn, sampler=sampler)
    batch, _ = scored_batch(next(iter(loader)), np.random.default_rng(0))
    batch.non_tensor_batch.pop("index")
    with pytest.raises(MissingPromptIndexError, match=r"'index'.*extra_info\.index"):
        sampler.update(batch)

    no_index = RLHFDataset(write_parquet(tmp_path / "bare.parquet", with_index=False), tokenizer=None,
                           config=config)
    with pytest.raises(MissingPromptIndexError, match=r"extra_info\.index"):
        gv.AgentCurriculumSampler(no_index, config)


def test_probing_agents_are_refused_with_an_explanation(tmp_path):
    config = data_config("DynamicSampling")
    dataset = RLHFDataset(write_parquet(tmp_path / "train.parquet"), tokenizer=None, config=config)
    sampler = gv.AgentCurriculumSampler(dataset, config)
    with pytest.raises(NotImplementedError, match="probes.*filter_groups"):
        next(iter(sampler))


def test_sampler_config_errors_name_the_keys(tmp_path):
    path = write_parquet(tmp_path / "train.parquet")
    config = data_config("MoPPS")
    dataset = RLHFDataset(path, tokenizer=None, config=config)
    del config.sampler.rollouts_per_prompt
    with pytest.raises(ValueError, match="data.sampler.rollouts_per_prompt"):
        gv.AgentCurriculumSampler(dataset, config)
    config = data_config("")
    with pytest.raises(ValueError, match="data.sampler.agent"):
        gv.AgentCurriculumSampler(dataset, config)


@needs_v1
def test_verl09_trainer_fetches_the_agents_prompts_and_learns_from_tensordict_scores(tmp_path):
    from hydra import compose, initialize_config_module
    from tensordict import TensorDict
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    path = write_parquet(tmp_path / "train.parquet")
    with initialize_config_module("verl.trainer.config", version_base=None):
        config = compose("ppo_trainer", overrides=[
            f"data.train_files={path}", f"data.val_files={path}", f"data.train_batch_size={B}",
            "data.dataloader_num_workers=0", "data.filter_overlong_prompts=false",
            f"actor_rollout_ref.rollout.n={K}", "+data.sampler.agent=MoPPS", "+data.sampler.seed=0",
            f"++data.gen_batch_size={B // 2}",  # each step's batch is fetched in two dataloader pieces
        ])
    assert issubclass(gv.AgentPPOTrainer, PPOTrainerSync)
    # The real trainer's dataloader methods, on an instance without workers or TransferQueue.
    trainer = object.__new__(gv.AgentPPOTrainer)
    trainer.config, trainer.trainer_mode, trainer.parameter_sync_step, trainer.global_steps = config, "sync", 1, 1
    trainer.tokenizer, trainer.processor = None, None
    trainer._init_dataloader()
    assert config.data.sampler.rollouts_per_prompt == K  # filled from actor_rollout_ref.rollout.n
    rng = np.random.default_rng(0)
    for step in range(3):
        batch = trainer._next_train_batch()  # what the v1 trainer submits to rollout
        rows = np.asarray(list(batch["index"])) - ID_OFFSET
        np.testing.assert_array_equal(rows, trainer.prompt_sampler.loop.chosen[step])
        # the step's trajectories as TransferQueue returns them: per-rollout index and jagged rm_scores
        ids = np.repeat(rows + ID_OFFSET, K)
        success = (rng.random(ids.size) < RATES[ids - ID_OFFSET]).astype(np.float32)
        scores = torch.nested.as_nested_tensor(
            [torch.tensor([0.0] * (j % 3) + [s]) for j, s in enumerate(success)], layout=torch.jagged)
        data = TensorDict({"index": torch.from_numpy(ids), "rm_scores": scores}, batch_size=[ids.size])
        gv.feed_from_tensordict(trainer.prompt_sampler, data)
    trainer._next_train_batch()
    assert trainer.prompt_sampler.loop.step == 3
    assert trainer.prompt_sampler.agent.alpha.sum() - N == trainer.prompt_sampler.loop.history.successes.sum()

    with pytest.raises(MissingPromptIndexError, match="extra_info.index"):
        gv.feed_from_tensordict(trainer.prompt_sampler, TensorDict({"rm_scores": scores}, batch_size=[ids.size]))


@needs_v1
def test_gps_env_verl_launches_from_verls_own_config(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gps-env-verl", "--cfg", "job", "+data.sampler.agent=GPS"])
    gv.main()  # --cfg job: Hydra composes verl's ppo_trainer config, prints it and stops before Ray
    assert "agent: GPS" in capsys.readouterr().out


@needs_07
def test_gps_env_verl_points_verl07_users_to_the_sampler_config():
    with pytest.raises(RuntimeError, match=r"data\.sampler\.class_path"):
        gv.main()
