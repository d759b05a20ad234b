"""DAPO dynamic sampling in TRL's GRPOTrainer (gps_env.integrations.trl_dynamic): real GRPO steps on CPU with the
tiny policy. Every loss call's prompts are decoded and checked against an oracle built from the reward calls.

Runs where TRL is installed (docs/integrations.md); skipped elsewhere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from gps_env.integrations.trl_dynamic import DynamicSamplingGRPOTrainer  # noqa: E402

N, B, G, STEPS, ID_OFFSET = 12, 2, 4, 3, 100


def prompt_of(row: int) -> str:
    return f"{row}+{row + 1}="


def kind(row: int) -> str:
    return ("never", "always", "mixed")[row % 3]


def prompts_dataset(rows: list[int] | None = None) -> Dataset:
    rows = list(range(N)) if rows is None else rows
    return Dataset.from_dict({"prompt": [prompt_of(r) for r in rows], "prompt_index": [ID_OFFSET + r for r in rows]})


class Reward:
    """Row mod 3 decides: 0 never solved, 1 always, 2 solved by every other rollout of its group (mixed, 0/1).
    Records the pool ids and rewards of every call (one call per generation round)."""

    __name__ = "toy_reward"

    def __init__(self, bad: float | None = None) -> None:
        self.calls: list[tuple[list[int], list[float]]] = []
        self.bad = bad

    def __call__(self, completions: list[str], prompt_index: list[int], **kwargs) -> list[float]:
        rewards = []
        for j, pid in enumerate(prompt_index):
            k = kind(pid - ID_OFFSET)
            rewards.append(0.0 if k == "never" else 1.0 if k == "always" else float(j % 2))
        if self.bad is not None:
            rewards[0] = self.bad
        self.calls.append((list(prompt_index), rewards))
        return rewards


class Recording(DynamicSamplingGRPOTrainer):
    """Records, per generation batch, the reward calls it spanned, and every loss call's rows (pool id, advantage)."""

    def __init__(self, *args, reward: Reward, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reward, self.spans, self.losses = reward, [], []
        self.by_ids = {tuple(self.processing_class(prompt_of(r))["input_ids"]): ID_OFFSET + r for r in range(N)}

    def _generate_and_score_completions(self, inputs):
        start = len(self.reward.calls)
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.spans.append((start, len(self.reward.calls)))
        return out

    def compute_loss(self, model, inputs, *args, **kwargs):
        ids = [tuple(p[m.bool()].tolist()) for p, m in zip(inputs["prompt_ids"], inputs["prompt_mask"])]
        self.losses.append(([self.by_ids[i] for i in ids], inputs["advantages"].tolist()))
        return super().compute_loss(model, inputs, *args, **kwargs)


def make_trainer(tiny_policy, tmp_path, reward: Reward, dataset: Dataset | None = None,
                 steps_per_generation: int = 1, scale_rewards: str = "group", **kwargs) -> Recording:
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=B * G // steps_per_generation, num_generations=G,
        steps_per_generation=steps_per_generation, max_steps=STEPS * steps_per_generation,
        max_completion_length=4, learning_rate=1e-3, beta=0.0, logging_steps=1, report_to=[], use_cpu=True,
        save_strategy="no", seed=0, dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
        scale_rewards=scale_rewards,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    return Recording(model=model, reward_funcs=reward, args=args, train_dataset=prompts_dataset() if dataset is None
                     else dataset, processing_class=tokenizer, reward=reward, **kwargs)


def expected_batch(calls: list[tuple[list[int], list[float]]]) -> tuple[list[int], int]:
    """The oracle: the first B mixed groups of the rounds, in generation order, then the earliest flat ones."""
    mixed, flat = [], []
    for ids, rewards in calls:
        for grp in range(B):
            pid, r = ids[grp * G], rewards[grp * G:(grp + 1) * G]
            assert ids[grp * G:(grp + 1) * G] == [pid] * G
            (mixed if min(r) != max(r) else flat).append(pid)
    kept = mixed[:B]
    return kept + flat[:B - len(kept)], B - len(kept)


def trained_per_batch(trainer: Recording, steps_per_generation: int) -> list[tuple[list[int], list[float]]]:
    out = []
    for i in range(0, len(trainer.losses), steps_per_generation):
        chunk = trainer.losses[i:i + steps_per_generation]
        out.append(([p for ids, _ in chunk for p in ids], [a for _, adv in chunk for a in adv]))
    return out


def check_against_oracle(trainer: Recording, steps_per_generation: int) -> int:
    """Every generation batch trained exactly the oracle's groups, all G rollouts each; returns the filled groups."""
    batches = trained_per_batch(trainer, steps_per_generation)
    assert len(batches) == len(trainer.spans) == STEPS
    filled = 0
    for (start, end), (ids, _) in zip(trainer.spans, batches):
        want, missing = expected_batch(trainer.reward.calls[start:end])
        filled += missing
        assert sorted(ids) == sorted(np.repeat(want, G).tolist())
    return filled


@pytest.mark.parametrize(("steps_per_generation", "scale_rewards", "agent"),
                         [(1, "group", "uniform"), (2, "batch", "MoPPS")])
def test_zero_variance_groups_never_reach_the_loss_and_discards_are_counted(tiny_policy, tmp_path,
                                                                            steps_per_generation, scale_rewards, agent):
    reward = Reward()
    trainer = make_trainer(tiny_policy, tmp_path, reward, steps_per_generation=steps_per_generation,
                           scale_rewards=scale_rewards, agent=agent, max_rounds=12)
    trainer.train()

    stats = trainer.dynamic_sampling
    rounds = len(reward.calls)
    assert stats.cap_hits == 0 and check_against_oracle(trainer, steps_per_generation) == 0
    # only mixed prompts were trained, though the agent also drew never/always-solved ones (now discarded)
    trained = [p for ids, _ in trainer.losses for p in ids]
    assert {kind(p - ID_OFFSET) for p in trained} == {"mixed"}
    drawn = {kind(p - ID_OFFSET) for ids, _ in reward.calls for p in ids}
    assert drawn == {"never", "always", "mixed"} and rounds > STEPS
    # generated = trained + discarded, in rollouts, and the counters match what really happened
    assert stats.generated_rollouts == rounds * B * G == stats.trained_rollouts + stats.discarded_rollouts
    assert stats.trained_rollouts == len(trained) == STEPS * B * G and stats.discarded_rollouts > 0
    assert stats.generation_batches == STEPS and stats.rounds == rounds and stats.filled_rollouts == 0
    # ... and logged
    logged = [h for h in trainer.state.log_history if "dynamic_sampling/discarded_rollouts" in h]
    assert logged and logged[-1]["dynamic_sampling/discarded_rollouts"] == stats.discarded_rollouts
    assert logged[-1]["dynamic_sampling/generated_rollouts"] == stats.generated_rollouts
    assert logged[-1]["dynamic_sampling/rounds"] == rounds
    per_batch = [h["dynamic_sampling/rounds_per_batch"] for h in trainer.state.log_history
                 if "dynamic_sampling/rounds_per_batch" in h]  # logged at each generation step only
    assert len(per_batch) == STEPS and sum(per_batch) == rounds
    # the agent learnt from every generated group, the discarded ones included
    loop = trainer.prompt_loop
    assert loop.step + len(loop.pending) == rounds
    assert loop.history.rollouts.sum() + G * B * len(loop.pending) == stats.generated_rollouts
    # advantages: each kept group holds two 0s and two 1s; std over the group, or over the kept batch (recomputed)
    rewards = torch.tensor([0.0, 1.0] * (G // 2) * (B if scale_rewards == "batch" else 1))
    expected = 0.5 / (rewards.std().item() + 1e-4)
    advantages = [a for _, adv in trainer.losses for a in adv]
    assert np.allclose(np.abs(advantages), expected, rtol=1e-5)


def test_round_cap_falls_back_to_zero_variance_groups(tiny_policy, tmp_path):
    reward = Reward()
    flat_rows = [r for r in range(N) if kind(r) != "mixed"]  # no mixed group anywhere
    trainer = make_trainer(tiny_policy, tmp_path, reward, dataset=prompts_dataset(flat_rows), max_rounds=3)
    trainer.train()

    stats = trainer.dynamic_sampling
    assert len(reward.calls) == 3 * STEPS  # every batch tried the cap, then trained the earliest flat groups
    assert check_against_oracle(trainer, 1) == STEPS * B
    assert stats.cap_hits == STEPS and stats.filled_rollouts == stats.trained_rollouts == STEPS * B * G
    assert stats.generated_rollouts == 3 * STEPS * B * G == stats.trained_rollouts + stats.discarded_rollouts
    assert all(a == 0 for _, adv in trainer.losses for a in adv)  # they carry no policy gradient
    assert all(math.isfinite(h.get("loss", 0.0)) for h in trainer.state.log_history)
    logged = [h["dynamic_sampling/frac_trained_zero_std"] for h in trainer.state.log_history
              if "dynamic_sampling/frac_trained_zero_std" in h]
    assert logged == [1.0] * STEPS


def test_partial_fill_keeps_the_mixed_groups_it_found(tiny_policy, tmp_path):
    reward = Reward()
    trainer = make_trainer(tiny_policy, tmp_path, reward, max_rounds=1)
    trainer.train()
    filled = check_against_oracle(trainer, 1)  # each batch is its own first round; mixed groups are all kept
    assert trainer.dynamic_sampling.filled_rollouts == filled * G and trainer.dynamic_sampling.discarded_rollouts == 0
    assert trainer.dynamic_sampling.cap_hits == sum(
        any(kind(p - ID_OFFSET) != "mixed" for p in ids) for ids, _ in reward.calls)


def test_fallback_raise_names_the_cap(tiny_policy, tmp_path):
    flat_rows = [r for r in range(N) if kind(r) != "mixed"]
    trainer = make_trainer(tiny_policy, tmp_path, Reward(), dataset=prompts_dataset(flat_rows), max_rounds=2,
                           fallback="raise")
    with pytest.raises(RuntimeError, match=r"0 of 2 mixed-reward groups in max_rounds=2"):
        trainer.train()


def test_non_finite_reward_is_named(tiny_policy, tmp_path):
    trainer = make_trainer(tiny_policy, tmp_path, Reward(bad=math.inf))
    with pytest.raises(ValueError, match=r"reward_funcs returned non-finite rewards \[inf\]"):
        trainer.train()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_rounds": 0}, r"max_rounds must be an integer >= 1.*got 0"),
    ({"max_rounds": 2.5}, r"max_rounds must be an integer >= 1"),
    ({"max_rounds": True}, r"max_rounds must be an integer >= 1"),
    ({"fallback": "skip"}, r"fallback must be 'fill' or 'raise', got 'skip'"),
])
def test_bad_settings_are_named(tiny_policy, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tiny_policy, tmp_path, Reward(), **kwargs)


def test_normalize_then_sum_is_refused(tiny_policy, tmp_path):
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=B * G, num_generations=G, use_cpu=True,
                      report_to=[], multi_objective_aggregation="normalize_then_sum")
    with pytest.raises(ValueError, match="multi_objective_aggregation='normalize_then_sum'"):
        DynamicSamplingGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_policy), reward_funcs=Reward(),
                                   args=args, train_dataset=prompts_dataset(),
                                   processing_class=AutoTokenizer.from_pretrained(tiny_policy))
