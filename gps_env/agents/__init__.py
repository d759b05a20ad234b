"""Selector agents: ``agent = Agent(env, seed=0)`` then ``env.step(agent.act(obs))``.

Names load on first use, so the model-free agents (``Uniform``, ``DynamicSampling``, ``MoPPS``, ``Pairing``)
import without torch; ``GPS`` and ``LearnedSelector`` need it. The bench's and the integrations' registry of
named selectors is :mod:`gps_env.agents.registry`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GPS": "gps_env.agents.gps",
    "DynamicSampling": "gps_env.agents.dynamic_sampling",
    "LearnedSelector": "gps_env.agents.learned",
    "MoPPS": "gps_env.agents.mopps",
    "Pairing": "gps_env.agents.pairing",
    "SelectorAgent": "gps_env.agents.base",
    "Uniform": "gps_env.agents.uniform",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gps_env.agents' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
