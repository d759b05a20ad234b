"""Rollout engines: the contract, and the transformers engine for CPUs."""

from gps_env.engines.base import RolloutEngine, Rollouts, SamplingParams
from gps_env.engines.transformers_engine import TransformersEngine

__all__ = ["RolloutEngine", "Rollouts", "SamplingParams", "TransformersEngine"]
