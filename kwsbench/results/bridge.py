"""Post-stratified estimate of a published protocol's accuracy from per-class recalls measured elsewhere.

Two 12-class Speech Commands test protocols can hold the same populations of keyword and unknown clips in
different proportions (the papers' all-unknown split is ~60 % unknown, the canonical set ~8 %), and build
their silence items by different rules. Recall within a stratum transfers where the clips come from the
same population, so the reported protocol's accuracy is estimated as

    estimate = sum over strata s of  w_s * recall_s,     w_s = the reported protocol's share of stratum s

with keyword and unknown recall measured on the user's clips and silence recall measured on silence items
built by the reported protocol's own rule (a separate measurement).

Interval: the linearised (Taylor) cluster-robust variance of that estimator, the analytic counterpart of a
speaker-cluster bootstrap: every speaker is one cluster across all strata (the same person says "yes" and
"bird"), a clip without a speaker is a cluster of its own. It carries each stratum's uncertainty in
proportion to its weight. Because that variance is zero for a stratum with every clip right (or wrong),
which a small sample often has, it is floored by the sum of the strata's Wilson variances. A stratum whose
items are identical (all-zero audio) is exact and adds no variance. A stratum with no measurement is
bounded: it may add anything from 0 to its weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kwsbench.results.stats import Z95, wilson_interval


@dataclass(frozen=True)
class Stratum:
    name: str
    weight: float  # the reported protocol's share of this stratum (all strata sum to 1)
    correct: np.ndarray  # 0/1 per measured item
    clusters: tuple[str, ...]  # speaker per item; "" = a cluster of its own
    exact: bool = False  # identical items: the recall is known without sampling error


@dataclass(frozen=True)
class BridgeEstimate:
    estimate: float  # 0..1; with a missing stratum, the middle of its bound
    low: float
    high: float
    recalls: dict[str, float]
    counts: dict[str, int]
    weights: dict[str, float]
    missing: tuple[str, ...] = ()  # strata without a measurement, bounded in [0, weight]
    sd: float = 0.0  # standard deviation of the measured part
    notes: list[str] = field(default_factory=list)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def cluster_variance(strata: list[Stratum]) -> float:
    """Linearised cluster-robust variance of sum_s w_s * mean(correct_s) (exact strata left out)."""
    contrib: dict[str, float] = {}
    for s in strata:
        if s.exact or len(s.correct) == 0:
            continue
        y = np.asarray(s.correct, dtype=np.float64)
        resid = s.weight * (y - y.mean()) / len(y)
        for i, (c, r) in enumerate(zip(s.clusters, resid, strict=True)):
            key = c if c else f"\0{s.name}{i}"
            contrib[key] = contrib.get(key, 0.0) + float(r)
    k = len(contrib)
    if k < 2:
        return 0.0
    u = np.fromiter(contrib.values(), dtype=np.float64)
    return k / (k - 1) * float(np.sum(u * u))


def wilson_variance(strata: list[Stratum], z: float = Z95) -> float:
    """sum_s w_s^2 * (Wilson half-width_s / z)^2: the independent-clip variance, never zero at 0/n or n/n."""
    total = 0.0
    for s in strata:
        if s.exact or len(s.correct) == 0:
            continue
        lo, hi = wilson_interval(int(np.sum(s.correct)), len(s.correct), z)
        total += (s.weight * (hi - lo) / (2 * z)) ** 2
    return total


def post_stratified(strata: list[Stratum], missing: dict[str, float] | None = None, z: float = Z95) -> BridgeEstimate:
    """The estimate and its interval (see the module docstring). `missing`: stratum name -> weight."""
    missing = missing or {}
    total = sum(s.weight for s in strata) + sum(missing.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"stratum weights sum to {total}, not 1")
    empty = [s.name for s in strata if len(s.correct) == 0]
    if empty:
        raise ValueError(f"strata with no measured items: {', '.join(empty)}")
    recalls = {s.name: float(np.mean(s.correct)) for s in strata}
    known = sum(s.weight * recalls[s.name] for s in strata)
    sd = math.sqrt(max(cluster_variance(strata), wilson_variance(strata, z)))
    gap = sum(missing.values())
    low, high = max(0.0, known - z * sd), min(1.0, known + gap + z * sd)
    return BridgeEstimate(
        estimate=known + gap / 2, low=low, high=high, recalls=recalls,
        counts={s.name: len(s.correct) for s in strata}, weights={s.name: s.weight for s in strata} | missing,
        missing=tuple(missing), sd=sd,
    )
