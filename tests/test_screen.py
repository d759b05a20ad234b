"""The screened greedies (max-sum through ``greedy_diverse(screen=...)``, float32 or bfloat16, and over
candidate sets; max-min over candidate sets) pick exactly the unscreened batches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from gps_env.agents import GPS
from gps_env.agents import gps as gps_module
from gps_env.selectors import greedy as greedy_module
from gps_env.selectors import greedy_diverse, greedy_maxmin, utility
from gps_env.selectors import maxmin as maxmin_module
from gps_env.selectors import screen as screen_module
from gps_env.selectors.screen import BFloat16Screen, Float32Screen

seeds = st.integers(0, 2**32 - 1)
SCREENS = (Float32Screen, BFloat16Screen)


def clustered_pool(seed: int, n: int, d: int, duplicates: bool) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings in a few tight clusters (as WordLlama's are), utilities with exact ties; optionally
    duplicated rows, so that gains tie exactly and the index tie-break decides."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(2, n // 50), d))
    e = centres[rng.integers(0, centres.shape[0], n)] + 0.3 * rng.normal(size=(n, d))
    if duplicates:
        e[rng.integers(0, n, n // 10)] = e[rng.integers(0, n, n // 10)]
    gamma = np.round(rng.random(n), 2)  # ties
    gamma[rng.random(n) < 0.3] = rng.choice([0.0, 1.0])
    return utility(gamma) / 0.25, (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("screen_class", SCREENS)
@settings(max_examples=40, deadline=None)
@given(seed=seeds, n=st.integers(40, 600), data=st.data())
def test_screened_greedy_picks_the_unscreened_batch(screen_class, seed, n, data):
    d = data.draw(st.sampled_from([8, 32, 256]))
    u, e = clustered_pool(seed, n, d, duplicates=data.draw(st.booleans()))
    b = data.draw(st.integers(2, min(n, 64)))
    lam = data.draw(st.sampled_from([0.05, 0.5, 1.0, 4.0]))
    previous = np.arange(data.draw(st.integers(0, 8)))
    plain, plain_terms = greedy_diverse(u, e, b, lam, previous=previous)
    screened, terms = greedy_diverse(u, e, b, lam, previous=previous, screen=screen_class(e))
    assert screened.tolist() == plain.tolist()
    assert terms == plain_terms


@pytest.mark.parametrize("screen_class", SCREENS)
def test_screened_greedy_at_scale_reads_the_pool_a_few_times_per_batch(screen_class):
    u, e = clustered_pool(0, 20000, 256, duplicates=False)
    screen = screen_class(e)
    calls = []

    def counting(vectors):
        calls.append(len(vectors))
        return screen(vectors)

    counting.rel_error = screen.rel_error
    previous = np.arange(32, 64)
    plain, _ = greedy_diverse(u, e, 64, 0.5, previous=previous)
    screened, _ = greedy_diverse(u, e, 64, 0.5, previous=previous, screen=counting)
    assert screened.tolist() == plain.tolist()
    assert len(calls) < 64 / 2  # the unscreened greedy reads the pool once per pick


@settings(max_examples=40, deadline=None)
@given(seed=seeds, n=st.integers(60, 600), data=st.data())
def test_a_large_candidate_set_is_screened_with_the_same_batch(seed, n, data):
    """Candidate sets from ``SCREEN_MIN_CANDIDATES`` rows (lowered here so that small sets reach it) are read
    through a float32 screen over their rows; the previous batch may lie outside them."""
    d = data.draw(st.sampled_from([8, 32, 256]))
    u, e = clustered_pool(seed, n, d, duplicates=data.draw(st.booleans()))
    rng = np.random.default_rng(seed)
    candidates = np.sort(rng.choice(n, data.draw(st.integers(n // 3, n)), replace=False))
    b = data.draw(st.integers(2, min(candidates.size, 64)))
    lam = data.draw(st.sampled_from([0.05, 0.5, 1.0, 4.0]))
    previous = rng.choice(n, data.draw(st.integers(0, 8)), replace=False)
    calls = []
    original = greedy_module._screened_greedy

    def counting(*args):
        calls.append(1)
        return original(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(greedy_module, "_screened_greedy", counting)
        patch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 10**9)
        plain, plain_terms = greedy_diverse(u, e, b, lam, previous=previous, candidates=candidates)
        assert not calls
        patch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 1)
        screened, terms = greedy_diverse(u, e, b, lam, previous=previous, candidates=candidates)
        assert calls
    assert screened.tolist() == plain.tolist()
    assert terms == plain_terms


@settings(max_examples=40, deadline=None)
@given(seed=seeds, n=st.integers(20, 600), data=st.data())
def test_the_screened_maxmin_greedy_picks_the_unscreened_batch(seed, n, data):
    """Max-min (PDTS) over ``SCREEN_MIN_CANDIDATES`` rows or more (lowered here) reads them through a float32
    screen; the batch is the unscreened greedy's, with or without candidates and a previous batch."""
    d = data.draw(st.sampled_from([8, 32, 256]))
    u, e = clustered_pool(seed, n, d, duplicates=data.draw(st.booleans()))
    rng = np.random.default_rng(seed)
    candidates = None
    if data.draw(st.booleans()):
        candidates = np.sort(rng.choice(n, data.draw(st.integers(max(2, n // 3), n)), replace=False))
    b = data.draw(st.integers(2, min(n if candidates is None else candidates.size, 64)))
    lam = data.draw(st.sampled_from([0.05, 0.5, 1.0, 4.0]))
    previous = rng.choice(n, data.draw(st.integers(0, 8)), replace=False)
    with pytest.MonkeyPatch.context() as patch, threadpool_limits(limits=1, user_api="blas"):
        patch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 10**9)
        plain, plain_terms = greedy_maxmin(u, e, b, lam, previous=previous, candidates=candidates)
        patch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 1)
        screened, terms = greedy_maxmin(u, e, b, lam, previous=previous, candidates=candidates)
    assert screened.tolist() == plain.tolist()
    assert terms == plain_terms


def test_the_screened_maxmin_greedy_reads_the_rows_a_few_times_per_batch(monkeypatch):
    u, e = clustered_pool(0, 20000, 256, duplicates=False)
    calls = []
    original = screen_module.Float32Screen.__call__

    def counting(self, vectors):
        calls.append(len(vectors))
        return original(self, vectors)

    monkeypatch.setattr(screen_module.Float32Screen, "__call__", counting)
    previous = np.arange(32, 64)
    with threadpool_limits(limits=1, user_api="blas"):
        screened, _ = greedy_maxmin(u, e, 64, 0.5, previous=previous)
        monkeypatch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 10**9)
        plain, _ = greedy_maxmin(u, e, 64, 0.5, previous=previous)
    assert screened.tolist() == plain.tolist()
    assert 0 < len(calls) < 64 / 2  # the unscreened greedy reads the rows once per pick


@pytest.mark.parametrize("declared", ["honest", "lying"])
def test_the_maxmin_window_is_what_keeps_the_batch_exact(monkeypatch, declared):
    """Screen products off by up to 0.05: declared, the window holds the pick and the batch is exact; declared
    as float32 rounding only, batches change (so the identity test above can fail)."""
    noise_scale = 0.05

    class Noisy(Float32Screen):
        def __init__(self, embeddings):
            super().__init__(embeddings)
            self._noise = np.random.default_rng(7)
            if declared == "honest":
                self.rel_error += noise_scale

        def __call__(self, vectors):
            columns = super().__call__(vectors)
            return columns + self._noise.uniform(-noise_scale, noise_scale, size=columns.shape).astype(np.float32)

    differs = 0
    with threadpool_limits(limits=1, user_api="blas"):
        for seed in range(10):
            u, e = clustered_pool(seed, 400, 32, duplicates=False)
            monkeypatch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 10**9)
            plain, _ = greedy_maxmin(u, e, 32, 0.5, previous=np.arange(8))
            monkeypatch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 1)
            monkeypatch.setattr(screen_module, "Float32Screen", Noisy)
            screened, _ = greedy_maxmin(u, e, 32, 0.5, previous=np.arange(8))
            monkeypatch.undo()
            differs += screened.tolist() != plain.tolist()
    assert differs == 0 if declared == "honest" else differs > 0


def test_a_screened_candidate_set_rejects_a_non_finite_previous_row(monkeypatch):
    u, e = clustered_pool(0, 200, 16, duplicates=False)
    e[150, 3] = np.nan  # outside the candidates, in the previous batch only
    monkeypatch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 1)
    with pytest.raises(ValueError, match="finite"):
        greedy_diverse(u, e, 8, 0.5, previous=np.array([150, 151]), candidates=np.arange(100))


@settings(max_examples=60, deadline=None)
@given(seed=seeds, n=st.integers(1, 5000), d=st.sampled_from([3, 64, 256]), data=st.data())
def test_row_dots_are_the_full_products_bit_for_bit(seed, n, d, data):
    """The screened greedy's exact gains read a few rows; a row's product must not depend on which rows were
    read with it (BLAS's tail kernel sums in another order: gathered alone, 1-3 rows differ in the last bits),
    or a near-tie is broken differently from the unscreened greedy."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, d)).astype(np.float32)
    v = (10 * rng.normal(size=d)).astype(np.float32)
    rows = np.sort(rng.choice(n, data.draw(st.integers(1, min(n, 40))), replace=False))
    with threadpool_limits(limits=1, user_api="blas"):  # as GPS runs the greedy
        assert greedy_module._row_dots(e, rows, v).tobytes() == (e @ v)[rows].tobytes()


@settings(max_examples=40, deadline=None)
@given(seed=seeds, n=st.integers(2, 3000), d=st.sampled_from([3, 64, 256]), data=st.data())
def test_maxmin_exact_distances_are_the_unscreened_ones_bit_for_bit(seed, n, d, data):
    """The screened max-min greedy's exact distance of a row to the picks (one product of the picks' rows
    with the row, brought up to date in two rounds) equals the unscreened greedy's, which takes one product of
    all rows with each pick."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, d)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    picked = rng.choice(n, data.draw(st.integers(1, min(n, 40))), replace=False).tolist()
    rows = np.sort(rng.choice(n, data.draw(st.integers(1, min(n, 20))), replace=False))
    exact, stamp = np.full(n, np.inf), np.zeros(n, dtype=np.int64)
    with threadpool_limits(limits=1, user_api="blas"):  # as GPS runs the greedy
        split = len(picked) // 2
        maxmin_module._bring_up_to_date(e, rows[::2], picked[:split], exact, stamp)
        maxmin_module._bring_up_to_date(e, rows, picked, exact, stamp)
        expected = np.full(n, np.inf)
        for pick in picked:
            expected = np.minimum(expected, (1.0 - (e @ e[pick])).astype(np.float64))
    assert exact[rows].tobytes() == expected[rows].tobytes()
    assert stamp[rows].tolist() == [len(picked)] * rows.size


def test_the_error_bound_is_what_keeps_the_batch_exact():
    """A screen whose products are off by more than it declares changes batches: the bound is load-bearing
    (and so the identity test above can fail)."""
    rng = np.random.default_rng(1)
    differs = 0
    for seed in range(10):
        u, e = clustered_pool(seed, 400, 32, duplicates=False)
        screen, noise = BFloat16Screen(e), rng.normal(scale=0.05, size=(400, 64))

        def lying(vectors, screen=screen, noise=noise):
            columns = screen(vectors)
            return [columns[j] + noise[:, j] for j in range(len(columns))]

        lying.rel_error = 0.0
        plain, _ = greedy_diverse(u, e, 32, 0.5)
        screened, _ = greedy_diverse(u, e, 32, 0.5, screen=lying)
        differs += screened.tolist() != plain.tolist()
    assert differs > 0


@pytest.mark.parametrize("screen_class", SCREENS)
@settings(max_examples=30, deadline=None)
@given(seed=seeds, scale=st.floats(0.01, 100.0), d=st.sampled_from([3, 64, 1024]))
def test_screen_error_is_within_its_bound(screen_class, seed, scale, d):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(300, d)).astype(np.float32)
    e[:100] /= np.linalg.norm(e[:100], axis=1, keepdims=True)  # mixed row norms: the bound uses the largest
    e[100:110] = e[100:110] * (1 + np.arange(d) % 2 * 1e-3)  # near-cancelling products with the vectors below
    v = (scale * rng.normal(size=(5, d))).astype(np.float32)
    v[0] = scale * np.tile([1.0, -1.0], d)[:d]
    screen = screen_class(e)
    columns = screen(v)
    exact = e.astype(np.float64) @ v.astype(np.float64).T
    for j in range(5):
        assert np.all(np.abs(columns[j] - exact[:, j]) <= screen.rel_error * np.linalg.norm(v[j].astype(np.float64)))


@pytest.mark.parametrize("screen_class", SCREENS)
def test_screen_rejects_bad_embeddings(screen_class):
    e = np.ones((4, 3), dtype=np.float32)
    for value in (np.nan, np.inf):
        bad = e.copy()
        bad[2, 1] = value
        with pytest.raises(ValueError, match="finite"):
            screen_class(bad)
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        screen_class(np.ones(3))
    with pytest.raises(ValueError, match="d <= 4096"):
        screen_class(np.ones((2, 4097), dtype=np.float32))


def test_float32_screen_reads_the_embeddings_without_a_copy():
    e = np.ones((5, 4), dtype=np.float32)
    Float32Screen(e)._e[0, 0] = 7.0
    assert e[0, 0] == 7.0


@pytest.mark.parametrize("screen_class", SCREENS)
def test_gps_screens_large_pools_with_the_same_batches(make_env, monkeypatch, screen_class):
    env = make_env(lenient=True, max_steps=4)
    monkeypatch.setattr(gps_module, "SCREEN_MIN_POOL", 1)
    monkeypatch.setattr(gps_module, "Float32Screen", screen_class)
    screened = GPS(env, seed=0, candidates=None)  # the screen serves the greedy over the whole pool
    monkeypatch.setattr(gps_module, "SCREEN_MIN_POOL", 10**9)
    plain = GPS(env, seed=0, candidates=None)
    assert isinstance(screened._screen, screen_class) and plain._screen is None
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        a, b = screened.act(obs), plain.act(obs)
        assert a["prompts"].tolist() == b["prompts"].tolist()
        obs, *_ = env.step(a)


@pytest.mark.parametrize("greedy", [greedy_diverse, greedy_maxmin])
@pytest.mark.parametrize("screened", [False, True])
def test_a_huge_lam_is_refused_by_name_and_the_largest_allowed_picks_distinct_prompts(monkeypatch, greedy, screened):
    """λ multiplies float32 products in float32: at about 1e39 the gains overflowed into NaN and a prompt could be
    picked twice (hypothesis found it through GPS(lam=1.98e39)). Above MAX_LAM it is refused, naming lam."""
    u, e = clustered_pool(3, 200, 16, duplicates=True)
    monkeypatch.setattr(greedy_module, "SCREEN_MIN_CANDIDATES", 1 if screened else 10**9)
    candidates, previous = np.arange(20, 52), np.arange(8)
    with pytest.raises(ValueError, match="lam"):
        greedy(u, e, 8, 1.98e39, previous=previous, candidates=candidates)
    batch, _ = greedy(u, e, 8, greedy_module.MAX_LAM, previous=previous, candidates=candidates)
    assert len(set(batch.tolist())) == 8 and set(batch.tolist()) <= set(candidates.tolist())


def test_gps_refuses_a_huge_lam_by_name(make_env):
    with pytest.raises(ValueError, match="lam"):
        GPS(make_env(lenient=True, max_steps=2), seed=0, lam=1.98e39)
