"""Run gps-env agents inside external RL trainers: verl (:mod:`gps_env.integrations.verl`) and TRL
(:mod:`gps_env.integrations.trl`). Those modules import their framework; this package imports neither.
"""

from gps_env.integrations.feedback import (
    FeedbackLoop,
    FeedbackPool,
    FeedbackView,
    MissingPromptIndexError,
    make_agent,
)

__all__ = ["FeedbackLoop", "FeedbackPool", "FeedbackView", "MissingPromptIndexError", "make_agent"]
