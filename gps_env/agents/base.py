"""The selector-agent protocol: ``act(obs) -> action``, seeded, with its state in a state dict.

Bad input is refused with a ``ValueError`` naming the argument, observation key or state key, before anything
changes: constructor arguments when the agent is built (the ``check_*`` helpers below), observations in
:meth:`SelectorAgent.act`, states in :meth:`SelectorAgent.load_state_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from gps_env.spec import AgentSpec

#: Seeds are integers in [0, 2**64): what numpy's and torch's generators both take.
SEED_LIMIT = 2**64


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def finite_real(value: Any) -> int | float | None:
    """``value`` if it is a real number (Python or numpy; not bool, not a string or array) whose float is finite,
    else None."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    try:
        return value if math.isfinite(float(value)) else None
    except OverflowError:  # an integer beyond float range: the agents compute in floats
        return None


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False) -> Any:
    """``value`` unchanged if it is a finite real number within ``[low, high]`` (``(low, high]`` with
    ``low_open``), else ``ValueError`` naming ``name``."""
    x = finite_real(value)
    ok = x is not None and (low is None or (x > low if low_open else x >= low)) and (high is None or x <= high)
    if not ok:
        bounds = f"{'(' if low_open else '['}{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {describe(value)}")
    return value


def check_integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``int(value)`` if it is an integer (Python or numpy, not bool) within ``[low, high]``, else ValueError."""
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if ok and ((low is not None and value < low) or (high is not None and value > high)):
        ok = False
    if not ok:
        bounds = f" in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name} must be an integer{bounds}, got {describe(value)}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (Python or numpy), else ``ValueError`` naming ``name``."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of the strings ``choices``, else ``ValueError`` naming ``name``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {describe(value)}")
    return value


def check_band(name: str, band: Any) -> tuple[float, float]:
    """``(low, high)`` with ``0 <= low <= high <= 1`` (finite numbers), else ``ValueError`` naming ``name``."""
    try:
        if isinstance(band, str) or not hasattr(band, "__len__"):
            raise TypeError
        low, high = band
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {describe(band)}") from None
    if finite_real(low) is None or finite_real(high) is None or not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"{name} must be (low, high) with 0 <= low <= high <= 1, got {describe(band)}")
    return float(low), float(high)


def check_array(name: str, value: Any, shape: tuple[int | None, ...], kinds: str = "iuf", *,
                low: float | None = None, high: float | None = None, where: str = "state") -> np.ndarray:
    """``value`` as an array if it has ``shape`` (None: any length), a dtype of one of the numpy ``kinds`` and,
    if real, finite values within ``[low, high]``; else ``ValueError`` naming ``name`` (``where`` says whose:
    "state", "observation")."""
    if not isinstance(value, np.ndarray | list | tuple):
        raise ValueError(f"{where} {name!r} must be an array of shape {shape}, got {type(value).__name__}")
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} {name!r} is not an array: {describe(value)}") from None
    if a.ndim != len(shape) or any(want is not None and got != want for got, want in zip(a.shape, shape)):
        raise ValueError(f"{where} {name!r} has shape {a.shape}, expected {shape}")
    if a.size == 0 and a.dtype.kind == "f":
        return a  # an empty list is a float64 array
    if a.dtype.kind not in kinds:
        raise ValueError(f"{where} {name!r} has dtype {a.dtype}, expected {_KIND_NAMES[kinds]}")
    if a.size and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"{where} {name!r} contains NaN or inf")
    if a.size and ((low is not None and a.min() < low) or (high is not None and a.max() > high)):
        raise ValueError(f"{where} {name!r} has values outside [{low}, {high}]")
    return a


def check_ids(name: str, value: Any, length: int | None, pool_size: int, where: str = "state") -> np.ndarray:
    """``value`` as int64 if it holds distinct prompt ids in ``[0, pool_size)`` (``length`` of them; None: any
    number), else ``ValueError`` naming ``name``."""
    ids = check_array(name, value, (length,), "iu", where=where)
    if ids.size and (ids.min() < 0 or ids.max() >= pool_size):
        raise ValueError(f"{where} {name!r} holds prompt ids outside [0, {pool_size})")
    if np.unique(ids).size != ids.size:
        raise ValueError(f"{where} {name!r} repeats a prompt id")
    return ids.astype(np.int64)


_KIND_NAMES = {"iuf": "real numbers", "iu": "integers"}

#: The observation keys of every prompt-selection env: their shapes as functions of (N, B, k), what sets them
#: and the numpy dtype kinds accepted.
_OBS_KEYS = {
    "times_selected": (lambda n, b, k: (n,), "a pool of N={n} prompts", "iuf"),
    "rollouts": (lambda n, b, k: (n,), "a pool of N={n} prompts", "iuf"),
    "successes": (lambda n, b, k: (n,), "a pool of N={n} prompts", "iuf"),
    "last_seen": (lambda n, b, k: (n,), "a pool of N={n} prompts", "iuf"),
    "last_batch": (lambda n, b, k: (b,), "batches of B={b} prompts", "iu"),
    "last_rewards": (lambda n, b, k: (b, k), "B={b} prompts of k={k} rollouts", "iuf"),
    "step": (lambda n, b, k: (1,), "one step count", "iu"),
    "rollouts_spent": (lambda n, b, k: (1,), "one rollout count", "iuf"),
}


def _check_rng_state(name: str, value: Any, own: Any) -> None:
    """``value`` is a state of the bit generator ``own`` (same kind, same layout, loadable)."""

    def same_layout(v: Any, template: Any) -> bool:
        if isinstance(template, Mapping):
            return isinstance(v, Mapping) and set(v) == set(template) and all(
                same_layout(v[key], template[key]) for key in template)
        if isinstance(template, np.ndarray):
            return isinstance(v, np.ndarray) and v.shape == template.shape and v.dtype == template.dtype
        if isinstance(template, str):
            return v == template
        return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) and v >= 0

    template = own.state
    kind = template["bit_generator"]
    if not isinstance(value, Mapping) or value.get("bit_generator") != kind:
        found = value.get("bit_generator") if isinstance(value, Mapping) else type(value).__name__
        raise ValueError(f"state {name!r} is not a {kind} bit-generator state (got {describe(found)})")
    if not same_layout(value, template):
        raise ValueError(f"state {name!r} is not a valid {kind} bit-generator state")
    try:
        type(own)().state = value
    except (TypeError, ValueError, KeyError, OverflowError):
        raise ValueError(f"state {name!r} is not a valid {kind} bit-generator state") from None


class SelectorAgent:
    """Base class of selector agents.

    An agent is built on what it may see of the world, an :class:`~gps_env.spec.AgentSpec` (pool size, batch
    size, k, prompt embeddings on first use, an optional probe): pass the env (wrapped or not; its spec is
    read once) or a spec built by a trainer integration. It learns from the feedback in each observation
    inside :meth:`act` (at most once per step: it remembers the last step it learnt from) and picks the next
    batch.

    Subclasses implement :meth:`select` and, if they learn, :meth:`observe`; they list the observation keys
    they read in ``observation_keys`` and the keys of their :meth:`state_dict` in ``state_keys``, and check
    their own state entries in :meth:`check_state_dict` and restore them in ``_set_state``.

    Args:
        env: the env (wrapped or not) or an :class:`~gps_env.spec.AgentSpec`.
        seed: an integer in [0, 2**64) (Python or numpy; not bool), seeding the agent's generators.
    """

    #: Observation keys the agent reads: a subclass lists its own; these two every agent reads.
    observation_keys: tuple[str, ...] = ("step", "times_selected")
    #: Keys of :meth:`state_dict`, exactly.
    state_keys: tuple[str, ...] = ("rng", "learnt_step")

    def __init__(self, env: Any, seed: int = 0) -> None:
        self.seed = check_integer("seed", seed, 0, SEED_LIMIT - 1)
        self.spec = AgentSpec.of(env)
        self.pool_size = self.spec.pool_size
        self.batch_size = self.spec.batch_size
        self.k = self.spec.k
        self.rng = np.random.default_rng(self.seed)
        self._learnt_step = 0

    def act(self, obs: dict[str, np.ndarray]) -> Any:
        """Learn from the last step's feedback (once), then return the next action.

        Raises:
            ValueError: ``obs`` is not an observation of this agent's world (a key it reads is missing, or an
                array has another shape than its pool size N, batch size B and k give), naming the key; the
                agent is left unchanged.
        """
        self.check_observation(obs)
        step = int(obs["step"][0])
        if step < self._learnt_step:  # a new episode began: forget the old one
            self.reset()
        if step > self._learnt_step:
            self.observe(obs)
            self._learnt_step = step
        return self.select(obs)

    def check_observation(self, obs: Any) -> None:
        """Raise ``ValueError`` naming the key unless ``obs`` is an observation this agent can act on."""
        if not isinstance(obs, Mapping):
            raise ValueError(f"an observation is a dict of arrays, got {type(obs).__name__}")
        keys = dict.fromkeys((*SelectorAgent.observation_keys, *self.observation_keys))
        missing = [key for key in keys if key not in obs]
        if missing:
            raise ValueError(f"the observation has no {', '.join(map(repr, missing))}, which "
                             f"{type(self).__name__} reads")
        n, b, k = self.pool_size, self.batch_size, self.k
        for key, (shape_of, what, kinds) in _OBS_KEYS.items():
            if key not in obs:
                continue
            try:
                value = np.asarray(obs[key])
            except (TypeError, ValueError):
                raise ValueError(f"observation {key!r} is not an array: {describe(obs[key])}") from None
            expected = shape_of(n, b, k)
            if value.shape != expected:
                raise ValueError(f"observation {key!r} has shape {value.shape}, but this agent was built for "
                                 f"{what.format(n=n, b=b, k=k)} (shape {expected})")
            if value.dtype.kind not in kinds:
                raise ValueError(f"observation {key!r} has dtype {value.dtype}, expected {_KIND_NAMES[kinds]}")
        step = obs["step"][0]
        if not 0 <= step < 2**63:  # an int64 step count (a uint64 beyond would overflow the agents' arrays)
            raise ValueError(f"observation 'step' must be in [0, 2**63), got {step}")
        if step >= 1:  # a batch was trained: the agents that read it learn from it
            if "last_batch" in keys:
                check_ids("last_batch", obs["last_batch"], b, n, where="observation")
            if "last_rewards" in keys:
                check_array("last_rewards", obs["last_rewards"], (b, k), low=0.0, high=1.0, where="observation")

    def predict(self, obs: dict[str, np.ndarray], state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[Any, Any]:
        """Stable-Baselines3's ``predict`` signature, so SB3 evaluation tools can run any selector."""
        return self.act(obs), state

    def observe(self, obs: dict[str, np.ndarray]) -> None:
        """Update beliefs from ``obs["last_batch"]`` and ``obs["last_rewards"]`` (default: nothing)."""

    def select(self, obs: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget what was learnt (the env started a new episode)."""
        self._learnt_step = 0

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "learnt_step": self._learnt_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an agent of this class on a world of this size.

        Raises:
            ValueError: ``state`` is not one (a key missing or extra, a value of another type or shape; the
                message names the key); the agent is left unchanged.
        """
        self.check_state_dict(state)
        self._set_state(state)

    def check_state_dict(self, state: Any) -> None:
        """Raise ``ValueError`` naming the key unless :meth:`load_state_dict` can restore ``state``.

        Subclasses extend it (``super().check_state_dict(state)`` first: it checks the keys).
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"an agent state is a dict, got {type(state).__name__}")
        expected = set(self.state_keys)
        missing, extra = sorted(expected - set(state)), sorted(map(str, set(state) - expected))
        if missing or extra:
            parts = ([f"lacks {', '.join(map(repr, missing))}"] if missing else []) + (
                [f"has unknown {', '.join(map(repr, extra))}"] if extra else [])
            raise ValueError(f"not a {type(self).__name__} state: it {' and '.join(parts)}")
        _check_rng_state("rng", state["rng"], self.rng.bit_generator)
        check_integer("state 'learnt_step'", state["learnt_step"], 0)

    def _set_state(self, state: Mapping[str, Any]) -> None:
        """Restore a state :meth:`check_state_dict` accepted (subclasses: ``super()._set_state(state)`` too)."""
        self.rng.bit_generator.state = state["rng"]
        self._learnt_step = int(state["learnt_step"])
