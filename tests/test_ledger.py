"""The rollout-cost ledger."""

from __future__ import annotations

import copy
import json
import time

import pytest

from gps_env.ledger import PHASES, PURPOSES, RolloutLedger


def test_fresh_ledger_is_zero():
    s = RolloutLedger().summary()
    assert s["rollouts"] == {"train": 0, "probe": 0, "eval": 0, "selector": 0}
    assert all(v == 0 for v in s["prompt_tokens"].values())
    assert all(v == 0.0 for per in s["seconds"].values() for v in per.values())


def test_charge_timer_summary():
    ledger = RolloutLedger()
    ledger.charge("train", rollouts=16, prompt_tokens=100, completion_tokens=40)
    ledger.charge("train", "generate", seconds=0.5, rollouts=8)
    ledger.charge("probe", rollouts=4, completion_tokens=3)
    ledger.charge("eval", "verify", seconds=0.25, rollouts=100)
    with ledger.timer("probe", "select"):
        time.sleep(0.02)
    s = ledger.summary()
    assert s["rollouts"] == {"train": 24, "probe": 4, "eval": 100, "selector": 28}
    assert ledger.selector_rollouts == 28 == ledger.rollouts["train"] + ledger.rollouts["probe"]
    assert s["prompt_tokens"] == {"train": 100, "probe": 0, "eval": 0}
    assert s["completion_tokens"] == {"train": 40, "probe": 3, "eval": 0}
    assert s["seconds"]["train"]["generate"] == 0.5
    assert s["seconds"]["eval"]["verify"] == 0.25
    assert 0.015 < s["seconds"]["probe"]["select"] < 1.0
    assert json.loads(json.dumps(s)) == s
    assert "seconds" not in ledger.summary(seconds=False)
    assert json.dumps(ledger.summary(seconds=False))


def test_summary_is_a_fresh_snapshot():
    ledger = RolloutLedger()
    ledger.charge("train", rollouts=1)
    s = ledger.summary()
    s["rollouts"]["train"] = 99
    s["seconds"]["train"]["update"] = 99.0
    ledger.charge("train", rollouts=1)
    assert ledger.summary()["rollouts"]["train"] == 2
    assert ledger.summary()["seconds"]["train"]["update"] == 0.0
    assert s["rollouts"]["train"] == 99


def test_timer_charges_even_when_the_block_raises():
    ledger = RolloutLedger()
    with pytest.raises(RuntimeError), ledger.timer("train", "update"):
        time.sleep(0.01)
        raise RuntimeError
    assert ledger.seconds["train"]["update"] > 0.005


@pytest.mark.parametrize(("purpose", "phase"), [("training", None), ("TRAIN", "generate"), ("train", "gen"),
                                                 ("eval", "probe"), ("", None)])
def test_bad_purpose_or_phase(purpose, phase):
    ledger = RolloutLedger()
    before = ledger.summary()
    with pytest.raises(ValueError):
        ledger.charge(purpose, phase, rollouts=1)
    if phase is not None:
        with pytest.raises(ValueError), ledger.timer(purpose, phase):
            pass
    assert ledger.summary() == before


@pytest.mark.parametrize("field", ["seconds", "rollouts", "prompt_tokens", "completion_tokens"])
def test_negative_costs_rejected(field):
    ledger = RolloutLedger()
    ledger.charge("train", "generate", rollouts=3, seconds=1.0)
    before = ledger.summary()
    with pytest.raises(ValueError, match="non-negative"):
        ledger.charge("train", "generate", **{field: -1})
    assert ledger.summary() == before


def test_seconds_need_a_phase():
    with pytest.raises(ValueError, match="phase"):
        RolloutLedger().charge("train", seconds=1.0)


def test_state_dict_round_trip():
    ledger = RolloutLedger()
    ledger.charge("train", "update", seconds=1.25, rollouts=32, prompt_tokens=7, completion_tokens=9)
    ledger.charge("probe", "generate", seconds=0.5, rollouts=8)
    ledger.charge("eval", rollouts=64)
    state = json.loads(json.dumps(ledger.state_dict()))
    other = RolloutLedger()
    other.load_state_dict(state)
    assert other.summary() == ledger.summary()
    assert other.selector_rollouts == 40
    # The loaded ledger keeps counting independently of the state it came from.
    saved = copy.deepcopy(state)
    other.charge("train", rollouts=1)
    assert state == saved and ledger.rollouts["train"] == 32 and other.rollouts["train"] == 33


def test_reset_zeroes_everything():
    ledger = RolloutLedger()
    for purpose in PURPOSES:
        for phase in PHASES:
            ledger.charge(purpose, phase, seconds=1.0, rollouts=1, prompt_tokens=1, completion_tokens=1)
    ledger.reset()
    assert ledger.summary() == RolloutLedger().summary()


def test_nan_seconds_rejected():
    with pytest.raises(ValueError):
        RolloutLedger().charge("train", "generate", seconds=float("nan"))


def test_record_groups():
    ledger = RolloutLedger()
    assert ledger.summary()["esr"] is None
    ledger.record_groups(mixed=1, total=4)
    ledger.record_groups(mixed=3, total=4)
    s = ledger.summary()
    assert s["steps"] == 2 and s["groups"] == {"trained": 8, "mixed": 4} and s["esr"] == 0.5
    with pytest.raises(ValueError):
        ledger.record_groups(mixed=5, total=4)
    with pytest.raises(ValueError):
        ledger.record_groups(mixed=-1, total=4)
    other = RolloutLedger()
    other.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    assert other.summary() == ledger.summary()
    ledger.reset()
    assert ledger.summary() == RolloutLedger().summary()
