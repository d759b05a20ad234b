"""Run gps-env agents inside external RL trainers: verl (:mod:`gps_env.integrations.verl`: the 0.7 sampler
and the 0.9 trainer; :mod:`gps_env.integrations.verl_v1`: the V1 trainer's replay buffer) and TRL
(:mod:`gps_env.integrations.trl`; :mod:`gps_env.integrations.trl_dynamic`: DAPO's dynamic sampling). Those
modules import their framework; this package imports neither.
Agents are named as in the bench (:mod:`gps_env.agents.registry`).
"""

from gps_env.integrations.feedback import FeedbackLoop, MissingPromptIndexError, prompt_text, trainer_spec

__all__ = ["FeedbackLoop", "MissingPromptIndexError", "prompt_text", "trainer_spec"]
