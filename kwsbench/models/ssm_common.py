"""Shared pieces of the SSM family (S4, S4D, S5, Liquid S4, Mamba, Centaurus).

Discretisation (ZOH, bilinear), a log-depth parallel scan for h_t = a_t h_{t-1} + b_t, Vandermonde and
Cauchy kernels, a causal FFT convolution, the framed raw-audio front end and an analytic cost record.
Everything here is vectorised over time: the only Python loops run over log2(L) scan levels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kwsbench.cost import Cost
from kwsbench.errors import BadInputError

NATIVE_RATE = 16000


def zoh(dt_a: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold of a diagonal system: returns (exp(dtA), (exp(dtA) - 1) / A), the state and input factors."""
    a_bar = torch.exp(dt_a)
    return a_bar, (a_bar - 1.0) / a


def bilinear(dt: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear (Tustin) discretisation of a diagonal system: (Ā, B̄ factor) with B̄ = dt / (1 - dt A / 2)."""
    den = 1.0 - dt * a / 2.0
    return (1.0 + dt * a / 2.0) / den, dt / den


def linear_scan(a: torch.Tensor, b: torch.Tensor, dim: int = -1, h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states of h_t = a_t * h_{t-1} + b_t along `dim` (h_{-1} = h0 or 0), by a Hillis-Steele scan.

    The pair combine (a_i, b_i) o (a_j, b_j) = (a_j a_i, a_j b_i + b_j) is associative, so log2(L) doubling
    steps give every prefix; `a` broadcasts against `b`. Works for real and complex tensors and is differentiable.
    """
    a, b = torch.broadcast_tensors(a, b)
    a, b = a.movedim(dim, -1), b.movedim(dim, -1)
    if h0 is not None:
        b = torch.cat([b[..., :1] + a[..., :1] * h0.unsqueeze(-1), b[..., 1:]], dim=-1)
    length, step = b.shape[-1], 1
    while step < length:
        b = torch.cat([b[..., :step], a[..., step:] * b[..., :-step] + b[..., step:]], dim=-1)
        a = torch.cat([a[..., :step], a[..., step:] * a[..., :-step]], dim=-1)
        step *= 2
    return b.movedim(-1, dim)


def vandermonde(c: torch.Tensor, log_z: torch.Tensor, length: int) -> torch.Tensor:
    """K[..., l] = sum_n c[..., n] * z[..., n]^l for l < length, with z = exp(log_z) (complex)."""
    pos = torch.arange(length, device=log_z.device, dtype=torch.float32)
    return torch.einsum("...n,...nl->...l", c, torch.exp(log_z.unsqueeze(-1) * pos))


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Cauchy kernel: out[..., k] = sum_n v[..., n] / (z[..., k] - w[..., n]) (naive O(N K) memory form)."""
    return (v.unsqueeze(-1) / (z.unsqueeze(-2) - w.unsqueeze(-1))).sum(dim=-2)


def cached_kernel(layer: nn.Module, length: int, compute: Callable[[int], Any]) -> Any:
    """`compute(length)`, reused by forwards without autograd while the layer's own parameters, its step scale
    and the length stay the same.

    A convolution kernel depends on those alone, not on the input, so an evaluation sweep need not rebuild it
    every batch; and building it once in a warm-up keeps its linear solves (whose error checks wait for the
    device) out of a CUDA-graph capture. Parameters are compared by storage, device and in-place version, so
    load_state_dict, .to() and optimiser steps all invalidate the entry (writing through `param.data` does not:
    it bypasses the version counter). The kernel is the same computation, so results are bit-identical.
    """
    if torch.is_grad_enabled():
        return compute(length)
    try:
        params = tuple((p.device, p.data_ptr(), p._version) for p in layer.parameters(recurse=False))
    except RuntimeError:  # parameters created under inference_mode carry no version counter: do not cache
        return compute(length)
    key = (length, getattr(layer, "step_scale", None), params)
    slots = layer.__dict__.setdefault("_kernel_cache", {})  # one entry per kernel function of the layer
    entry = slots.get(compute.__name__)
    if entry is None or entry[0] != key:
        entry = slots[compute.__name__] = (key, compute(length))
    return entry[1]


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution y[t] = sum_{j<=t} k[j] u[t-j] along the last axis, zero-padded FFT of size 2L."""
    length = u.shape[-1]
    n = 2 * length
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k[..., :length], n=n), n=n)
    return y[..., :length]


def inverse_softplus(x: float) -> float:
    return math.log(math.expm1(x))


def log_uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """ln of values drawn log-uniformly from [low, high] (the usual SSM time-step initialisation)."""
    r = torch.rand(shape, generator=gen)
    return r * (math.log(high) - math.log(low)) + math.log(low)


def check_rate(rate: int, hop: int) -> int:
    """Samples per frame at `rate` for a front end of `hop` samples at 16 kHz; frames keep their duration."""
    if rate <= 0 or (hop * rate) % NATIVE_RATE:
        raise BadInputError(
            f"sample rate {rate} Hz does not give a whole number of samples per {hop}-sample (16 kHz) frame; "
            f"use a rate such that {hop} * rate / 16000 is an integer (e.g. 16000, 8000, 4000)."
        )
    return hop * rate // NATIVE_RATE


class FrameFront(nn.Module):
    """Raw waveform -> non-overlapping frames of `hop` samples -> Linear(hop, d): the stride-`hop` downsampling front.

    At another rate the frame keeps its duration (hop * rate / 16000 samples) and the filter is resampled to it
    (linear interpolation, gain rescaled so a constant input gives the same output); so the sequence after the
    front always runs at 16000 / hop frames per second and the SSM body needs no step change.
    """

    def __init__(self, hop: int, d_model: int) -> None:
        super().__init__()
        self.hop = hop
        self.proj = nn.Linear(hop, d_model)
        self.rate = NATIVE_RATE

    @property
    def frame_len(self) -> int:
        return check_rate(self.rate, self.hop)

    def set_sample_rate(self, rate: int) -> None:
        check_rate(rate, self.hop)
        self.rate = int(rate)

    def weight_at_rate(self) -> torch.Tensor:
        w, n = self.proj.weight, self.frame_len
        if n == self.hop:
            return w
        return F.interpolate(w.unsqueeze(0), size=n, mode="linear", align_corners=False).squeeze(0) * (self.hop / n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, frames, d_model); a trailing partial frame is dropped."""
        n = self.frame_len
        frames = x[:, : (x.shape[1] // n) * n].reshape(x.shape[0], -1, n)
        return F.linear(frames, self.weight_at_rate(), self.proj.bias)

    def macs_per_frame(self) -> int:
        return self.frame_len * self.proj.out_features


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_cost(card, rate: int = NATIVE_RATE) -> Cost:
    """Cost of `card`'s model at `rate`: each model of this family implements `macs_per_second() -> (front, body)`,
    counted in the recurrent form (complex x complex = 4 real MACs, complex x real = 2; norms, activations and
    kernel generation not counted: kernels are cached at inference)."""
    model = card.build()
    if rate != NATIVE_RATE:
        model.set_sample_rate(rate)
    front, body = model.macs_per_second()
    params = count_params(model)
    return Cost(
        model=card.name, rate=rate, trainable_params=params, inference_params=params,
        folded="nothing folded (kernels are generated once from the parameters)",
        frontend_macs=front, body_macs=body, streaming_macs_per_s=front + body,
        notes="analytic, recurrent form; a 1-s clip costs the same as 1 s of streaming",
    )


class MeanHead(nn.Module):
    """Norm -> mean over time -> Linear; streamed as a running sum so the last step equals the offline mean."""

    def __init__(self, d_model: int, num_classes: int, norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model) if norm else nn.Identity()
        self.out = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(x).mean(dim=1))

    def step(self, x: torch.Tensor, total: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """x (B, T, d) chunk; returns logits of the mean so far, new running sum and count."""
        total = total + self.norm(x).sum(dim=1)
        count = count + x.shape[1]
        return self.out(total / count), total, count


class GLUBlock(nn.Module):
    """Pre-norm residual block: x + Dropout(GLU(Linear(GELU(ssm(LN(x)))))); everything but the SSM is per time step."""

    def __init__(self, layer: nn.Module, d_model: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.layer = layer
        self.mix = nn.Linear(d_model, 2 * d_model)
        self.drop = nn.Dropout(dropout)

    def _post(self, y: torch.Tensor) -> torch.Tensor:
        return self.drop(F.glu(self.mix(F.gelu(y)), dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self._post(self.layer(self.norm(x)))

    def step(self, x: torch.Tensor, state):
        y, state = self.layer.step(self.norm(x), state)
        return x + self._post(y), state

    def macs_per_step(self) -> int:
        d = self.mix.in_features
        return self.layer.macs_per_step() + 2 * d * d


class FramedSSMNet(nn.Module):
    """Raw audio -> FrameFront -> residual SSM blocks -> mean-pool head: the family's common classifier shape.

    Streaming: `step(chunk, state)` takes a chunk of raw samples (a whole number of frames at the current rate,
    `frame_len` samples per frame) and returns the logits of everything seen so far; after the last chunk they
    equal the offline forward.
    """

    def __init__(self, layers: list[nn.Module], d_model: int, num_classes: int, hop: int, dropout: float = 0.0):
        super().__init__()
        self.front = FrameFront(hop, d_model)
        self.blocks = nn.ModuleList(GLUBlock(layer, d_model, dropout) for layer in layers)
        self.head = MeanHead(d_model, num_classes)

    @property
    def frame_len(self) -> int:
        return self.front.frame_len

    def set_sample_rate(self, rate: int) -> None:
        # Frames keep 10 ms (hop / 16000 s), so the body's step is unchanged; only the front's filter is resampled.
        self.front.set_sample_rate(rate)

    def set_step_scale(self, scale: float) -> None:
        """Multiply every layer's discretisation step (the SSM time-scale knob; 1 is the identity)."""
        for block in self.blocks:
            block.layer.set_step_scale(scale)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.front(x)
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def init_state(self, batch: int) -> dict:
        ref = self.head.out.weight
        total = torch.zeros(batch, self.head.out.in_features, dtype=ref.dtype, device=ref.device)
        return {"layers": [b.layer.init_state(batch) for b in self.blocks], "sum": total, "count": 0}

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        if x_t.shape[1] % self.frame_len:
            raise BadInputError(f"streaming chunk of {x_t.shape[1]} samples is not a multiple of {self.frame_len}")
        h = self.front(x_t)
        layer_states = []
        for block, s in zip(self.blocks, state["layers"], strict=True):
            h, s = block.step(h, s)
            layer_states.append(s)
        logits, total, count = self.head.step(h, state["sum"], state["count"])
        return logits, {"layers": layer_states, "sum": total, "count": count}

    def macs_per_second(self) -> tuple[int, int]:
        frames = NATIVE_RATE // self.front.hop
        # The head runs once per clip on the running mean.
        body = frames * sum(b.macs_per_step() for b in self.blocks) + self.head.out.weight.numel()
        return frames * self.front.macs_per_frame(), body
