"""Mamba (selective SSM) KWS classifier in pure PyTorch.

Input projection in place of the token embedding (the family's stride-160 front: 10 ms frames of raw 16 kHz
audio -> Linear), n x (x + Mamba1(RMSNorm(x))), final norm, mean pool, Linear head (reported.md §6).
The selective scan h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t, y_t = <h_t, C_t> + D x_t runs as a chunked
log-depth parallel scan for training and on GPUs, frame by frame for CPU inference (`selective_scan`). The
`mamba-ssm` CUDA kernel is used only when importable, the input is on a GPU and `use_kernel=True`. Protocol
v2-12 (the Keyword-Mamba V2-12 setup); sizes are a small KWS configuration, not Keyword-Mamba-T (5.19 M
parameters on log-mel features).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kwsbench.models.registry import ModelCard, register
from kwsbench.models.seeded import drawing_from
from kwsbench.models.ssm_common import (
    NATIVE_RATE,
    FrameFront,
    MeanHead,
    linear_scan,
    log_uniform,
    model_cost,
)


def kernel_scan_available() -> bool:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:  # ImportError, or the Triton/CUDA import failures documented in reported.md §6
        return False
    return torch.cuda.is_available()


MAX_LOG_DECAY = 10.0  # per-step decay floor exp(-10) ~ 4.5e-5 keeps exp(-cumsum) finite inside a chunk
CHUNK = 8


def selective_scan_ref(x, dt, a, b, c, d, h0=None):
    """Reference selective scan by the generic log-depth scan (same clamped decay as `selective_scan`)."""
    d_a = torch.exp((dt.unsqueeze(-1) * a).clamp(min=-MAX_LOG_DECAY))
    states = linear_scan(d_a, (dt * x).unsqueeze(-1) * b.unsqueeze(2), dim=1, h0=h0)
    return torch.einsum("bldn,bln->bld", states, c) + d * x, states[:, -1]


def selective_scan(x, dt, a, b, c, d, h0=None, chunk: int = CHUNK, method: str = "auto"):
    """Selective scan. x, dt (B, L, Di); a (Di, N); b, c (B, L, N); d (Di). Returns (y, last state).

    method "steps": the recurrence frame by frame (`_step_scan`); "chunked": the form below; "auto" takes the
    steps for CPU inference, where they measured 2.5x faster than the chunks (quick run's batches of 64 clips)
    and agree with the reference to float rounding, and the chunks elsewhere (autograd; few large GPU kernels).

    Chunked: inside a chunk of `chunk` steps the states are exp(S_t) * cumsum(exp(-S_s) Δ_s B_s x_s) with S the
    running sum of log decays (bounded by chunk * MAX_LOG_DECAY = 80, so exp stays finite in float32); the state carried
    between chunks is a short log-depth scan over chunks.
    """
    if method == "auto":
        method = "steps" if x.device.type == "cpu" and not torch.is_grad_enabled() else "chunked"
    if method == "steps":
        return _step_scan(x, dt, a, b, c, d, h0)
    bsz, length, di = x.shape
    pad = (-length) % chunk
    x_in = x
    if pad:  # padded steps have Δ = 0: no decay and no input, so the real steps' values are unchanged
        dt, x, b = F.pad(dt, (0, 0, 0, pad)), F.pad(x, (0, 0, 0, pad)), F.pad(b, (0, 0, 0, pad))
    log_a = (dt.unsqueeze(-1) * a).clamp(min=-MAX_LOG_DECAY)  # (B, L, Di, N)
    d_bx = (dt * x).unsqueeze(-1) * b.unsqueeze(2)
    shape = (bsz, -1, chunk, di, a.shape[-1])
    cum = torch.cumsum(log_a.reshape(shape), dim=2)
    growth = torch.exp(cum)  # computed once: the (B, L, Di, N) tensors are what this scan's time goes into
    intra = growth * torch.cumsum(torch.exp(-cum) * d_bx.reshape(shape), dim=2)
    ends = linear_scan(growth[:, :, -1], intra[:, :, -1], dim=1, h0=h0)  # state at each chunk end
    start = torch.cat([ends[:, :1] * 0 if h0 is None else h0.unsqueeze(1), ends[:, :-1]], dim=1)
    states = (intra + growth * start.unsqueeze(2)).reshape(bsz, -1, di, a.shape[-1])[:, :length]
    y = torch.einsum("bldn,bln->bld", states, c) + d * x_in
    return y, states[:, -1]


def _step_scan(x, dt, a, b, c, d, h0=None):
    """h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t one frame at a time, in place in the (L, B, Di, N) input terms: two
    passes over those tensors plus one small multiply-add per frame, where the chunked form streams about ten
    (on a CPU its time goes into memory traffic, not arithmetic). Same clamped decay as the other forms."""
    dt_t = dt.transpose(0, 1)
    decay = (dt_t.unsqueeze(-1) * a).clamp_(min=-MAX_LOG_DECAY).exp_()  # (L, B, Di, N), time-major
    states = (dt_t * x.transpose(0, 1)).unsqueeze(-1) * b.transpose(0, 1).unsqueeze(2)
    h = h0
    for t in range(states.shape[0]):
        if h is not None:
            states[t].addcmul_(decay[t], h)
        h = states[t]
    # <h_t, C_t> as a product and a sum over N: half the time of einsum's batched (Di x N) @ (N x 1) products
    y = (states * c.transpose(0, 1).unsqueeze(2)).sum(-1).transpose(0, 1) + d * x
    return y, states[-1]


class MambaMixer(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        di = expand * d_model
        self.d_inner, self.d_state, self.d_conv = di, d_state, d_conv
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        self.conv = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1)
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di)
        with torch.no_grad():
            dt = torch.exp(log_uniform((di,), dt_min, dt_max, gen))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.a_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1))
        self.d = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d_model, bias=False)
        self.dt_scale = 1.0
        self.use_kernel = False

    def _ssm_inputs(self, xc: torch.Tensor):
        dt_in, b, c = self.x_proj(xc).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_in)) * self.dt_scale  # Δ scaling: the rate-change knob
        return dt, -torch.exp(self.a_log), b, c

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(h).chunk(2, dim=-1)
        length = x.shape[1]
        xc = F.silu(self.conv(x.transpose(1, 2))[..., :length].transpose(1, 2))
        dt, a, b, c = self._ssm_inputs(xc)
        if self.use_kernel and xc.is_cuda and kernel_scan_available():
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

            y = selective_scan_fn(xc.transpose(1, 2).contiguous(), dt.transpose(1, 2).contiguous(), a.contiguous(),
                                  b.transpose(1, 2).contiguous(), c.transpose(1, 2).contiguous(), self.d.float())
            y = y.transpose(1, 2)
        else:
            y, _ = selective_scan(xc, dt, a, b, c, self.d)
        return self.out_proj(y * F.silu(z))

    def init_state(self, batch: int) -> dict:
        dev = self.d.device
        return {"conv": torch.zeros(batch, self.d_conv - 1, self.d_inner, device=dev),
                "ssm": torch.zeros(batch, self.d_inner, self.d_state, device=dev)}

    def step(self, h: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """h (B, T, d) chunk; the conv state holds the last d_conv - 1 inputs, the SSM state (B, Di, N)."""
        x, z = self.in_proj(h).chunk(2, dim=-1)
        full = torch.cat([state["conv"], x], dim=1)
        xc = F.silu(F.conv1d(full.transpose(1, 2), self.conv.weight, self.conv.bias, groups=self.d_inner))
        xc = xc.transpose(1, 2)
        dt, a, b, c = self._ssm_inputs(xc)
        y, last = selective_scan(xc, dt, a, b, c, self.d, h0=state["ssm"])
        return self.out_proj(y * F.silu(z)), {"conv": full[:, -(self.d_conv - 1):], "ssm": last}

    def macs_per_step(self) -> int:
        d, di, n, r = self.in_proj.in_features, self.d_inner, self.d_state, self.dt_rank
        proj = d * 2 * di + di * (r + 2 * n) + r * di + di * d
        scan = di * n * 4 + di * 2  # dA h, Δ B x, <h, C>; Δ x and D x
        return proj + di * self.d_conv + scan + di  # + gate


class MambaKWS(nn.Module):
    def __init__(self, d_model: int = 64, n_layers: int = 4, d_state: int = 16, expand: int = 2,
                 num_classes: int = 12, hop: int = 160, seed: int = 0) -> None:
        super().__init__()
        with drawing_from(seed):
            self.front = FrameFront(hop, d_model)
            self.norms = nn.ModuleList(nn.RMSNorm(d_model) for _ in range(n_layers))
            self.mixers = nn.ModuleList(MambaMixer(d_model, d_state, expand=expand, seed=seed * 1000 + i)
                                        for i in range(n_layers))
            self.head = MeanHead(d_model, num_classes)
            with torch.no_grad():  # GPT-2 style rescale of the residual output projections
                for m in self.mixers:
                    m.out_proj.weight /= math.sqrt(n_layers)

    @property
    def frame_len(self) -> int:
        return self.front.frame_len

    def set_sample_rate(self, rate: int) -> None:
        # 10 ms frames at every rate (front filter resampled), so the frame-level Δ scale stays 1.
        self.front.set_sample_rate(rate)

    def set_step_scale(self, scale: float) -> None:
        for m in self.mixers:
            m.dt_scale = float(scale)

    def set_use_kernel(self, flag: bool) -> None:
        for m in self.mixers:
            m.use_kernel = flag

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.front(x)
        for norm, mixer in zip(self.norms, self.mixers, strict=True):
            h = h + mixer(norm(h))
        return self.head(h)

    def init_state(self, batch: int) -> dict:
        total = torch.zeros(batch, self.head.out.in_features, device=self.head.out.weight.device)
        return {"layers": [m.init_state(batch) for m in self.mixers], "sum": total, "count": 0}

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        h, layers = self.front(x_t), []
        for norm, mixer, s in zip(self.norms, self.mixers, state["layers"], strict=True):
            y, s = mixer.step(norm(h), s)
            h = h + y
            layers.append(s)
        logits, total, count = self.head.step(h, state["sum"], state["count"])
        return logits, {"layers": layers, "sum": total, "count": count}

    def macs_per_second(self) -> tuple[int, int]:
        frames = NATIVE_RATE // self.front.hop
        body = frames * sum(m.macs_per_step() for m in self.mixers) + self.head.out.weight.numel()
        return frames * self.front.macs_per_frame(), body


def build_mamba(**kwargs) -> MambaKWS:
    return MambaKWS(**kwargs)


register(ModelCard(
    name="mamba-kws", family="mamba", builder=build_mamba,
    kwargs={"d_model": 64, "n_layers": 4, "d_state": 16, "expand": 2, "num_classes": 12, "hop": 160},
    protocol="v2-12", num_classes=12, can_change_rate=True, can_stream=True, cost=model_cost,
    recipe="nc-ssm",  # no recipe of its own (README, Training): the nc-ssm one
    description="Mamba1 KWS (pure-PyTorch selective scan), stride-160 input projection, d 64, 4 layers, N 16",
    source="Gu & Dao Mamba (state-spaces/mamba e9594ce); Keyword Mamba (arXiv 2508.07363); reported.md §2.6, §6",
))
