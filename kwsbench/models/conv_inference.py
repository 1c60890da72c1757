"""The CPU inference path of the convolutional cards: BatchNorm folded into the convolution before it,
activations channels-last (NHWC), ReLU in place.

Why: at evaluation batch sizes the activations do not fit in the cache, so every separate BatchNorm and ReLU is
one more pass over memory, and oneDNN's depthwise and few-channel 1x1 convolutions run several times faster on
NHWC than on NCHW tensors (bc-resnet-1-ncssm's 8-channel 1x1: 6.8 -> 0.9 ms, its 1x3 depthwise 7.0 -> 1.2 ms per
batch of 128 at one thread). The folding is exact algebra; only float rounding differs from the reference path
(logits within ~1e-6 relative on the public checkpoints). The folded weights are recomputed at every call (a
few thousand parameters, microseconds), so nothing goes stale when weights are loaded or changed.

The models take this path by themselves (`takes_fast_path`): on the CPU, in eval mode, without autograd. Training,
GPUs and `reference_path()` (benchmarks/cpu_eval.py's side-by-side, the tests) take the modules' own forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_enabled = True


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Within this block the convolutional cards take their reference (unfolded, NCHW) forward everywhere.
    Process-wide: meant for benchmarks and tests, not for a run that evaluates models in several threads."""
    global _enabled
    saved, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = saved


def takes_fast_path(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether `module` evaluates `x` on the folded channels-last path (CPU, eval mode, no autograd)."""
    return _enabled and x.device.type == "cpu" and not module.training and not torch.is_grad_enabled()


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm (any dimension) as y = x * scale + shift, per channel (S-Edge's GPU path too)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def conv(x: torch.Tensor, layer: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
    """layer(x), followed by bn when given, as one convolution with the BatchNorm folded into it, NHWC."""
    weight, bias = _folded(layer, bn)
    # NHWC input and weight: oneDNN then writes NHWC.
    # _conv_forward: the layer's own padding rules (SameConv's TensorFlow padding) with other weights.
    return layer._conv_forward(_channels_last(x), weight.contiguous(memory_format=torch.channels_last), bias)


def _folded(layer: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's weight and bias with the eval-mode BatchNorm after it folded in (bn None: the layer's own)."""
    weight, bias = layer.weight, layer.bias
    if bn is not None:
        scale, shift = bn_affine(bn)
        weight = weight * scale.reshape(-1, 1, 1, 1)
        bias = shift if bias is None else bias * scale + shift
    return weight, bias


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """x with NHWC strides. A one-channel map counts as channels-last whatever its channel stride, so
    `contiguous(memory_format=...)` keeps the NCHW strides, and oneDNN, which reads the layout from the strides,
    then writes the first convolution's output NCHW: the next layer paid a copy to NHWC and its depthwise
    convolution ran ~2x slower (ds-cnn-s: 8.2 vs 3.5-4.0 ms per 64 clips at one thread). The stride of a size-1
    dimension addresses nothing, so setting it is free."""
    if x.shape[1] == 1:
        n, _, h, w = x.shape
        return x.contiguous().as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=torch.channels_last)


def sequential(x: torch.Tensor, layers: nn.Sequential) -> torch.Tensor:
    """An nn.Sequential of Conv2d / BatchNorm2d / ReLU / Dropout / Identity on the fast path: each Conv2d takes
    the BatchNorm2d right after it (and the ReLU after that, see `conv_relu`), each other ReLU works in place on
    the tensor this function made."""
    mods = list(layers)
    i, fresh = 0, False
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d):
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
            j = i + (2 if bn is not None else 1)
            if j < len(mods) and isinstance(mods[j], nn.ReLU):
                x, fresh, i = conv_relu(x, m, bn), True, j + 1
                continue
            x, fresh, i = conv(x, m, bn), True, j
            continue
        if isinstance(m, nn.ReLU):
            x = x.relu_() if fresh else F.relu(x)
        elif isinstance(m, nn.BatchNorm2d):
            scale, shift = bn_affine(m)
            x, fresh = affine(x, scale.reshape(-1, 1, 1), shift.reshape(-1, 1, 1), fresh), True
        elif not isinstance(m, nn.Dropout | nn.Dropout2d | nn.Identity):
            raise TypeError(f"conv_inference.sequential: no fast path for {type(m).__name__}")
        i += 1
    return x


def fuses_relu(layer: nn.Conv2d) -> bool:
    """Whether `conv_relu` computes this layer in one oneDNN call: a plain Conv2d with zero padding (a subclass
    such as SameConv pads its own way) on a torch built with oneDNN; otherwise it is `conv` and a ReLU pass."""
    return type(layer) is nn.Conv2d and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple) \
        and torch.backends.mkldnn.is_available()


def conv_relu(x: torch.Tensor, layer: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
    """ReLU(bn(layer(x))) as one oneDNN convolution with the ReLU as its post-op: the ReLU is applied while the
    output is still in cache instead of in one more pass over memory (ds-cnn-s 34-35 -> 30-31 ms per 64 clips on
    two threads; the same bits as the convolution followed by ReLU) where `fuses_relu` holds."""
    if not fuses_relu(layer):
        return conv(x, layer, bn).relu_()
    weight, bias = _folded(layer, bn)
    if bias is None:
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype)
    return torch.ops.mkldnn._convolution_pointwise(
        _channels_last(x), weight.contiguous(memory_format=torch.channels_last), bias, layer.padding, layer.stride,
        layer.dilation, layer.groups, "relu", [], "")


def affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, in_place: bool) -> torch.Tensor:
    """x * scale + shift in one pass that keeps x's layout (an addcmul with broadcast operands would write NCHW):
    into x itself when it is a tensor the fast path made."""
    out = x if in_place else torch.empty_like(x)
    return torch.addcmul(shift, x, scale, out=out)


def subband_affine(bn: nn.BatchNorm2d, sub_bands: int, freq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SubSpectralNorm's eval-mode BatchNorm over (channel, sub-band) pairs, index c * sub_bands + s, as a
    (C, freq, 1) scale and shift: frequency row f of a map padded to a multiple of sub_bands is in sub-band
    f // band. Applied with `affine` it works on any layout, so NHWC maps need no reshaping copy."""
    scale, shift = bn_affine(bn)
    band = -(-freq // sub_bands)  # rows per sub-band after the padding
    rows = torch.arange(freq, device=scale.device) // band
    channels = scale.shape[0] // sub_bands
    index = (torch.arange(channels, device=scale.device) * sub_bands).unsqueeze(1) + rows
    # stored frequency-major (channel stride 1), so on an NHWC map the innermost loop runs over contiguous
    # channels of both operands (with (C, F) storage the multiply-add was ~6x slower than a ReLU)
    return tuple(t[index].t().contiguous().t().unsqueeze(-1) for t in (scale, shift))
