"""gps-env: prompt selection for RL post-training of reasoning LLMs, as a Gymnasium environment.

``import gps_env`` registers ``"gps_env/PromptSelection-v0"``::

    env = gymnasium.make("gps_env/PromptSelection-v0", batch_size=32, rollouts_per_prompt=8)
"""

from gymnasium.envs.registration import register

from gps_env.engines import RolloutEngine, Rollouts, SamplingParams, TransformersEngine
from gps_env.env import PromptBatch, PromptSelectionEnv
from gps_env.grpo import GRPOConfig, GRPOTrainer
from gps_env.ledger import RolloutLedger
from gps_env.policy import PolicyConfig, warm_start
from gps_env.pool import PromptPool

__version__ = "0.1.0"

register(id="gps_env/PromptSelection-v0", entry_point="gps_env.env:PromptSelectionEnv")

__all__ = [
    "GRPOConfig",
    "GRPOTrainer",
    "PolicyConfig",
    "PromptBatch",
    "PromptPool",
    "PromptSelectionEnv",
    "RolloutEngine",
    "RolloutLedger",
    "Rollouts",
    "SamplingParams",
    "TransformersEngine",
    "warm_start",
]
