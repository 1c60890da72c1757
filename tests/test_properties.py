"""Property-based tests (hypothesis) of the numeric core: SNR mixing, rate change, statistics.

Each property is the definition itself, checked on generated inputs instead of a few hand-picked ones:
mixing hits the declared SNR for any clip and noise, decimate / upsample keep shapes and stay within the
bound their filter allows, and the statistics equal their textbook definitions computed independently here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kwsbench.audio import decimate, upsample
from kwsbench.noise.mixing import achieved_snr, mix, speech_level
from kwsbench.results import stats

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
samples = st.floats(-1.0, 1.0, width=32, allow_nan=False)
snrs = st.floats(-60.0, 60.0, allow_nan=False)


def clip(min_len: int = 320, max_len: int = 3200):
    return st.integers(min_len, max_len).flatmap(lambda n: arrays(np.float32, n, elements=samples))


@SETTINGS
@given(clean=clip(), seed=st.integers(0, 2**32 - 1), snr=snrs, definition=st.sampled_from(["rms", "active"]))
def test_mix_hits_the_declared_snr(clean, seed, snr, definition):
    assume(float(speech_level(clean, definition)) > 1e-3)  # above the level floor (digital silence is floored)
    noise = np.random.default_rng(seed).standard_normal(clean.shape[-1]).astype(np.float32)
    mixture = mix(clean, noise, snr, definition)
    assert mixture.shape == clean.shape
    assert abs(float(achieved_snr(clean, mixture, definition)) - snr) < 0.01


@SETTINGS
@given(clean=clip(), noise_scale=st.floats(1e-3, 10.0), snr=snrs)
def test_mix_torch_equals_numpy_and_never_scales_the_speech(clean, noise_scale, snr):
    assume(float(speech_level(clean)) > 1e-3)
    noise = (np.cos(np.arange(clean.shape[-1]) * 0.37) * noise_scale).astype(np.float32)
    a = mix(clean, noise, snr)
    b = mix(torch.from_numpy(clean), torch.from_numpy(noise), snr).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(a).max())))
    assert abs(float(achieved_snr(clean, a)) - snr) < 0.01
    assert np.array_equal(mix(clean, np.zeros_like(noise), snr), clean)  # silence added: the speech as it was


def _sinc_gain(from_rate: int, to_rate: int) -> float:
    """The largest |output| / max|input| torchaudio's resampler can give: the L1 norm of its kernel rows."""
    from torchaudio.functional.functional import _get_sinc_resample_kernel

    g = math.gcd(from_rate, to_rate)
    kernel, _ = _get_sinc_resample_kernel(from_rate, to_rate, g, dtype=torch.float64)
    return float(kernel.abs().sum(dim=-1).max())


rates = st.sampled_from([8000, 4000, 2000, 1000])


@SETTINGS
@given(x=st.integers(1, 3).flatmap(lambda b: arrays(np.float32, (b, 1600), elements=samples)), rate=rates,
       method=st.sampled_from(["sinc", "drop"]))
def test_decimate_keeps_shape_and_bounds(x, rate, method):
    t = torch.from_numpy(x)
    y = decimate(t, 16000, rate, method)
    assert y.shape == (x.shape[0], 1600 * rate // 16000)
    peak = float(t.abs().max())
    if method == "drop":  # a subset of the samples
        assert torch.equal(y, t[:, :: 16000 // rate])
    else:
        assert float(y.abs().max()) <= _sinc_gain(16000, rate) * peak + 1e-6
    up = upsample(y, rate, 16000)
    assert up.shape == t.shape
    assert float(up.abs().max()) <= _sinc_gain(rate, 16000) * float(y.abs().max()) + 1e-6


@SETTINGS
@given(level=st.floats(-1.0, 1.0), rate=rates)
def test_rate_change_keeps_a_constant_signal_away_from_the_edges(level, rate):
    x = torch.full((1, 1600), level)
    y = upsample(decimate(x, 16000, rate, "sinc"), rate, 16000)
    middle = y[0, 400:1200]
    assert torch.allclose(middle, torch.full_like(middle, level), atol=0.02 * abs(level) + 1e-6)


# -- statistics ------------------------------------------------------------------------------------------

@SETTINGS
@given(n=st.integers(1, 5000), frac=st.floats(0.0, 1.0))
def test_wilson_bounds_solve_the_score_equation(n, frac):
    correct = round(frac * n)
    lo, hi = stats.wilson_interval(correct, n)
    p_hat, z = correct / n, stats.Z95
    assert 0.0 <= lo <= p_hat <= hi <= 1.0
    for bound in (lo, hi):  # each bound p solves (p_hat - p)^2 = z^2 p (1 - p) / n
        if bound not in (0.0, 1.0):
            assert abs((p_hat - bound) ** 2 - z * z * bound * (1 - bound) / n) < 1e-9


labels_and_preds = st.integers(1, 200).flatmap(lambda n: st.tuples(
    arrays(np.int64, n, elements=st.integers(0, 5)), arrays(np.int64, n, elements=st.integers(0, 5))))


@SETTINGS
@given(lp=labels_and_preds)
def test_per_class_accuracy_and_macro_f1_match_the_confusion_matrix(lp):
    labels, preds = lp
    confusion = np.zeros((6, 6), dtype=np.int64)
    for t, p in zip(labels, preds, strict=True):
        confusion[t, p] += 1
    recall = stats.per_class_accuracy(labels, preds, 6)
    f1s = []
    for k in range(6):
        support = confusion[k].sum()
        if support == 0:
            assert recall[k] is None
            continue
        assert recall[k] == pytest.approx(confusion[k, k] / support)
        precision_den, recall_den = confusion[:, k].sum(), support
        tp = confusion[k, k]
        f1s.append(0.0 if tp == 0 else 2 * tp / (precision_den + recall_den))
    assert stats.macro_f1(labels, preds, 6) == pytest.approx(float(np.mean(f1s)))


@SETTINGS
@given(pairs=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=300))
def test_mcnemar_exact_is_the_two_sided_binomial_tail(pairs):
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    res = stats.mcnemar_exact(a, b)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert (res.only_a, res.only_b) == (only_a, only_b)
    d = only_a + only_b
    if d == 0:
        assert res.p_value == 1.0
        return
    tail = sum(math.comb(d, k) for k in range(min(only_a, only_b) + 1)) / 2 ** d
    assert res.p_value == pytest.approx(min(1.0, 2 * tail), rel=1e-9, abs=1e-300)


@SETTINGS
@given(p=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50), alpha=st.floats(0.001, 0.5))
def test_benjamini_hochberg_is_the_step_up_procedure(p, alpha):
    q, reject = stats.benjamini_hochberg(p, alpha)
    m = len(p)
    ranked = sorted(p)
    # the largest rank k with p_(k) <= k alpha / m (written p_(k) m / k <= alpha, as rounded in the code); every
    # p-value up to p_(k) is rejected
    passing = [k for k in range(1, m + 1) if ranked[k - 1] * m / k <= alpha]
    cut = ranked[max(passing) - 1] if passing else -1.0
    assert np.array_equal(reject, np.array([v <= cut for v in p]))
    assert np.all(q >= np.array(p) - 1e-15) and np.all(q <= 1.0)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(q[order]) >= -1e-15)  # q is monotone in p


@SETTINGS
@given(correct=st.lists(st.booleans(), min_size=1, max_size=200), speakers=st.integers(1, 20),
       seed=st.integers(0, 1000))
def test_speaker_bootstrap_interval_is_within_the_replicates(correct, speakers, seed):
    c = np.array(correct)
    spk = tuple(f"s{i % speakers}" for i in range(len(c)))
    lo, hi = stats.speaker_bootstrap_interval(c, spk, seed=seed, n_boot=200)
    assert 0.0 <= lo <= hi <= 1.0
    if c.all() or not c.any():  # every replicate has the same accuracy
        assert lo == hi == float(c.mean())
