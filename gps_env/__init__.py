"""gps-env: prompt selection for RL post-training of reasoning LLMs, as a Gymnasium environment.

``import gps_env`` registers ``"gps_env/PromptSelection-v0"`` (the embedded world, a real LM)::

    env = gymnasium.make("gps_env/PromptSelection-v0", batch_size=32, rollouts_per_prompt=8)

and ``"gps_env/SimulatedPromptSelection-v0"``, a calibrated item-response model with the same contract for
selector research at paper scale (docs/simulated.md).
"""

from gymnasium.envs.registration import register

from gps_env.engines import RolloutEngine, Rollouts, SamplingParams, TransformersEngine
from gps_env.env import PromptBatch, PromptSelectionEnv
from gps_env.grpo import GRPOConfig, GRPOTrainer
from gps_env.ledger import RolloutLedger
from gps_env.policy import PolicyConfig, warm_start
from gps_env.pool import PromptPool
from gps_env.simulated import SimConfig, SimulatedPromptSelectionEnv

__version__ = "0.1.0"

register(id="gps_env/PromptSelection-v0", entry_point="gps_env.env:PromptSelectionEnv")
register(id="gps_env/SimulatedPromptSelection-v0", entry_point="gps_env.simulated:SimulatedPromptSelectionEnv")

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
    "SimConfig",
    "SimulatedPromptSelectionEnv",
    "TransformersEngine",
    "warm_start",
]
