"""The post-stratified bridge: hand-computed estimate and interval, agreement with a speaker bootstrap, and the
bridged verdicts (pure functions, no model)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from kwsbench.results.baselines import Reported, load_protocol_priors
from kwsbench.results.bridge import Stratum, post_stratified
from kwsbench.results.stats import Z95, wilson_interval
from kwsbench.results.verdicts import CONSISTENT_BRIDGED, DEVIATES_BRIDGED, NOT_COMPARABLE, verdict


def _strata():
    # recalls 3/4, 1/2 and 4/5; speaker a speaks in two strata, silence items have no speaker
    return [Stratum("keyword", 0.5, np.array([1, 1, 1, 0.0]), ("a", "a", "b", "c")),
            Stratum("unknown", 0.3, np.array([1, 0.0]), ("a", "d")),
            Stratum("silence", 0.2, np.array([1, 1, 1, 1, 0.0]), ("",) * 5)]


def test_estimate_and_interval_by_hand():
    est = post_stratified(_strata())
    assert est.estimate == pytest.approx(0.5 * 0.75 + 0.3 * 0.5 + 0.2 * 0.8)  # 0.685
    # per-cluster linearised contributions w_s * (y - r_s) / n_s, summed within a speaker
    a = 0.5 * 0.25 / 4 * 2 + 0.3 * 0.5 / 2
    b, c, d = 0.5 * 0.25 / 4, 0.5 * -0.75 / 4, 0.3 * -0.5 / 2
    sil = [0.2 * 0.2 / 5] * 4 + [0.2 * -0.8 / 5]
    u = [a, b, c, d, *sil]
    cluster_var = len(u) / (len(u) - 1) * sum(x * x for x in u)
    wilson_var = sum((w * (hi - lo) / (2 * Z95)) ** 2 for w, (lo, hi) in
                     ((0.5, wilson_interval(3, 4)), (0.3, wilson_interval(1, 2)), (0.2, wilson_interval(4, 5))))
    sd = math.sqrt(max(cluster_var, wilson_var))
    assert est.sd == pytest.approx(sd)
    assert est.low == pytest.approx(max(0.0, 0.685 - Z95 * sd))
    assert est.high == pytest.approx(min(1.0, 0.685 + Z95 * sd))
    assert est.recalls == {"keyword": 0.75, "unknown": 0.5, "silence": 0.8}


def test_missing_stratum_is_bounded_and_exact_stratum_adds_no_variance():
    kw, unk, _ = _strata()
    bounded = post_stratified([kw, unk], missing={"silence": 0.2})
    known = 0.5 * 0.75 + 0.3 * 0.5
    assert bounded.missing == ("silence",) and bounded.estimate == pytest.approx(known + 0.1)
    assert bounded.low == pytest.approx(known - Z95 * bounded.sd)
    assert bounded.high == pytest.approx(min(1.0, known + 0.2 + Z95 * bounded.sd))
    zero = Stratum("silence", 0.2, np.ones(4), ("",) * 4, exact=True)
    with_zero = post_stratified([kw, unk, zero])
    assert with_zero.sd == pytest.approx(post_stratified([kw, unk], missing={"silence": 0.2}).sd)
    with pytest.raises(ValueError, match="sum to"):
        post_stratified([kw, unk])


def test_analytic_interval_agrees_with_a_speaker_bootstrap():
    """The linearised variance is the analytic counterpart of resampling speakers: on a set with 150 speakers,
    correlated within speaker, the two standard deviations agree within 15 %."""
    rng = np.random.default_rng(3)
    speakers = np.repeat(np.arange(150), 8)
    skill = rng.uniform(0.6, 1.0, 150)[speakers]
    is_kw = rng.random(len(speakers)) < 0.7
    correct = (rng.random(len(speakers)) < skill).astype(float)
    spk = tuple(str(s) for s in speakers)
    w = {"keyword": 0.35, "unknown": 0.65}

    def strata(idx):
        return [Stratum(n, w[n], correct[idx][m], tuple(np.array(spk)[idx][m]))
                for n, m in (("keyword", is_kw[idx]), ("unknown", ~is_kw[idx]))]

    analytic = post_stratified(strata(np.arange(len(spk)))).sd
    reps, rows_of = [], [np.flatnonzero(speakers == s) for s in range(150)]
    for _ in range(400):
        idx = np.concatenate([rows_of[s] for s in rng.integers(0, 150, 150)])
        reps.append(sum(s.weight * s.correct.mean() for s in strata(idx)))
    assert analytic == pytest.approx(float(np.std(reps)), rel=0.15)


def _row(value: float, split: str = "test", spread: float | None = None) -> Reported:
    return Reported("p", "m", "v2-12-all-unknown", 12, split, "clean", None, "", 16000, "accuracy", value, "s", "P",
                    spread=spread, spread_source="t" if spread is not None else "")


CELL = SimpleNamespace(protocol="v2-12-official", label_names=tuple(range(12)), snr_def="", rate_hz=16000,
                       accuracy=0.9, ci_low=0.88, ci_high=0.92, boot_low=None, boot_high=None)


def _many(name: str, weight: float, n: int, right: int) -> Stratum:
    return Stratum(name, weight, np.r_[np.ones(right), np.zeros(n - right)], ("",) * n)


def test_bridged_verdicts():
    est = post_stratified([_many("keyword", 0.5, 800, 720), _many("unknown", 0.3, 800, 640),
                           _many("silence", 0.2, 400, 360)])  # 87 %, interval about +-1.5 pp
    far = verdict(_row(95.0), CELL, tol=2.0, estimate=est, bridged=True)
    assert far.verdict == DEVIATES_BRIDGED and far.bridged and far.measured == pytest.approx(87.0)
    assert est.half_width < 0.02
    near = verdict(_row(88.0), CELL, tol=2.0, estimate=est, bridged=True)
    assert near.verdict == CONSISTENT_BRIDGED
    # a validation-split row stays NOT_COMPARABLE: no bridge crosses a split
    assert verdict(_row(69.0, split="validation"), CELL, estimate=est, bridged=True).verdict == NOT_COMPARABLE
    # without an estimate the protocols differ: NOT_COMPARABLE
    assert verdict(_row(69.0), CELL).verdict == NOT_COMPARABLE


def test_spread_widens_the_tolerance():
    tight = Stratum("keyword", 1.0, np.ones(4000), ("",) * 4000, exact=True)
    est = post_stratified([tight])  # exactly 100 %, no interval
    assert verdict(_row(97.0), CELL, tol=2.0, estimate=est, bridged=True).verdict == DEVIATES_BRIDGED
    wide = verdict(_row(97.0, spread=3.5), CELL, tol=2.0, estimate=est, bridged=True)
    assert wide.verdict == CONSISTENT_BRIDGED and wide.tol == 3.5 and wide.tol_basis.startswith("spread")


def test_project_priors_are_recorded_with_sources():
    priors = load_protocol_priors()
    assert {"v2-12-official", "v2-12-all-unknown", "v2-12-tf-pipeline"} <= set(priors)
    assert priors["v2-12-all-unknown"].counts == {"keyword": 4074, "unknown": 6931, "silence": 500}
    assert sum(priors["v2-12-tf-pipeline"].counts.values()) == 4890
    assert all(p.sources[k] for p in priors.values() for k in p.counts)
