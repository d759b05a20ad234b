"""Checkpoint/resume: bit-identical continuation after SIGKILL, refusal of other configurations, safe loading."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from _resume_run import build, record
from conftest import params_of, same_params

from gps_env.agents import GPS
from gps_env.checkpoint import MAGIC, Checkpointer, decode, encode, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow


def whole_run(policy, agent_name):
    env, agent = build(str(policy), agent_name)
    obs, _ = env.reset(seed=0)
    records, truncated = [], False
    while not truncated:
        obs, _, _, truncated, info = env.step(agent.act(obs))
        records.append(record(info))
    return env, agent, records


def same_state(a, b) -> bool:
    """Deep equality of agent state dicts (tensors, arrays, containers)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize(("agent_name", "kill_at"), [("gps", 5), ("ds", 2)])
def test_killed_run_resumes_bit_identically(tiny_policy, tmp_path, agent_name, kill_at):
    env, agent, expected = whole_run(tiny_policy, agent_name)
    script = Path(__file__).with_name("_resume_run.py")
    child = subprocess.run([sys.executable, str(script), str(tiny_policy), str(tmp_path), str(kill_at), agent_name],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr[-2000:]  # it really was killed
    before = [json.loads(line) for line in child.stdout.splitlines()]
    assert [r["step"] for r in before] == list(range(1, kill_at + 1))
    assert before == json.loads(json.dumps(expected[:kill_at]))

    resumed_env, resumed_agent = build(str(tiny_policy), agent_name)
    ckpt = Checkpointer(tmp_path, every=1)
    obs = ckpt.restore(resumed_env, resumed_agent)
    assert resumed_env.current_step == kill_at
    after, truncated = [], resumed_env.done
    while not truncated:
        obs, _, _, truncated, info = resumed_env.step(resumed_agent.act(obs))
        after.append(record(info))
    assert json.loads(json.dumps(after)) == json.loads(json.dumps(expected[kill_at:]))
    assert same_params(params_of(resumed_env.policy), params_of(env.policy))
    assert same_state(resumed_agent.state_dict(), agent.state_dict())
    assert resumed_env.ledger.summary(seconds=False) == env.ledger.summary(seconds=False)
    assert resumed_env.evaluate()["accuracy"] == env.evaluate()["accuracy"]


def test_other_configurations_are_refused_and_nothing_changes(tiny_policy, tmp_path):
    env, agent = build(str(tiny_policy), "gps")
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        obs, *_ = env.step(agent.act(obs))
    path = save_checkpoint(tmp_path / "c.pt", env, agent)

    other_env, other_agent = build(str(tiny_policy), "gps", rollouts_per_prompt=2)
    other_env.reset(seed=1)
    params, state = params_of(other_env.policy), other_agent.state_dict()
    with pytest.raises(ValueError, match="differs in: .*k"):
        load_checkpoint(path, other_env, other_agent)
    assert same_params(params_of(other_env.policy), params) and same_state(other_agent.state_dict(), state)
    assert other_env.current_step == 0

    same_env, _ = build(str(tiny_policy), "gps")
    with pytest.raises(ValueError, match="agent differs .*lam"):
        load_checkpoint(path, same_env, GPS(same_env, seed=0, lam=1.0))
    with pytest.raises(ValueError, match="agent differs .*class"):
        load_checkpoint(path, same_env, build(str(tiny_policy), "mopps")[1])
    assert not same_env._started  # refused before anything was restored

    fresh_env, fresh_agent = build(str(tiny_policy), "gps")
    obs2 = load_checkpoint(path, fresh_env, fresh_agent)
    assert all(np.array_equal(obs[k], obs2[k]) for k in obs)


def test_checkpoint_rules(tiny_policy, tmp_path):
    env, agent = build(str(tiny_policy), "ds")
    with pytest.raises(gym.error.ResetNeeded):
        env.state_dict()
    obs, _ = env.reset(seed=0)
    env.probe(np.array([0, 1]))
    with pytest.raises(RuntimeError, match="probe"):
        save_checkpoint(tmp_path / "c.pt", env, agent)
    assert not (tmp_path / "c.pt").exists()
    env.step(np.arange(4))
    ckpt = Checkpointer(tmp_path, every=2)
    assert ckpt.restore(env) is None
    assert ckpt.step(env) is False and not ckpt.path.exists()  # step 1
    env.step(np.arange(4, 8))
    assert ckpt.step(env) is True and ckpt.path.exists()  # step 2
    # After its header and digest the file is plain tensors and containers: it loads under weights_only=True.
    data = ckpt.path.read_bytes()
    assert data.startswith(MAGIC) and hashlib.sha256(data[len(MAGIC) + 32:]).digest() == data[len(MAGIC):][:32]
    assert isinstance(torch.load(io.BytesIO(data[len(MAGIC) + 32:]), weights_only=True), dict)
    with pytest.raises(ValueError):
        Checkpointer(tmp_path, every=0)
    wrapped = gym.wrappers.OrderEnforcing(env)
    assert load_checkpoint(ckpt.path, wrapped)["step"][0] == 2


def test_encode_decode_round_trip():
    state = {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "t": (np.float64(1.5), [np.bool_(True), None]),
             "w": torch.ones(2), "s": "x", "big": 2**100}
    back = decode(encode(state))
    assert back["a"].dtype == np.int16 and np.array_equal(back["a"], state["a"])
    assert back["t"] == (1.5, [True, None]) and isinstance(back["t"], tuple)
    assert torch.equal(back["w"], state["w"]) and back["s"] == "x" and back["big"] == 2**100
    with pytest.raises(TypeError):
        encode({"f": lambda: 0})
    with pytest.raises(TypeError):
        encode(np.array([object()]))
