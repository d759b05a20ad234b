"""A gps-env agent picks the prompts of TRL's GRPOTrainer: a few real GRPO steps on CPU with the tiny policy.

Runs where TRL is installed (``.venv-integrations``; docs/integrations.md); skipped elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from gps_env.agents import MoPPS  # noqa: E402
from gps_env.integrations import MissingPromptIndexError  # noqa: E402
from gps_env.integrations.trl import AgentGRPOTrainer  # noqa: E402

N, B, G, STEPS, ID_OFFSET = 12, 2, 4, 3, 100


def prompts_dataset() -> Dataset:
    rows = [f"{i}+{i + 1}=" for i in range(N)]
    return Dataset.from_dict({"prompt": rows, "prompt_index": [ID_OFFSET + i for i in range(N)]})


class Reward:
    """Dataset row mod 3 decides: 0 never solved, 1 always, 2 solved when the completion starts with a digit.
    Records the pool ids and rewards of every call (one call per generation batch)."""

    __name__ = "toy_reward"

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], list[float]]] = []

    def __call__(self, completions: list[str], prompt_index: list[int], **kwargs) -> list[float]:
        rows = [i - ID_OFFSET for i in prompt_index]
        rewards = [0.0 if r % 3 == 0 else 1.0 if r % 3 == 1 else float(c[:1].isdigit())
                   for c, r in zip(completions, rows)]
        self.calls.append((list(prompt_index), rewards))
        return rewards


def make_trainer(tiny_policy, tmp_path, dataset: Dataset, reward: Reward, steps_per_generation: int = 1,
                 remove_unused_columns: bool = False, **kwargs) -> AgentGRPOTrainer:
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=B * G // steps_per_generation, num_generations=G,
        steps_per_generation=steps_per_generation, max_steps=STEPS * steps_per_generation,
        max_completion_length=4, learning_rate=1e-3, beta=0.0, logging_steps=1, report_to=[], use_cpu=True,
        save_strategy="no", seed=0, dataloader_num_workers=0, disable_tqdm=True,
        remove_unused_columns=remove_unused_columns,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    return AgentGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                            processing_class=tokenizer, **kwargs)


@pytest.mark.parametrize(("steps_per_generation", "agent"), [(1, "MoPPS"), (2, "GPS")])
def test_agent_chooses_the_prompts_trl_trains_on_and_learns_their_rewards(tiny_policy, tmp_path,
                                                                          steps_per_generation, agent):
    reward = Reward()
    trainer = make_trainer(tiny_policy, tmp_path, prompts_dataset(), reward, agent=agent,
                           steps_per_generation=steps_per_generation)
    assert type(trainer.agent).__name__ == agent and trainer.agent.batch_size == B and trainer.agent.k == G
    trainer.train()

    loop = trainer.prompt_loop
    assert len(reward.calls) == STEPS
    for step, (pool_ids, _) in enumerate(reward.calls):
        # each generation batch is the agent's choice, every prompt rolled out G times in a row
        chosen = loop.chosen[step] + ID_OFFSET
        np.testing.assert_array_equal(pool_ids, np.repeat(chosen, G))
    # the agent received exactly the rewards TRL computed (all recorded steps, absorbed or pending)
    successes = sum(sum(r > 0.5 for r in rewards) for _, rewards in reward.calls)
    absorbed = loop.history.successes.sum()
    pending = sum(int(s.sum()) for _, s in loop.pending)
    assert absorbed + pending == successes
    assert loop.step + len(loop.pending) == STEPS
    if steps_per_generation == 1:  # accelerate fetched batch t+1 before batch t was scored: one step late
        assert loop.chosen_after[:STEPS] == [0, 0, 1]
    else:  # the rewards came in before the next chunk was needed: no lag
        assert loop.chosen_after[:STEPS] == [0, 1, 2]
    if isinstance(trainer.agent, MoPPS):
        assert trainer.agent.alpha.sum() - N == absorbed  # its posterior took them in
    else:  # GPS: trained its predictor on each absorbed step, over WordLlama embeddings of the prompt texts
        assert trainer.agent.steps_seen == loop.step and trainer.agent.embeddings.shape == (N, 256)
    ids = np.arange(N)
    assert np.all(loop.history.successes[ids % 3 == 0] == 0)  # never-solved prompts have no successes
    assert np.all(loop.history.successes[ids % 3 == 1] == loop.history.rollouts[ids % 3 == 1])  # always-solved: all


def test_missing_prompt_index_column_is_named(tiny_policy, tmp_path):
    dataset = prompts_dataset().remove_columns("prompt_index")
    with pytest.raises(MissingPromptIndexError, match=r"'prompt_index'.*with_indices=True"):
        make_trainer(tiny_policy, tmp_path, dataset, Reward(), agent="Uniform")


def test_index_column_dropped_from_batches_is_named(tiny_policy, tmp_path):
    trainer = make_trainer(tiny_policy, tmp_path, prompts_dataset(), Reward(), agent="Uniform",
                           remove_unused_columns=True)
    with pytest.raises(MissingPromptIndexError, match=r"'prompt_index'.*remove_unused_columns=False"):
        trainer.train()
