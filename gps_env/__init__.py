"""gps-env: prompt selection for RL post-training of reasoning LLMs, as a Gymnasium environment.

``import gps_env`` registers ``"gps_env/PromptSelection-v0"`` (the embedded world, a real LM)::

    env = gymnasium.make("gps_env/PromptSelection-v0", batch_size=32, rollouts_per_prompt=8)

``"gps_env/ReasoningGym-v1"`` (the same env in the Reasoning Gym world: ten families, 20,000 training
prompts, half of them at the easy level; docs/world.md; ``-v0`` draws the three levels equally), and
``"gps_env/SimulatedPromptSelection-v0"``, a calibrated item-response model with the same contract for
selector research at paper scale (docs/simulated.md).

The names below load on first use (PEP 562), so ``import gps_env.simulated``, the contract, the selectors and
the model-free agents do not import torch.
"""

from __future__ import annotations

from gymnasium.envs.registration import register

from gps_env._lazy import lazy_exports

__version__ = "0.1.0"

register(id="gps_env/PromptSelection-v0", entry_point="gps_env.env:PromptSelectionEnv")
register(id="gps_env/ReasoningGym-v0", entry_point="gps_env.env:PromptSelectionEnv",
         kwargs={"task_mix": "reasoning_gym", "pool_size": 20000, "heldout_size": 500})
register(id="gps_env/ReasoningGym-v1", entry_point="gps_env.env:PromptSelectionEnv",
         kwargs={"task_mix": "reasoning_gym_v1", "pool_size": 20000, "heldout_size": 500})
register(id="gps_env/SimulatedPromptSelection-v0", entry_point="gps_env.simulated:SimulatedPromptSelectionEnv")

#: public name -> module that defines it
_EXPORTS = {
    "AgentSpec": "gps_env.spec",
    "GRPOConfig": "gps_env.grpo",
    "GRPOTrainer": "gps_env.grpo",
    "PolicyConfig": "gps_env.policy",
    "PromptBatch": "gps_env.actions",
    "PromptHistory": "gps_env.history",
    "PromptPool": "gps_env.pool",
    "PromptSelectionContract": "gps_env.contract",
    "PromptSelectionEnv": "gps_env.env",
    "RolloutEngine": "gps_env.engines",
    "RolloutLedger": "gps_env.ledger",
    "Rollouts": "gps_env.engines",
    "SamplingParams": "gps_env.engines",
    "SimConfig": "gps_env.simulated",
    "SimulatedPromptSelectionEnv": "gps_env.simulated",
    "TransformersEngine": "gps_env.engines",
    "warm_start": "gps_env.policy",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
