"""Shared fixtures: a tiny warm-started policy (trained once per session) and small envs around it."""

from __future__ import annotations

import os
import shutil
import tempfile

# Before anything from gps_env runs: keep warm-start and WordLlama embedding caches out of ~/.cache.
_CACHE_ROOT = tempfile.mkdtemp(prefix="gps_env_tests_")
os.environ["GPS_ENV_CACHE"] = _CACHE_ROOT

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gps_env.env import PromptSelectionEnv  # noqa: E402
from gps_env.policy import PolicyConfig, load_policy, warm_start  # noqa: E402
from gps_env.pool import PromptPool  # noqa: E402
from gps_env.tasks import AdditionTask, FunctionTask, Problem  # noqa: E402

# The tiny models run tens of times faster on one intra-op thread than on two when the (shared, 2-core)
# machine is busy: idle OpenMP workers spin against other jobs. Results are the same either way.
torch.set_num_threads(1)

TINY_CONFIG = PolicyConfig(
    hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
    max_steps=40, check_every=20, check_size=64, batch_size=64,
)

#: A verifier the untrained tiny policy passes about half the time, so GRPO groups are mixed and the
#: policy actually moves in env tests (the real tasks give the tiny policy reward 0 everywhere).
LENIENT = FunctionTask("starts_digit", lambda completion, answer: completion != "" and completion[0] in "0123456789")


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory):
    return warm_start(TINY_CONFIG, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture
def model_and_tokenizer(tiny_policy):
    """A fresh copy of the tiny policy per test (tests may train it)."""
    return load_policy(tiny_policy)


def _lenient_problems(n: int, seed: int, exclude: set[str] = frozenset()) -> list[Problem]:
    task, rng, out, seen = AdditionTask(width=3), np.random.default_rng(seed), [], set(exclude)
    while len(out) < n:
        p = task.sample(rng)
        q = Problem(p.prompt, p.answer, LENIENT.name, p.meta)
        if q.uid not in seen:
            seen.add(q.uid)
            out.append(q)
    return out


@pytest.fixture(scope="session")
def lenient_pools() -> tuple[PromptPool, PromptPool]:
    pool = _lenient_problems(48, seed=1)
    heldout = _lenient_problems(16, seed=2, exclude={p.uid for p in pool})
    return PromptPool(pool, [LENIENT]), PromptPool(heldout, [LENIENT])


ENV_DEFAULTS = dict(
    batch_size=4, rollouts_per_prompt=4, pool_size=48, heldout_size=16, max_steps=6, eval_every=3,
    time_in_info=False, progress=False,
)


@pytest.fixture
def make_env(tiny_policy, lenient_pools):
    """``make_env(lenient=False, **overrides)``: a small env on the tiny policy, closed at teardown.

    ``lenient=True`` swaps in pools verified by :data:`LENIENT`, so steps have mixed groups and train.
    """
    made: list[PromptSelectionEnv] = []

    def make(lenient: bool = False, **overrides) -> PromptSelectionEnv:
        kwargs = {**ENV_DEFAULTS, "policy": tiny_policy, **overrides}
        if lenient:
            kwargs.setdefault("pool", lenient_pools[0])
            kwargs.setdefault("heldout", lenient_pools[1])
        env = PromptSelectionEnv(**kwargs)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
