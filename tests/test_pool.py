"""PromptPool: validation, verification and WordLlama embeddings cached under $GPS_ENV_CACHE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gps_env.pool import PromptPool
from gps_env.tasks import AdditionTask, CountdownTask, FunctionTask, Problem, exact_match


def small_pool() -> PromptPool:
    add, cd = AdditionTask(width=3), CountdownTask()
    problems = [add.make(12, 34), add.make(999, 1), cd.make([3, 5, 7], "3*5+7"), cd.make([2, 9], "2*9")]
    return PromptPool(problems, [add, cd])


def test_pool_basics():
    pool = small_pool()
    assert len(pool) == 4 and pool[0].prompt == "210+430="
    assert pool.prompts == [p.prompt for p in pool.problems]
    assert pool.ids == [p.uid for p in pool.problems]
    assert pool.verify(0, "6400") == 1.0 and pool.verify(0, "0046") == 0.0
    assert pool.verify(2, "7+3*5") == 1.0 and pool.verify(3, "9*2") == 1.0 and pool.verify(3, "9+9") == 0.0
    by_mapping = PromptPool(pool.problems, {"addition": AdditionTask(width=3), "countdown": CountdownTask()})
    assert by_mapping.verify(1, "0001") == 1.0


def test_pool_validation():
    task = FunctionTask("user", exact_match)
    with pytest.raises(ValueError):
        PromptPool([], [task])
    with pytest.raises(ValueError, match="verifier"):
        PromptPool([Problem("q", "a", "other")], [task])
    with pytest.raises(ValueError, match="distinct"):
        PromptPool([Problem("q", "a", "user"), Problem("q", "b", "user")], [task])
    # The same prompt under two tasks is two problems.
    assert len(PromptPool([Problem("q", "a", "user"), Problem("q", "a", "u2")],
                          [task, FunctionTask("u2", exact_match)])) == 2


def test_embeddings_are_normalised_and_cached(tmp_path, monkeypatch):
    # A cache of its own: other tests embed pools into the shared session cache in any order.
    monkeypatch.setenv("GPS_ENV_CACHE", str(tmp_path))
    cache_root = tmp_path
    pool = small_pool()
    emb = pool.embeddings
    assert emb.shape == (4, 256) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert pool.embeddings is emb  # computed once per pool
    files = list((Path(cache_root) / "embeddings").glob("wordllama256-*.npy"))
    assert len(files) == 1
    assert np.array_equal(np.load(files[0]), emb)
    # A second pool with the same prompts loads the cached file; a different pool gets its own.
    assert np.array_equal(small_pool().embeddings, emb)
    other = PromptPool(small_pool().problems[:3], [AdditionTask(width=3), CountdownTask()])
    np.testing.assert_allclose(other.embeddings, emb[:3], atol=1e-5)
    assert len(list((Path(cache_root) / "embeddings").glob("wordllama256-*.npy"))) == 2
    # Embeddings tell prompts apart.
    assert not np.allclose(emb[0], emb[2])
