"""The NC-SSM / NanoMamba selective scan as one Triton kernel (GPU inference) against the materialised path.

On CPU the kernel runs under Triton's interpreter (TRITON_INTERPRET=1, read when Triton is imported, hence a
subprocess); on a CUDA device it runs compiled and the models take it by themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from kwsbench.models import ncssm, ncssm_gpu

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_triton = pytest.mark.skipif(ncssm_gpu.triton is None, reason="needs Triton (ships with torch's CUDA wheels)")

# Shapes covering the kernel's masks (channels no multiple of its block, states no power of two), a transposed u
# (the block passes a view), ε and no ε, the clamp reached (large drives), and a NaN entering the state.
_SCRIPT = textwrap.dedent("""
    import json, torch
    from kwsbench.models import ncssm, ncssm_gpu
    g = torch.Generator().manual_seed(5)
    out = {}
    for name, (b, t, e, n, eps, bound, scale) in {
        "nc-ssm-like": (3, 21, 45, 8, True, 1e4, 1.0),
        "nanomamba-like": (2, 9, 70, 5, False, None, 1.0),
        "clamped": (2, 12, 33, 16, True, 3.0, 40.0),
    }.items():
        delta = torch.rand(b, t, e, generator=g) * 0.6 + 0.01
        u = torch.randn(b, e, t, generator=g).transpose(1, 2) * scale
        B, C = torch.randn(b, t, n, generator=g), torch.randn(b, t, n, generator=g)
        A_log = torch.randn(e, n, generator=g) * 0.5
        ep = torch.rand(b, t, 1, generator=g) if eps else None
        ref = ncssm.selective_scan(delta, u, B, C, A_log, eps=ep, bound=bound, method="materialised")
        got = ncssm_gpu.selective_scan(delta, u, B, C, A_log, ep, bound)
        exact = ncssm.selective_scan(delta.double(), u.double(), B.double(), C.double(), A_log.double(),
                                     eps=None if ep is None else ep.double(), bound=bound, method="materialised")
        top = exact.abs().max().item()
        out[name] = {"kernel": (got.double() - exact).abs().max().item() / top,
                     "materialised": (ref.double() - exact).abs().max().item() / top,
                     "shape": list(got.shape) == list(ref.shape),
                     "clamp_reached": bool(ref.abs().max() >= 0.99 * (bound or 1e30))}
    u[1, 3, 4] = float("nan")  # a NaN from the input: the state of that channel turns NaN from that frame on
    got = ncssm_gpu.selective_scan(delta, u, B, C, A_log, ep, 3.0)
    ref = ncssm.selective_scan(delta, u, B, C, A_log, eps=ep, bound=3.0, method="materialised")
    out["nan"] = {"same_nans": bool(torch.equal(got.isnan(), ref.isnan())), "any": bool(got.isnan().any())}
    # the front end's recurrences: the loops' bits, with s of the PCEN experts' shapes (full, and broadcast)
    from kwsbench.features import ema_smoother
    m = torch.rand(3, 40, 17, generator=g)
    for s in (torch.rand(3, 40, 17, generator=g) * 0.4, (torch.rand(40, 1, generator=g) * 0.4).expand(3, 40, 17)):
        out.setdefault("ema_equal", []).append(torch.equal(ncssm_gpu.ema_smoother(m, s), ema_smoother(m, s)))
    mag = torch.rand(2, 257, 13, generator=g)
    mag[0, :, 6:] *= 9.0  # the tracker rises and falls (γ and β both taken)
    n0 = mag[..., :5].mean(-1).clamp(min=1e-5)
    gamma, beta = torch.sigmoid(torch.tensor(-3.0)), torch.sigmoid(torch.tensor(-4.0))
    loop = ncssm.track_noise(mag.movedim(-1, 0).contiguous(), n0, gamma, beta, method="select").movedim(0, -1)
    out["track_equal"] = torch.equal(ncssm_gpu.track_noise(mag, n0, gamma, beta), loop)
    print(json.dumps(out))
""")


@needs_triton
def test_kernels_equal_the_loops_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    errors = json.loads(res.stdout.strip().splitlines()[-1])
    assert errors["clamped"]["clamp_reached"], "the clamp case must reach the bound"
    assert errors["nan"] == {"same_nans": True, "any": True}
    assert errors["ema_equal"] == [True, True] and errors["track_equal"]
    for name in ("nc-ssm-like", "nanomamba-like", "clamped"):
        e = errors[name]
        assert e["shape"], name
        assert e["kernel"] < 1e-5, (name, e)  # as close to the float64 result as the materialised path is
        assert e["materialised"] < 1e-5, (name, e)


def test_the_kernel_serves_float32_gpu_inference_only():
    x = torch.zeros(2, 3, 4)
    assert not ncssm_gpu.applies(x, x)  # CPU tensors: the frame path (inference) or the materialised one
    assert not ncssm._gpu_kernel_applies(x, x)
    if torch.cuda.is_available() and ncssm_gpu.triton is not None:
        y = x.cuda()
        assert ncssm_gpu.applies(y, y)
        assert not ncssm_gpu.applies(y.double(), y.double())  # float32 only
        w = y.clone().requires_grad_()
        assert not ncssm_gpu.applies(y, w)  # a gradient wanted: no backward here
        with torch.no_grad():
            assert ncssm_gpu.applies(y, w)
        with ncssm_gpu.kernel_scan(False):
            assert not ncssm_gpu.applies(y, y)


@cuda
@needs_triton
@pytest.mark.parametrize("name", ["nc-ssm-20k", "nanomamba-tiny"])
def test_cuda_models_take_the_kernel_and_keep_their_predictions(name):
    from kwsbench.models.registry import get_card

    model = get_card(name).build().cuda().eval()
    g = torch.Generator(device="cuda").manual_seed(0)
    audio = torch.randn(64, 16000, generator=g, device="cuda") * 0.1
    calls = []
    original = ncssm_gpu.selective_scan

    def counting(*args):
        calls.append(1)
        return original(*args)

    ncssm_gpu.selective_scan = counting
    try:
        with torch.inference_mode():
            new = model(audio)
            with ncssm_gpu.kernel_scan(False):
                old = model(audio)
    finally:
        ncssm_gpu.selective_scan = original
    assert len(calls) == len(model.blocks)  # one kernel call per layer, none on the materialised pass
    assert (new - old).abs().max() <= 1e-5 * old.abs().max()
    assert torch.equal(new.argmax(1), old.argmax(1))


@cuda
@needs_triton
def test_cuda_front_end_recurrences_give_the_loops_bits():
    from kwsbench.models.registry import get_card

    model = get_card("nc-ssm-20k").build().cuda().eval()
    g = torch.Generator(device="cuda").manual_seed(1)
    mag = torch.rand(96, 257, 101, generator=g, device="cuda")
    mag[:48, :, 50:] *= 8.0  # the tracker rises and falls
    with torch.inference_mode():
        results = {}
        for on in (True, False):
            with ncssm_gpu.kernel_scan(on):
                snr = model.snr_estimator(mag, model.mel_fb)
                mel = torch.matmul(model.mel_fb, mag)
                results[on] = (snr, *model.dual_pcen(mel, snr))
    for new, old in zip(results[True], results[False], strict=True):
        assert torch.equal(new, old)
