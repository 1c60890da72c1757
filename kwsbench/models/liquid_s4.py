"""Liquid S4: the S4 (DPLR) kernel plus liquid input-correlation terms of degree 2..liquid_degree.

For degree p the input product U_p[t] = u[t] u[t-1] ... u[t-p+1] (the p most recent positions) is weighted by
a C-B̄ product built from the diagonal part Λ with bilinear B̄ = dt (1 - dt Λ / 2)^-1 B, where each extra degree
combines B̄ with itself by a sum-product: w_p = C ⊙ B̄ · (Σ B̄)^(p-1).
- `polyb`: y += Re(Σ_n w_p,n) U_p[t]  (a static per-channel gain on the product)
- `kb`:    y += (K_p * U_p)[t] with K_p[l] = Re(Σ_n w_p,n Λ̄_n^l)  (the products filtered by the diagonal kernel)
Classifier after the liquid-s4 SC35 configuration (6 layers, d_model 128, d_state 7 rounded up to 8, causal,
polyb, degree 2) on the family's stride-160 front; protocol v2-35.
"""

from __future__ import annotations

import torch

from kwsbench.models.registry import ModelCard, register
from kwsbench.models.s4 import S4Layer
from kwsbench.models.seeded import drawing_from
from kwsbench.models.ssm_common import (
    FramedSSMNet,
    bilinear,
    cached_kernel,
    fft_conv,
    linear_scan,
    model_cost,
    vandermonde,
)


def input_products(u: torch.Tensor, degree: int, history: torch.Tensor | None = None) -> list[torch.Tensor]:
    """U_p for p = 2..degree along dim 1 of u (B, L, H); `history` holds the previous degree-1 inputs (streaming)."""
    past = degree - 1
    if history is None:
        history = u.new_zeros(u.shape[0], past, u.shape[2])
    full = torch.cat([history, u], dim=1)
    length = u.shape[1]
    out, prod = [], full[:, past:]
    for j in range(1, degree):  # loop over the degree, not over time
        prod = prod * full[:, past - j: past - j + length]
        out.append(prod)
    return out


class LiquidS4Layer(S4Layer):
    def __init__(self, d_model: int, d_state: int = 8, liquid_kernel: str = "polyb", liquid_degree: int = 2,
                 seed: int = 0, **kw):
        if liquid_kernel not in ("polyb", "kb") or liquid_degree < 2:
            raise ValueError(f"liquid_kernel must be 'polyb' or 'kb' and liquid_degree >= 2, got "
                             f"{liquid_kernel!r}, {liquid_degree}")
        super().__init__(d_model, d_state, seed=seed, **kw)
        self.liquid_kernel, self.liquid_degree = liquid_kernel, liquid_degree

    def _liquid_weights(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        lam, _, b, c, dt = self._parts()
        lam_bar, b_fac = bilinear(dt.to(lam.dtype).unsqueeze(-1), lam)
        b_bar = b_fac * b
        total = b_bar.sum(dim=-1, keepdim=True)
        return lam_bar, [c * b_bar * total ** (p - 1) for p in range(2, self.liquid_degree + 1)]

    def _kb_kernels(self, length: int) -> list[torch.Tensor]:
        """The convolution kernels of the input products p = 2..degree (kb mode, offline form)."""
        lam_bar, weights = self._liquid_weights()
        return [vandermonde(w, torch.log(lam_bar), length).real for w in weights]

    def _liquid(self, u: torch.Tensor, history, kb_states):
        lam_bar, weights = self._liquid_weights()
        prods = input_products(u, self.liquid_degree, history)
        offline_kb = self.liquid_kernel == "kb" and kb_states is None
        kernels = cached_kernel(self, u.shape[1], self._kb_kernels) if offline_kb else None
        y, new_states = torch.zeros_like(u), []
        for k, (w, up) in enumerate(zip(weights, prods, strict=True)):
            if self.liquid_kernel == "polyb":
                y = y + w.sum(-1).real * up
            elif kb_states is None:
                y = y + fft_conv(up.transpose(1, 2), kernels[k]).transpose(1, 2)
            else:
                x = up.transpose(1, 2).unsqueeze(2).to(lam_bar.dtype)
                states = linear_scan(lam_bar.unsqueeze(-1), x, dim=-1, h0=kb_states[k])
                y = y + torch.einsum("hn,bhnt->bth", w, states).real
                new_states.append(states[..., -1])
        return y, new_states

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return super().forward(u) + self._liquid(u, None, None)[0]

    def init_state(self, batch: int) -> dict:
        h, n = self.lam.shape[:2]
        kb = [torch.zeros(batch, h, n, dtype=torch.complex64, device=self.d.device)
              for _ in range(self.liquid_degree - 1)]
        hist = torch.zeros(batch, self.liquid_degree - 1, h, device=self.d.device)
        return {"s4": super().init_state(batch), "hist": hist, "kb": kb}

    def step(self, u: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        y, s4 = super().step(u, state["s4"])
        ly, kb = self._liquid(u, state["hist"], state["kb"])
        hist = torch.cat([state["hist"], u], dim=1)[:, -(self.liquid_degree - 1):]
        return y + ly, {"s4": s4, "hist": hist, "kb": kb if self.liquid_kernel == "kb" else state["kb"]}

    def macs_per_step(self) -> int:
        h, n = self.lam.shape[:2]
        per_degree = h * (1 + (1 if self.liquid_kernel == "polyb" else 8 * n))
        return super().macs_per_step() + (self.liquid_degree - 1) * per_degree


def build_liquid_s4(d_model: int = 128, d_state: int = 8, n_layers: int = 6, num_classes: int = 35, hop: int = 160,
                    liquid_kernel: str = "polyb", liquid_degree: int = 2, dropout: float = 0.0,
                    seed: int = 0) -> FramedSSMNet:
    layers = [LiquidS4Layer(d_model, d_state, liquid_kernel, liquid_degree, seed=seed * 1000 + i)
              for i in range(n_layers)]
    with drawing_from(seed):
        return FramedSSMNet(layers, d_model, num_classes, hop, dropout)


_KW = {"d_model": 128, "d_state": 8, "n_layers": 6, "num_classes": 35, "hop": 160, "liquid_degree": 2}
_SRC = "Hasani et al. Liquid-S4 (ICLR'23), raminmh/liquid-s4 configs/experiment/sc/s4-sc.yaml; reported.md §5"
for _kernel in ("polyb", "kb"):
    register(ModelCard(
        name="liquid-s4-kws" if _kernel == "polyb" else "liquid-s4-kb-kws", family="liquid-s4",
        builder=build_liquid_s4, kwargs={**_KW, "liquid_kernel": _kernel}, protocol="v2-35", num_classes=35,
        can_change_rate=True, can_stream=True, cost=model_cost,
        recipe="nc-ssm",  # no recipe of its own (README, Training): the nc-ssm one
        description=f"Liquid-S4 ({_kernel}, degree 2), causal, stride-160 front, H 128, N 8, 6 layers, SC35",
        source=_SRC,
    ))
