"""Selector agents: ``agent = Agent(env, seed=0)`` then ``env.step(agent.act(obs))``.

Names load on first use, so the model-free agents (``Uniform``, ``DynamicSampling``, ``MoPPS``, ``Pairing``)
import without torch; ``GPS`` and ``LearnedSelector`` need it. The bench's and the integrations' registry of
named selectors is :mod:`gps_env.agents.registry`.
"""

from __future__ import annotations

from gps_env._lazy import lazy_exports

_EXPORTS = {
    "DPS": "gps_env.agents.dps",
    "GPS": "gps_env.agents.gps",
    "GPSMemory": "gps_env.agents.gps_memory",
    "GPSNeighbours": "gps_env.agents.gps_neighbours",
    "GRESO": "gps_env.agents.greso",
    "Learnability": "gps_env.agents.learnability",
    "PromptReplay": "gps_env.agents.prompt_replay",
    "SpeedRL": "gps_env.agents.speed_rl",
    "DynamicSampling": "gps_env.agents.dynamic_sampling",
    "LearnedSelector": "gps_env.agents.learned",
    "MoPPS": "gps_env.agents.mopps",
    "Pairing": "gps_env.agents.pairing",
    "SelectorAgent": "gps_env.agents.base",
    "Uniform": "gps_env.agents.uniform",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
