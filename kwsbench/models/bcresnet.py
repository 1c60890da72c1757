"""Official BC-ResNet-τ (Kim et al., "Broadcasted Residual Learning for Efficient Keyword Spotting",
Interspeech 2021, arXiv 2106.04140), τ in {1, 1.5, 2, 3, 6, 8}.

Not the NC-SSM repository's simplified "BC-ResNet-1" (7,464 params, kwsbench.models.ncssm_cnn): this is
the published network (base width 8τ; 9.2k … 321k params). There are no public weights; the training
issue trains them.

Network on 40 log-mel bands x 101 frames (30 ms window, 10 ms hop):
  stem Conv 5x5 stride (2,1) -> 16τ ch, freq 40 -> 20
  stages of BC-ResBlocks: n = 2, 2, 4, 4; widths 8τ, 12τ, 16τ, 20τ; frequency stride 2 at the first
  block of stages 2 and 3 (20 -> 10 -> 5); temporal dilation 1, 2, 4, 8
  head: depthwise 5x5 (no frequency padding: 5 -> 1), 1x1 -> 32τ, BN, ReLU, mean over time, 1x1 -> classes
A BC-ResBlock: f2 = frequency-depthwise 3x1 conv + SubSpectralNorm(5 sub-bands) on the 2-D map;
f1 = temporal-depthwise 1x3 (dilated) + BN + SiLU + 1x1 conv + dropout on its frequency average; the 1-D
result is broadcast back over frequency and added. A transition block (width change) first applies a
1x1 conv + BN + ReLU and has no identity shortcut.
"""

from __future__ import annotations

import torch
from torch import nn

from kwsbench.cost import conv_net_cost
from kwsbench.features import LogMel
from kwsbench.models import conv_inference as fast
from kwsbench.models.registry import ModelCard, register

TAUS = (1, 1.5, 2, 3, 6, 8)
# Published parameter counts (Kim et al., Tables 2-3), rounded there to 3 significant figures.
PUBLISHED_PARAMS = {1: 9_200, 1.5: 17_200, 2: 27_300, 3: 54_200, 6: 188_000, 8: 321_000}
# What this definition builds (tests recount them); each rounds to the published figure.
BUILT_PARAMS = {1: 9_232, 1.5: 17_154, 2: 27_284, 3: 54_168, 6: 187_812, 8: 321_068}
WINDOW_S, HOP_S, N_MELS = 0.030, 0.010, 40


def kim_log_mel(sample_rate: int = 16000) -> LogMel:
    """log(mel power + 1e-6), 40 HTK-mel bands over 0..rate/2, 30 ms Hann window in a 32 ms FFT, 10 ms hop,
    centred (101 frames per second): the front end Kim et al. describe. `set_sample_rate` keeps durations."""
    scale = sample_rate / 16000
    return LogMel(n_fft=round(512 * scale), win_length=round(WINDOW_S * sample_rate),
                  hop_length=round(HOP_S * sample_rate), n_mels=N_MELS, sample_rate=sample_rate, mel="htk",
                  power=2.0, log_offset=1e-6)


class SubSpectralNorm(nn.Module):
    """BatchNorm with separate statistics per frequency sub-band (Chang et al.): (C,F) -> (C*S, F/S)."""

    def __init__(self, channels: int, sub_bands: int = 5):
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        x = self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t))
        return x.reshape(b, c, f, t)

    def eval_affine(self, x: torch.Tensor) -> torch.Tensor:
        """The eval-mode forward as one multiply-add into x (a tensor the fast path made), in its own layout."""
        scale, shift = fast.subband_affine(self.bn, self.sub_bands, x.shape[2])
        return fast.affine(x, scale, shift, in_place=True)


class BCResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, freq_stride: int, dilation: int, dropout: float = 0.1):
        super().__init__()
        self.transition = c_in != c_out
        self.project = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
        ) if self.transition else nn.Identity()
        self.freq_dw = nn.Conv2d(c_out, c_out, (3, 1), stride=(freq_stride, 1), padding=(1, 0), groups=c_out,
                                 bias=False)
        self.ssn = SubSpectralNorm(c_out)
        self.temp_dw = nn.Conv2d(c_out, c_out, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                                 groups=c_out, bias=False)
        self.temp_bn = nn.BatchNorm2d(c_out)
        self.pointwise = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.takes_fast_path(self, x):
            return self._fast(x)
        f2 = self.ssn(self.freq_dw(self.project(x)))
        f1 = f2.mean(dim=2, keepdim=True)  # frequency average: the 1-D temporal path
        f1 = self.dropout(self.pointwise(nn.functional.silu(self.temp_bn(self.temp_dw(f1)))))
        out = f2 + f1  # broadcast over frequency
        if not self.transition:
            out = out + x
        return torch.relu(out)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        """forward on conv_inference's path (eval: no dropout): NHWC, in-place sums on tensors made here."""
        h = fast.sequential(x, self.project) if self.transition else x
        f2 = self.ssn.eval_affine(fast.conv(h, self.freq_dw))
        f1 = nn.functional.silu(fast.conv(f2.mean(dim=2, keepdim=True), self.temp_dw, self.temp_bn), inplace=True)
        f2 += fast.conv(f1, self.pointwise)
        if not self.transition:
            f2 += x
        return f2.relu_()


class BCResNet(nn.Module):
    """Raw audio (B, samples) -> logits (B, classes)."""

    def __init__(self, tau: float = 1, num_classes: int = 12, sample_rate: int = 16000, dropout: float = 0.1):
        super().__init__()
        base = int(8 * tau)
        widths = [2 * base, base, int(1.5 * base), 2 * base, int(2.5 * base)]
        repeats, freq_stride_stages = (2, 2, 4, 4), (1, 2)
        self.frontend = kim_log_mel(sample_rate)
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 5, stride=(2, 1), padding=2, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks = []
        for stage, n in enumerate(repeats):
            for i in range(n):
                c_in = widths[stage] if i == 0 else widths[stage + 1]
                stride = 2 if (stage in freq_stride_stages and i == 0) else 1
                blocks.append(BCResBlock(c_in, widths[stage + 1], stride, 2 ** stage, dropout))
        self.blocks = nn.Sequential(*blocks)
        last, head = widths[-1], 4 * base
        self.head = nn.Sequential(
            nn.Conv2d(last, last, 5, padding=(0, 2), groups=last, bias=False),
            nn.Conv2d(last, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU())
        self.classifier = nn.Conv2d(head, num_classes, 1)

    def set_sample_rate(self, rate: int) -> None:
        self.frontend.set_sample_rate(rate)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        on_fast_path = fast.takes_fast_path(self, audio)
        x = self.frontend(audio, exact=not on_fast_path).unsqueeze(1)
        if on_fast_path:  # the blocks take it by themselves
            x = fast.sequential(self.blocks(fast.sequential(x, self.stem)), self.head)
        else:
            x = self.head(self.blocks(self.stem(x)))
        return self.classifier(x.mean(dim=(2, 3), keepdim=True)).flatten(1)


def _name(tau: float) -> str:
    return f"bc-resnet-{tau:g}".replace(".", "-") if tau != int(tau) else f"bc-resnet-{int(tau)}"


for _tau in TAUS:
    register(ModelCard(
        name=_name(_tau), family="bc-resnet", builder=BCResNet, kwargs={"tau": _tau}, input="log-mel-40-power",
        native_rate=16000, protocol="v2-12", can_change_rate=True, checkpoint=None, cost=conv_net_cost,
        aliases=(f"bc-resnet-{_tau:g}",) if _tau != int(_tau) else (),
        published_params=PUBLISHED_PARAMS[_tau], recipe="bc-resnet",
        description=f"official BC-ResNet-{_tau:g} (base width {int(8 * _tau)}); published {PUBLISHED_PARAMS[_tau]:,}"
                    " params (rounded); no public weights",
        source="Kim et al., Interspeech 2021, arXiv 2106.04140",
    ))
