"""Every agent, fed what an adversarial user would feed it: bad constructor arguments, observations of another
world, corrupted states. Each is refused with a ValueError before anything changes, or works.

The simulated world keeps this fast (no policy, no tokenizer): a 200-prompt pool, B = 8, k = 8, 256-d embeddings.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gps_env.agents import (
    DPS,
    GPS,
    GRESO,
    DynamicSampling,
    GPSMemory,
    GPSNeighbours,
    Learnability,
    LearnedSelector,
    MoPPS,
    Pairing,
    PromptReplay,
    SpeedRL,
    Uniform,
)
from gps_env.models import PPMConfig
from gps_env.simulated import SimulatedPromptSelectionEnv

N, B, K = 200, 8, 8
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class ScoringPolicy:
    """A stand-in for an SB3 policy: scores candidates by their first feature (no observation_space, so any
    window size is accepted)."""

    def predict(self, observation: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return observation[:, 0] - 0.1 * observation[:, 4], None


def build(name: str, env: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("seed", 0)
    if name == "learned":
        return LearnedSelector(env, ScoringPolicy(), **kwargs)
    if name in ("gps", "gpsm", "gpsn"):
        kwargs.setdefault("ppm", PPMConfig(hidden=16, latent=4, layers=1, heads=2, samples=2, updates=1, replay=2))
    return {"uniform": Uniform, "ds": DynamicSampling, "mopps": MoPPS, "pairing": Pairing, "gps": GPS,
            "gpsm": GPSMemory, "gpsn": GPSNeighbours,
            "greso": GRESO, "dps": DPS, "speedrl": SpeedRL, "learnability": Learnability,
            "replay": PromptReplay}[name](env, **kwargs)


#: Each agent's constructor arguments (besides env and seed, which every agent takes).
ARGUMENTS = {
    "uniform": ["epochs"],
    "ds": ["gen_batch_size", "max_rounds", "band"],
    "mopps": ["prior", "decay", "ratio", "target", "mode", "band", "decay_every_step"],
    "pairing": ["c", "lambda_neg", "refresh_every", "candidates", "source"],
    "gps": ["lam", "target", "inter_step", "ppm", "distance", "candidates", "diversity", "warmup", "draws",
            "calibration", "calibration_window", "acquisition", "cooldown", "candidate_order"],
    "gpsm": ["strength", "decay", "posterior", "lam", "candidates", "diversity", "draws", "cooldown"],
    "gpsn": ["neighbours", "ppm_weight", "half_life", "strength", "decay", "posterior", "lam", "candidates"],
    "learned": ["candidates"],
    "greso": ["probe", "p_easy", "p_hard", "step_size", "bounds", "target_zero_variance", "keep_floor",
              "gen_batch_size", "max_rounds"],
    "dps": ["decay", "prior", "ratio"],
    "speedrl": ["gen_batch_size", "max_rounds", "carry_over"],
    "learnability": ["candidates"],
    "replay": ["replay_fraction", "cooldown", "max_reuse", "window"],
}
#: One configuration of each agent class whose state holds something pool-sized, and the others.
CONFIGS = {
    "uniform": {}, "uniform-epochs": {"epochs": True}, "ds": {}, "mopps": {}, "pairing": {"refresh_every": 2},
    "pairing-history": {"source": "history"}, "gps": {}, "gps-c2": {"candidates": 2},
    "gps-pool": {"candidates": None, "diversity": "sum", "draws": "mean"}, "gps-warmup": {"warmup": 2},
    "gps-cal": {"calibration": "isotonic", "calibration_window": 2},
    "gpsm": {}, "gpsm-pool": {"candidates": None, "posterior": "mean"}, "learned": {},
    "gpsn": {}, "gpsn-pool": {"candidates": None, "posterior": "mean", "neighbours": 3},
    "greso": {}, "greso-probe": {"probe": True}, "dps": {}, "speedrl": {}, "learnability": {}, "replay": {},
    "replay-eager": {"cooldown": 1},
}
POOL_SIZED = {"uniform-epochs", "mopps", "pairing", "pairing-history", "gps", "gps-c2", "gps-pool", "gps-warmup",
              "gps-cal",
              "gpsm", "gpsm-pool", "gpsn", "gpsn-pool", "greso", "greso-probe",
              "dps", "speedrl", "learnability", "replay", "replay-eager"}


def make(config: str, env: Any, seed: int = 0) -> Any:
    return build(config.split("-")[0], env, seed=seed, **CONFIGS[config])


def prompts_of(action: Any) -> np.ndarray:
    return np.asarray(action["prompts"] if isinstance(action, dict) else action)


def assert_valid_batch(action: Any) -> None:
    batch = prompts_of(action)
    assert batch.shape == (B,) and batch.dtype.kind == "i"
    assert len(np.unique(batch)) == B and batch.min() >= 0 and batch.max() < N


def same(a: Any, b: Any) -> bool:
    """Deep equality of states: dicts, sequences, numpy arrays, torch tensors (NaN-free by construction)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(
            same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple | deque):
        return isinstance(b, list | tuple | deque) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def world(pool_size: int = N, batch_size: int = B, k: int = K) -> SimulatedPromptSelectionEnv:
    """The simulated world (the same one for the same sizes: world_seed 0)."""
    return SimulatedPromptSelectionEnv(pool_size=pool_size, heldout_size=20, batch_size=batch_size,
                                       rollouts_per_prompt=k, eval_every=0, time_in_info=False)


def run(env: SimulatedPromptSelectionEnv, agent: Any, steps: int) -> dict[str, np.ndarray]:
    obs, _ = env.reset(seed=0)
    for _ in range(steps):
        obs, *_ = env.step(agent.act(obs))
    return obs


@pytest.fixture(scope="module")
def sim():
    """The world and an observation at step 2 (a batch to learn from)."""
    env = world()
    return env, run(env, Uniform(env, seed=1), 2)


@pytest.fixture(scope="module")
def later():
    """An observation of the same world at step 5 (after the trained agents' step 3)."""
    env = world()
    return run(env, Uniform(env, seed=2), 5)


@pytest.fixture(scope="module")
def foreign():
    """Observations of worlds with another B, k or N."""
    out = {}
    for other in ({"batch_size": 4}, {"k": 4}, {"pool_size": 150}):
        env = world(**other)
        out[next(iter(other))] = run(env, Uniform(env, seed=0), 1)
    return out


@pytest.fixture(scope="module")
def trained(sim):
    """Every configuration, having acted on three steps (so every state entry is filled)."""
    env, _ = sim
    agents = {}
    for config in CONFIGS:
        agents[config] = make(config, env)
        run(env, agents[config], 3)
    return agents


# ---------------------------------------------------------------------------------------------- constructors
ODD = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([
        10**400, -1, 0, 1, 2, 3, 7, 8, 9, 0.5, 1.5, True, False, None, "", "4", "topk", "threshold", "probe",
        "history", "cosine", "chordal", np.int64(3), np.float64(0.25), np.bool_(True), (0.2, 0.8), (0.8, 0.2),
        (1.0, 1.0), (0.0, 1.0), [0.3, 0.6], (float("nan"), 1.0), ("a", "b"), (1, 2, 3), np.array([2.0]), [0.3],
        {"lr": 1e-3}, {"lr": float("nan")}, {"kl_weight": -1.0}, {"latent_mode": "none"}, {"hidden": 30},
        {"replay": 2**70}, {"samples": 0}, {"updates": 1.5}, {"nope": 1}, PPMConfig(hidden=16, heads=2, latent=4),
    ]),
    st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True)),
    st.text(max_size=3),
)
UNIT = st.floats(0.0, 1.0)
#: Values each argument may well take (valid or at the edge), drawn as often as the odd ones.
PLAUSIBLE = {
    "epochs": st.booleans(),
    "gen_batch_size": st.integers(B - 1, N + 1),
    "max_rounds": st.integers(-1, 2**70),
    "band": st.tuples(UNIT, UNIT).map(sorted).map(tuple),
    "prior": st.one_of(st.tuples(st.floats(1e-6, 1e6), st.floats(1e-6, 1e6)), st.floats(0.0, 1e6)),
    "decay": UNIT,
    "ratio": st.floats(1.0, 1e300),
    "target": UNIT,
    "mode": st.sampled_from(["topk", "threshold"]),
    "decay_every_step": st.booleans(),
    "c": st.integers(0, K),
    "lambda_neg": st.floats(0.0, 2e6),
    "refresh_every": st.one_of(st.none(), st.integers(0, 2**70)),
    "candidates": st.one_of(st.none(), st.floats(0.5, 1e300)),
    "source": st.sampled_from(["probe", "history"]),
    "lam": st.floats(0.0, 1e6),
    "inter_step": st.booleans(),
    "ppm": st.fixed_dictionaries({}, optional={
        "samples": st.integers(0, 3), "updates": st.integers(1, 2), "replay": st.integers(0, 3),
        "latent_mode": st.sampled_from(["stochastic", "none", "other"]), "lr": st.floats(0.0, 1.0),
        "kl_weight": st.floats(-1.0, 10.0), "hidden": st.sampled_from([16, 30, 32]), "layers": st.integers(1, 2),
        "set_size": st.one_of(st.none(), st.integers(-1, 40))}),
    "distance": st.sampled_from(["cosine", "chordal", "euclid"]),
    "diversity": st.sampled_from(["sum", "min", "max"]),
    "warmup": st.integers(-1, 2**70),
    "draws": st.sampled_from(["mean", "thompson", "median"]),
    "strength": st.floats(-1.0, 1e6),
    "neighbours": st.integers(-1, 2**70),
    "ppm_weight": st.floats(-1.0, 1e6),
    "half_life": st.one_of(st.none(), st.floats(-1.0, 1e6), st.just(float("nan"))),
    "posterior": st.sampled_from(["thompson", "mean", "mode"]),
    "calibration": st.sampled_from(["none", "isotonic", "platt", "beta"]),
    "calibration_window": st.integers(-1, 2**70),
    "acquisition": st.sampled_from(["target", "mixed", "ucb"]),
    "candidate_order": st.sampled_from(["random", "epoch", "sorted"]),
    "probe": st.booleans(),
    "p_easy": st.floats(-0.1, 1.1),
    "p_hard": st.floats(-0.1, 1.1),
    "step_size": st.floats(-0.1, 1.1),
    "bounds": st.one_of(st.tuples(UNIT, UNIT).map(sorted).map(tuple), st.tuples(st.floats(-0.1, 1.1),
                                                                                 st.floats(-0.1, 1.1))),
    "target_zero_variance": st.floats(-0.1, 1.1),
    "keep_floor": st.floats(-0.1, 1.1),
    "carry_over": st.booleans(),
    "replay_fraction": st.floats(-0.1, 1.1),
    "cooldown": st.integers(-1, 2**70),
    "max_reuse": st.integers(-1, 2**70),
    "window": st.one_of(st.tuples(UNIT, UNIT).map(sorted).map(tuple), st.tuples(st.floats(-0.1, 1.1),
                                                                                 st.floats(-0.1, 1.1))),
}
SEEDS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([None, True, 1.0, "0", np.int64(7), np.uint64(2**63),
                                                                 2**64 - 1, 2**64, [1, 2]]))


@settings(FAST, max_examples=300)
@given(name=st.sampled_from(sorted(ARGUMENTS)), data=st.data())
def test_constructor_arguments_build_a_working_agent_or_raise_value_error(sim, name, data):
    env, obs = sim
    names = data.draw(st.lists(st.sampled_from(ARGUMENTS[name]), max_size=3, unique=True))
    kwargs = {key: data.draw(st.one_of(PLAUSIBLE[key], ODD), label=key) for key in names}
    kwargs["seed"] = data.draw(st.one_of(st.just(0), st.just(0), st.just(0), st.integers(0, 2**64 - 1), SEEDS),
                               label="seed")
    try:
        agent = build(name, env, **kwargs)
    except ValueError:
        event(f"{name}: refused")
        return
    event(f"{name}: built")
    assert_valid_batch(agent.act(obs))
    agent.load_state_dict(copy.deepcopy(agent.state_dict()))  # what it learnt is a state it accepts


@pytest.mark.parametrize("name", sorted(ARGUMENTS))
@pytest.mark.parametrize("seed", [None, True, 1.5, "0", -1, 2**64, [1, 2]])
def test_seeds_must_be_integers_in_range(sim, name, seed):
    with pytest.raises(ValueError, match="seed"):
        build(name, sim[0], seed=seed)


@pytest.mark.parametrize("name", sorted(ARGUMENTS))
def test_numpy_integer_seeds_are_seeds(sim, name):
    env, obs = sim
    a, b = build(name, env, seed=np.int64(5)), build(name, env, seed=5)
    assert np.array_equal(prompts_of(a.act(obs)), prompts_of(b.act(obs)))


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("uniform", {"epochs": "yes"}, "epochs"),
    ("uniform", {"epochs": 1.0}, "epochs"),
    ("ds", {"max_rounds": 2.5}, "max_rounds"),
    ("ds", {"max_rounds": "4"}, "max_rounds"),
    ("ds", {"gen_batch_size": 12.5}, "gen_batch_size"),
    ("ds", {"band": (0.1, float("nan"))}, "band"),
    ("ds", {"band": ("a", 1.0)}, "band"),
    ("ds", {"band": (0.1, 0.5, 0.9)}, "band"),
    ("mopps", {"ratio": float("inf")}, "ratio"),
    ("mopps", {"ratio": float("nan")}, "ratio"),
    ("mopps", {"ratio": "16"}, "ratio"),
    ("mopps", {"prior": (1.0,)}, "prior"),
    ("mopps", {"prior": ("1", "1")}, "prior"),
    ("mopps", {"prior": (1.0, float("inf"))}, "prior"),
    ("mopps", {"prior": (1.0, -1.0)}, "prior"),
    ("mopps", {"prior": "ab"}, "prior"),
    ("mopps", {"target": float("nan")}, "target"),
    ("mopps", {"decay": float("nan")}, "decay"),
    ("mopps", {"band": (-0.1, 0.5)}, "band"),
    ("mopps", {"decay_every_step": "no"}, "decay_every_step"),
    ("pairing", {"lambda_neg": 2e6}, "lambda_neg"),
    ("pairing", {"lambda_neg": float("inf")}, "lambda_neg"),
    ("pairing", {"lambda_neg": float("nan")}, "lambda_neg"),
    ("pairing", {"candidates": float("inf")}, "candidates"),
    ("pairing", {"candidates": None}, "candidates"),
    ("pairing", {"c": 1.5}, "c must"),
    ("pairing", {"refresh_every": 0.5}, "refresh_every"),
    ("gps", {"candidates": float("nan")}, "candidates"),
    ("gps", {"candidates": "4"}, "candidates"),
    ("gps", {"target": float("nan")}, "target"),
    ("gps", {"lam": float("inf")}, "lam"),
    ("gps", {"inter_step": "yes"}, "inter_step"),
    ("gps", {"ppm": {"lr": float("nan")}}, "lr"),
    ("gps", {"ppm": {"learning_rate": 1e-3}}, "learning_rate"),
    ("gps", {"ppm": "big"}, "ppm"),
    ("gps", {"distance": ["cosine"]}, "distance"),
    ("gps", {"embeddings": np.full((N, 4), "x")}, "embeddings"),
    ("gps", {"embeddings": np.zeros((N, 0), np.float32)}, "embeddings"),
    ("gps", {"diversity": "max"}, "diversity"),
    ("gps", {"diversity": "min", "distance": "chordal"}, "distance"),
    ("gps", {"warmup": -1}, "warmup"),
    ("gps", {"warmup": 2.5}, "warmup"),
    ("gps", {"draws": "median"}, "draws"),
    ("gpsm", {"strength": 0.0}, "strength"),
    ("gpsm", {"strength": float("inf")}, "strength"),
    ("gpsm", {"decay": 1.5}, "decay"),
    ("gpsm", {"posterior": "mode"}, "posterior"),
    ("gpsm", {"candidates": 0.5}, "candidates"),
    ("gpsn", {"neighbours": 0}, "neighbours"),
    ("gpsn", {"neighbours": 2.5}, "neighbours"),
    ("gpsn", {"ppm_weight": 0.0}, "ppm_weight"),
    ("gpsn", {"ppm_weight": float("nan")}, "ppm_weight"),
    ("gpsn", {"half_life": 0.0}, "half_life"),
    ("gpsn", {"half_life": float("inf")}, "half_life"),
    ("gps", {"ppm": {"set_size": 0}}, "set_size"),
    ("gpsn", {"strength": -1.0}, "strength"),
    ("learned", {"candidates": float("inf")}, "candidates"),
    ("learned", {"candidates": None}, "candidates"),
    ("learned", {"candidates": "4"}, "candidates"),
    ("greso", {"probe": 1}, "probe"),
    ("greso", {"p_easy": 1.5}, "p_easy"),
    ("greso", {"p_hard": float("nan")}, "p_hard"),
    ("greso", {"step_size": -0.01}, "step_size"),
    ("greso", {"bounds": (0.9, 0.1)}, "bounds"),
    ("greso", {"bounds": 0.5}, "bounds"),
    ("greso", {"target_zero_variance": float("inf")}, "target_zero_variance"),
    ("greso", {"keep_floor": "0.01"}, "keep_floor"),
    ("greso", {"gen_batch_size": B - 1}, "gen_batch_size"),
    ("greso", {"gen_batch_size": N + 1}, "gen_batch_size"),
    ("greso", {"max_rounds": 0}, "max_rounds"),
    ("dps", {"decay": 0.0}, "decay"),
    ("dps", {"decay": 1.5}, "decay"),
    ("dps", {"decay": float("nan")}, "decay"),
    ("dps", {"prior": 0.0}, "prior"),
    ("dps", {"prior": (1.0, 1.0)}, "prior"),
    ("dps", {"prior": float("inf")}, "prior"),
    ("dps", {"prior": 1e308}, "prior"),
    ("dps", {"prior": 5e-324}, "prior"),
    ("dps", {"ratio": 0.5}, "ratio"),
    ("dps", {"ratio": float("nan")}, "ratio"),
    ("dps", {"ratio": "32"}, "ratio"),
    ("speedrl", {"gen_batch_size": B - 1}, "gen_batch_size"),
    ("speedrl", {"gen_batch_size": 16.0}, "gen_batch_size"),
    ("speedrl", {"max_rounds": -1}, "max_rounds"),
    ("speedrl", {"carry_over": "yes"}, "carry_over"),
    ("learnability", {"candidates": 0.5}, "candidates"),
    ("learnability", {"candidates": float("inf")}, "candidates"),
    ("learnability", {"candidates": None}, "candidates"),
    ("replay", {"replay_fraction": -0.1}, "replay_fraction"),
    ("replay", {"replay_fraction": float("nan")}, "replay_fraction"),
    ("replay", {"cooldown": 0}, "cooldown"),
    ("replay", {"cooldown": 1.5}, "cooldown"),
    ("replay", {"max_reuse": 0}, "max_reuse"),
    ("replay", {"max_reuse": True}, "max_reuse"),
    ("replay", {"window": (0.7, 0.24)}, "window"),
    ("replay", {"window": (0.2, float("nan"))}, "window"),
])
def test_bad_arguments_are_refused_by_name(sim, name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(name, sim[0], **kwargs)


@pytest.mark.parametrize(("name", "kwargs"), [
    ("replay", {"max_reuse": 2**70, "cooldown": 1}), ("greso", {"probe": True, "max_rounds": 2**70}),
    ("speedrl", {"max_rounds": 2**70}), ("ds", {"max_rounds": 2**70}), ("dps", {"prior": 1e300, "decay": 0.5}),
    ("dps", {"prior": 1e-300, "decay": 1.0}),
])
def test_integers_beyond_int64_and_extreme_priors_work(name, kwargs):
    """Caps beyond int64 mean "no cap" (never an OverflowError); the state stays finite and loadable."""
    env = world()
    agent = build(name, env, **kwargs)
    obs = run(env, agent, 6)
    agent.load_state_dict(copy.deepcopy(agent.state_dict()))
    assert_valid_batch(agent.act(obs))


def test_learned_selector_needs_a_policy_with_predict(sim):
    with pytest.raises(ValueError, match="policy"):
        LearnedSelector(sim[0], object())


# ---------------------------------------------------------------------------------------------- observations
SHAPES = {"times_selected": (N,), "rollouts": (N,), "successes": (N,), "last_seen": (N,), "last_batch": (B,),
          "last_rewards": (B, K), "step": (1,), "rollouts_spent": (1,)}


@FAST
@given(config=st.sampled_from(sorted(CONFIGS)), key=st.sampled_from(sorted(SHAPES)),
       shape=st.lists(st.integers(0, 9), max_size=3).map(tuple),
       dtype=st.sampled_from([np.int64, np.float32, np.bool_, np.complex64, np.str_, object]))
def test_observations_of_another_shape_or_dtype_are_refused_and_change_nothing(sim, trained, config, key, shape,
                                                                              dtype):
    env, obs = sim
    agent = trained[config]
    if shape == SHAPES[key] and (dtype in (np.int64, np.float32) if key != "last_batch" else dtype is np.int64):
        shape = (*shape, 1)  # that one is valid: make it another shape
    bad = {**obs, key: np.zeros(shape, dtype=dtype)}
    before = copy.deepcopy(agent.state_dict())
    with pytest.raises(ValueError, match=key):
        agent.act(bad)
    assert same(agent.state_dict(), before)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_a_missing_key_the_agent_reads_is_refused(sim, trained, config):
    env, obs = sim
    agent = trained[config]
    before = copy.deepcopy(agent.state_dict())
    reads = {"step", "times_selected", *type(agent).observation_keys, *agent.observation_keys}
    for key in reads:
        with pytest.raises(ValueError, match=key):
            agent.act({k: v for k, v in obs.items() if k != key})
    assert same(agent.state_dict(), before)
    with pytest.raises(ValueError, match="observation"):
        agent.act([obs])


def agent_shape(agent: Any, key: str) -> tuple[int, ...]:
    return {"last_batch": (agent.batch_size,), "last_rewards": (agent.batch_size, agent.k),
            "times_selected": (agent.pool_size,)}[key]


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize(("other", "key"), [("batch_size", "last_batch"), ("k", "last_rewards"),
                                            ("pool_size", "times_selected")])
def test_an_observation_of_another_world_is_refused_naming_both_shapes(trained, foreign, config, other, key):
    obs = foreign[other]
    agent = trained[config]
    before = copy.deepcopy(agent.state_dict())
    with pytest.raises(ValueError, match=key) as refused:
        agent.act(obs)
    assert str(obs[key].shape) in str(refused.value) and str(agent_shape(agent, key)) in str(refused.value)
    assert same(agent.state_dict(), before)


@pytest.mark.parametrize("config", ["mopps", "gps", "gps-c2", "gpsm", "learned", "greso", "greso-probe", "dps",
                                    "replay"])
@pytest.mark.parametrize(("key", "value", "match"), [
    ("last_batch", np.array([0, 1, 2, 3, 4, 5, 6, N]), "outside"),
    ("last_batch", np.array([0, 1, 2, 3, 4, 5, 6, -1]), "outside"),
    ("last_batch", np.array([0, 1, 2, 3, 4, 5, 6, 6]), "repeats"),
    ("last_rewards", np.full((B, K), np.nan, np.float32), "NaN"),
    ("last_rewards", np.full((B, K), 2.0, np.float32), "outside"),
    ("step", np.array([-3]), "step"),
    ("step", np.array([2**64 - 1], np.uint64), "step"),
])
def test_bad_values_of_the_last_batch_are_refused(sim, trained, config, key, value, match):
    env, obs = sim
    agent = trained[config]
    before = copy.deepcopy(agent.state_dict())
    step = {"step": np.array([int(agent.state_dict()["learnt_step"]) + 1])} if key != "step" else {}
    with pytest.raises(ValueError, match=match):
        agent.act({**obs, **step, key: value})
    assert same(agent.state_dict(), before)


# ---------------------------------------------------------------------------------------------- states
def junk(shape: tuple[int, ...], kind: str) -> Any:
    """A value no state entry accepts (non-empty arrays of ids out of range, NaN, strings or booleans; None...):
    ``shape`` is never a valid one (its sides are at most 4, < B)."""
    return {"int": lambda: np.full(shape, -7, np.int64), "nan": lambda: np.full(shape, np.nan),
            "bool": lambda: np.zeros(shape, bool), "str": lambda: np.full(shape, "x"), "none": lambda: None,
            "text": lambda: "x", "negative": lambda: -7, "flag": lambda: True, "float": lambda: float("nan")}[kind]()


@FAST
@given(config=st.sampled_from(sorted(CONFIGS)), data=st.data(),
       how=st.sampled_from(["drop", "add", "replace", "replace", "replace"]),
       shape=st.lists(st.integers(1, 4), max_size=3).map(tuple),
       kind=st.sampled_from(["int", "nan", "bool", "str", "none", "text", "negative", "flag", "float"]))
def test_corrupted_states_are_refused_and_change_nothing(sim, trained, config, data, how, shape, kind):
    agent = trained[config]
    before = copy.deepcopy(agent.state_dict())
    state = copy.deepcopy(before)
    key = data.draw(st.sampled_from(sorted(state)), label="key")
    if how == "drop":
        del state[key]
    elif how == "add":
        state[f"{key}_extra"] = 0
    else:
        state[key] = junk(shape, kind)
    with pytest.raises(ValueError):
        agent.load_state_dict(state)
    assert same(agent.state_dict(), before)


def corrupt_nested(config: str, state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Corruptions inside state entries (the random ones above replace whole entries)."""
    out = []
    rng = copy.deepcopy(state)
    rng["rng"]["bit_generator"] = "MT19937"
    out.append(("rng", rng))
    rng = copy.deepcopy(state)
    rng["rng"]["state"]["state"] = 1.5
    out.append(("rng", rng))
    if config == "uniform-epochs":
        repeated = copy.deepcopy(state)
        repeated["queue"] = np.concatenate([state["queue"][:3], state["queue"][:3]])
        out.append(("queue", repeated))
    if config.startswith("pairing"):
        half = copy.deepcopy(state)
        half["weights"] = None
        out.append(("batch", half))
    if config == "gps-cal":
        pending = copy.deepcopy(state)
        pending["pending"] = np.full(B, 1.5)
        out.append(("pending", pending))
        pending = copy.deepcopy(state)
        pending["pending"] = np.full(B - 1, 0.5)
        out.append(("pending", pending))
        data = copy.deepcopy(state)
        data["calibration_data"] = list(data["calibration_data"]) * 2
        out.append(("calibration_data", data))
    if config.startswith("gpsm"):
        for key, bad in (("alpha", -1.0), ("beta", float("nan"))):
            counts = copy.deepcopy(state)
            counts[key] = counts[key].copy()
            counts[key][3] = bad
            out.append((key, counts))
    if config.startswith("gps"):
        name = next(iter(state["model"]))
        model = copy.deepcopy(state)
        model["model"][name] = torch.zeros(3)
        out.append(("model", model))
        model = copy.deepcopy(state)
        del model["model"][name]
        out.append(("model", model))
        optimizer = copy.deepcopy(state)
        first = next(iter(optimizer["optimizer"]["state"]))
        optimizer["optimizer"]["state"][first]["exp_avg"] = torch.zeros(2, 2)
        out.append(("exp_avg", optimizer))
        optimizer = copy.deepcopy(state)
        optimizer["optimizer"]["param_groups"][0]["params"] = [0, 1]
        out.append(("optimizer", optimizer))
        generator = copy.deepcopy(state)
        generator["generator"] = torch.zeros(10, dtype=torch.uint8)
        out.append(("generator", generator))
        history = copy.deepcopy(state)
        history["history"][0] = (np.arange(B + 1), np.zeros(B + 1))
        out.append(("history", history))
        history = copy.deepcopy(state)
        history["history"][0] = (history["history"][0][0], np.full(B, 2.0))
        out.append(("history", history))
        steps = copy.deepcopy(state)
        steps["steps_seen"] = 0
        out.append(("steps_seen", steps))
    if config.startswith("greso"):
        both = copy.deepcopy(state)
        both["easy_run"][0], both["hard_run"][0] = 1, 1
        out.append(("easy_run", both))
        wraps = copy.deepcopy(state)  # uint64 beyond int64: would wrap to a negative run on loading
        wraps["hard_run"] = np.full(N, 2**64 - 1, np.uint64) * (state["easy_run"] == 0)
        out.append(("hard_run", wraps))
        order = copy.deepcopy(state)
        order["order"] = order["order"][:-1]
        out.append(("order", order))
        cursor = copy.deepcopy(state)
        cursor["cursor"] = N + 1
        out.append(("cursor", cursor))
        pending = copy.deepcopy(state)
        pending["pending_ids"], pending["pending_rewards"] = np.arange(3), np.zeros((2, K))
        out.append(("pending_rewards", pending))
    if config == "dps":
        counts = copy.deepcopy(state)
        counts["counts"][0, 0, 0] = 0.0
        out.append(("counts", counts))
        belief = copy.deepcopy(state)
        belief["belief"][0] = [0.5, 0.5, 0.5]
        out.append(("belief", belief))
        huge = copy.deepcopy(state)  # finite counts whose column sums overflow: NaN transitions
        huge["counts"][0] = 1e308
        out.append(("counts", huge))
    if config in ("speedrl", "learnability"):
        acted = copy.deepcopy(state)
        acted["acted_batch"] = acted["acted_batch"][:-1]
        out.append(("acted_batch", acted))
        acted = copy.deepcopy(state)
        acted["acted_step"] = -1
        out.append(("acted_batch", acted))
    if config in ("speedrl", "replay", "replay-eager"):
        queue = copy.deepcopy(state)
        queue["queue"] = np.array([1, 2, 1])
        out.append(("queue", queue))
    if config.startswith("replay"):
        pending = copy.deepcopy(state)
        pending["pending"] = np.arange(B // 2 + 1)
        out.append(("pending", pending))
        reuse = copy.deepcopy(state)
        reuse["reuse"][0] = 6
        out.append(("reuse", reuse))
        wraps = copy.deepcopy(state)  # uint64 beyond int64: would wrap to a negative step on loading
        wraps["last_step"] = np.full(N, 2**64 - 1, np.uint64)
        out.append(("last_step", wraps))
    return out


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_nested_corruptions_are_refused_by_key_and_change_nothing(trained, config):
    agent = trained[config]
    before = copy.deepcopy(agent.state_dict())
    for key, state in corrupt_nested(config, before):
        with pytest.raises(ValueError, match=key):
            agent.load_state_dict(state)
        assert same(agent.state_dict(), before), key


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_state_keys_are_what_state_dict_writes(trained, config):
    agent = trained[config]
    assert set(agent.state_dict()) == set(agent.state_keys)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_state_of_another_class_missing_key_wrong_shape_refused_round_trip_works(sim, trained, later, config):
    env, _ = sim
    agent = trained[config]
    before = copy.deepcopy(agent.state_dict())
    wrong_shape = copy.deepcopy(before)
    key = {"uniform": "queue", "ds": "cap_hits", "mopps": "alpha", "pairing": "weights", "gps": "history",
           "gpsm": "alpha", "gpsn": "alpha", "learned": "learnt_step", "greso": "easy_run", "dps": "counts",
           "speedrl": "queue", "learnability": "acted_batch", "replay": "pass_rate"}[config.split("-")[0]]
    wrong_shape[key] = [(np.arange(B + 1), np.zeros(B + 1))] if key == "history" else np.zeros((2, 3), np.int64)
    missing = {k: v for k, v in before.items() if k != "rng"}
    # (GPS-N keeps exactly GPS-M's state, the same model and memory: each restores the other's)
    others = [trained[c].state_dict() for c in CONFIGS if set(trained[c].state_keys) != set(agent.state_keys)]
    for state, match in [(wrong_shape, key), (missing, "rng"), *[(other, "not a") for other in others]]:
        with pytest.raises(ValueError, match=match):
            agent.load_state_dict(state)
        assert same(agent.state_dict(), before)
    clone = make(config, env, seed=9)
    clone.load_state_dict(copy.deepcopy(before))
    assert same(clone.state_dict(), before)
    assert np.array_equal(prompts_of(agent.act(later)), prompts_of(clone.act(later)))
    agent.load_state_dict(before)  # leave the shared agent as it was


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_state_from_another_pool_size(trained, later, config):
    """Pool-sized state (ids, per-prompt arrays) from a larger pool is refused; agents whose state holds nothing
    pool-sized (an RNG state and counters) accept it and still pick valid batches."""
    big = world(pool_size=2 * N)
    other = make(config, big)
    run(big, other, 3)
    agent = trained[config]
    before = copy.deepcopy(agent.state_dict())
    if config in POOL_SIZED:
        with pytest.raises(ValueError):
            agent.load_state_dict(other.state_dict())
        assert same(agent.state_dict(), before)
    else:
        agent.load_state_dict(other.state_dict())
        assert_valid_batch(agent.act(later))
        agent.load_state_dict(before)
