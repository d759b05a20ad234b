"""The benchmark's configuration: what defines a results directory, its presets and the rule for growing it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The selector every other is measured against.
BASELINE = "uniform"
CONFIG_VERSION = 1
#: ``--full``: the setting of the reproduction report (docs/results.md).
FULL = {"seeds": "0,1,2", "steps": 300, "evals": 6}
#: Without ``--full`` (the README's main command: all five selectors in minutes on 2 CPU cores). ``evals``: held-out
#: evaluations over the budget (besides the one at step 0) when neither ``--steps`` nor ``--eval-every-rollouts``
#: is given; four, not six, keep the main command within 15 minutes on 2 cores, install included.
SMALL = {"seeds": "0", "steps": 100, "evals": 4}
#: ``--world``: the task mix and pool sizes of each world (flags given explicitly override them). The Reasoning
#: Gym world holds out 500 prompts (50 per family): an evaluation samples 4,000 rollouts, about 7 s on 2 cores.
#: ``reasoning-gym`` is its current version (v1); ``reasoning-gym-v0`` the first, kept for the runs made in it.
WORLDS = {
    "arithmetic": {"task_mix": "default", "pool_size": 1000, "heldout_size": 400},
    "reasoning-gym": {"task_mix": "reasoning_gym_v1", "pool_size": 20000, "heldout_size": 500},
    "reasoning-gym-v0": {"task_mix": "reasoning_gym", "pool_size": 20000, "heldout_size": 500},
}
DEFAULT_WORLD = "reasoning-gym"
#: The engine of benchmark directories written before ``config["engine"]`` existed.
LEGACY_ENGINE = "transformers"
#: Config keys a later invocation may extend (runs are keyed by selector and seed); nothing else may change.
GROWABLE = ("selectors", "seeds")


class ConfigError(ValueError):
    """A configuration that cannot be used; ``field`` names the offending key (None for the whole file)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigMismatch(ConfigError):
    """A directory's configuration differs from the requested one in keys that may not change (``keys``)."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__(f"different configuration (differs in: {', '.join(keys)})", keys[0] if keys else None)
        self.keys = list(keys)


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark directory's ``config.json``: the world, the budget and which (selector, seed) runs it holds.

    ``budget`` = steps * batch_size * k selector rollouts per run; held-out evaluations every
    ``eval_every_rollouts`` and at the budget. ``engine`` is the resolved rollout engine (the engines draw
    different random numbers, so runs of two engines are not mixed).
    """

    version: int
    selectors: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    k: int
    pool_size: int
    heldout_size: int
    task_mix: str
    world_seed: int
    budget: int
    eval_every_rollouts: int
    policy: str | None
    engine: str = LEGACY_ENGINE

    def __post_init__(self) -> None:
        object.__setattr__(self, "selectors", tuple(self.selectors))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        for name in ("version", "steps", "batch_size", "k", "pool_size", "heldout_size", "world_seed", "budget",
                     "eval_every_rollouts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, got {value!r}", name)
        for name in ("steps", "batch_size", "k", "pool_size", "heldout_size", "budget", "eval_every_rollouts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", name)
        if self.batch_size > self.pool_size:
            raise ConfigError(f"batch_size {self.batch_size} exceeds pool_size {self.pool_size}", "batch_size")
        if not self.selectors or not all(isinstance(s, str) and s for s in self.selectors):
            raise ConfigError(f"selectors must be a non-empty list of names, got {list(self.selectors)}", "selectors")
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ConfigError(f"seeds must be a non-empty list of integers, got {list(self.seeds)}", "seeds")
        for name in ("selectors", "seeds"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ConfigError(f"{name} has duplicates: {list(values)}", name)
        for name in ("task_mix", "engine"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}", name)
        if self.policy is not None and not isinstance(self.policy, str):
            raise ConfigError(f"policy must be a path or null, got {self.policy!r}", "policy")

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def create(cls, selectors: Iterable[str], seeds: Iterable[int], steps: int, *, batch_size: int = 32,
               k: int = 8, pool_size: int = 1000, heldout_size: int = 400, task_mix: str = "default",
               eval_every_rollouts: int | None = None, policy: str | None = None, engine: str = LEGACY_ENGINE,
               world_seed: int = 0, known_selectors: Iterable[str] | None = None,
               known_mixes: Iterable[str] | None = None, evals: int = FULL["evals"]) -> BenchConfig:
        """A new configuration: the baseline is put first if missing, duplicates dropped, the budget and the
        default evaluation period (budget/``evals``, a multiple of B*k) computed. Names are checked against
        ``known_selectors`` / ``known_mixes`` when given."""
        selectors = list(dict.fromkeys(selectors))
        if known_selectors is not None:
            known = list(known_selectors)
            unknown = [s for s in selectors if s not in known]
            if unknown:
                raise ConfigError(f"unknown selector(s) {', '.join(unknown)}; valid: {', '.join(known)}",
                                  "selectors")
        if BASELINE not in selectors:
            selectors.insert(0, BASELINE)
        if known_mixes is not None:
            mixes = sorted(known_mixes)
            if task_mix not in mixes:
                raise ConfigError(f"unknown task mix {task_mix!r}; valid: {', '.join(mixes)}", "task_mix")
        for name, value in (("steps", steps), ("batch_size", batch_size), ("k", k)):
            if value < 1:  # checked here as the budget is computed from them
                raise ConfigError(f"{name} must be >= 1, got {value}", name)
        bk = batch_size * k
        budget = steps * bk
        if eval_every_rollouts is None:
            if evals < 1:
                raise ConfigError(f"evals must be >= 1, got {evals}", "eval_every_rollouts")
            eval_every_rollouts = max(bk, round(budget / evals / bk) * bk)
        return cls(version=CONFIG_VERSION, selectors=tuple(selectors), seeds=tuple(dict.fromkeys(seeds)),
                   steps=steps, batch_size=batch_size, k=k, pool_size=pool_size, heldout_size=heldout_size,
                   task_mix=task_mix, world_seed=world_seed, budget=budget, eval_every_rollouts=eval_every_rollouts,
                   policy=policy, engine=engine)

    def replace(self, **changes: Any) -> BenchConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` content: every field in order, lists for the selectors and seeds."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["selectors"], d["seeds"] = list(self.selectors), list(self.seeds)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchConfig:
        """A configuration read back; one without ``engine`` (written before the key existed) is a transformers one."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a configuration is a JSON object, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown key(s): {', '.join(unknown)}", unknown[0])
        values = {"engine": LEGACY_ENGINE, **data}
        missing = [n for n in names if n not in values]
        if missing:
            raise ConfigError(f"missing key(s): {', '.join(missing)}", missing[0])
        for name in GROWABLE:
            if not isinstance(values[name], (list, tuple)):
                raise ConfigError(f"{name} must be a list, got {values[name]!r}", name)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> BenchConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not valid JSON ({exc})") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------------------------------------ growing
    def differing_keys(self, other: BenchConfig) -> list[str]:
        """The keys, other than the growable ones, whose values differ between the two configurations."""
        return sorted(f.name for f in dataclasses.fields(self)
                      if f.name not in GROWABLE and getattr(self, f.name) != getattr(other, f.name))

    def grown(self, requested: BenchConfig) -> BenchConfig:
        """This directory's configuration extended by ``requested``'s selectors and seeds (existing ones first).

        Raises:
            ConfigMismatch: ``requested`` differs in anything else (its ``keys`` name what).
        """
        diff = self.differing_keys(requested)
        if diff:
            raise ConfigMismatch(diff)
        return dataclasses.replace(
            self, **{key: tuple(dict.fromkeys([*getattr(self, key), *getattr(requested, key)])) for key in GROWABLE})


def as_config(config: BenchConfig | Mapping[str, Any]) -> BenchConfig:
    """``config`` as a :class:`BenchConfig` (a mapping is read as ``config.json`` is)."""
    return config if isinstance(config, BenchConfig) else BenchConfig.from_dict(config)
