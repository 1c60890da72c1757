"""CPU inference paths: the ones the run takes give what the previous code gave (Centaurus bit for bit, Mamba's
frame-by-frame scan to float rounding), and the levers benchmarks/cpu_eval.py measures compute the same model."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from kwsbench.models import conv_inference
from kwsbench.models.registry import get_card
from kwsbench.paths import PROJECT_ROOT


def _cpu_eval():
    spec = importlib.util.spec_from_file_location("cpu_eval", PROJECT_ROOT / "benchmarks" / "cpu_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(name: str, seed: int = 3) -> torch.nn.Module:
    model = get_card(name).build(init_seed=seed).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # running statistics away from (0, 1), so a fold that ignores them fails
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
    return model


def _audio(clips: int = 10) -> torch.Tensor:
    return torch.randn(clips, 16000, generator=torch.Generator().manual_seed(0)) * 0.1


def test_centaurus_inference_path_is_bit_identical_to_the_previous_code():
    cpu_eval, model = _cpu_eval(), _model("centaurus-kws")
    x = _audio(9)  # more clips than one piece of the spectral product, and not a multiple of it
    with torch.inference_mode():
        new = model(x)
        with cpu_eval._centaurus_previous(model):
            old = model(x)
    assert torch.equal(new, old)


def test_mamba_step_scan_model_matches_the_chunked_scan():
    cpu_eval, model = _cpu_eval(), _model("mamba-kws")
    x = _audio(6)
    with torch.inference_mode():
        with cpu_eval._scan(model, "steps"):
            steps = model(x)
        with cpu_eval._scan(model, "chunked"):
            chunked = model(x)
        default = model(x)
    assert torch.equal(default, steps)  # CPU inference takes the frame-by-frame scan
    torch.testing.assert_close(steps, chunked, rtol=1e-5, atol=1e-5)


CONV_CARDS = ["ds-cnn-s", "bc-resnet-1-ncssm", "bc-resnet-1", "bc-resnet-1-5", "ds-cnn-s-hello-edge",
              "ds-cnn-m-hello-edge"]


def _counting_convs(monkeypatch) -> list[int]:
    """Counts the fast path's convolutions from here on (each folds its weights once, whether it runs alone or
    with its ReLU fused)."""
    calls = [0]
    plain = conv_inference._folded

    def counted(*args, **kwargs):
        calls[0] += 1
        return plain(*args, **kwargs)

    monkeypatch.setattr(conv_inference, "_folded", counted)
    return calls


@pytest.mark.parametrize("name", CONV_CARDS)
def test_conv_fast_path_computes_the_reference_model(name, monkeypatch):
    """Folded BatchNorm (running statistics away from (0, 1)), NHWC and in-place ops give the reference logits
    to float rounding; every convolution but a 1x1 classifier on the pooled vector goes through the fast path."""
    model, x, calls = _model(name), _audio(), _counting_convs(monkeypatch)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    with torch.inference_mode():
        new = model(x)
        fast_calls = calls[0]
        with conv_inference.reference_path():
            ref = model(x)
    assert fast_calls >= convs - 1 and calls[0] == fast_calls  # the reference path made no call
    torch.testing.assert_close(new, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ds-cnn-s", "bc-resnet-1"])
def test_conv_fast_path_only_for_cpu_inference(name, monkeypatch):
    """Training mode, autograd and reference_path() take the modules' own forward (what training needs)."""
    model, x, calls = _model(name), _audio(4), _counting_convs(monkeypatch)
    with torch.no_grad():
        model(x)
    assert calls[0] > 0  # no_grad evaluation (the runner's inference_mode alike) takes it
    calls[0] = 0
    model(x)  # autograd on
    with torch.no_grad(), conv_inference.reference_path():
        model(x)
    model.train()
    with torch.no_grad():
        model(x)
    assert calls[0] == 0


def test_cpu_eval_conv_lever_compares_the_two_paths(monkeypatch):
    cpu_eval, model = _cpu_eval(), _model("bc-resnet-1-ncssm")
    applies, reference, lever, _ = cpu_eval.LEVERS["conv-fast"]
    assert applies(model) and not applies(_model("centaurus-kws"))
    calls, x = _counting_convs(monkeypatch), _audio(3)
    with torch.inference_mode():
        with reference(model) as m:
            m(x)
        assert calls[0] == 0
        with lever(model) as m:
            m(x)
        assert calls[0] > 0


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_inexact_stft_magnitude_is_within_rounding_of_hypot(power):
    """The conv cards' faster magnitude (re² + im²) against the exact one, at the powers the front ends use."""
    from kwsbench.features import stft_magnitude

    x = _audio(3)
    exact = stft_magnitude(x, 512, 160, 400, power=power)
    fast = stft_magnitude(x, 512, 160, 400, power=power, exact=False)
    assert fast.shape == exact.shape
    torch.testing.assert_close(fast, exact, rtol=4e-7 * max(power, 1), atol=1e-30)


@pytest.mark.parametrize("name", ["nc-ssm", "nanomamba-small"])
def test_ncssm_cpu_inference_takes_the_frame_paths(name, monkeypatch):
    """CPU inference runs the frame-by-frame scan (and, for NC-SSM, the tracker without `where`); with autograd
    on, the materialised scan and the formula's tracker; the benchmark's previous path computes the same model."""
    from kwsbench.models import ncssm

    cpu_eval, model = _cpu_eval(), _model(name)
    taken: list[str] = []
    frame_scan, track = ncssm._frame_selective_scan, ncssm.track_noise
    monkeypatch.setattr(ncssm, "_frame_selective_scan", lambda *a: taken.append("frames") or frame_scan(*a))
    monkeypatch.setattr(ncssm, "track_noise",
                        lambda *a, **kw: taken.append(f"track {kw.get('method', 'auto')}") or track(*a, **kw))
    x = _audio(5)
    with torch.inference_mode():
        fast = model(x)
    tracked = ["track auto"] if name == "nc-ssm" else []
    assert taken == tracked + ["frames"] * len(model.blocks)
    taken.clear()
    with cpu_eval._ncssm_previous(model):
        with torch.inference_mode():
            previous = model(x)
        assert taken == (["track select"] if name == "nc-ssm" else [])
    taken.clear()
    with_grad = model(x)
    assert taken == tracked  # the training path: no frame scan
    torch.testing.assert_close(fast, previous, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, with_grad.detach(), rtol=1e-5, atol=1e-5)
    assert torch.equal(fast.argmax(-1), previous.argmax(-1))


@pytest.mark.parametrize("clips", [1, 5])
def test_ncssm_snr_estimator_time_major_gives_the_bits_of_the_previous_layout(clips, monkeypatch):
    """The running SNR estimator at CPU inference, time-major and in place, against its previous form (the
    tracker's output as a (B, bins, T) view), on a spectrum with silent and loud frames; it leaves the spectrum
    alone (the time-major frames may be the spectrum's own memory). One clip keeps the previous form."""
    from kwsbench.features import stft_magnitude
    from kwsbench.models import ncssm

    cpu_eval, model = _cpu_eval(), _model("nc-ssm")
    x = _audio(5)[:clips]
    x[0, :4000] = 0.0
    x[-1, 8000:] *= 30
    mag = stft_magnitude(x, ncssm.N_FFT, ncssm.HOP, ncssm.N_FFT, model._window, exact=False)
    before = mag.clone()
    est, taken = model.snr_estimator, []
    time_major = ncssm.RunningSNREstimator._cpu_inference
    monkeypatch.setattr(ncssm.RunningSNREstimator, "_cpu_inference",
                        lambda *a: taken.append("time-major") or time_major(*a))
    with torch.inference_mode():
        new = est(mag, model.mel_fb)
        assert torch.equal(mag, before)
        with cpu_eval._snr_previous(model):
            old = est(mag, model.mel_fb)
            old_logits = model(x)
        new_logits = model(x)
    assert new.is_contiguous() and new.shape == (clips, ncssm.N_MELS, mag.shape[-1])
    assert torch.equal(new, old) and torch.equal(new_logits, old_logits)
    assert taken == ([] if clips == 1 else ["time-major"] * 2)  # one clip keeps the previous form


@pytest.mark.parametrize("name", ["ds-cnn-s", "bc-resnet-1-ncssm"])
def test_fused_relu_gives_the_bits_of_convolution_then_relu(name, monkeypatch):
    """The oneDNN convolution with its ReLU as a post-op computes exactly the convolution followed by a ReLU;
    the models use it (every fusable convolution of ds-cnn-s)."""
    model, x = _model(name), _audio()
    fusable = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and conv_inference.fuses_relu(m)]
    assert fusable if torch.backends.mkldnn.is_available() else not fusable
    with torch.inference_mode():
        fused = model(x)
        monkeypatch.setattr(conv_inference, "fuses_relu", lambda layer: False)
        unfused = model(x)
    assert torch.equal(fused, unfused)


def test_the_first_convolution_writes_channels_last():
    """A one-channel input gets NHWC strides, so oneDNN writes the first layer's output NHWC (with the NCHW
    strides `contiguous(memory_format=...)` keeps for one channel, the next layer paid a copy)."""
    layer = torch.nn.Conv2d(1, 8, 3, padding=1).eval()
    with torch.inference_mode():
        out = conv_inference.conv(torch.randn(2, 1, 10, 12), layer)
        ref = layer(torch.randn(2, 1, 10, 12))
    assert out.is_contiguous(memory_format=torch.channels_last) and out.stride(1) == 1
    assert out.shape == ref.shape
