"""Ports of the NC-SSM repository's models, without shared data: structure, counts, features, scan, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kwsbench import features
from kwsbench.models.ncssm import _loop_scan, causal_mean3, linear_scan, selective_scan, track_noise
from kwsbench.models.registry import get_card

# Published parameter counts and state-dict key counts (reference/nc-ssm.md §3.1, §4).
PORTS = {
    "ds-cnn-s": (23756, 65),
    "bc-resnet-1-ncssm": (7464, 184),
    "nc-ssm": (7443, 85),
    "nc-ssm-matched": (7443, 85),
    "nc-ssm-large": (10191, 85),
    "nc-ssm-12k": (12683, 85),
    "nc-ssm-15k": (15843, 85),
    "nc-ssm-20k": (20044, 85),
    "nanomamba-small": (12032, 51),
    "nanomamba-tiny": (4634, 37),
    "nanomamba-tiny-final": (4634, 37),
}
ALIASES = {"nc-matched": "nc-ssm-matched", "nanomamba-nc-20k": "nc-ssm-20k", "nc-20k": "nc-ssm-20k"}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(c for c in PORTS if c.startswith(("nc-ssm", "nanomamba"))))
def test_counted_parameters_follow_the_reference_closed_forms(name):
    from kwsbench.models.nanomamba import expected_params as nanomamba_params
    from kwsbench.models.ncssm import expected_params as ncssm_params

    card = get_card(name)
    formula = ncssm_params if card.family == "nc-ssm" else nanomamba_params
    assert card.counted_params() == formula(**card.kwargs)


@pytest.mark.parametrize("name", sorted(PORTS))
def test_card_builds_with_published_counts(name):
    card = get_card(name)
    model = card.build()
    params, keys = PORTS[name]
    assert _params(model) == params == card.counted_params()
    assert len(model.state_dict()) == keys
    assert card.checkpoint.startswith("nc-ssm:") and card.checkpoint.endswith(".pt")
    assert card.protocol == "v2-12" and card.native_rate == 16000


@pytest.mark.parametrize("alias,name", sorted(ALIASES.items()))
def test_aliases(alias, name):
    assert get_card(alias).name == name


def test_tiny_cards_pick_their_files():
    assert get_card("nanomamba-tiny").checkpoint == "nc-ssm:NanoMamba-Tiny/best.pt"
    assert get_card("nanomamba-tiny-final").checkpoint == "nc-ssm:NanoMamba-Tiny/final.pt"


def test_nc_buffers_are_persistent_with_reference_values():
    sd = get_card("nc-ssm").build().state_dict()
    k = torch.arange(40, dtype=torch.float32)
    assert torch.allclose(sd["freq_dep_floor.freq_floor"].flatten(), 0.05 * torch.exp(-3 * k / 39))
    assert torch.allclose(sd["dual_pcen.smooth_kernel"], torch.full((1, 1, 7), 1 / 7))
    expected = {"delta_floor_min": 0.03, "delta_floor_max": 0.15, "epsilon_min": 0.05, "epsilon_max": 0.30,
                "bgate_floor": 0.20, "snr_half_sat": 0.05}
    for name, value in expected.items():
        assert sd[f"blocks.1.sa_ssm.{name}"].item() == pytest.approx(value)
    assert "mel_fb" in sd and "_window" not in sd


def test_mel_filterbank_floor_bins_matches_reference_bins():
    # reference/nc-ssm.md §5.2: the edge bins, peak 1 at b_{i+1}, filter 0 only bin 1, row sums 1 .. 16.
    bins = [0, 1, 2, 4, 6, 8, 10, 12, 14, 16, 19, 21, 24, 27, 30, 33, 37, 41, 45, 49, 54, 59, 64, 69, 75, 81,
            88, 95, 103, 110, 119, 128, 137, 148, 158, 170, 182, 195, 209, 224, 239, 256]
    fb = features.mel_filterbank_floor_bins()
    assert fb.shape == (40, 257) and fb.dtype == torch.float32
    for i in range(40):
        assert fb[i, bins[i + 1]] == 1.0
        assert fb[i, : bins[i]].abs().sum() == 0 and fb[i, bins[i + 2]:].abs().sum() == 0
    assert torch.nonzero(fb[0]).flatten().tolist() == [1]
    assert fb[0].sum().item() == 1.0 and fb[39].sum().item() == 16.0
    assert fb[:, 0].sum() == 0 and fb[:, 256].sum() == 0


def test_stft_magnitude_is_periodic_hann_reflect_magnitude():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 16000)).astype(np.float32))
    mag = features.stft_magnitude(x, 512, 160, 512)
    assert mag.shape == (2, 257, 101)
    # Frame 10 by hand: reflect-padded signal, periodic Hann, one-sided |rfft|.
    padded = np.pad(x[0].numpy().astype(np.float64), 256, mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    ref = np.abs(np.fft.rfft(padded[1600:2112] * win))
    assert np.allclose(mag[0, :, 10].numpy(), ref, atol=1e-3, rtol=1e-4)


def test_logmel_window_400_and_rate_change():
    lm = features.LogMel()
    x = torch.randn(3, 16000)
    out = lm(x)
    assert out.shape == (3, 40, 101)
    assert lm.state_dict() == {}  # the CNN checkpoints carry no front-end tensors
    ref = torch.log(features.mel_filterbank() @ features.stft_magnitude(x, 512, 160, 400) + 1e-8)
    assert torch.allclose(out, ref)
    lm.set_sample_rate(8000)
    assert (lm.n_fft, lm.win_length, lm.hop_length) == (256, 200, 80)
    assert lm(torch.randn(1, 8000)).shape == (1, 40, 101)


def test_ema_smoother_and_pcen_formula():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((2, 3, 20)).astype(np.float32))
    s = torch.from_numpy(rng.uniform(0.05, 0.4, (2, 3, 20)).astype(np.float32))
    m = features.ema_smoother(x, s)
    expect = x[..., 0].clone()
    for t in range(1, 20):
        expect = (1 - s[..., t]) * expect + s[..., t] * x[..., t]
        assert torch.equal(m[..., t], expect)  # the hoisted products leave every bit as the formula gives it
    out = features.pcen(x, m, 0.98, 2.0, 0.5)
    assert torch.allclose(out, (x / (1e-6 + m) ** 0.98 + 2.0) ** 0.5 - 2.0**0.5, atol=1e-6)


def test_doubling_scan_equals_frame_loop():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(101, 3, 5, 4, generator=g)
    b = torch.randn(101, 3, 5, 4, generator=g)
    loop = linear_scan(a, b, bound=1e4, method="loop")
    expect = torch.zeros(3, 5, 4)
    for t in range(101):
        expect = a[t] * expect + b[t]
    assert torch.allclose(loop[-1], expect, atol=1e-6)
    assert torch.allclose(linear_scan(a, b, bound=1e4, method="doubling"), loop, atol=1e-5)
    assert torch.allclose(linear_scan(a, b, method="doubling"), _loop_scan(a, b, None), atol=1e-5)


def _scan_inputs(n_state: int, eps: bool, scale: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    delta = torch.rand(3, 101, 7, generator=g)
    u = torch.randn(3, 101, 7, generator=g) * scale
    b, c = torch.randn(3, 101, n_state, generator=g), torch.randn(3, 101, n_state, generator=g)
    a_log = torch.randn(7, n_state, generator=g) - 2.0  # slow decays, so the states build up
    return delta, u, b, c, a_log, torch.rand(3, 101, 1, generator=g) if eps else None


@pytest.mark.parametrize("n_state,eps", [(4, False), (10, True)])
def test_frame_selective_scan_equals_the_materialised_one(n_state, eps):
    """The CPU inference scan against the materialised scan (training and GPU path) and a plain loop."""
    delta, u, b, c, a_log, e = _scan_inputs(n_state, eps)
    with torch.no_grad():
        frames = selective_scan(delta, u, b, c, a_log, eps=e, bound=1e4, method="frames")
        whole = selective_scan(delta, u, b, c, a_log, eps=e, bound=1e4, method="materialised")
    torch.testing.assert_close(frames, whole, rtol=1e-5, atol=1e-5)
    h, expect = torch.zeros(3, 7, n_state), []
    for t in range(101):  # the formula, written out
        drive = (delta[:, t] * u[:, t])[..., None] * b[:, t, None, :]
        if e is not None:
            drive = drive + (e[:, t] * u[:, t])[..., None]
        h = torch.exp(-torch.exp(a_log) * delta[:, t, :, None]) * h + drive
        expect.append((h * c[:, t, None, :]).sum(-1))
    torch.testing.assert_close(frames, torch.stack(expect, 1), rtol=1e-5, atol=1e-4)


def test_frame_selective_scan_clamps_the_state():
    delta, u, b, c, a_log, e = _scan_inputs(6, True, scale=300.0, seed=1)
    with torch.no_grad():
        free = selective_scan(delta, u, b, c, a_log, eps=e, method="frames")
        frames = selective_scan(delta, u, b, c, a_log, eps=e, bound=50.0, method="frames")
        whole = selective_scan(delta, u, b, c, a_log, eps=e, bound=50.0, method="materialised")
    limit = 50.0 * c.abs().sum(-1, keepdim=True) * (1 + 1e-5)  # |y_t| <= bound * sum |C_t| when clamped
    assert (free.abs() > limit).any() and (frames.abs() <= limit).all()
    torch.testing.assert_close(frames, whole, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("gamma,beta", [(0.3, 0.05), (0.05, 0.3), (0.2, 0.2)])
def test_noise_tracker_without_where_equals_the_formula(gamma, beta):
    """The CPU inference tracker (larger / smaller of the two candidate updates) against the formula."""
    g = torch.Generator().manual_seed(4)
    frames = torch.rand(101, 5, 33, generator=g) * torch.linspace(0.1, 3.0, 101)[:, None, None]
    n0 = torch.rand(5, 33, generator=g)
    gamma, beta = torch.tensor(gamma), torch.tensor(beta)
    with torch.no_grad():
        fast = track_noise(frames, n0, gamma, beta, method="extreme")
    slow = track_noise(frames, n0, gamma, beta, method="select")
    n = n0
    for t in range(101):  # the formula, written out
        a = torch.where(frames[t] > n, gamma, beta)
        n = (1 - a) * n + a * frames[t]
        assert torch.equal(slow[t], n)
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-7)


def test_scan_falls_back_to_the_clamped_loop():
    a = torch.ones(10, 1, 1, 1)
    b = torch.full((10, 1, 1, 1), 4e3)
    for method in ("doubling", "loop"):
        h = linear_scan(a, b, bound=1e4, method=method)
        assert h.flatten().tolist() == [4e3, 8e3] + [1e4] * 8  # unclamped it would reach 4e4


def test_causal_mean3_replicates_the_first_frame():
    x = torch.tensor([[[3.0], [6.0], [9.0], [0.0]]])
    assert torch.allclose(causal_mean3(x).flatten(), torch.tensor([3.0, 4.0, 6.0, 5.0]))


@pytest.mark.parametrize("name", ["nc-ssm", "nanomamba-tiny", "ds-cnn-s", "bc-resnet-1-ncssm"])
def test_batch_of_four_equals_one_by_one(name):
    model = get_card(name).build().eval()  # random initial weights (init_seed 0)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((4, 16000)).astype(np.float32) * 0.1)
    with torch.no_grad():
        batch = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(4)])
    assert batch.shape == (4, 12)
    assert torch.allclose(batch, single, atol=1e-5)


@pytest.mark.parametrize("name", ["nc-ssm", "nanomamba-small"])
def test_ssm_blocks_are_causal(name):
    model = get_card(name).build().eval()
    block = model.blocks[0]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 101, block.norm.normalized_shape[0], generator=g)
    snr = torch.rand(1, 101, 40, generator=g)
    gate = torch.rand(1, 101, generator=g)
    args = (snr, gate) if name.startswith("nc") else (snr,)
    x2, snr2 = x.clone(), snr.clone()
    x2[:, 60:] += 1.0
    snr2[:, 60:] = 0.5
    args2 = (snr2, gate) if name.startswith("nc") else (snr2,)
    with torch.no_grad():
        y1, y2 = block(x, *args), block(x2, *args2)
    assert torch.allclose(y1[:, :60], y2[:, :60], atol=1e-6)
    assert not torch.allclose(y1[:, 60:], y2[:, 60:])


def test_doubling_scan_trains():
    """The accelerator path (doubling scan) must support backward: no in-place update of saved tensors."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(37, 3, 5, generator=gen).requires_grad_()
    b = torch.randn(37, 3, 5, generator=gen).requires_grad_()
    h = linear_scan(a, b, method="doubling")
    h.square().sum().backward()
    ref_a, ref_b = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    linear_scan(ref_a, ref_b, method="loop").square().sum().backward()
    torch.testing.assert_close(a.grad, ref_a.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.grad, ref_b.grad, rtol=1e-4, atol=1e-5)
