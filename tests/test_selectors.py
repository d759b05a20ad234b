"""Properties of the selection layer ``gps_env.selectors`` (scores, optimisers, the greedy), over random pools
(hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gps_env.metrics import batch_terms, spearman
from gps_env.selectors import (
    band_filter,
    candidate_count,
    deal_candidates,
    draw_candidates,
    greedy_diverse,
    pairing_choice,
    thompson_draws,
    top_nearest_target,
    utility,
)

seeds = st.integers(0, 2**32 - 1)


def random_pool(seed: int, n: int, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gamma = rng.random(n)
    gamma[rng.random(n) < 0.3] = rng.choice([0.0, 1.0])  # ties at the extremes, as in real pools
    e = rng.normal(size=(n, d))
    return gamma, e / np.linalg.norm(e, axis=1, keepdims=True)


def test_utility_peaks_at_target():
    u = utility(np.array([0.0, 0.3, 0.5, 0.7, 1.0]))
    assert u.argmax() == 2 and u[1] == pytest.approx(u[3]) and u[0] == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="target"):
        utility(np.zeros(2), target=1.5)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, n=st.integers(1, 60), data=st.data())
def test_top_nearest_target_never_leaves_out_a_nearer_candidate(seed, n, data):
    gamma, _ = random_pool(seed, n)
    b = data.draw(st.integers(1, n))
    target = data.draw(st.floats(0, 1))
    picked = top_nearest_target(gamma, b, target, rng=np.random.default_rng(seed))
    assert picked.shape == (b,) and len(set(picked.tolist())) == b
    assert picked.min() >= 0 and picked.max() < n
    left_out = np.setdiff1d(np.arange(n), picked)
    if left_out.size:
        assert np.abs(gamma[picked] - target).max() <= np.abs(gamma[left_out] - target).min() + 1e-12


@settings(max_examples=40, deadline=None)
@given(seed=seeds, n=st.integers(2, 50), data=st.data())
def test_top_nearest_target_respects_candidates(seed, n, data):
    gamma, _ = random_pool(seed, n)
    m = data.draw(st.integers(1, n))
    candidates = np.random.default_rng(seed).choice(n, m, replace=False)
    picked = top_nearest_target(gamma, data.draw(st.integers(1, m)), candidates=candidates)
    assert set(picked.tolist()) <= set(candidates.tolist())


def test_top_nearest_target_bad_b():
    with pytest.raises(ValueError, match="b=5"):
        top_nearest_target(np.zeros(3), 5)


def test_band_filter():
    assert band_filter(np.array([0.1, 0.3, 0.5, 0.7, 0.9]), 0.3, 0.7).tolist() == [False, True, True, True, False]
    with pytest.raises(ValueError, match="low"):
        band_filter(np.zeros(1), 0.8, 0.2)


def test_thompson_draws_seeded_and_validated():
    a, b = np.array([1.0, 50.0, 1.0]), np.array([1.0, 1.0, 50.0])
    x = thompson_draws(a, b, np.random.default_rng(0))
    assert np.array_equal(x, thompson_draws(a, b, np.random.default_rng(0)))
    assert np.all((x >= 0) & (x <= 1)) and x[1] > x[2]
    with pytest.raises(ValueError, match="positive"):
        thompson_draws(np.array([0.0]), np.array([1.0]), np.random.default_rng(0))


@settings(max_examples=60, deadline=None)
@given(seed=seeds, n=st.integers(1, 50), data=st.data())
def test_greedy_with_zero_lambda_is_top_b_by_utility(seed, n, data):
    gamma, e = random_pool(seed, n)
    gamma = gamma + 1e-9 * np.arange(n)  # distinct utilities, so "top-B" is unique
    b = data.draw(st.integers(1, n))
    u = utility(gamma)
    picked, _ = greedy_diverse(u, e, b, lam=0.0, previous=np.arange(min(3, n)))
    assert set(picked.tolist()) == set(np.argsort(-u)[:b].tolist())


def objective(u, e, batch, lam, previous, distance="cosine"):
    t = batch_terms(u, e, batch, previous, distance)
    return t["utility"] + lam * (t["dispersion"] + t["inter_step"])


@settings(max_examples=60, deadline=None)
@given(seed=seeds, n=st.integers(3, 9), data=st.data())
def test_greedy_is_within_half_of_the_brute_force_optimum(seed, n, data):
    """Borodin et al.'s greedy is a 1/2-approximation for max-sum diversification with a non-negative
    modular utility and a metric distance: check it against exhaustive search on small pools (chordal
    distance, the metric; utilities shifted to be non-negative)."""
    gamma, e = random_pool(seed, n, d=data.draw(st.integers(2, 8)))
    b = data.draw(st.integers(2, n))
    lam = data.draw(st.floats(0.0, 3.0))
    u = utility(gamma) + 0.25  # in [0, 0.25]
    prev = np.array([0]) if data.draw(st.booleans()) else None
    picked, terms = greedy_diverse(u, e, b, lam, previous=prev, distance="chordal")
    assert len(set(picked.tolist())) == b
    best = max(objective(u, e, np.array(s), lam, prev, "chordal") for s in itertools.combinations(range(n), b))
    got = objective(u, e, picked, lam, prev, "chordal")
    assert got >= 0.5 * best - 1e-9
    assert got == pytest.approx(terms["utility"] + lam * (terms["dispersion"] + terms["inter_step"]))


@pytest.mark.parametrize("distance", ["cosine", "chordal"])
def test_greedy_matches_a_straightforward_implementation(distance):
    gamma, e = random_pool(7, 40, d=16)
    u, b, lam, prev = utility(gamma), 8, 0.7, np.arange(5)
    picked, _ = greedy_diverse(u, e, b, lam, previous=prev, distance=distance)
    chosen: list[int] = []
    for _ in range(b):  # O(N·B·d) reference: every candidate's greedy score recomputed from scratch
        scores = [_score(u, e, chosen, t, b, lam, prev, distance) if t not in chosen else -np.inf for t in range(40)]
        chosen.append(int(np.argmax(scores)))
    assert picked.tolist() == chosen


def _score(u, e, chosen, t, b, lam, prev, distance):
    """½·(modular gain) + dispersion gain of adding t, with F normalised by the final batch size b."""
    def d(x, y):
        c = 1 - e[x] @ e[y]
        return c if distance == "cosine" else np.sqrt(max(2 * c, 0.0))

    modular = u[t] / b + lam * sum(d(t, p) for p in prev) / (b * len(prev))
    return 0.5 * modular + lam * 2.0 / (b * (b - 1)) * sum(d(t, s) for s in chosen)


def test_greedy_rejects_bad_input():
    gamma, e = random_pool(0, 10)
    with pytest.raises(ValueError, match="lam"):
        greedy_diverse(utility(gamma), e, 3, lam=-1.0)
    for value in (np.nan, np.inf, -np.inf):
        for row in (0, 2, 9):
            bad = e.copy()
            bad[row, 1] = value
            for distance in ("cosine", "chordal"):
                with pytest.raises(ValueError, match="finite"):
                    greedy_diverse(utility(gamma), bad, 3, lam=0.5, distance=distance)
            with pytest.raises(ValueError, match="finite"):  # only through the previous batch
                greedy_diverse(utility(gamma), bad, 3, lam=0.5, previous=np.array([row]),
                               candidates=np.array([r for r in range(10) if r != row]))
    bad = e.copy()
    bad[int(np.argmax(utility(gamma))), 0] = np.nan  # lam = 0: the embedding is used only in the batch terms
    with pytest.raises(ValueError, match="finite"):
        greedy_diverse(utility(gamma), bad, 3, lam=0.0)
    with pytest.raises(ValueError, match="utilities"):
        greedy_diverse(np.full(10, np.nan), e, 3, lam=0.5)
    # rows outside the candidates are never read
    bad = e.copy()
    bad[5] = np.nan
    batch, _ = greedy_diverse(utility(gamma), bad, 3, lam=0.5, candidates=np.arange(5))
    assert set(batch.tolist()) <= set(range(5))
    with pytest.raises(ValueError, match="b=11"):
        greedy_diverse(utility(gamma), e, 11, lam=0.5)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, n=st.integers(4, 60), k=st.integers(2, 16), data=st.data())
def test_pairing_choice_bands_and_distinctness(seed, n, k, data):
    rng = np.random.default_rng(seed)
    success = rng.integers(0, k + 1, size=n) / k
    c = data.draw(st.integers(1, k - 1))
    n_pairs = data.draw(st.integers(1, n // 2))
    pos, neg = pairing_choice(success, k, n_pairs, c, rng=rng)
    assert pos.size == neg.size == n_pairs
    assert len(set(pos.tolist()) | set(neg.tolist())) == 2 * n_pairs
    in_pos = (success >= 1 / k - 1e-12) & (success <= c / k + 1e-12)
    # Whenever enough in-band positives exist, every chosen positive is in band (and likewise below).
    if in_pos.sum() >= n_pairs:
        assert np.all(in_pos[pos])


def test_pairing_choice_prefers_hard_anchors_and_brittle_easies():
    success = np.array([0, 1 / 8, 2 / 8, 4 / 8, 6 / 8, 7 / 8, 1])
    pos, neg = pairing_choice(success, 8, 1, c=2)
    assert pos.tolist() == [1] and neg.tolist() == [5]
    with pytest.raises(ValueError, match="k >= 2"):
        pairing_choice(success, 1, 1)


def test_spearman_sign_ties_and_constant():
    assert spearman(np.array([0.1, 0.2, 0.3]), np.array([0.0, 0.5, 1.0])) == pytest.approx(1.0)
    assert spearman(np.array([0.1, 0.2, 0.3]), np.array([1.0, 0.5, 0.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.894427, 1e-5)
    assert np.isnan(spearman(np.array([1.0, 2.0]), np.array([0.5, 0.5])))


@settings(max_examples=200, deadline=None)
@given(ratio=st.floats(1.0, 64.0), b=st.integers(1, 64), n=st.integers(1, 2000))
def test_candidate_count_is_ratio_times_b_within_b_and_the_pool(ratio, b, n):
    m = candidate_count(ratio, b, n)
    assert isinstance(m, int) and m == min(n, max(b, round(ratio * b)))
    assert min(b, n) <= m <= n
    assert candidate_count(1, b, n) == min(b, n) and candidate_count(10**9, b, n) == n


@pytest.mark.parametrize("bad", [0.5, 0, -2, float("nan"), float("inf"), None, "4", True,
                                 pytest.param(10**400, id="10**400"), np.array([2.0]), [4], b"4"])
def test_candidate_count_rejects_a_bad_ratio_by_name(bad):
    with pytest.raises(ValueError, match="ratio"):
        candidate_count(bad, 8, 100)
    with pytest.raises(ValueError, match="candidates"):
        draw_candidates(np.random.default_rng(0), 100, 8, bad, name="candidates")


@pytest.mark.parametrize("huge", [1e308, float(np.finfo(np.float64).max), 2**70, np.float64(1e300)])
def test_candidate_count_of_a_huge_ratio_is_the_pool(huge):
    assert candidate_count(huge, 8, 100) == 100  # not an OverflowError from round(inf)
    assert draw_candidates(np.random.default_rng(0), 100, 8, huge).size == 100


@settings(max_examples=100, deadline=None)
@given(seed=seeds, ratio=st.sampled_from([1, 1.0, 1.03, 2.5, 4, 16.0, 3.3, 100.0]), b=st.integers(1, 40),
       n=st.integers(1, 700))
def test_draw_candidates_draws_what_the_inline_choices_drew(seed, ratio, b, n):
    """The same indices and the same RNG stream as each call site's former inline ``rng.choice``."""
    b = min(b, n)
    mopps = np.random.default_rng(seed)  # MoPPS, GPS (candidates mode), Pairing
    drawn = draw_candidates(mopps, n, b, ratio)
    inline = np.random.default_rng(seed)
    expected = inline.choice(n, size=int(min(n, max(b, round(ratio * b)))), replace=False)
    assert drawn.tolist() == expected.tolist() and drawn.dtype == expected.dtype
    assert mopps.random() == inline.random()
    learned = np.random.default_rng(seed)  # LearnedSelector, CandidateWindow: no max(b, .) (ratio >= 1)
    drawn = draw_candidates(learned, n, b, ratio, name="candidates")
    inline = np.random.default_rng(seed)
    expected = inline.choice(n, size=min(n, round(ratio * b)), replace=False)
    assert drawn.tolist() == expected.tolist()
    assert learned.random() == inline.random()
    assert np.unique(drawn).size == drawn.size and ((drawn >= 0) & (drawn < n)).all()


@settings(max_examples=100, deadline=None)
@given(seed=seeds, n=st.integers(1, 300), data=st.data())
def test_deal_candidates_is_a_run_of_shuffled_epochs(seed, n, data):
    """Every prefix of what is dealt holds each prompt as often as any other, give or take one; a set never
    repeats a prompt; ``allowed`` filters what is dealt and caps the set's size."""
    rng, queue, dealt = np.random.default_rng(seed), np.empty(0, np.int64), []
    for count in data.draw(st.lists(st.integers(1, n), min_size=1, max_size=12)):
        got, queue = deal_candidates(rng, queue, n, count)
        assert got.size == count and np.unique(got).size == count and got.dtype == np.int64
        assert ((queue >= 0) & (queue < n)).all() and np.unique(queue).size == queue.size
        dealt.extend(got.tolist())
        counts = np.bincount(dealt, minlength=n)
        assert counts.max() - counts.min() <= 1
    allowed = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    count = data.draw(st.integers(1, n))
    got, rest = deal_candidates(rng, queue, n, count, allowed)
    assert got.size == min(count, allowed.sum()) and allowed[got].all() and np.unique(got).size == got.size
    again = np.random.default_rng(seed)
    first, _ = deal_candidates(again, np.empty(0, np.int64), n, n)
    assert sorted(first.tolist()) == list(range(n))
