"""S4D (diagonal) and S4 (DPLR) layers and the S4 KWS classifier on raw waveform.

Classifier (the seed's S4 configuration): raw 16 kHz waveform -> stride-160 downsampling front (10 ms frames)
-> 3 pre-norm residual S4 blocks (hidden 128, state 64, GELU + GLU) -> mean pool -> 10 classes (SC10-style
protocol v2-10). Offline form: FFT convolution with the SSM kernel; streaming form: the state recurrence.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kwsbench.models.registry import ModelCard, register
from kwsbench.models.seeded import drawing_from
from kwsbench.models.ssm_common import (
    FramedSSMNet,
    cached_kernel,
    cauchy,
    fft_conv,
    linear_scan,
    log_uniform,
    model_cost,
    vandermonde,
    zoh,
)


class S4DLayer(nn.Module):
    """Diagonal SSM per channel (S4D-Lin init), ZOH, B folded into C, real output 2 Re(.) of N/2 conjugate pairs."""

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        n2 = d_state // 2
        self.log_dt = nn.Parameter(log_uniform((d_model,), dt_min, dt_max, gen))
        self.log_a_re = nn.Parameter(torch.full((d_model, n2), math.log(0.5)))
        self.a_im = nn.Parameter(math.pi * torch.arange(n2, dtype=torch.float32).repeat(d_model, 1))
        self.c = nn.Parameter(torch.randn(d_model, n2, 2, generator=gen) * math.sqrt(0.5))
        self.d = nn.Parameter(torch.randn(d_model, generator=gen))
        self.step_scale = 1.0

    def set_step_scale(self, scale: float) -> None:
        self.step_scale = float(scale)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dtA, Ā, C·B̄) with shapes (H, N/2)."""
        a = torch.complex(-torch.exp(self.log_a_re), self.a_im)
        dt_a = a * (torch.exp(self.log_dt) * self.step_scale).unsqueeze(-1)
        a_bar, b_fac = zoh(dt_a, a)
        return dt_a, a_bar, torch.view_as_complex(self.c) * b_fac

    def kernel(self, length: int) -> torch.Tensor:
        dt_a, _, cb = self._discrete()
        return 2 * vandermonde(cb, dt_a, length).real

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, H) -> (B, L, H), convolution form."""
        x = u.transpose(1, 2)
        y = fft_conv(x, cached_kernel(self, x.shape[-1], self.kernel)) + self.d.unsqueeze(-1) * x
        return y.transpose(1, 2)

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, *self.log_a_re.shape, dtype=torch.complex64, device=self.d.device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u (B, T, H) chunk -> (y (B, T, H), state (B, H, N/2)); the recurrence x_t = Ā x_{t-1} + u_t."""
        _, a_bar, cb = self._discrete()
        x = u.transpose(1, 2).unsqueeze(2).to(torch.complex64)  # (B, H, 1, T)
        states = linear_scan(a_bar.unsqueeze(-1), x, dim=-1, h0=state)  # (B, H, N/2, T)
        y = 2 * torch.einsum("hn,bhnt->bht", cb, states).real + self.d.unsqueeze(-1) * u.transpose(1, 2)
        return y.transpose(1, 2), states[..., -1]

    def macs_per_step(self) -> int:
        h, n2 = self.log_a_re.shape
        return h * n2 * (4 + 2 + 2) + h  # complex decay, real input, real part of C x, D


def hippo_legs_dplr(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HiPPO-LegS as A = V (Λ - P̃ P̃*) V*: returns (Λ, P̃, B̃) in the eigenbasis of its normal part."""
    idx = torch.arange(n, dtype=torch.float64)
    r = torch.sqrt(2 * idx + 1)
    a = -torch.tril(r[:, None] * r[None, :], -1) - torch.diag(idx + 1)
    p = torch.sqrt(idx + 0.5)
    normal = a + p[:, None] * p[None, :]  # = -I/2 + skew-symmetric
    lam, v = torch.linalg.eig(normal)
    vh = v.conj().T
    return lam.to(torch.complex64), (vh @ p.to(v.dtype)).to(torch.complex64), (vh @ r.to(v.dtype)).to(torch.complex64)


class S4Layer(nn.Module):
    """S4 with a DPLR state matrix A = Λ - P P* per channel (HiPPO-LegS init), bilinear discretisation.

    Offline: the truncated generating function at roots of unity via Cauchy kernels and the Woodbury identity,
    then an inverse FFT (the S4 algorithm); the kernel length is made odd so no root equals -1. Streaming: the
    dense recurrence x_t = Ā x_{t-1} + B̄ u_t, y_t = Re(C x_t) + D u_t.
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        lam, p, b = hippo_legs_dplr(d_state)
        rep = (d_model, 1, 1)
        self.lam = nn.Parameter(torch.view_as_real(lam).repeat(*rep))
        self.p = nn.Parameter(torch.view_as_real(p).repeat(*rep))
        self.b = nn.Parameter(torch.view_as_real(b).repeat(*rep))
        self.c = nn.Parameter(torch.randn(d_model, d_state, 2, generator=gen) * math.sqrt(0.5 / d_state))
        self.log_dt = nn.Parameter(log_uniform((d_model,), dt_min, dt_max, gen))
        self.d = nn.Parameter(torch.randn(d_model, generator=gen))
        self.step_scale = 1.0

    def set_step_scale(self, scale: float) -> None:
        self.step_scale = float(scale)

    def _parts(self):
        lam, p, b, c = (torch.view_as_complex(t) for t in (self.lam, self.p, self.b, self.c))
        dt = torch.exp(self.log_dt) * self.step_scale
        return lam, p, b, c, dt

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Bilinear Ā (H, N, N) and B̄ (H, N) of the full DPLR matrix."""
        lam, p, b, _, dt = self._parts()
        a = torch.diag_embed(lam) - p.unsqueeze(-1) * p.conj().unsqueeze(-2)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        half = (dt / 2).to(a.dtype)[:, None, None] * a
        a_bar = torch.linalg.solve(eye - half, eye + half)
        b_bar = torch.linalg.solve(eye - half, (dt.to(a.dtype)[:, None] * b).unsqueeze(-1)).squeeze(-1)
        return a_bar, b_bar

    def kernel(self, length: int) -> torch.Tensor:
        lam, p, b, c, dt = self._parts()
        n_fft = length | 1
        a_bar, _ = self.dense()
        eye = torch.eye(a_bar.shape[-1], dtype=a_bar.dtype, device=a_bar.device)
        c_tilde = torch.einsum("hn,hnm->hm", c, eye - torch.linalg.matrix_power(a_bar, n_fft))
        z = torch.exp(-2j * math.pi * torch.arange(n_fft, device=lam.device) / n_fft).to(lam.dtype)
        g = (2.0 / dt).unsqueeze(-1).to(lam.dtype) * (1 - z) / (1 + z)  # (H, n_fft)
        pc = p.conj()
        k00, k01, k10, k11 = (cauchy(v, g, lam) for v in (c_tilde * b, c_tilde * p, pc * b, pc * p))
        k_hat = 2 / (1 + z) * (k00 - k01 * k10 / (1 + k11))
        return torch.fft.ifft(k_hat, dim=-1)[..., :length].real

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = u.transpose(1, 2)
        y = fft_conv(x, cached_kernel(self, x.shape[-1], self.kernel)) + self.d.unsqueeze(-1) * x
        return y.transpose(1, 2)

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, *self.lam.shape[:2], dtype=torch.complex64, device=self.d.device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a_bar, b_bar = self.dense()
        c = torch.view_as_complex(self.c)
        ys = []
        for t in range(u.shape[1]):  # streaming path only; training uses the convolution form
            state = torch.einsum("hnm,bhm->bhn", a_bar, state) + b_bar * u[:, t].unsqueeze(-1)
            ys.append(torch.einsum("hn,bhn->bh", c, state).real + self.d * u[:, t])
        return torch.stack(ys, dim=1), state

    def macs_per_step(self) -> int:
        h, n = self.lam.shape[:2]
        # Deployed as diagonal + rank-1 correction: Λ̄-like diagonal (4N), rank-1 (8N), input (2N), output (2N).
        return h * n * 16 + h


def _s4_net(kind: str, d_model: int = 128, d_state: int = 64, n_layers: int = 3, num_classes: int = 10,
            hop: int = 160, dropout: float = 0.0, seed: int = 0) -> FramedSSMNet:
    layer_cls = S4Layer if kind == "s4" else S4DLayer
    torch_gen_seed = seed * 1000
    layers = [layer_cls(d_model, d_state, seed=torch_gen_seed + i) for i in range(n_layers)]
    with drawing_from(seed):
        return FramedSSMNet(layers, d_model, num_classes, hop, dropout)


def build_s4(**kwargs) -> FramedSSMNet:
    return _s4_net("s4", **kwargs)


def build_s4d(**kwargs) -> FramedSSMNet:
    return _s4_net("s4d", **kwargs)


_SRC = "Gu et al. S4 (ICLR'22), S4D (NeurIPS'22); reference/reported.md §2.5"
_CFG = {"d_model": 128, "d_state": 64, "n_layers": 3, "num_classes": 10, "hop": 160}
register(ModelCard(
    name="s4-kws", family="s4", builder=build_s4, kwargs=dict(_CFG), protocol="v2-10", num_classes=10,
    can_change_rate=True, can_stream=True, cost=model_cost,
    recipe="nc-ssm",  # no recipe of its own (README, Training): the nc-ssm one
    description="S4 (DPLR, HiPPO-LegS, bilinear) KWS on raw 16 kHz: stride-160 front, 3 layers, H 128, N 64, SC10",
    source=_SRC,
))
register(ModelCard(
    name="s4d-kws", family="s4", builder=build_s4d, kwargs=dict(_CFG), protocol="v2-10", num_classes=10,
    can_change_rate=True, can_stream=True, cost=model_cost,
    recipe="nc-ssm",  # no recipe of its own (README, Training): the nc-ssm one
    description="S4D (diagonal, S4D-Lin, ZOH) KWS on raw 16 kHz: stride-160 front, 3 layers, H 128, N 64, SC10",
    source=_SRC,
))
