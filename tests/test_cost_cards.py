"""Cost functions wired to the CNN and NC-SSM cards: cross-checked against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kwsbench.cost import conv_body_macs, model_cost
from kwsbench.models import conv_inference
from kwsbench.models.registry import get_card

CONV_MODELS = ["ds-cnn-s", "bc-resnet-1-ncssm", "bc-resnet-1", "ds-cnn-s-hello-edge"]


class _Fixed(nn.Module):
    """Stands in for the front end so that FlopCounterMode sees the body alone."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features

    def forward(self, _audio: torch.Tensor, exact: bool = True) -> torch.Tensor:  # LogMel's signature
        return self.features


@pytest.mark.parametrize("name", CONV_MODELS)
def test_conv_body_agrees_with_flop_counter(name):
    model = get_card(name).build().eval()
    audio = torch.zeros(1, 16000)
    with torch.no_grad():  # not an inference tensor: conv_body_macs runs the layers with autograd on
        model.frontend = _Fixed(model.frontend(audio))
    # the modules' own forward: the CPU fast path runs some convolutions as oneDNN ops with a fused ReLU,
    # which the counter does not know (the same arithmetic)
    with torch.inference_mode(), conv_inference.reference_path():
        with FlopCounterMode(display=False) as counter:
            model(audio)
    reference = counter.get_total_flops() // 2  # FLOPs = 2 x MACs for conv and matmul
    ours = conv_body_macs(model, 16000)
    assert abs(ours - reference) <= 0.01 * reference, (ours, reference)


@pytest.mark.parametrize("name", ["bc-resnet-1", "ds-cnn-s-hello-edge"])
def test_rate_changing_cnn_front_end_halves_at_8k(name):
    c16, c8 = model_cost(get_card(name), 16000), model_cost(get_card(name), 8000)
    assert c8.frontend_macs < 0.55 * c16.frontend_macs  # window and hop keep their duration: half the samples
    assert c8.body_macs == c16.body_macs  # the same number of frames and bands reach the body


def test_fixed_rate_model_reports_band_limited_cost():
    card = get_card("nc-ssm")
    c16, c8 = model_cost(card, 16000), model_cost(card, 8000)
    assert (c8.frontend_macs, c8.body_macs) == (c16.frontend_macs, c16.body_macs)
    assert "band-limited" in c8.notes
    assert c16.published["published_total_macs"] == 3_424_752


def test_params_match_built_module():
    for name in CONV_MODELS:
        card = get_card(name)
        assert model_cost(card, 16000).trainable_params == sum(p.numel() for p in card.build().parameters())


def test_every_registered_model_has_a_cost_at_every_rate():
    from kwsbench.models.registry import all_cards

    for card in all_cards():  # tests register their stand-in cards only inside their own scope
        for rate in (16000, 8000, 4000):
            cost = model_cost(card, rate)
            assert cost.total_macs > 0 and cost.trainable_params > 0, (card.name, rate)


def test_nanomamba_dense_part_agrees_with_flop_counter():
    """FlopCounterMode sees the matmuls and the convolution; our count adds STFT, scan and element-wise work."""
    card = get_card("nanomamba-tiny")
    model = card.build().eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 16000))
    dense = counter.get_total_flops() // 2
    ours = model_cost(card, 16000)
    assert ours.trainable_params == card.counted_params()
    assert dense < ours.total_macs < dense + 2_000_000  # STFT (~0.9 M) + scan + element-wise on 101 frames
