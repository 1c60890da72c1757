"""SSM family (S4, S4D, S5, Liquid S4, Mamba, Centaurus): kernels, streaming = offline, rate change, training."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from kwsbench.cost import Cost
from kwsbench.models.centaurus import CentaurusSSM
from kwsbench.models.mamba import kernel_scan_available, selective_scan, selective_scan_ref
from kwsbench.models.registry import get_card
from kwsbench.models.s4 import S4DLayer, S4Layer
from kwsbench.models.s5 import S5Layer
from kwsbench.models.ssm_common import cauchy, count_params, fft_conv, linear_scan, vandermonde

SMALL = {
    "s4-kws": {"d_model": 16, "d_state": 8, "n_layers": 2},
    "s4d-kws": {"d_model": 16, "d_state": 8, "n_layers": 2},
    "s5-kws": {"d_model": 16, "d_state": 16, "n_layers": 2},
    "liquid-s4-kws": {"d_model": 16, "d_state": 8, "n_layers": 2},
    "liquid-s4-kb-kws": {"d_model": 16, "d_state": 8, "n_layers": 2},
    "mamba-kws": {"d_model": 16, "d_state": 8, "n_layers": 2},
    "centaurus-kws": {"channels": (8, 8, 8, 8, 16, 16), "num_states": 8, "state_blocks": 2},
}
NAMES = sorted(SMALL)
# Adam learning rate of the overfit test; BatchNorm-normalised centaurus blocks take larger steps in the same time.
OVERFIT_LR = {"centaurus-kws": 1e-2}


def small(name: str, **kw) -> torch.nn.Module:
    return get_card(name).build(**SMALL[name], **kw)


def calibrate(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Replace BatchNorm running statistics by those of `x` (one cumulative-average batch), then eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def sequential_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h, out = torch.zeros_like(b[..., 0]), []
    for t in range(b.shape[-1]):
        h = a[..., t] * h + b[..., t]
        out.append(h)
    return torch.stack(out, -1)


def load_clips(root, per_class: int, classes=("yes", "no", "up", "down")) -> tuple[torch.Tensor, torch.Tensor]:
    waves, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).glob("*.flac"))[:per_class]:
            x, rate = sf.read(path, dtype="float32")
            assert rate == 16000
            waves.append(np.pad(x, (0, 16000 - len(x)))[:16000])
            labels.append(label)
    return torch.from_numpy(np.stack(waves)), torch.tensor(labels)


# --- shared pieces ---------------------------------------------------------------------------------------------

def test_linear_scan_matches_sequential_recurrence():
    g = torch.Generator().manual_seed(1)
    a = torch.complex(torch.rand(3, 4, 37, generator=g), torch.randn(3, 4, 37, generator=g) * 0.3)
    b = torch.complex(torch.randn(3, 4, 37, generator=g), torch.randn(3, 4, 37, generator=g))
    torch.testing.assert_close(linear_scan(a, b), sequential_scan(a, b), rtol=1e-5, atol=1e-5)
    h0 = torch.randn(3, 4, dtype=torch.complex64, generator=g)
    b0 = b.clone()
    b0[..., 0] += a[..., 0] * h0
    torch.testing.assert_close(linear_scan(a, b, h0=h0), sequential_scan(a, b0), rtol=1e-5, atol=1e-5)


def test_vandermonde_cauchy_and_fft_conv_against_direct_sums():
    g = torch.Generator().manual_seed(2)
    c = torch.randn(5, dtype=torch.complex64, generator=g)
    log_z = torch.complex(-torch.rand(5, generator=g), torch.randn(5, generator=g))
    direct = torch.stack([(c * torch.exp(log_z * n)).sum() for n in range(9)])
    torch.testing.assert_close(vandermonde(c, log_z, 9), direct, rtol=1e-5, atol=1e-5)
    z = torch.randn(7, dtype=torch.complex64, generator=g)
    direct = torch.stack([(c / (zk - log_z)).sum() for zk in z])
    torch.testing.assert_close(cauchy(c, z, log_z), direct, rtol=1e-5, atol=1e-5)
    u, k = torch.randn(2, 30, generator=g), torch.randn(2, 30, generator=g)
    conv = torch.stack([torch.stack([(k[i, : t + 1].flip(0) * u[i, : t + 1]).sum() for t in range(30)])
                        for i in range(2)])
    torch.testing.assert_close(fft_conv(u, k), conv, rtol=1e-4, atol=1e-4)


def test_s4_cauchy_kernel_equals_krylov_powers():
    layer = S4Layer(4, 8, seed=3)
    a_bar, b_bar = layer.dense()
    c = torch.view_as_complex(layer.c)
    ks, x = [], b_bar
    for _ in range(24):
        ks.append(torch.einsum("hn,hn->h", c, x).real)
        x = torch.einsum("hnm,hm->hn", a_bar, x)
    torch.testing.assert_close(layer.kernel(24), torch.stack(ks, -1), rtol=1e-4, atol=1e-5)


def test_chunked_and_step_selective_scans_match_reference_scan():
    g = torch.Generator().manual_seed(4)
    x, dt = torch.randn(2, 29, 6, generator=g), torch.rand(2, 29, 6, generator=g)
    a = -torch.rand(6, 4, generator=g) * 8
    b, c = torch.randn(2, 29, 4, generator=g), torch.randn(2, 29, 4, generator=g)
    d, h0 = torch.randn(6, generator=g), torch.randn(2, 6, 4, generator=g)
    for init in (None, h0):
        y2, s2 = selective_scan_ref(x, dt, a, b, c, d, init)
        for method in ("chunked", "steps"):  # training / GPU form and the CPU inference form
            y1, s1 = selective_scan(x, dt, a, b, c, d, init, method=method)
            torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(s1, s2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", [S4DLayer, S5Layer])
def test_zoh_step_scale_equals_held_input(cls):
    """ZOH at step 2 on the 2x-decimated input ends each pair in the state of step 1 on the held input."""
    layer = cls(4, 8, seed=5)
    u = torch.randn(2, 20, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        held = layer(u.repeat_interleave(2, dim=1))
        layer.set_step_scale(2.0)
        coarse = layer(u)
    torch.testing.assert_close(coarse, held[:, 1::2], rtol=1e-4, atol=1e-4)


def test_centaurus_mode_parameter_counts_match_reference():
    # reported.md §4.1: C_in 8, C_out 16, N 16, J 4 -> dws 656 (with its BN mixer), s5 1728, neck 292, full 6400
    counts = {m: count_params(CentaurusSSM(16, 8, 16, m, state_blocks=4)) for m in ("dws", "s5", "neck", "full")}
    assert counts == {"dws": 656, "s5": 1728, "neck": 292, "full": 6400}


@pytest.mark.parametrize("mode", ["s5", "neck"])
def test_centaurus_contraction_orders_agree(mode):
    layer = CentaurusSSM(8, 6, 10, mode, state_blocks=2, seed=6)
    u = torch.randn(3, 6, 50, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(layer(u, order="full"), layer(u, order="project"), rtol=1e-4, atol=1e-6)
    # The shape rule: few channels and many coefficients favour the materialised kernel.
    assert CentaurusSSM(8, 1, 2, "s5", state_blocks=4).materialise_full(batch=32)
    assert not CentaurusSSM(8, 64, 64, "s5", state_blocks=4).materialise_full(batch=32)


KERNEL_CARDS = ["s4-kws", "s4d-kws", "liquid-s4-kws", "liquid-s4-kb-kws"]


@pytest.mark.parametrize("name", KERNEL_CARDS)
def test_cached_kernel_equals_recomputed_and_follows_parameter_changes(name):
    x = torch.randn(3, 16000, generator=torch.Generator().manual_seed(5)) * 0.1
    model, other = small(name, seed=1).eval(), small(name, seed=2).eval()
    fresh = model(x).detach()  # autograd on: every kernel built anew, nothing cached
    with torch.no_grad():
        assert torch.equal(model(x), fresh) and torch.equal(model(x), fresh)  # first fills the cache, second reuses it
        cached = [m for m in model.modules() if m.__dict__.get("_kernel_cache")]
        assert len(cached) == 2, "each SSM layer keeps its kernel"
        model.load_state_dict(other.state_dict())  # in-place parameter copies: the cache must not survive them
        assert torch.equal(model(x), other(x).detach())
        model.set_step_scale(2.0)
        after_scale = model(x)
    with torch.enable_grad():
        assert torch.equal(after_scale, model(x).detach())


# --- every card -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_card_shapes_and_registration(name):
    card = get_card(name)
    assert card.can_stream and card.can_change_rate and card.protocol in ("v2-10", "v2-12", "v2-35")
    model = small(name).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 16000, generator=torch.Generator().manual_seed(0)) * 0.1)
    assert out.shape == (3, card.num_classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_build_is_deterministic_and_leaves_global_rng_alone(name):
    before = torch.random.get_rng_state()
    a, b = small(name, seed=3).eval(), small(name, seed=3).eval()
    assert torch.equal(before, torch.random.get_rng_state())
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and torch.equal(a(x), a(x))
    c = small(name, seed=4)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_rate_change_factor_one_is_identity(name):
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(2)) * 0.1
    model = calibrate(small(name), x)  # so BatchNorm (centaurus) does not leave the output near-constant
    with torch.no_grad():
        ref = model(x)
        model.set_sample_rate(16000)
        assert torch.equal(model(x), ref)
        model.set_step_scale(1.0)
        assert torch.equal(model(x), ref)
        model.set_sample_rate(8000)
        low = model(x[:, ::2])
    assert low.shape == ref.shape and torch.isfinite(low).all() and not torch.allclose(low, ref)


@pytest.mark.parametrize("name", NAMES)
def test_cost_record(name):
    card = get_card(name)
    hi, lo = card.cost(card, 16000), card.cost(card, 8000)
    assert isinstance(hi, Cost) and hi.trainable_params == count_params(card.build())
    assert hi.total_macs > hi.trainable_params and hi.streaming_macs_per_s == hi.total_macs
    assert lo.total_macs < hi.total_macs  # fewer input samples (front or raw-rate layers) per second


@pytest.mark.data
@pytest.mark.parametrize("name", NAMES)
def test_streaming_equals_offline_on_real_clips(name, gsc_dev_dir):
    x, _ = load_clips(gsc_dev_dir, per_class=1)
    model = calibrate(small(name), x)
    with torch.no_grad():
        offline = model(x)
        state, chunk = model.init_state(len(x)), model.frame_len * 5  # 50 ms (centaurus: 640 samples)
        for start in range(0, 16000, chunk):
            online, state = model.step(x[:, start: start + chunk], state)
    rel = (online - offline).abs().max() / offline.abs().max()
    assert offline.std(0).max() > 1e-4  # the clips give different logits, so the comparison means something
    assert rel <= 1e-4, f"{name}: streaming differs from offline by {rel:.2e} (relative)"


@pytest.mark.slow  # 1-30 s CPU per model on the shared 2-core machine
@pytest.mark.data
@pytest.mark.parametrize("name", NAMES)
def test_tiny_overfit_on_24_clips(name, gsc_dev_dir):
    x, y = load_clips(gsc_dev_dir, per_class=6)
    x = x / x.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-4) * 0.1  # equal loudness: learn words, not gain
    model = small(name, seed=0).train()
    opt = torch.optim.Adam(model.parameters(), lr=OVERFIT_LR.get(name, 3e-3))
    correct, steps, start = 0, 0, time.process_time()
    while steps < 300:
        logits = model(x)
        correct = int((logits.argmax(1) == y).sum())
        if correct == len(y):
            break  # stop before the update, so the weights checked below are the ones that scored 24/24
        opt.zero_grad()
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
        steps += 1
    print(f"{name}: {correct}/{len(y)} after {steps} steps, {time.process_time() - start:.1f} s CPU")
    assert correct == len(y)
    # Eval mode on the same weights; BatchNorm statistics of the final weights (running averages lag behind
    # a fast-moving fit), so eval must reproduce the training forward. Counts, not float32 ratios: 23/24 as a
    # float32 mean is below the float64 23 / 24.
    model = calibrate(model, x)
    with torch.no_grad():
        assert int((model(x).argmax(1) == y).sum()) == len(y)


@pytest.mark.gpu
@pytest.mark.skipif(not kernel_scan_available(), reason="mamba-ssm CUDA kernels not importable")
def test_mamba_kernel_path_agrees_with_pure_pytorch():
    model = small("mamba-kws").cuda().eval()
    x = torch.randn(4, 16000, generator=torch.Generator().manual_seed(0)).cuda() * 0.1
    with torch.no_grad():
        ref = model(x)
        model.set_use_kernel(True)
        fast = model(x)
    assert math.isfinite(fast.abs().max().item())
    torch.testing.assert_close(fast, ref, rtol=1e-3, atol=1e-4)
