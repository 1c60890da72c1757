"""Original NanoMamba (SA-SSM v1): ports of the public NanoMamba-Tiny and NanoMamba-Small checkpoints.

These checkpoints were trained with the SA-SSM of commit `4b43e56`, not the HEAD code: no Δ floor,
no ε residual, a plain σ B-gate and a static SNR estimator (reference/nc-ssm.md §2 item 2, §5.6).
The repository's own loaders run them on HEAD code with strict=False, which changes the outputs;
this port loads them strictly with the computation they were trained with.

Tiny has two files: `best.pt` (the historic 12-class best, epoch index 25) and `final.pt` (last
epoch). They are two registered models, `nanomamba-tiny` and `nanomamba-tiny-final`, because a
card's default checkpoint is what the suite evaluates and compares; both are valid 12-class models
and a run that names one must be reproducible from its name alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kwsbench.cost import nanomamba_card_cost
from kwsbench.features import instance_norm_time, mel_filterbank_floor_bins, stft_magnitude
from kwsbench.models.ncssm import HOP, N_CLASSES, N_FFT, N_MELS, SSMBlock, cpu_inference, selective_scan
from kwsbench.models.registry import ModelCard, register

SOURCE = "DrJinHoChoi/NC-SSM-TASLP2026 @4b43e56 (nanomamba.py, original SA-SSM); reference/nc-ssm.md §5.6"


class StaticSNREstimator(nn.Module):
    """SNR against the mean of the first 5 frames: s = tanh(mel_fb · |X| / (|κ| n + 1e-8) / 10).

    No clamp and no NaN guard, as in the original (digital silence gives inf/NaN there too).
    """

    def __init__(self) -> None:
        super().__init__()
        self.noise_scale = nn.Parameter(torch.tensor(1.5))
        self.floor = nn.Parameter(torch.tensor(0.02))  # stored in the checkpoints, unused in the forward pass

    def forward(self, mag: torch.Tensor, mel_fb: torch.Tensor) -> torch.Tensor:
        noise = mag[..., :5].mean(dim=-1, keepdim=True)
        snr = mag / (self.noise_scale.abs() * noise + 1e-8)
        return torch.tanh(torch.matmul(mel_fb, snr) / 10.0)


class SpectralAwareSSMv1(nn.Module):
    """SA-SSM v1: SNR shifts Δ and gates B; h_t = Ā_t h_{t-1} + Δ B u_t; y = C h + D u."""

    def __init__(self, d_inner: int, d_state: int, n_mels: int = N_MELS) -> None:
        super().__init__()
        E, N = d_inner, d_state
        self.d_state = N
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.x_proj = nn.Linear(E, 2 * N + 1, bias=False)
        self.snr_proj = nn.Linear(n_mels, N + 1)
        self.dt_proj = nn.Linear(1, E)

    def forward(self, u: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
        N = self.d_state
        proj = self.x_proj(u)
        dt_raw, b_raw, c_raw = proj[..., :1], proj[..., 1 : N + 1], proj[..., N + 1 :]
        sp = self.snr_proj(snr)
        delta = F.softplus(self.dt_proj(dt_raw + sp[..., :1]))
        B = b_raw * (1 - self.alpha + self.alpha * torch.sigmoid(sp[..., 1:]))
        return selective_scan(delta, u, B, c_raw, self.A_log) + self.D * u


class NanoMamba(nn.Module):
    """NanoMamba v1 classifier: raw audio (B, 16000) at 16 kHz -> logits (B, 12)."""

    def __init__(self, d_model: int, d_state: int, n_layers: int, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        d_inner = int(1.5 * d_model)
        self.register_buffer("mel_fb", mel_filterbank_floor_bins(N_FFT, N_MELS, 16000))
        self.register_buffer("_window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.snr_estimator = StaticSNREstimator()
        self.patch_proj = nn.Linear(N_MELS, d_model)
        self.blocks = nn.ModuleList(
            SSMBlock(d_model, d_inner, SpectralAwareSSMv1(d_inner, d_state), guard=False) for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, n_classes)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mag = stft_magnitude(audio, N_FFT, HOP, N_FFT, self._window, exact=not cpu_inference(audio))
        snr = self.snr_estimator(mag, self.mel_fb).transpose(1, 2)
        feats = instance_norm_time(torch.log(torch.matmul(self.mel_fb, mag) + 1e-8))
        x = self.patch_proj(feats.transpose(1, 2))
        for block in self.blocks:
            x = block(x, snr)
        return self.classifier(self.final_norm(x).mean(dim=1))


def build_nanomamba(d_model: int, d_state: int, n_layers: int) -> NanoMamba:
    return NanoMamba(d_model=d_model, d_state=d_state, n_layers=n_layers)


def expected_params(d_model: int, d_state: int, n_layers: int) -> int:
    """Reference §4.4: 2 + 41D + L·([2D + 3ED + 4E] + [3NE + 4E + 41N + 42]) + 2D + 12D + 12."""
    D, N, E = d_model, d_state, int(1.5 * d_model)
    return 2 + 41 * D + n_layers * (2 * D + 3 * E * D + 4 * E + 3 * N * E + 4 * E + 41 * N + 42) + 14 * D + 12


_INPUT = "raw 16 kHz audio; STFT 512/160 + static SNR + log-mel + instance norm (inside)"

# name, D, N, layers, checkpoint, aliases, note
_VARIANTS = (
    ("nanomamba-tiny", 16, 4, 2, "NanoMamba-Tiny/best.pt", ("nm-tiny",), "historic 12-class best (epoch index 25)"),
    ("nanomamba-tiny-final", 16, 4, 2, "NanoMamba-Tiny/final.pt", ("nm-tiny-final",), "final epoch (index 30)"),
    ("nanomamba-small", 24, 4, 3, "NanoMamba-Small/best.pt", ("nm-small",), "best (epoch index 27)"),
)

# The Interspeech draft's counts per configuration (reported.md §2.6; nc-ssm.md §10)
_PUBLISHED = {(16, 4, 2): 4_636, (24, 4, 3): 12_035}

for _name, _d, _n, _l, _ckpt, _aliases, _note in _VARIANTS:
    register(
        ModelCard(
            name=_name,
            family="nanomamba",
            builder=build_nanomamba,
            kwargs={"d_model": _d, "d_state": _n, "n_layers": _l},
            input=_INPUT,
            native_rate=16000,
            protocol="v2-12",
            cost=nanomamba_card_cost,
            cpu_lanes=True,  # 0.97-1.53x (median 1.25x) in lanes on 2 threads (benchmarks/cpu_eval.py --levers lanes)
            checkpoint=f"nc-ssm:{_ckpt}",
            aliases=_aliases,
            published_params=_PUBLISHED[(_d, _n, _l)],
            recipe="nc-ssm",
            description=f"NanoMamba SA-SSM v1 D={_d} N={_n} {_l} blocks; {_note}",
            source=SOURCE,
        )
    )
