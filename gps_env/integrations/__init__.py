"""Run gps-env agents inside external RL trainers: verl (:mod:`gps_env.integrations.verl`) and TRL
(:mod:`gps_env.integrations.trl`). Those modules import their framework; this package imports neither.
Agents are named as in the bench (:mod:`gps_env.agents.registry`).
"""

from gps_env.integrations.feedback import FeedbackLoop, MissingPromptIndexError, prompt_text, trainer_spec

__all__ = ["FeedbackLoop", "MissingPromptIndexError", "prompt_text", "trainer_spec"]
