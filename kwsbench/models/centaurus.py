"""Centaurus SSM layer modes (dws, s5, neck, full) and its hybrid KWS network on raw 16 kHz audio.

Per reported.md §4: A stored as (softplus^-1(0.5), pi n) pairs, Re(dtA) = -softplus(.) dt, Im(dtA) = Im dt; the
input weights are scaled by dt; the per-state kernel is exp(Re l) cos(Im l) = Re(exp(dtA l)) (real projection).
dws/full sum the basis over states with weights E, then FFT-convolve (per channel / einsum over input channels).
s5/neck pick the contraction order from the shapes: if 1/C_in + 1/C_out > 1/batch + 1/coeffs the full
C_out x C_in x L kernel is materialised, else the input is projected by B, depthwise-convolved, projected by C.
Streaming: the complex states are carried chunk by chunk (log-depth scan inside a chunk).

The KWS network (the paper's KWS table was not retrievable, reported.md §2.5): two full, two neck and two s5
blocks (SSM -> BN -> ReLU -> average pooling), pooling 4, 4, 2, 2, 2, 1 (16000 samples -> 125 steps), mean over
time and an MLP head [C, C, classes]; protocol v2-35. Rate change: every layer's step scale = 16000 / rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kwsbench.errors import BadInputError
from kwsbench.models.registry import ModelCard, register
from kwsbench.models.seeded import drawing_from
from kwsbench.models.ssm_common import (
    NATIVE_RATE,
    cached_kernel,
    fft_conv,
    inverse_softplus,
    linear_scan,
    log_uniform,
    model_cost,
)

MODES = ("dws", "s5", "neck", "full")
_PRODUCT_CLIPS = 4  # clips per piece of a full layer's spectral product at inference (CentaurusSSM._full_conv)


class CentaurusSSM(nn.Module):
    def __init__(self, num_states: int, in_channels: int, out_channels: int, mode: str = "s5",
                 state_blocks: int = 4, dt_min: float = 1e-3, dt_max: float = 1e-1, seed: int = 0) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown Centaurus mode {mode!r}; choose one of {MODES}")
        gen = torch.Generator().manual_seed(seed)
        n, j, ci, co = num_states, state_blocks, in_channels, out_channels
        self.mode, self.in_channels, self.out_channels = mode, ci, co
        a_shape, dt_shape = {"dws": ((ci, n), (ci, n)), "s5": ((j * n,), (j * n,)), "neck": ((j, n), (j,)),
                             "full": ((co, ci, n), (co, n))}[mode]
        a = torch.stack([torch.full(a_shape, inverse_softplus(0.5)),
                         math.pi * torch.arange(n, dtype=torch.float32).expand(*a_shape[:-1], n).reshape(a_shape)
                         if mode != "s5" else math.pi * torch.arange(j * n, dtype=torch.float32) % (math.pi * n)], -1)
        self.a = nn.Parameter(a)
        self.log_dt = nn.Parameter(log_uniform(dt_shape, dt_min, dt_max, gen))
        coeffs = j * n if mode == "s5" else j
        if mode in ("s5", "neck"):
            self.b = nn.Parameter(torch.randn(coeffs, ci, generator=gen) / math.sqrt(ci))
            self.c = nn.Parameter(torch.randn(co, coeffs, generator=gen) / math.sqrt(coeffs))
        if mode != "s5":
            e_shape = {"dws": (ci, n), "neck": (j, n), "full": (co, ci, n)}[mode]
            self.e = nn.Parameter(torch.randn(e_shape, generator=gen) / math.sqrt(n * (ci if mode == "full" else 1)))
        if mode == "dws":
            self.mix_norm = nn.BatchNorm1d(ci)
            self.mix = nn.Parameter(torch.randn(co, ci, generator=gen) / math.sqrt(ci))
        self.step_scale = 1.0

    def set_step_scale(self, scale: float) -> None:
        self.step_scale = float(scale)

    def _dt(self) -> torch.Tensor:
        dt = torch.exp(self.log_dt) * self.step_scale
        if self.mode == "neck":
            return dt.unsqueeze(-1)  # (J, 1): one step per block
        if self.mode == "full":
            return dt.unsqueeze(1)  # (C_out, 1, N)
        return dt

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(dtA complex, weight per state): weight = E dt (or dt for s5), the state-sum weights of Re(x)."""
        dt = self._dt()
        dt_a = torch.complex(-F.softplus(self.a[..., 0]) * dt, self.a[..., 1] * dt)
        w = dt if self.mode == "s5" else self.e * dt
        return dt_a, w

    def basis_kernel(self, length: int) -> torch.Tensor:
        """Σ_n w_n exp(Re l) cos(Im l): (C_in, L) dws, (J N, L) s5, (J, L) neck, (C_out, C_in, L) full."""
        dt_a, w = self.discrete()
        pos = torch.arange(length, device=dt_a.device, dtype=torch.float32)
        basis = torch.exp(dt_a.real.unsqueeze(-1) * pos) * torch.cos(dt_a.imag.unsqueeze(-1) * pos)
        if self.mode == "s5":
            return w.unsqueeze(-1) * basis
        return torch.einsum("...n,...nl->...l", w, basis)

    def materialise_full(self, batch: int) -> bool:
        coeffs = self.c.shape[1]
        return 1 / self.in_channels + 1 / self.out_channels > 1 / batch + 1 / coeffs

    def forward(self, u: torch.Tensor, order: str | None = None) -> torch.Tensor:
        """u (B, C_in, L) -> (B, C_out, L). `order` ('full' | 'project') overrides the shape-based choice.
        Without autograd the kernel (and a full layer's kernel spectrum) is built once per parameter set and
        length, not every batch (cached_kernel: same computation, same bits)."""
        length = u.shape[-1]
        if self.mode == "full":
            return self._full_conv(u, kf=cached_kernel(self, length, self.kernel_spectrum))
        k = cached_kernel(self, length, self.basis_kernel)
        if self.mode == "dws":
            return self._mix(fft_conv(u, k))
        if order is None:
            order = "full" if self.materialise_full(u.shape[0]) else "project"
        if order == "full":
            return self._full_conv(u, torch.einsum("om,ml,mi->oil", self.c, k, self.b))
        return torch.einsum("om,bml->bol", self.c, fft_conv(torch.einsum("mi,bil->bml", self.b, u), k))

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oi,bil->bol", self.mix, F.relu(self.mix_norm(y)))

    def kernel_spectrum(self, length: int) -> torch.Tensor:
        """rfft of the basis kernel zero-padded to 2 L (what _full_conv multiplies by)."""
        return torch.fft.rfft(self.basis_kernel(length), n=2 * length)

    @staticmethod
    def _full_conv(u: torch.Tensor, k: torch.Tensor | None = None, kf: torch.Tensor | None = None) -> torch.Tensor:
        """Full C_out x C_in convolution by kernel `k` (C_out, C_in, L), or by its spectrum `kf` when given."""
        length = u.shape[-1]
        uf = torch.fft.rfft(u, n=2 * length)
        kf = torch.fft.rfft(k, n=2 * length) if kf is None else kf
        # Broadcast product summed over C_in: a complex einsum here becomes a bmm batched over frequencies,
        # whose per-frequency copies dominated a training step on CPU. One input channel: the product is the sum.
        # Without autograd the product goes a few clips at a time: its (B, C_out, C_in, 2 L) complex temporary
        # held 1 GB at 64 clips (same values: each clip's sum is computed alike).
        if u.shape[1] == 1:
            yf = uf * kf.squeeze(1).unsqueeze(0)
        elif torch.is_grad_enabled() or u.shape[0] <= _PRODUCT_CLIPS:
            yf = (uf.unsqueeze(1) * kf.unsqueeze(0)).sum(dim=2)
        else:
            yf = torch.cat([(part.unsqueeze(1) * kf.unsqueeze(0)).sum(dim=2) for part in uf.split(_PRODUCT_CLIPS)])
        return torch.fft.irfft(yf, n=2 * length)[..., :length]

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, *self.a.shape[:-1], dtype=torch.complex64, device=self.a.device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u (B, C_in, T) chunk -> (y (B, C_out, T), state), by the recurrence x_t = exp(dtA) x_{t-1} + v_t."""
        dt_a, w = self.discrete()
        decay = torch.exp(dt_a).unsqueeze(-1)
        if self.mode == "dws":
            v = u.unsqueeze(2)  # (B, C_in, 1, T)
        elif self.mode == "full":
            v = u.unsqueeze(1).unsqueeze(3)  # (B, 1, C_in, 1, T)
        else:
            v = torch.einsum("mi,bit->bmt", self.b, u)
            v = v if self.mode == "s5" else v.unsqueeze(2)
        states = linear_scan(decay, v.to(decay.dtype), dim=-1, h0=state)
        re = states.real
        if self.mode == "dws":
            y = self._mix(torch.einsum("cn,bcnt->bct", w, re))
        elif self.mode == "full":
            y = torch.einsum("oin,boint->bot", w, re)
        elif self.mode == "s5":
            y = torch.einsum("om,bmt->bot", self.c, w.unsqueeze(-1) * re)
        else:
            y = torch.einsum("oj,bjt->bot", self.c, torch.einsum("jn,bjnt->bjt", w, re))
        return y, states[..., -1]

    def macs_per_step(self) -> int:
        states = self.a[..., 0].numel()
        per = states * (4 + 1)  # complex decay + real input, Re(x) weighted
        if self.mode == "dws":
            return per + self.in_channels * self.out_channels
        if self.mode in ("s5", "neck"):
            return per + self.b.numel() + self.c.numel()
        return per


class CentaurusBlock(nn.Module):
    def __init__(self, layer: CentaurusSSM, pool: int) -> None:
        super().__init__()
        self.layer, self.norm, self.pool = layer, nn.BatchNorm1d(layer.out_channels), pool

    def _post(self, y: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm(y))
        if self.pool == 1:
            return y
        if y.shape[-1] % self.pool == 0:  # the same sums and division as avg_pool1d, in 0.6 of its time
            return y.unflatten(-1, (-1, self.pool)).mean(dim=-1)
        return F.avg_pool1d(y, self.pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._post(self.layer(x))

    def step(self, x: torch.Tensor, state):
        y, state = self.layer.step(x, state)
        return self._post(y), state


class CentaurusKWS(nn.Module):
    def __init__(self, channels=(16, 16, 24, 24, 32, 32), modes=("full", "full", "neck", "neck", "s5", "s5"),
                 pools=(4, 4, 2, 2, 2, 1), num_states: int = 16, state_blocks: int = 4, num_classes: int = 35,
                 seed: int = 0) -> None:
        super().__init__()
        with drawing_from(seed):
            widths = (1, *channels)
            self.blocks = nn.ModuleList(
                CentaurusBlock(CentaurusSSM(num_states, widths[i], widths[i + 1], modes[i], state_blocks,
                                            seed=seed * 1000 + i), pools[i]) for i in range(len(channels)))
            c = channels[-1]
            self.head = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Linear(c, num_classes))
        self.pool_product = math.prod(pools)
        self.rate = NATIVE_RATE

    @property
    def frame_len(self) -> int:
        """Streaming chunks must be a multiple of this many samples (pooling has no state)."""
        return self.pool_product

    def set_sample_rate(self, rate: int) -> None:
        if rate <= 0:
            raise BadInputError(f"sample rate must be positive, got {rate}")
        self.rate = int(rate)
        for b in self.blocks:
            b.layer.set_step_scale(NATIVE_RATE / rate)

    def set_step_scale(self, scale: float) -> None:
        for b in self.blocks:
            b.layer.set_step_scale(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        for b in self.blocks:
            h = b(h)
        return self.head(h.mean(dim=-1))

    def init_state(self, batch: int) -> dict:
        total = torch.zeros(batch, self.head[0].in_features, device=self.head[0].weight.device)
        return {"layers": [b.layer.init_state(batch) for b in self.blocks], "sum": total, "count": 0}

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        if x_t.shape[1] % self.pool_product:
            raise BadInputError(f"streaming chunk of {x_t.shape[1]} samples is not a multiple of {self.pool_product}")
        h, layers = x_t.unsqueeze(1), []
        for b, s in zip(self.blocks, state["layers"], strict=True):
            h, s = b.step(h, s)
            layers.append(s)
        total, count = state["sum"] + h.sum(dim=-1), state["count"] + h.shape[-1]
        return self.head(total / count), {"layers": layers, "sum": total, "count": count}

    def macs_per_second(self) -> tuple[int, int]:
        steps, body = float(self.rate), 0.0
        for b in self.blocks:
            body += steps * b.layer.macs_per_step()
            steps /= b.pool
        body += sum(m.weight.numel() for m in self.head if isinstance(m, nn.Linear))
        return 0, int(body)


def build_centaurus(**kwargs) -> CentaurusKWS:
    return CentaurusKWS(**kwargs)


register(ModelCard(
    name="centaurus-kws", family="centaurus", builder=build_centaurus,
    kwargs={"channels": (16, 16, 24, 24, 32, 32), "modes": ("full", "full", "neck", "neck", "s5", "s5"),
            "pools": (4, 4, 2, 2, 2, 1), "num_states": 16, "state_blocks": 4, "num_classes": 35},
    protocol="v2-35", num_classes=35, can_change_rate=True, can_stream=True, cost=model_cost,
    recipe="nc-ssm",  # no recipe of its own (README, Training): the nc-ssm one
    description="Centaurus hybrid KWS on raw 16 kHz: 2 full, 2 neck, 2 s5 blocks with pooling, N 16, J 4, SC35",
    source="Pei, Centaurus (ICLR 2025, arXiv 2501.13230); Brainchip-Inc/Centaurus b394bd7; reported.md §4",
))
