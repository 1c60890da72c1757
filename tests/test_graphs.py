"""CUDA-graph replay (kwsbench.run.graphs): the same logits as the eager forward, and a clean fallback."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kwsbench.models.registry import all_cards, get_card
from kwsbench.run.graphs import GraphedForward

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_on_the_cpu_it_is_the_model():
    model = get_card("ds-cnn-s").build().eval()
    x = torch.randn(3, 16000, generator=torch.Generator().manual_seed(0))
    forward = GraphedForward(model)
    with torch.inference_mode():
        assert torch.equal(forward(x), model(x))
    assert forward.graphs == {}


# Operators that make the host wait for the device: a CUDA-graph capture refuses them.
HOST_SYNCS = {"_local_scalar_dense", "_linalg_check_errors", "nonzero", "masked_select", "_unique2", "unique_dim"}


class _SyncRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_SYNCS:
            self.seen.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", sorted(c.name for c in all_cards()))
def test_inference_forward_after_a_warm_up_never_waits_for_the_device(name):
    """The CPU-side precondition of a capture, for every card: once warm (kernels cached), the forward has no
    host synchronisation. Dispatch modes do not see inside inference_mode, hence no_grad."""
    model = get_card(name).build().eval()
    x = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model(x)
        recorder = _SyncRecorder()
        with recorder:
            model(x)
    assert not recorder.seen, f"{name}: its forward synchronises through {sorted(recorder.seen)}"


# the public checkpoints' families must be captured (the grid's speed rests on it); the others may fall back
CAPTURED = ["nc-ssm", "nanomamba-tiny", "ds-cnn-s", "bc-resnet-1-ncssm", "bc-resnet-1", "s4d-kws", "mamba-kws",
            "centaurus-kws", "s4-kws", "liquid-s4-kws", "liquid-s4-kb-kws"]


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("name", CAPTURED + ["s-edge-tiny", "s5-kws"])
def test_replay_equals_eager_for_every_shape(name):
    model = get_card(name).build().eval().cuda()
    gen = torch.Generator().manual_seed(1)
    forward = GraphedForward(model)
    with torch.inference_mode():
        for rows in (64, 17, 64):  # a full batch, the remainder, then the first graph again
            x = (0.1 * torch.randn(rows, 16000, generator=gen)).cuda()
            assert torch.equal(forward(x), model(x)), f"{name}: replay differs from eager at {rows} rows"
    print(f"{name}: {'captured' if not forward.fallback_reason else 'eager: ' + forward.fallback_reason}")
    if name in CAPTURED:
        assert forward.fallback_reason == "", forward.fallback_reason
        assert set(forward.graphs) == {(64, 16000), (17, 16000)}


@pytest.mark.gpu
@cuda
def test_a_forward_that_syncs_falls_back_with_its_reason():
    class Syncing(torch.nn.Module):
        def forward(self, x):
            return x * 2 if bool((x > 0).any()) else x

    forward = GraphedForward(Syncing())
    x = torch.ones(4, 8, device="cuda")
    with torch.inference_mode():
        assert torch.equal(forward(x), x * 2) and torch.equal(forward(x), x * 2)
    assert forward.fallback_reason and forward.graphs == {}


@pytest.mark.gpu
@cuda
def test_reset_after_a_rate_change():
    model = get_card("s4d-kws").build().eval().cuda()
    forward = GraphedForward(model)
    x = (0.1 * torch.randn(8, 8000, generator=torch.Generator().manual_seed(2))).cuda()
    with torch.inference_mode():
        forward(torch.zeros(8, 16000, device="cuda"))
        model.set_sample_rate(8000)
        model.cuda()
        forward.reset()
        assert torch.equal(forward(x), model(x))
