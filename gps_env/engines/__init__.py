"""Rollout engines: the contract, the transformers engine for CPUs, and vLLM (imported on first use)."""

from gps_env.engines.base import RolloutEngine, Rollouts, SamplingParams
from gps_env.engines.transformers_engine import TransformersEngine
from gps_env.engines.vllm_engine import ENGINE_NAMES, VLLMEngine, build_engine, resolve_engine

__all__ = [
    "ENGINE_NAMES", "RolloutEngine", "Rollouts", "SamplingParams", "TransformersEngine", "VLLMEngine", "build_engine",
    "resolve_engine",
]
