"""Selector agents: ``agent = Agent(env, seed=0)`` then ``env.step(agent.act(obs))``."""

from gps_env.agents.base import SelectorAgent
from gps_env.agents.uniform import Uniform

__all__ = ["SelectorAgent", "Uniform"]
