"""Gymnasium wrappers around the prompt-selection envs."""

from gps_env.wrappers.candidate_window import CandidateWindow

__all__ = ["CandidateWindow"]
