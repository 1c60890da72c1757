"""Statistics against independent computations (scipy, brute force, textbook definitions)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from kwsbench.results import stats


@pytest.mark.parametrize("correct,n", [(0, 10), (10, 10), (95, 100), (2371, 2495), (1, 3)])
def test_wilson_matches_score_test_inversion(correct, n):
    lo, hi = stats.wilson_interval(correct, n)
    assert 0 <= lo <= correct / n <= hi <= 1
    # the Wilson bounds are the p where the score statistic equals z: check by root equation
    z = stats.Z95
    for p in (lo, hi):
        if 0 < p < 1:
            assert abs(abs(correct / n - p) - z * np.sqrt(p * (1 - p) / n)) < 1e-9


def test_wilson_agrees_with_scipy_binomtest_wilson():
    res = sps.binomtest(83, 97).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = stats.wilson_interval(83, 97)
    assert lo == pytest.approx(res.low, abs=1e-9) and hi == pytest.approx(res.high, abs=1e-9)


def test_mcnemar_exact_matches_binomial_and_brute_force():
    rng = np.random.default_rng(3)
    a = rng.random(200) < 0.8
    b = rng.random(200) < 0.7
    res = stats.mcnemar_exact(a, b)
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert (res.only_a, res.only_b) == (n01, n10)
    k, m = min(n01, n10), n01 + n10
    brute = min(1.0, 2 * sum(sps.binom.pmf(i, m, 0.5) for i in range(k + 1)))
    assert res.p_value == pytest.approx(brute, rel=1e-9)
    assert stats.mcnemar_exact(a, a).p_value == 1.0


def test_benjamini_hochberg_against_definition():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    q, reject = stats.benjamini_hochberg(p, alpha=0.05)
    m = len(p)
    # q_i = min over j >= i (sorted) of p_j * m / j
    srt = np.sort(p)
    expected = [min(srt[j] * m / (j + 1) for j in range(i, m)) for i in range(m)]
    assert np.allclose(np.sort(q), expected)
    # step-up rule: reject the k smallest, k the largest i with p_(i) <= i/m * alpha
    k = max([i + 1 for i in range(m) if srt[i] <= (i + 1) / m * 0.05], default=0)
    assert reject.sum() == k and set(np.flatnonzero(reject)) == set(np.argsort(p)[:k])
    assert np.allclose(sps.false_discovery_control(p), q)


def test_speaker_bootstrap_is_seeded_and_cluster_level():
    rng = np.random.default_rng(0)
    speakers = [f"s{i // 10}" for i in range(300)]
    # correctness fully determined by speaker: the clip-level interval would be far too narrow
    good = {f"s{i}": rng.random() < 0.7 for i in range(30)}
    correct = np.array([good[s] for s in speakers])
    a = stats.speaker_bootstrap_interval(correct, speakers, seed=1, n_boot=500)
    b = stats.speaker_bootstrap_interval(correct, speakers, seed=1, n_boot=500)
    assert a == b
    assert a[0] < correct.mean() < a[1]
    w = stats.wilson_interval(int(correct.sum()), len(correct))
    assert (a[1] - a[0]) > 1.5 * (w[1] - w[0])
    state = np.random.get_state()[1].copy()
    stats.speaker_bootstrap_interval(correct, speakers, seed=2, n_boot=50)
    assert np.array_equal(state, np.random.get_state()[1]), "global RNG must not be touched"


def test_per_class_and_macro_f1_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    assert stats.per_class_accuracy(labels, preds, 4) == [0.5, 1.0, 0.5, None]
    f1 = [2 * 1 / (2 * 1 + 1 + 1), 2 * 2 / (2 * 2 + 1 + 0), 2 * 1 / (2 * 1 + 0 + 1)]
    assert stats.macro_f1(labels, preds, 4) == pytest.approx(np.mean(f1))


def test_mcnemar_rejects_unpaired():
    with pytest.raises(ValueError):
        stats.mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def test_bootstrap_unknown_speakers_are_own_clusters():
    correct = np.array(list(itertools.islice(itertools.cycle([True, False, True]), 90)))
    lo, hi = stats.speaker_bootstrap_interval(correct, [""] * 90, seed=0, n_boot=400)
    assert lo < correct.mean() < hi and hi - lo > 0.05


def _reference_speaker_bootstrap(correct, speakers, seed, n_boot, level):
    """The direct implementation: redraw the clusters and gather their sums for every call."""
    correct = np.asarray(correct, dtype=np.float64)
    keys = [s if s else f"\0clip{i}" for i, s in enumerate(speakers)]
    _, cluster = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    n_clusters = int(cluster.max()) + 1
    sums = np.bincount(cluster, weights=correct, minlength=n_clusters)
    sizes = np.bincount(cluster, minlength=n_clusters).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))
    acc = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    alpha = (1.0 - level) / 2
    return float(np.quantile(acc, alpha)), float(np.quantile(acc, 1 - alpha))


@pytest.mark.parametrize("case", range(6))
def test_speaker_bootstrap_equals_reference_exactly(case):
    rng = np.random.default_rng(100 + case)
    n = int(rng.integers(5, 3000))
    n_speakers = int(rng.integers(1, 200))
    speakers = [f"s{rng.integers(0, n_speakers)}" if rng.random() > 0.1 else "" for _ in range(n)]
    seed, n_boot, level = int(rng.integers(0, 2**31)), int(rng.integers(10, 1500)), [0.95, 0.9, 0.99][case % 3]
    # several cells over the same clips and seed: the later calls reuse the cached draws
    for p in (0.0, 0.5, 0.93, 1.0):
        correct = rng.random(n) < p
        got = stats.speaker_bootstrap_interval(correct, speakers if case % 2 else tuple(speakers), seed, n_boot, level)
        assert got == _reference_speaker_bootstrap(correct, speakers, seed, n_boot, level)


def test_speaker_bootstrap_rejects_non_binary_correctness():
    with pytest.raises(ValueError, match="0/1"):
        stats.speaker_bootstrap_interval(np.array([0.5, 1.0]), ["a", "b"], seed=0, n_boot=10)


def test_exact_binomial_half_equals_scipy():
    """The McNemar p-value computed in integers (no scipy import for the leaderboard) equals scipy's binomtest."""
    from scipy.stats import binomtest

    from kwsbench.results.stats import binomial_two_sided_half

    cases = [(k, n) for n in (*range(1, 40), 99, 100, 101, 500, 2001) for k in {0, 1, n // 3, n // 2, n - 1, n}]
    for k, n in cases:
        assert binomial_two_sided_half(k, n) == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-12, abs=1e-300)
    assert binomial_two_sided_half(0, 0) == 1.0
