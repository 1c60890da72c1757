"""S5: one MIMO diagonal SSM per layer (P complex states shared by all H channels), ZOH, parallel scan.

Classifier after the S5 SC35 run script (d_model 96, ssm size 128, 6 layers), made causal (unidirectional) so it
streams, on the family's stride-160 front (10 ms frames); protocol v2-35. Offline form: an associative scan over
the whole sequence; streaming: the same recurrence carried chunk by chunk.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kwsbench.models.registry import ModelCard, register
from kwsbench.models.seeded import drawing_from
from kwsbench.models.ssm_common import FramedSSMNet, linear_scan, log_uniform, model_cost, zoh


class S5Layer(nn.Module):
    """x_t = Λ̄ x_{t-1} + B̄ u_t, y_t = 2 Re(C x_t) + D u_t with Λ complex diagonal (P/2 conjugate pairs kept)."""

    def __init__(self, d_model: int, d_state: int = 128, dt_min: float = 1e-3, dt_max: float = 1e-1, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        p = d_state // 2
        self.log_a_re = nn.Parameter(torch.full((p,), math.log(0.5)))
        self.a_im = nn.Parameter(math.pi * torch.arange(p, dtype=torch.float32))
        self.b = nn.Parameter(torch.randn(p, d_model, 2, generator=gen) / math.sqrt(2 * d_model))
        self.c = nn.Parameter(torch.randn(d_model, p, 2, generator=gen) / math.sqrt(2 * p))
        self.d = nn.Parameter(torch.randn(d_model, generator=gen))
        self.log_dt = nn.Parameter(log_uniform((p,), dt_min, dt_max, gen))
        self.step_scale = 1.0

    def set_step_scale(self, scale: float) -> None:
        self.step_scale = float(scale)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.complex(-torch.exp(self.log_a_re), self.a_im)
        a_bar, b_fac = zoh(a * torch.exp(self.log_dt) * self.step_scale, a)
        return a_bar, b_fac.unsqueeze(-1) * torch.view_as_complex(self.b)

    def _run(self, u: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        a_bar, b_bar = self._discrete()
        bu = torch.einsum("ph,blh->bpl", b_bar, u.to(b_bar.dtype))
        states = linear_scan(a_bar.unsqueeze(-1), bu, dim=-1, h0=h0)  # (B, P, L)
        y = 2 * torch.einsum("hp,bpl->blh", torch.view_as_complex(self.c), states).real + self.d * u
        return y, states[..., -1]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self._run(u, None)[0]

    def init_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.a_im.shape[0], dtype=torch.complex64, device=self.d.device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(u, state)

    def macs_per_step(self) -> int:
        p, h = self.b.shape[:2]
        return 4 * p + 2 * p * h + 2 * p * h + h  # decay, complex B times real u, Re(C x), D


def build_s5(d_model: int = 96, d_state: int = 128, n_layers: int = 6, num_classes: int = 35, hop: int = 160,
             dropout: float = 0.0, seed: int = 0) -> FramedSSMNet:
    layers = [S5Layer(d_model, d_state, seed=seed * 1000 + i) for i in range(n_layers)]
    with drawing_from(seed):
        return FramedSSMNet(layers, d_model, num_classes, hop, dropout)


register(ModelCard(
    name="s5-kws", family="s5", builder=build_s5,
    kwargs={"d_model": 96, "d_state": 128, "n_layers": 6, "num_classes": 35, "hop": 160},
    protocol="v2-35", num_classes=35, can_change_rate=True, can_stream=True, cost=model_cost,
    recipe="nc-ssm",  # no recipe of its own (README, Training): the nc-ssm one
    description="S5 (MIMO diagonal, ZOH, parallel scan), causal, stride-160 front, H 96, P 128, 6 layers, SC35",
    source="Smith et al. S5 (ICLR'23), run_speech35.sh; reference/reported.md §2.5",
))
