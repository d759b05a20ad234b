"""Every selector known by name: the bench's ``--selectors`` and the integrations' ``agent=`` argument.

An entry names its agent by ``"package.module:attribute"`` (a class or a factory ``(env, seed=..., **kw)``)
and holds its fixed settings; the agent's module is imported only when the entry is called, so this module
imports without torch::

    agent = SELECTORS["gps-m"](env, seed)                 # GPSMemory(env, seed=seed)
    agent = build_selector("mopps", env, seed=1)           # a registry name
    agent = build_selector("GPS", env, kwargs={"lam": 0})  # a class of gps_env.agents, or "pkg.mod:name"

``SELECTORS`` is one dict, shared by every importer: replacing an entry (``SELECTORS["mopps"] = factory``, as
tests do) changes what the bench runs. A replacement only needs to be callable as ``factory(env, seed)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def load_target(target: str) -> Callable[..., Any]:
    """The object named by ``"package.module:attribute"`` (a dotted attribute path is followed)."""
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"a selector target is 'package.module:name', got {target!r}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class SelectorEntry:
    """A named selector: ``entry(env, seed, **overrides)`` is ``target(env, seed=seed, **kwargs, **overrides)``.

    Attributes:
        target: ``"package.module:attribute"``, a class or a factory ``(env, seed=..., **kwargs) -> agent``.
        kwargs: the entry's fixed settings (read-only; overrides given at call time win, key by key).
        summary: one line for ``--help`` and the docs.
        probes: True if the agent spends extra rollouts through ``env.probe`` before choosing, which an
            external trainer (verl, TRL) cannot serve.
    """

    target: str
    kwargs: Mapping[str, Any]
    summary: str
    probes: bool = False

    def __post_init__(self) -> None:
        if ":" not in self.target:
            raise ValueError(f"target must be 'package.module:name', got {self.target!r}")
        object.__setattr__(self, "kwargs", _freeze(dict(self.kwargs)))

    def __call__(self, env: Any, seed: int = 0, **overrides: Any) -> Any:
        factory = load_target(self.target)
        return factory(env, seed=seed, **{**_thaw(self.kwargs), **overrides})

    def describe(self) -> str:
        """``target(k=v, ...)``: what the entry builds."""
        args = ", ".join(f"{k}={_thaw(v)!r}" for k, v in self.kwargs.items())
        return f"{self.target.rpartition(':')[2]}({args})"


_GPS = "gps_env.agents.gps:GPS"
_GPS_M = "gps_env.agents.gps_memory:GPSMemory"
_PAIRING = "gps_env.agents.pairing:Pairing"

#: Selector factories ``(env, seed) -> agent``, by name: the five selectors, then variants (GPS's readings
#: and ablations, GPS-M, the pairing paper's fixed pair), the 2025–26 selectors and the PPO selector
#: trained on the simulated world (``benchmarks/train_learned_selector.py``).
SELECTORS: dict[str, SelectorEntry] = {
    "uniform": SelectorEntry("gps_env.agents.uniform:Uniform", {}, "B prompts uniformly at random (the baseline)"),
    "ds": SelectorEntry("gps_env.agents.dynamic_sampling:DynamicSampling", {},
                        "dynamic sampling (DAPO): probe and keep prompts with mixed outcomes", probes=True),
    "mopps": SelectorEntry("gps_env.agents.mopps:MoPPS", {},
                           "MoPPS: Beta posteriors, Thompson sampling towards success rate 0.5"),
    "pairing": SelectorEntry(_PAIRING, {"refresh_every": 25},
                             "pairing: probed hard/easy prompt pairs, re-selected every 25 steps", probes=True),
    "gps": SelectorEntry(_GPS, {}, "GPS: the predictive prompt model and greedy max-sum diversity over 4B "
                                   "random candidates"),
    "gps-m": SelectorEntry(_GPS_M, {},
                           "GPS-M (ours): GPS whose predictions are corrected by each prompt's own outcomes"),
    "gps-n": SelectorEntry("gps_env.agents.gps_neighbours:GPSNeighbours", {},
                           "GPS-N (ours): GPS-M whose prior is corrected by the nearest already-seen prompts"),
    # GPS's other readings (docs/gps.md), each one change from the default
    "gps-pool": SelectorEntry(_GPS, {"candidates": None}, "GPS reading: the greedy over the whole pool"),
    "gps-c8": SelectorEntry(_GPS, {"candidates": 8}, "GPS reading: 8B random candidates"),
    "gps-c16": SelectorEntry(_GPS, {"candidates": 16}, "GPS reading: 16B random candidates"),
    "gps-min": SelectorEntry(_GPS, {"diversity": "min"}, "GPS reading: max-min diversity (PDTS)"),
    "gps-thompson": SelectorEntry(_GPS, {"draws": "thompson"}, "GPS reading: one latent draw per step (PDTS)"),
    "gps-warmup": SelectorEntry(_GPS, {"warmup": 10}, "GPS reading: 10 uniform steps first (PDTS)"),
    "gps-epoch": SelectorEntry(_GPS, {"candidate_order": "epoch"},
                               "GPS reading: candidates dealt as a shuffled dataloader's batches (verl, MoPPS code)"),
    "gps-pdts": SelectorEntry(_GPS, {"diversity": "min", "draws": "thompson", "candidates": 64, "warmup": 10},
                              "GPS with the conventions of its ancestor PDTS's code"),
    "gps-lam0": SelectorEntry(_GPS, {"lam": 0.0}, "GPS ablation: no diversity term (lam=0)"),
    "gps-nolatent": SelectorEntry(_GPS, {"ppm": {"latent_mode": "none"}},
                                  "GPS ablation: the prompt model without its latent state"),
    "gps-nointer": SelectorEntry(_GPS, {"inter_step": False}, "GPS ablation: no distance to the previous batch"),
    # (ours) coverage: a prompt picked in the last 10 steps is not a candidate (docs/gps.md, "Cooldown")
    "gps-cool": SelectorEntry(_GPS, {"cooldown": 10}, "GPS with a 10-step cooldown (ours)"),
    "gps-m-cool": SelectorEntry(_GPS_M, {"cooldown": 10}, "GPS-M with a 10-step cooldown (ours)"),
    "gps-m-c8": SelectorEntry(_GPS_M, {"candidates": 8}, "GPS-M over 8B random candidates (ours)"),
    "gps-m-c16": SelectorEntry(_GPS_M, {"candidates": 16, "cooldown": 10},
                               "GPS-M over 16B candidates with a 10-step cooldown (ours)"),
    # the ablations of the whole-pool reading (the default until December 2026), kept so their runs stay readable
    "gps-pool-lam0": SelectorEntry(_GPS, {"candidates": None, "lam": 0.0}, "GPS over the whole pool, lam=0"),
    "gps-pool-nolatent": SelectorEntry(_GPS, {"candidates": None, "ppm": {"latent_mode": "none"}},
                                       "GPS over the whole pool, without the latent"),
    "gps-pool-nointer": SelectorEntry(_GPS, {"candidates": None, "inter_step": False},
                                      "GPS over the whole pool, no distance to the previous batch"),
    "pairing-fixed": SelectorEntry(_PAIRING, {}, "pairing as in its paper: one pair set, never refreshed",
                                   probes=True),
    "greso": SelectorEntry("gps_env.agents.greso:GRESO", {},
                           "GRESO: skip recently all-correct/all-wrong prompts before rollout, skip rates adapted"),
    "greso-probe": SelectorEntry("gps_env.agents.greso:GRESO", {"probe": True},
                                 "GRESO's published loop: probe survivors, train mixed groups (probes charged)",
                                 probes=True),
    "dps": SelectorEntry("gps_env.agents.dps:DPS", {},
                         "DPS: per-prompt 3-state Bayesian HMM with decay; top-B by predicted P(partial)"),
    "speed-rl": SelectorEntry("gps_env.agents.speed_rl:SpeedRL", {},
                              "SPEED-RL: screen prompts with probes, continue the mixed ones, carry surplus over",
                              probes=True),
    "learnability": SelectorEntry("gps_env.agents.learnability:Learnability", {},
                                  "LILO: probe 4B random prompts, train the top-B by p(1-p) (probes charged)",
                                  probes=True),
    "prompt-replay": SelectorEntry("gps_env.agents.prompt_replay:PromptReplay", {},
                                   "Prompt Replay: fresh prompts plus replays of prompts near p=0.5, cooldown, cap"),
    "ppo": SelectorEntry("gps_env.agents.learned:pretrained", {},
                         "the shipped PPO selector trained on the simulated world (B=32 only)"),
    "ppo-forgetting": SelectorEntry("gps_env.agents.learned:pretrained_forgetting", {},
                                    "the PPO selector trained on the simulated world with the fitted forgetting "
                                    "(B=32 only)"),
}
#: What ``gps-env bench`` runs without ``--selectors``.
MAIN_SELECTORS = ("uniform", "ds", "mopps", "pairing", "gps")


def _agent_class_names() -> list[str]:
    from gps_env import agents  # the package's names load lazily: this imports no agent module

    return list(agents.__all__)


def build_selector(spec: str | Callable[..., Any], env: Any, seed: int = 0,
                   kwargs: Mapping[str, Any] | None = None) -> Any:
    """Build an agent on ``env`` from ``spec``.

    ``spec`` is a registry name (``"mopps"``, ``"gps-m"``), a class name in :mod:`gps_env.agents`
    (``"MoPPS"``, ``"GPS"``), a ``"package.module:name"`` path to a class or factory, or a callable
    ``(env, seed=..., **kwargs) -> agent``. ``kwargs`` go to the factory (over a registry entry's settings).
    """
    kwargs = dict(kwargs or {})
    if not isinstance(spec, str):
        if not callable(spec):
            raise TypeError(f"a selector is a name or a callable, got {type(spec).__name__}")
        return spec(env, seed=seed, **kwargs)
    if spec in SELECTORS:
        return SELECTORS[spec](env, seed=seed, **kwargs)
    if ":" in spec:
        return load_target(spec)(env, seed=seed, **kwargs)
    classes = _agent_class_names()
    if spec in classes:
        from gps_env import agents

        return getattr(agents, spec)(env, seed=seed, **kwargs)
    raise ValueError(f"unknown selector {spec!r}: use a registry name ({', '.join(SELECTORS)}), a class name "
                     f"of gps_env.agents ({', '.join(classes)}) or 'package.module:name'")


def selector_help() -> str:
    """One line per registry entry, for ``--help``."""
    width = max(map(len, SELECTORS))
    return "\n".join(f"  {name:<{width}}  {getattr(entry, 'summary', '')}" for name, entry in SELECTORS.items())
