"""Test-time allocation: the budget is spent exactly, within bounds, and where it pays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gps_env.selectors import allocate_samples


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 40), mode=st.sampled_from(["coverage", "window"]), data=st.data())
def test_budget_is_spent_exactly_within_bounds(seed, n, mode, data):
    gamma = np.random.default_rng(seed).random(n)
    gamma[: n // 3] = 0.0
    lo = data.draw(st.integers(0, 2))
    hi = data.draw(st.integers(max(lo, 1), 10))
    budget = data.draw(st.integers(n * lo, n * hi))
    counts = allocate_samples(gamma, budget, mode, min_samples=lo, max_samples=hi)
    assert counts.sum() == budget and counts.min() >= lo and counts.max() <= hi and counts.dtype == np.int64


def expected_coverage(gamma, counts):
    return float(np.mean(1 - (1 - gamma) ** counts))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 8), extra=st.integers(0, 10))
def test_coverage_mode_is_optimal_for_the_predicted_rates(seed, n, extra):
    """Against exhaustive search over all allocations of the extra samples (small cases)."""
    gamma = np.random.default_rng(seed).random(n)
    budget = n + extra
    counts = allocate_samples(gamma, budget, "coverage")
    best = 0.0
    stack = [(0, [])]
    while stack:  # enumerate compositions of `extra` into n parts
        left, parts = stack.pop()
        if len(parts) == n - 1:
            best = max(best, expected_coverage(gamma, np.array(parts + [extra - left]) + 1))
            continue
        for a in range(extra - left + 1):
            stack.append((left + a, parts + [a]))
    assert expected_coverage(gamma, counts) >= best - 1e-9


def test_coverage_mode_spends_on_hard_but_solvable_prompts():
    counts = allocate_samples(np.array([0.0, 0.1, 0.5, 1.0]), 16, "coverage")
    assert counts[0] == 1 and counts[3] == 1 and counts[1] > counts[2] > 1


def test_window_mode_boosts_the_window():
    counts = allocate_samples(np.array([0.0, 0.3, 0.3, 1.0]), 20, "window", window=(0.1, 0.6), boost=4.0)
    assert counts[1] == counts[2] > counts[0] and counts.sum() == 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": np.array([0.5, 1.5]), "budget": 4}, "probabilities"),
        ({"gamma": np.array([0.5, 0.5]), "budget": 1}, "budget"),
        ({"gamma": np.array([0.5, 0.5]), "budget": 9, "max_samples": 4}, "budget"),
        ({"gamma": np.array([0.5]), "budget": 2, "mode": "best"}, "mode"),
        ({"gamma": np.array([0.5]), "budget": 2, "mode": "window", "boost": 0.5}, "boost"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        allocate_samples(**kwargs)
