"""The NC-SSM repository's CNN baselines: DS-CNN-S and its simplified BC-ResNet-1 variant.

Ports of `train_colab.DSCNN_S` and `train_colab.BCResNet(scale=1)` (reference/nc-ssm.md §5.3-5.5),
the classes that produced DS-CNN-S/best.pt and BC-ResNet-1/best.pt. Module names equal the checkpoint
keys; BC-ResNet-1's last stage is one bare block (`stage4.`), so no key remap is needed.

Front end: log(mel · |STFT| + 1e-8) with a 400-sample periodic Hann window inside a 512-point FFT.
The checkpoints were selected and evaluated with 400 (most noisy training batches used 512; §2 item 6).
These are NOT the published BC-ResNet (Kim et al.) or Hello-Edge DS-CNN definitions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kwsbench.cost import conv_net_cost
from kwsbench.features import LogMel
from kwsbench.models import conv_inference as fast
from kwsbench.models.registry import ModelCard, register

SOURCE = "DrJinHoChoi/NC-SSM-TASLP2026 @5a53d3d (train_colab.py); reference/nc-ssm.md §5.3-5.5"
_INPUT = "raw 16 kHz audio; log-mel 40 (n_fft 512, win 400 periodic Hann, hop 160, ln(x + 1e-8)) inside"


def ncssm_logmel(win_length: int = 400) -> LogMel:
    return LogMel(n_fft=512, win_length=win_length, hop_length=160, n_mels=40, sample_rate=16000)


class DSCNNS(nn.Module):
    """DS-CNN-S: conv 10x4 /2 -> 4 x (dw 3x3 -> pw 1x1), 64 channels, BN + ReLU after each -> pool -> linear."""

    def __init__(self, n_classes: int = 12, channels: int = 64, win_length: int = 400) -> None:
        super().__init__()
        self.frontend = ncssm_logmel(win_length)
        layers: list[nn.Module] = [
            nn.Conv2d(1, channels, (10, 4), stride=(2, 2), padding=(5, 1)),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        ]
        for _ in range(4):
            depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
            layers += [depthwise, nn.BatchNorm2d(channels), nn.ReLU()]
            layers += [nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, n_classes)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        on_fast_path = fast.takes_fast_path(self, audio)
        x = self.frontend(audio, exact=not on_fast_path).unsqueeze(1)
        x = fast.sequential(x, self.features) if on_fast_path else self.features(x)
        return self.classifier(x.mean(dim=(2, 3)))


class SubSpectralNorm(nn.Module):
    """BatchNorm over (channel, sub-band) pairs: (B,C,F,T) -> (B,5C,F/5,T), index 5c + s."""

    def __init__(self, channels: int, sub_bands: int = 5) -> None:
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        pad = (-f) % self.sub_bands
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        y = self.bn(x.reshape(b, c * self.sub_bands, (f + pad) // self.sub_bands, t))
        return y.reshape(b, c, f + pad, t)[:, :, :f]

    def eval_affine(self, x: torch.Tensor) -> torch.Tensor:
        """The eval-mode forward as one multiply-add into x (a tensor the fast path made), in its own layout."""
        scale, shift = fast.subband_affine(self.bn, self.sub_bands, x.shape[2])
        return fast.affine(x, scale, shift, in_place=True)


class BCBlock(nn.Module):
    """The repository's block: 1x1 -> SSN -> ReLU -> dw 1x3 (stride/dilation in time) -> SSN -> ReLU
    -> 1x1 -> SSN -> + frequency mean -> residual (projection when channels change) -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.freq_conv1 = nn.Conv2d(c_in, c_out, 1)
        self.ssn1 = SubSpectralNorm(c_out)
        self.temp_dw_conv = nn.Conv2d(
            c_out, c_out, (1, 3), stride=(1, stride), padding=(0, dilation), dilation=(1, dilation), groups=c_out
        )
        self.ssn2 = SubSpectralNorm(c_out)
        self.freq_conv2 = nn.Conv2d(c_out, c_out, 1)
        self.ssn3 = SubSpectralNorm(c_out)
        self.identity = c_in == c_out and stride == 1
        if c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=(1, stride)), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.takes_fast_path(self, x):
            return self._fast(x)
        a = F.relu(self.ssn1(self.freq_conv1(x)))
        a = F.relu(self.ssn2(self.temp_dw_conv(a)))
        a = self.ssn3(self.freq_conv2(a))
        a = a + a.mean(dim=2, keepdim=True)
        if self.identity:
            a = a + x
        elif hasattr(self, "skip"):
            a = a + self.skip(x)
        return F.relu(a)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        """forward on conv_inference's path: NHWC, in-place ReLUs and sums on tensors made here."""
        a = self.ssn1.eval_affine(fast.conv(x, self.freq_conv1)).relu_()
        a = self.ssn2.eval_affine(fast.conv(a, self.temp_dw_conv)).relu_()
        a = self.ssn3.eval_affine(fast.conv(a, self.freq_conv2))
        a += a.mean(dim=2, keepdim=True)
        if self.identity:
            a += x
        elif hasattr(self, "skip"):
            a += fast.sequential(x, self.skip)
        return a.relu_()


class BCResNet1NCSSM(nn.Module):
    """BC-ResNet-1 as in the NC-SSM repository (7,464 parameters)."""

    def __init__(self, n_classes: int = 12, win_length: int = 400) -> None:
        super().__init__()
        self.frontend = ncssm_logmel(win_length)
        self.conv1 = nn.Conv2d(1, 8, 5, stride=(2, 1), padding=(2, 2))
        self.bn1 = nn.BatchNorm2d(8)
        self.stage1 = nn.Sequential(BCBlock(8, 8), BCBlock(8, 8))
        self.stage2 = nn.Sequential(BCBlock(8, 12, stride=2), BCBlock(12, 12, dilation=2))
        self.stage3 = nn.Sequential(BCBlock(12, 16, stride=2), BCBlock(16, 16, dilation=4))
        self.stage4 = BCBlock(16, 20)
        self.head_conv = nn.Conv2d(20, 20, 1)
        self.head_bn = nn.BatchNorm2d(20)
        self.classifier = nn.Linear(20, n_classes)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        on_fast_path = fast.takes_fast_path(self, audio)
        x = self.frontend(audio, exact=not on_fast_path).unsqueeze(1)
        if on_fast_path:
            x = fast.conv_relu(x, self.conv1, self.bn1)
            x = self.stage4(self.stage3(self.stage2(self.stage1(x))))  # each block takes the fast path too
            x = fast.conv_relu(x, self.head_conv, self.head_bn)
        else:
            x = F.relu(self.bn1(self.conv1(x)))
            x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
            x = F.relu(self.head_bn(self.head_conv(x)))
        return self.classifier(x.mean(dim=(2, 3)))


def build_ds_cnn_s(win_length: int = 400) -> DSCNNS:
    return DSCNNS(win_length=win_length)


def build_bc_resnet_1_ncssm(win_length: int = 400) -> BCResNet1NCSSM:
    return BCResNet1NCSSM(win_length=win_length)


register(
    ModelCard(
        name="ds-cnn-s",
        family="ds-cnn",
        builder=build_ds_cnn_s,
        kwargs={"win_length": 400},
        input=_INPUT,
        native_rate=16000,
        protocol="v2-12",
        cost=conv_net_cost,
        checkpoint="nc-ssm:DS-CNN-S/best.pt",
        aliases=("dscnn-s-ncssm", "ds-cnn-s-ncssm"),
        published_params=23_756,  # the NC-SSM draft's table (reported.md §2.6)
        recipe="ds-cnn",
        description="DS-CNN-S of the NC-SSM repository (64 ch, 4 DS blocks), evaluated with win 400",
        source=SOURCE,
    )
)
register(
    ModelCard(
        name="bc-resnet-1-ncssm",
        family="bc-resnet",
        builder=build_bc_resnet_1_ncssm,
        kwargs={"win_length": 400},
        input=_INPUT,
        native_rate=16000,
        protocol="v2-12",
        cost=conv_net_cost,
        checkpoint="nc-ssm:BC-ResNet-1/best.pt",
        aliases=("bcresnet-1-ncssm",),
        published_params=7_464,  # the NC-SSM draft's table (reported.md §2.6)
        recipe="bc-resnet",
        description="the NC-SSM repository's simplified BC-ResNet-1 (no freq depthwise conv; not Kim et al.)",
        source=SOURCE,
    )
)
