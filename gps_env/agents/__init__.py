"""Selector agents: ``agent = Agent(env, seed=0)`` then ``env.step(agent.act(obs))``."""

from gps_env.agents.base import SelectorAgent
from gps_env.agents.dynamic_sampling import DynamicSampling
from gps_env.agents.gps import GPS
from gps_env.agents.learned import LearnedSelector
from gps_env.agents.mopps import MoPPS
from gps_env.agents.pairing import Pairing
from gps_env.agents.uniform import Uniform

__all__ = ["GPS", "DynamicSampling", "LearnedSelector", "MoPPS", "Pairing", "SelectorAgent", "Uniform"]
