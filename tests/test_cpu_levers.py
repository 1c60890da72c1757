"""CPU inference paths: the ones the run takes give what the previous code gave (Centaurus bit for bit, Mamba's
frame-by-frame scan to float rounding), and the levers benchmarks/cpu_eval.py measures compute the same model."""

from __future__ import annotations

import importlib.util

import pytest
import torch

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


@pytest.mark.parametrize("name", ["ds-cnn-s", "bc-resnet-1-ncssm", "bc-resnet-1"])
def test_batchnorm_folding_and_channels_last_compute_the_same_model(name):
    cpu_eval, model = _cpu_eval(), _model(name)
    pairs = len(cpu_eval._conv_bn_pairs(model))
    assert pairs >= 2
    x = _audio()
    with torch.inference_mode():
        ref = model(x)
        folded = cpu_eval.fold_batchnorm(model)
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == \
            sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) - pairs
        torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-5)
        with cpu_eval._channels_last(model) as nhwc:
            torch.testing.assert_close(nhwc(x), ref, rtol=1e-4, atol=1e-5)
