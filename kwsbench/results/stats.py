"""Statistics for accuracy cells: Wilson intervals, speaker-level bootstrap, exact McNemar, Benjamini-Hochberg.

Everything takes plain arrays so a statistic can be recomputed later from the stored per-utterance
predictions. Randomness only through an explicitly seeded numpy Generator.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at p = 0 or 1 the bound is exactly 0 or 1; rounding must not move it
    lo = 0.0 if correct == 0 else max(0.0, centre - half)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> list[float | None]:
    """Recall per class (None for a class with no clips)."""
    out: list[float | None] = []
    for k in range(num_classes):
        mask = labels == k
        out.append(float(np.mean(preds[mask] == k)) if mask.any() else None)
    return out


def macro_f1(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in the labels."""
    f1s = []
    for k in range(num_classes):
        support = int(np.sum(labels == k))
        if support == 0:
            continue
        tp = int(np.sum((labels == k) & (preds == k)))
        fp = int(np.sum((labels != k) & (preds == k)))
        fn = support - tp
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


@functools.lru_cache(maxsize=4)
def _bootstrap_design(speakers: tuple[str, ...], seed: int, n_boot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster id per clip, W[b, c] = how often bootstrap replicate b drew cluster c, and W @ cluster sizes
    (the clip count of each replicate).

    Every cell of a run shares the clip set and seed, so the draws are made once per run instead of once
    per cell. Bounded because W is n_boot x n_clusters float64 (a few MB for a GSC-size test set).
    The arrays are read-only: they are shared between callers.
    """
    keys = [s if s else f"\0clip{i}" for i, s in enumerate(speakers)]
    _, cluster = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    n_clusters = int(cluster.max()) + 1
    draws = np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))
    # flat index b * n_clusters + c counts the draws of cluster c in replicate b
    flat = (np.arange(n_boot)[:, None] * n_clusters + draws).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_clusters).reshape(n_boot, n_clusters).astype(np.float64)
    sizes = np.bincount(cluster, minlength=n_clusters).astype(np.float64)
    totals = counts @ sizes
    for arr in (cluster, counts, totals):
        arr.flags.writeable = False
    return cluster, counts, totals


def speaker_bootstrap_interval(
    correct: np.ndarray, speakers: tuple[str, ...] | list[str], seed: int, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of accuracy when whole speakers are resampled with replacement.

    Clips with an unknown speaker ("", e.g. silence) are each their own cluster, so they still
    contribute their sampling variance.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) == 0:
        return 0.0, 1.0
    # W @ sums equals the sum over the drawn clusters exactly (in any order) only for integer-valued sums
    if not np.all((correct == 0) | (correct == 1)):
        raise ValueError("correct must hold one 0/1 (or bool) correctness value per clip")
    cluster, counts, totals = _bootstrap_design(tuple(speakers), int(seed), int(n_boot))
    sums = np.bincount(cluster, weights=correct, minlength=counts.shape[1])
    acc = (counts @ sums) / totals
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(acc, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass
class McNemarResult:
    only_a: int  # clips A got right and B wrong
    only_b: int
    p_value: float


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> McNemarResult:
    """Exact (binomial) McNemar test on paired correctness vectors of the same clips."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} vs {b.shape}")
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    return McNemarResult(only_a, only_b, binomial_two_sided_half(only_a, discordant))


def binomial_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n trials at p = 1/2 (scipy.stats.binomtest's, tested against it),
    in integers: the outcomes at least as far from n/2 as k, so kwsbench's leaderboard ranks models without
    importing scipy."""
    if n == 0:
        return 1.0
    m = min(k, n - k)
    if 2 * m >= n:  # k is the centre: every outcome is as extreme
        return 1.0
    term = total = 1  # C(n, 0)
    for i in range(m):
        term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
        total += term
    return min(1.0, 2 * total / 2**n)  # int / int: correctly rounded even for huge n


def benjamini_hochberg(p_values: list[float] | np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted q-values (step-up, monotone) and the reject decisions at `alpha`."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p.copy(), np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q, q <= alpha
