"""Neighbour predictions of unseen prompts' success: against a brute-force reference, and bad input."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gps_env.selectors import neighbours as neighbours_module
from gps_env.selectors.neighbours import choose_neighbours, neighbour_success


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    e = rng.normal(size=(n, d))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@contextmanager
def small_blocks():
    """Blocks of 7 rows, so that the block loop (and the leave-self-out offsets) run more than once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(neighbours_module, "BLOCK", 7)
        yield


def brute_force(query, seen, success, k, weight, leave_out=None):
    out = []
    for i, q in enumerate(query):
        similarity = seen @ q
        if leave_out is not None:
            similarity[leave_out[i]] = -np.inf
        nearest = np.argsort(-similarity, kind="stable")[:k]
        out.append((success[nearest].sum() + weight * success.mean()) / (k + weight))
    return np.array(out)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 60), m=st.integers(1, 30), data=st.data())
def test_neighbour_success_is_the_shrunk_mean_of_the_nearest(seed, n, m, data):
    rng = np.random.default_rng(seed)
    seen, query, success = unit_rows(rng, n, 5), unit_rows(rng, m, 5), rng.random(n)
    k = data.draw(st.integers(1, n))
    weight = data.draw(st.sampled_from([0.0, 1.0, 3.5]))
    with small_blocks():
        got = neighbour_success(query, seen, success, k, weight)
    assert np.allclose(got, brute_force(query, seen, success, k, weight))  # random vectors: no ties


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 50))
def test_choose_neighbours_scores_each_prompt_from_the_others(seed, n):
    rng = np.random.default_rng(seed)
    seen, success = unit_rows(rng, n, 4), rng.random(n)
    options = [1, 2, 5, 200]  # 200 > n - 1: skipped
    with small_blocks():
        best, errors = choose_neighbours(seen, success, options)
    assert set(errors) == {k for k in options if k < n}
    for k, error in errors.items():
        loo = brute_force(seen, seen, success, k, 1.0, leave_out=np.arange(n))
        assert error == pytest.approx(np.mean((loo - success) ** 2))
    assert errors[best] == min(errors.values())


def test_choose_neighbours_prefers_more_neighbours_when_outcomes_are_noisy_and_clustered():
    """Two clusters of prompts, one solved 80% of the time, one 20%, each outcome a noisy draw: averaging
    many neighbours beats the single nearest."""
    rng = np.random.default_rng(0)
    centres = unit_rows(rng, 2, 16)
    labels = rng.integers(0, 2, 400)
    seen = centres[labels] + 0.05 * rng.normal(size=(400, 16))
    seen /= np.linalg.norm(seen, axis=1, keepdims=True)
    success = rng.binomial(8, np.where(labels == 0, 0.8, 0.2)) / 8
    best, errors = choose_neighbours(seen, success, [1, 32])
    assert best == 32 and errors[32] < errors[1]
    query = centres + 0.05 * rng.normal(size=(2, 16))
    assert np.allclose(neighbour_success(query / np.linalg.norm(query, axis=1, keepdims=True), seen, success, 32),
                       [0.8, 0.2], atol=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seen": np.zeros((0, 3))}, "seen"),
        ({"query": np.ones((2, 4))}, "query"),
        ({"success": np.ones(3)}, "success"),
        ({"success": np.array([0.5, 0.5, 0.5, 1.5])}, r"success must be rates"),
        ({"success": np.array([0.5, np.nan, 0.5, 0.5])}, r"success must be rates"),
        ({"query": np.array([[np.nan, 0.0, 0.0]])}, "query embeddings must be finite"),
        ({"seen": np.full((4, 3), np.inf)}, "seen embeddings must be finite"),
        ({"neighbours": 0}, "neighbours"),
        ({"neighbours": 5}, "neighbours"),
        ({"neighbours": True}, "neighbours"),
        ({"prior_weight": -1.0}, "prior_weight"),
        ({"prior_weight": "x"}, "prior_weight"),
    ],
)
def test_neighbour_success_rejects_bad_input(kwargs, match):
    args = {"query": np.ones((2, 3)), "seen": np.eye(4, 3), "success": np.full(4, 0.5), "neighbours": 2,
            **kwargs}
    with pytest.raises(ValueError, match=match):
        neighbour_success(**args)


def test_choose_neighbours_rejects_bad_options():
    seen, success = np.eye(4, 3), np.full(4, 0.5)
    for options, match in (([0], "positive integers"), ([2.5], "positive integers"), ([4, 9], "below 4")):
        with pytest.raises(ValueError, match=match):
            choose_neighbours(seen, success, options)
