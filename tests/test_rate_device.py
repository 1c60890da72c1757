"""A native rate change must leave the model on the run's device. Checked with the 'meta' device, which
(like CUDA) refuses to mix with CPU tensors, so a tensor rebuilt on the CPU by `set_sample_rate` fails here."""

from __future__ import annotations

import pytest
import torch

from kwsbench.features import LogMel
from kwsbench.models.registry import all_cards
from kwsbench.run.plan import Plan
from kwsbench.run.runner import ModelState, Pace, _set_rate

RATE_CHANGING = [c.name for c in all_cards() if c.can_change_rate and not c.name.startswith("s-edge-naive")]


def test_logmel_rate_change_keeps_device():
    frontend = LogMel().to("meta")
    frontend.set_sample_rate(8000)
    assert frontend.mel_fb.device.type == "meta" and frontend.window.device.type == "meta"


@pytest.mark.parametrize("name", RATE_CHANGING)
def test_native_rate_change_keeps_model_on_device(name):
    card = next(c for c in all_cards() if c.name == name)
    model = card.build().eval().to("meta")
    state = ModelState(card=card, model=model, forward=None, sha="", labels=(), load_error="", rate=card.native_rate,
                       pace=Pace(2, adaptive=False))
    assert _set_rate(state, 8000, Plan(rate_mode="native", device="meta"))
    assert state.rate == 8000 and not hasattr(model, "kwsbench_rate")
    assert {t.device.type for t in [*model.parameters(), *model.buffers()]} <= {"meta"}
    with torch.inference_mode():
        logits = model(torch.zeros(2, 8000, device="meta"))
    assert logits.shape == (2, card.num_classes)
