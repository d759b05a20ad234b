"""The env and its checkpoints under attack: damaged or altered files, malformed states, closed envs, wrappers.

Every refusal must name what is wrong and leave the env exactly as it was.
"""

from __future__ import annotations

import copy
import hashlib
import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ENV_DEFAULTS, params_of, same_params
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gps_env.agents import Uniform
from gps_env.checkpoint import MAGIC, encode, load_checkpoint, read_checkpoint, save_checkpoint
from gps_env.engines import TransformersEngine
from gps_env.simulated import SimulatedPromptSelectionEnv

SIM = dict(pool_size=64, heldout_size=16, batch_size=4, eval_every=2, max_steps=20)


def snapshot(env) -> dict:
    """What a refused load must not change."""
    inner = env.unwrapped
    out = {"obs": inner._observation(), "ledger": inner.ledger.summary(), "step": inner.current_step,
           "rng": copy.deepcopy(inner.np_random.bit_generator.state), "done": inner.done}
    if hasattr(inner, "policy"):
        out["params"] = params_of(inner.policy)
        out["generator"] = inner._generator.get_state().clone()
    else:
        out["phi"] = inner._phi.copy()
    return out


def assert_unchanged(before: dict, env) -> None:
    after = snapshot(env)
    for key in ("ledger", "step", "rng", "done"):
        assert before[key] == after[key], key
    for key in before["obs"]:
        np.testing.assert_array_equal(before["obs"][key], after["obs"][key])
    if "params" in before:
        assert same_params(before["params"], after["params"])
        assert torch.equal(before["generator"], after["generator"])
    else:
        np.testing.assert_array_equal(before["phi"], after["phi"])


def run_steps(env, agent, n):
    obs = env.unwrapped._observation()
    for _ in range(n):
        obs, *_ = env.step(agent.act(obs))
    return obs


# ---------------------------------------------------------------------------------------------- Gymnasium
def test_check_env_passes_on_the_defaults(tiny_policy):
    env = gym.make("gps_env/PromptSelection-v0", policy=tiny_policy, progress=False)
    try:
        check_env(env.unwrapped)
    finally:
        env.close()
    sim = gym.make("gps_env/SimulatedPromptSelection-v0")
    check_env(sim.unwrapped)


def test_restored_env_steps_through_gym_make(tiny_policy, tmp_path):
    kwargs = {**ENV_DEFAULTS, "policy": tiny_policy}
    env = gym.make("gps_env/PromptSelection-v0", **kwargs)
    agent = Uniform(env, seed=0)
    env.reset(seed=0)
    run_steps(env, agent, 2)
    path = save_checkpoint(tmp_path / "c.pt", env, agent)
    expected = env.step(agent.act(env.unwrapped._observation()))[4]["batch"]

    fresh = gym.make("gps_env/PromptSelection-v0", **kwargs)  # never reset: the order-enforcing wrapper is armed
    resumed = Uniform(fresh, seed=0)
    obs = load_checkpoint(path, fresh, resumed)
    _, _, _, _, info = fresh.step(resumed.act(obs))  # no ResetNeeded
    np.testing.assert_array_equal(info["batch"], expected)
    env.close()
    fresh.close()


def test_reset_options_are_checked(make_env):
    env = make_env()
    with pytest.raises(ValueError, match="only 'restore'"):
        env.reset(options={"restor": {}})
    env.reset(seed=0)
    state = env.state_dict()
    with pytest.raises(ValueError, match="exclude each other"):
        env.reset(seed=1, options={"restore": state})


# ---------------------------------------------------------------------------------------------- close
def test_close_releases_the_engine_and_verifiers_and_is_idempotent(tiny_policy, lenient_pools):
    closed = []

    class CountingEngine(TransformersEngine):
        def close(self):
            closed.append(True)

    class Stoppable:
        name, timeouts = "starts_digit", 0

        def verify(self, completion, problem):
            return float(completion[:1].isdigit())

        def close(self):
            closed.append("task")

    from gps_env.env import PromptSelectionEnv
    from gps_env.pool import PromptPool

    pool, heldout = lenient_pools
    task = Stoppable()
    env = PromptSelectionEnv(**{**ENV_DEFAULTS, "policy": tiny_policy,
                                "pool": PromptPool(pool.problems, [task]),
                                "heldout": PromptPool(heldout.problems, [task]),
                                "engine": lambda model, tokenizer: CountingEngine(model, tokenizer)})
    obs, _ = env.reset(seed=0)
    env.close()
    env.close()
    assert closed == [True, "task"]  # each once, the shared task once
    for call in (lambda: env.step(np.arange(4)), lambda: env.reset(seed=0), lambda: env.probe(np.arange(2)),
                 env.evaluate):
        with pytest.raises(gym.error.ClosedEnvironmentError):
            call()


def test_close_stops_the_math_verifier_worker(tiny_policy, lenient_pools):
    import os

    from gps_env.env import PromptSelectionEnv
    from gps_env.pool import PromptPool
    from gps_env.tasks import MathTask, Problem

    math = MathTask(time_limit=10.0)
    problems = [Problem(f"What is {i}/1?", str(i), "math") for i in range(8)]
    env = PromptSelectionEnv(**{**ENV_DEFAULTS, "policy": tiny_policy, "pool": PromptPool(problems[:6], [math]),
                                "heldout": PromptPool(problems[6:], [math]), "eval_every": 0})
    env.reset(seed=0)
    env.step(np.arange(4))
    pid = math.verifier.pid
    assert pid is not None
    env.close()
    assert math.verifier.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: the worker is gone


# ---------------------------------------------------------------------------------------------- checkpoint bytes
@pytest.fixture(scope="module")
def sim_checkpoint(tmp_path_factory):
    env = SimulatedPromptSelectionEnv(**SIM)
    agent = Uniform(env, seed=0)
    env.reset(seed=0)
    run_steps(env, agent, 3)
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "c.pt", env, agent)
    return path.read_bytes()


def _target():
    env = SimulatedPromptSelectionEnv(**SIM)
    agent = Uniform(env, seed=0)
    env.reset(seed=1)
    run_steps(env, agent, 1)
    return env, agent


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_checkpoint_bytes_are_refused_and_change_nothing(sim_checkpoint, tmp_path, data):
    blob = bytearray(sim_checkpoint)
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice", "append"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "splice":
        i = data.draw(st.integers(0, len(blob) - 1))
        j = data.draw(st.integers(i, len(blob)))
        blob = blob[:i] + data.draw(st.binary(min_size=1, max_size=64)) + blob[j:]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=64))
    assume(bytes(blob) != sim_checkpoint)
    path = tmp_path / "bad.pt"
    path.write_bytes(bytes(blob))
    env, agent = _target()
    before, agent_before = snapshot(env), copy.deepcopy(agent.state_dict())
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(path, env, agent)
    assert_unchanged(before, env)
    assert agent.state_dict()["learnt_step"] == agent_before["learnt_step"]


def _rewrite(state: dict, path) -> None:
    """A tampered file with a valid digest: only the state checks can refuse it."""
    buffer = io.BytesIO()
    torch.save(encode(state), buffer)
    payload = buffer.getvalue()
    path.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)


MALFORMED = {
    "no ledger": lambda s: s["env"].pop("ledger"),
    "negative rollouts": lambda s: s["env"]["ledger"]["rollouts"].__setitem__("train", -1),
    "ledger field missing": lambda s: s["env"]["ledger"]["groups"].pop("mixed"),
    "history shape": lambda s: s["env"]["history"].__setitem__("rollouts", np.zeros(3, np.int64)),
    "history dtype": lambda s: s["env"]["history"].__setitem__("last_batch", np.zeros(4, np.float64)),
    "successes above rollouts": lambda s: s["env"]["history"]["successes"].__setitem__(0, 10**6),
    "batch id out of range": lambda s: s["env"]["history"]["last_batch"].__setitem__(0, 10**6),
    "step negative": lambda s: s["env"].__setitem__("step", -2),
    "step a string": lambda s: s["env"].__setitem__("step", "3"),
    "rng name": lambda s: s["env"]["np_random"].__setitem__("bit_generator", "os.system"),
    "rng state": lambda s: s["env"]["np_random"].__setitem__("state", {"state": "x"}),
    "model shape": lambda s: s["env"]["model"].__setitem__("phi", np.zeros(3)),
    "model nan": lambda s: s["env"]["model"]["memory"].__setitem__(0, np.nan),
    "fingerprint": lambda s: s["env"]["fingerprint"].__setitem__("k", 99),
    "done not bool": lambda s: s["env"].__setitem__("done", "no"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_states_with_valid_digests_are_refused_and_change_nothing(sim_checkpoint, tmp_path, case):
    state = read_checkpoint(_write(tmp_path / "ok.pt", sim_checkpoint))
    MALFORMED[case](state)
    _rewrite(state, tmp_path / "bad.pt")
    env, agent = _target()
    before = snapshot(env)
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt", env, agent)
    assert_unchanged(before, env)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_embedded_world_state_is_checked_before_anything_changes(make_env, tmp_path):
    env = make_env(lenient=True)
    agent = Uniform(env, seed=0)
    env.reset(seed=0)
    run_steps(env, agent, 2)
    good = read_checkpoint(save_checkpoint(tmp_path / "c.pt", env, agent))
    target = make_env(lenient=True)
    target.reset(seed=3)
    cases = {
        "policy dtype": lambda s: s["env"]["policy"].__setitem__(
            next(iter(s["env"]["policy"])), next(iter(s["env"]["policy"].values())).double()),
        "optimizer shape": lambda s: next(iter(s["env"]["optimizer"]["state"].values())).__setitem__(
            "exp_avg", torch.zeros(3)),
        "optimizer groups": lambda s: s["env"]["optimizer"].__setitem__("param_groups", []),
        "generator": lambda s: s["env"].__setitem__("generator", torch.zeros(3, dtype=torch.uint8)),
        "eval seed": lambda s: s["env"].__setitem__("eval_seed", -1),
    }
    for name, corrupt in cases.items():
        state = copy.deepcopy(good)
        corrupt(state)
        _rewrite(state, tmp_path / "bad.pt")
        before = snapshot(target)
        with pytest.raises(ValueError, match="bad.pt"):
            load_checkpoint(tmp_path / "bad.pt", target)
        assert_unchanged(before, target), name


def test_old_checkpoints_without_digest_need_consent(sim_checkpoint, tmp_path):
    payload = sim_checkpoint[len(MAGIC) + 32:]  # a format-1 file is the bare torch.save zip
    path = _write(tmp_path / "v1.pt", payload)
    env, agent = _target()
    with pytest.raises(ValueError, match="without a content digest"):
        load_checkpoint(path, env, agent)
    assert load_checkpoint(path, env, agent, require_digest=False)["step"][0] == 3


# ---------------------------------------------------------------------------------------------- actions
@pytest.mark.parametrize("predictions", [np.full(4, 0.5 + 0.1j), np.array(["0.5"] * 4), np.full(4, np.nan)])
def test_complex_string_or_nan_predictions_are_refused(predictions):
    env = SimulatedPromptSelectionEnv(**SIM)
    env.reset(seed=0)
    before = snapshot(env)
    with pytest.raises(ValueError, match="predictions"):
        env.step({"prompts": np.arange(4), "predictions": predictions})
    assert_unchanged(before, env)


_ARRAYS = st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=10).map(np.array),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=10).map(np.array),
    st.lists(st.booleans(), max_size=10).map(np.array),
    st.lists(st.text(max_size=3), max_size=10).map(np.array),
    st.lists(st.integers(0, 63), min_size=1, max_size=8).map(lambda xs: np.array(xs, dtype=np.uint64)),
    st.lists(st.lists(st.integers(0, 63), min_size=2, max_size=2), max_size=4).map(np.array),
    st.integers(0, 63).map(np.int64),
    st.none(),
)


@settings(max_examples=150, deadline=None)
@given(prompts=_ARRAYS, weights=st.one_of(st.none(), _ARRAYS), predictions=st.one_of(st.none(), _ARRAYS))
def test_any_action_is_taken_whole_or_refused_with_nothing_changed(prompts, weights, predictions):
    env = SimulatedPromptSelectionEnv(**SIM)
    env.reset(seed=0)
    action = {"prompts": prompts}
    if weights is not None:
        action["weights"] = weights
    if predictions is not None:
        action["predictions"] = predictions
    before = snapshot(env)
    try:
        env.step(action)
    except ValueError:
        assert_unchanged(before, env)
    else:  # accepted: B distinct in-range integer ids, and whatever else was given was valid
        ids = np.asarray(prompts)
        assert ids.shape == (4,) and np.issubdtype(ids.dtype, np.integer) and len(set(ids.tolist())) == 4
        assert env.current_step == 1


@settings(max_examples=150, deadline=None)
@given(ids=_ARRAYS)
def test_any_probe_request_is_served_or_refused_with_nothing_changed(ids):
    env = SimulatedPromptSelectionEnv(**SIM)
    env.reset(seed=0)
    before = snapshot(env)
    try:
        rewards = env.probe(ids)
    except ValueError:
        assert_unchanged(before, env)
    else:
        idx = np.asarray(ids)
        assert idx.ndim == 1 and idx.size and len(set(idx.tolist())) == idx.size
        assert rewards.shape == (idx.size, env.k)
        assert env.ledger.rollouts["probe"] == idx.size * env.k
