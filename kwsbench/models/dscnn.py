"""DS-CNN S / M / L in the Hello Edge topology (Zhang et al. 2017, arXiv 1711.07128; the layer sizes of
ARM-software/ML-KWS-for-MCU train_commands.txt).

Input features: 10 MFCC x 49 frames (40 ms window, 20 ms stride, no padding, 40 mel bands 20-4000 Hz).
Network (map laid out time x cepstrum, as in the original NHWC graph; 'same' padding):
  conv (10,4) -> C, stride S0, BN, ReLU; then depthwise-separable layers
  [depthwise 3x3 stride Si, BN, ReLU, pointwise 1x1 -> C, BN, ReLU]; global average pool; linear -> classes.
  S: C=64,  S0=(2,2), 4 DS layers all stride 1
  M: C=172, S0=(2,1), 4 DS layers, the first stride (2,2)
  L: C=276, S0=(2,1), 5 DS layers, the first stride (2,2)
Every convolution has a bias and every BN is affine: with that, S has 23,756 parameters, the count of
the MLPerf-Tiny DS-CNN (same topology). Hello Edge publishes memory (KB) and ops, not parameter counts,
for M and L. No public weights: the training issue trains them.

The MFCC follows the TensorFlow audio_ops recipe (magnitude spectrum, HTK-mel triangles, log, DCT-II);
it is a close re-statement, not bit-identical to TensorFlow's filterbank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from kwsbench.cost import conv_net_cost
from kwsbench.features import MFCC
from kwsbench.models import conv_inference as fast
from kwsbench.models.registry import ModelCard, register


@dataclass(frozen=True)
class DSCNNSize:
    channels: int
    first_stride: tuple[int, int]
    ds_strides: tuple[tuple[int, int], ...]
    params: int  # what this definition builds (tests recount)


SIZES = {
    "s": DSCNNSize(64, (2, 2), ((1, 1),) * 4, 23_756),
    "m": DSCNNSize(172, (2, 1), ((2, 2),) + ((1, 1),) * 3, 138_128),
    "l": DSCNNSize(276, (2, 1), ((2, 2),) + ((1, 1),) * 4, 416_772),
}
PUBLISHED_PARAMS = {"s": 23_756}  # MLPerf-Tiny / NXP model card (reported.md 2.1); none published for M, L


def _same_pad(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 'SAME' padding (the extra pixel of an even total goes after)."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SameConv(nn.Conv2d):
    # _conv_forward rather than forward: conv_inference calls it with folded weights and keeps the padding
    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return super()._conv_forward(_same_pad(x, self.kernel_size, self.stride), weight, bias)


class DSCNN(nn.Module):
    """Raw audio (B, samples) -> logits (B, classes)."""

    def __init__(self, size: str = "s", num_classes: int = 12, sample_rate: int = 16000):
        super().__init__()
        cfg = SIZES[size]
        c = cfg.channels
        self.frontend = MFCC(sample_rate)
        layers: list[nn.Module] = [SameConv(1, c, (10, 4), stride=cfg.first_stride), nn.BatchNorm2d(c), nn.ReLU()]
        for stride in cfg.ds_strides:
            layers += [SameConv(c, c, 3, stride=stride, groups=c), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def set_sample_rate(self, rate: int) -> None:
        self.frontend.set_sample_rate(rate)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.frontend(audio).unsqueeze(1)
        x = fast.sequential(x, self.features) if fast.takes_fast_path(self, x) else self.features(x)
        return self.classifier(x.mean(dim=(2, 3)))


for _size, _cfg in SIZES.items():
    register(ModelCard(
        name=f"ds-cnn-{_size}-hello-edge", family="ds-cnn", builder=DSCNN, kwargs={"size": _size},
        input="mfcc-10", native_rate=16000, protocol="v2-12", can_change_rate=True, checkpoint=None, cost=conv_net_cost,
        aliases=(f"ds-cnn-{_size}-he",), recipe="ds-cnn",
        # Hello Edge prints memory, not parameters; the MLPerf-Tiny DS-CNN card states 23,756 for the S topology
        published_params=23_756 if _size == "s" else None,
        description=f"Hello Edge DS-CNN-{_size.upper()} ({_cfg.channels} channels) on 10 MFCC x 49 frames; "
                    "no public weights",
        source="Zhang et al. 2017 (Hello Edge), arXiv 1711.07128; ARM ML-KWS-for-MCU train_commands.txt",
    ))
