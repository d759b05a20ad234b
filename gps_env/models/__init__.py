"""Predictive models of prompt success used by selector agents."""

from gps_env.models.ppm import PPM, PPMConfig

__all__ = ["PPM", "PPMConfig"]
