"""S-Edge: complex diagonal state-space classifiers on raw 16 kHz audio (Bittner et al., 2025).

Follows the paper-faithful code state (commit 94f2453) as described in ../shared/reference/s-edge.md:
complex diagonal Λ with per-state log step, complex B and C with input/output biases, no D, exact
zero-order-hold discretisation with a step multiplier (step_scale), LeakyReLU(0.01), identity or
trainable skip, optional BatchNorm pre-norm, mean over time and a linear decoder (35 classes, SC35).

Offline forward uses an exact chunked scan (block-Toeplitz inside chunks, recursion over chunk ends),
so training never loops over time steps in Python; `step()` is the plain per-sample recurrence that
the authors' C++ engine runs, including layer-wise decimation chains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kwsbench.errors import BadInputError
from kwsbench.models.registry import ModelCard, register

NUM_CLASSES_SC35 = 35
NATIVE_RATE = 16000
_SCAN_CHUNK = 8  # chunk length of the vectorised scan; cost grows with it, recursion depth shrinks


@dataclass(frozen=True)
class SEdgeConfig:
    """One row of the reference configuration table (model_descriptions/*.yaml)."""

    state_sizes: tuple[int, ...]
    output_sizes: tuple[int, ...]
    trainable_skip: bool
    norm: bool
    init: str  # "orthogonal" or "s5"
    dropout: float
    rzoh: tuple[float, ...] | None  # yaml default p_i, or None


def _rzoh_p(n_layers: int) -> tuple[float, ...]:
    return tuple(round(i / n_layers, 2) for i in range(1, n_layers + 1))


CONFIGS: dict[str, SEdgeConfig] = {
    "full": SEdgeConfig((64,) * 6, (96,) * 6, False, False, "s5", 0.1, _rzoh_p(6)),
    "large": SEdgeConfig((96, 80, 64, 48, 32, 16), (24, 32, 40, 48, 56, 64), True, True, "orthogonal", 0.0, None),
    "medium": SEdgeConfig((96, 64, 32), (24, 44, 64), True, True, "orthogonal", 0.0, _rzoh_p(3)),
    "small": SEdgeConfig((32, 24, 16, 14, 12, 8), (8, 16, 32, 42, 54, 64), True, True, "orthogonal", 0.0, None),
    "tiny": SEdgeConfig((32, 16, 8), (8, 32, 64), True, True, "orthogonal", 0.0, None),
    "naive-extra-large": SEdgeConfig((64,) * 6, (64,) * 6, False, False, "s5", 0.1, _rzoh_p(6)),
    "naive-large": SEdgeConfig((64,) * 5, (64,) * 5, False, False, "s5", 0.1, None),
    "naive-medium": SEdgeConfig((64,) * 4, (64,) * 4, False, False, "s5", 0.1, None),
    "naive-small": SEdgeConfig((64,) * 3, (64,) * 3, False, False, "s5", 0.1, _rzoh_p(3)),
}

# Repository-formula parameter counts (reference Section 3), the published figures.
PUBLISHED_PARAMS: dict[str, int] = {
    "full": 141_381, "large": 56_333, "medium": 27_621, "small": 20_377, "tiny": 8_413,
    "naive-extra-large": 94_821, "naive-large": 78_053, "naive-medium": 61_285, "naive-small": 44_517,
}


# ----------------------------------------------------------------------------------------------
# Scan


def diag_scan(log_lam: torch.Tensor, v: torch.Tensor, chunk: int = _SCAN_CHUNK) -> torch.Tensor:
    """x_t = exp(log_lam) * x_{t-1} + v_t with x_{-1} = 0, over dim 1 of v (B, L, N) complex.

    Complex convenience wrapper around `scan_planes`, which the layers call directly on real planes.
    """
    planes = torch.view_as_real(v).permute(3, 2, 0, 1).contiguous()  # (2, N, B, L)
    x = scan_planes(log_lam.real, log_lam.imag, planes, chunk)
    return torch.complex(x[0], x[1]).permute(1, 2, 0)


def scan_planes(a_re: torch.Tensor, a_im: torch.Tensor, v: torch.Tensor, chunk: int = _SCAN_CHUNK) -> torch.Tensor:
    """The diagonal scan on real planes: v (2, N, B, L) = (Re, Im) of the inputs, a = log λ̄ (N,) -> states (2, N, B, L).

    Exact for any L: inside chunks of `chunk` steps one real batched matmul against the Toeplitz matrix of
    λ̄^(t-j) (re and im blocks side by side) does the work; the chunk-end states are themselves a scan with
    λ̄^chunk, solved by recursion. Real float32 throughout (complex bmm and its layout copies were the cost),
    and the state-major layout lets the input/output projections read and write it as transposed GEMMs.
    Powers are λ̄^k with k >= 0 only, so nothing grows (|λ̄| <= 1).
    """
    _, n, bsz, length = v.shape
    if length <= chunk:
        return torch.stack(_chunk_apply(v.unbind(0), _toeplitz(a_re, a_im, length)))
    pad = (-length) % chunk
    if pad:
        v = F.pad(v, (0, pad))
    n_chunks = v.shape[-1] // chunk
    # unbind/stack rather than indexing: the backward of an index fills a zero tensor of the full size.
    v_re, v_im = v.reshape(2, n, bsz * n_chunks, chunk).unbind(0)
    p_re, p_im = _toeplitz(a_re, a_im, chunk)
    local_re, local_im = _chunk_apply((v_re, v_im), (p_re, p_im))
    last = (p_re[..., -1:], p_im[..., -1:])  # chunk-end states from their own small product, for the same reason
    end_re, end_im = _chunk_apply((v_re, v_im), last)
    ends = torch.stack([end_re, end_im]).reshape(2, n, bsz, n_chunks)
    ends = scan_planes(a_re * chunk, a_im * chunk, ends, chunk)  # true state at each chunk end
    carry_re, carry_im = F.pad(ends[..., :-1], (1, 0)).reshape(2, n, -1, 1).unbind(0)  # state entering a chunk
    k = torch.arange(1, chunk + 1, device=v.device, dtype=v.dtype)
    mag = torch.exp(k * a_re[:, None])
    g_re = (mag * torch.cos(k * a_im[:, None]))[:, None, :]  # λ̄^(t+1): (N, 1, chunk)
    g_im = (mag * torch.sin(k * a_im[:, None]))[:, None, :]
    x = torch.stack([local_re + g_re * carry_re - g_im * carry_im, local_im + g_re * carry_im + g_im * carry_re])
    x = x.reshape(2, n, bsz, n_chunks * chunk)
    return x[..., :length] if pad else x


def scan_readout(a_re: torch.Tensor, a_im: torch.Tensor, v: torch.Tensor, c: torch.Tensor,
                 chunk: int = _SCAN_CHUNK) -> torch.Tensor:
    """Re(C x_t) for every t, with x the diagonal scan of v (2, N, B, L) planes and C (H, N) complex -> (B, L, H).

    The training path: the full states are never materialised. Within a chunk x_t = local_t + λ̄^(t+1) carry,
    so Re(C x_t) = Re(C local_t) + Re(C λ̄^(t+1)) carry: the first term is the output GEMM on the local planes,
    the second a small GEMM from the chunk-entry states straight into the (B, L, H) layout. That saves the
    full-size elementwise passes (and their backward) that a separate carry correction costs.
    """
    _, n, bsz, length = v.shape
    chunk = min(chunk, length)
    pad = (-length) % chunk
    if pad:
        v = F.pad(v, (0, pad))
    n_chunks = v.shape[-1] // chunk
    v_re, v_im = v.reshape(2, n, bsz * n_chunks, chunk).unbind(0)
    p_re, p_im = _toeplitz(a_re, a_im, chunk)
    local_re, local_im = _chunk_apply((v_re, v_im), (p_re, p_im))  # (N, B C, K): chunk-local states
    h_out = c.shape[0]
    if n_chunks > 1:
        end_re, end_im = _chunk_apply((v_re, v_im), (p_re[..., -1:], p_im[..., -1:]))  # own product, see above
        ends = scan_planes(a_re * chunk, a_im * chunk, torch.stack([end_re, end_im]).reshape(2, n, bsz, n_chunks),
                           chunk)
        carry_re, carry_im = F.pad(ends[..., :-1], (1, 0)).reshape(2, n, -1).unbind(0)  # state entering a chunk
        k = torch.arange(1, chunk + 1, device=v.device, dtype=v.dtype)
        mag = torch.exp(k * a_re[:, None])
        g = torch.complex(mag * torch.cos(k * a_im[:, None]), mag * torch.sin(k * a_im[:, None]))  # λ̄^(t+1)
        cg = c.T[:, None, :] * g[:, :, None]  # (N, K, H): C_hn λ̄_n^(t+1)
        corr = torch.mm(carry_re.T, cg.real.reshape(n, -1)) - torch.mm(carry_im.T, cg.imag.reshape(n, -1))
        corr = corr.reshape(-1, h_out)  # (B C, K H) is already the (B L, H) layout
    else:
        corr = torch.zeros((), device=v.device, dtype=v.dtype).expand(bsz * chunk, h_out)
    y = torch.addmm(corr, local_re.reshape(n, -1).T, c.real.T)
    y = torch.addmm(y, local_im.reshape(n, -1).T, c.imag.T, alpha=-1.0).reshape(bsz, n_chunks * chunk, h_out)
    return y[:, :length] if pad else y


def _toeplitz(a_re: torch.Tensor, a_im: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Re P^T, Im P^T), each (N, K, K), with P[t, j] = λ̄^(t-j) for j <= t, else 0 (one power vector, indexed)."""
    d = torch.arange(k, device=a_re.device)
    diff = d[None, :] - d[:, None]  # [j, t] -> t - j (the transposed matrix)
    lags = d.to(a_re.dtype)
    mag = torch.exp(lags * a_re[:, None])
    lower = (diff >= 0).to(a_re.dtype)
    idx = diff.clamp(min=0)
    re, im = mag * torch.cos(lags * a_im[:, None]), mag * torch.sin(lags * a_im[:, None])
    return re[:, idx] * lower, im[:, idx] * lower


def _chunk_apply(v: tuple[torch.Tensor, torch.Tensor], p: tuple[torch.Tensor, torch.Tensor]):
    """(Re, Im) of v P for v (N, M, K) and P given as (Re P^T, Im P^T) (N, K, J): four real bmm."""
    v_re, v_im = v
    p_re, p_im = p
    out_re = torch.baddbmm(torch.bmm(v_re, p_re), v_im, p_im, alpha=-1.0)
    out_im = torch.baddbmm(torch.bmm(v_re, p_im), v_im, p_re)
    return out_re, out_im


# ----------------------------------------------------------------------------------------------
# Initialisation helpers (explicit generator: library code never touches the global RNG)


def _complex_pair(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    return torch.stack([re, im], dim=-1)


def _orthogonal(rows: int, cols: int, gain: float, gen: torch.Generator) -> torch.Tensor:
    w = torch.empty(rows, cols)
    nn.init.orthogonal_(w, gain=gain, generator=gen)
    return w


def _hippo_legs_normal(p: int) -> np.ndarray:
    """Normal part of the HiPPO-LegS matrix of size p (the S5 recipe's starting point)."""
    n = np.arange(p)
    q = np.sqrt(2 * n + 1.0)
    a = -np.tril(np.outer(q, q), -1) - np.diag(n + 1.0)
    low_rank = np.sqrt(n + 0.5)
    return a + np.outer(low_rank, low_rank)


def _s5_init(n: int, h_in: int, h_out: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """S5 initialisation with doubled internal size P = 2N, keeping one eigenvalue per conjugate pair."""
    p = 2 * n
    block = 8 if p % 8 == 0 else 4
    lam_all, vec_all = [], []
    s_block = _hippo_legs_normal(block)
    diag_mean = np.mean(np.diag(s_block))
    # S = d*I + K with K skew-symmetric, so -1j*K is Hermitian: eigh gives S's eigenvectors exactly.
    evals, evecs = np.linalg.eigh((s_block - np.diag(np.diag(s_block))) * -1j)
    keep = np.argsort(-evals)[: block // 2]  # one of each conjugate pair: Im >= 0 (symmetric=False)
    for b in range(p // block):
        vec = np.zeros((p, keep.size), dtype=np.complex128)
        vec[b * block:(b + 1) * block] = evecs[:, keep]
        lam_all.append(diag_mean + 1j * evals[keep])
        vec_all.append(vec)
    lam = np.concatenate(lam_all)
    v = np.concatenate(vec_all, axis=1)  # (P, N), orthonormal columns
    b_real = torch.randn(p, h_in, generator=gen, dtype=torch.float64) / math.sqrt(h_in)  # LeCun normal
    c_re = torch.randn(h_out, p, generator=gen, dtype=torch.float64) / math.sqrt(2 * p)
    c_im = torch.randn(h_out, p, generator=gen, dtype=torch.float64) / math.sqrt(2 * p)
    b_c = v.conj().T @ b_real.numpy()  # V^-1 B, V^-1 = V^H for the orthonormal eigenvectors
    c_c = 2.0 * ((c_re.numpy() + 1j * c_im.numpy()) @ v)  # x2: only the real part of C x is used
    to_t = lambda z: _complex_pair(torch.tensor(z.real, dtype=torch.float32),  # noqa: E731
                                   torch.tensor(z.imag, dtype=torch.float32))
    return to_t(lam), to_t(b_c), to_t(c_c)


# ----------------------------------------------------------------------------------------------
# Layers


class SEdgeLayer(nn.Module):
    """One S-Edge sequence layer: decimate -> (BN) -> complex diagonal ZOH SSM -> LeakyReLU (+ skip)."""

    def __init__(self, h_in: int, n_state: int, h_out: int, trainable_skip: bool, norm: bool, init: str,
                 dropout: float, gen: torch.Generator):
        super().__init__()
        self.h_in, self.n_state, self.h_out = h_in, n_state, h_out
        self.trainable_skip, self.dropout = trainable_skip, dropout
        self.step_scale = 1.0  # s_i: this layer runs at 16000 / s_i Hz
        self.decimation = 1  # keep every k-th input step (k = s_i / s_{i-1})
        log_dt = torch.rand(n_state, generator=gen) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)
        self.log_step = nn.Parameter(log_dt)
        if init == "orthogonal":
            lam = _complex_pair(torch.full((n_state,), -0.5), torch.linspace(0, n_state // 2, n_state))
            g = 1.0 / math.sqrt(3.0)
            if h_in == 1:
                b = _complex_pair(torch.randn(n_state, 1, generator=gen) * g,
                                  torch.randn(n_state, 1, generator=gen) * g)
            else:
                b = _complex_pair(_orthogonal(h_in, n_state, g, gen).T, _orthogonal(h_in, n_state, g, gen).T)
            c = _complex_pair(_orthogonal(h_out, n_state, g, gen), _orthogonal(h_out, n_state, g, gen))
        elif init == "s5":
            lam, b, c = _s5_init(n_state, h_in, h_out, gen)
        else:
            raise BadInputError(f"unknown S-Edge init {init!r}; use 'orthogonal' or 's5'")
        self.Lambda = nn.Parameter(lam.contiguous())
        self.B = nn.Parameter(b.contiguous())
        self.C = nn.Parameter(c.contiguous())
        self.B_bias = nn.Parameter(torch.rand(n_state, 2, generator=gen))  # uniform bias init
        self.C_bias = nn.Parameter(torch.rand(h_out, 2, generator=gen))
        if trainable_skip:
            bound = 1.0 / math.sqrt(h_in)  # torch's default Linear init, then rows rescaled to 1/sqrt(3)
            r = (torch.rand(h_out, h_in, generator=gen) * 2 - 1) * bound
            self.skip = nn.Parameter(r / r.norm(dim=1, keepdim=True) / math.sqrt(3.0))
        else:
            self.register_parameter("skip", None)
        self.norm = nn.BatchNorm1d(h_in, momentum=0.1) if norm else None

    # -- discretisation --------------------------------------------------------------------------
    def project_stable(self) -> None:
        """Stability projection (stability: abs, symmetric=False): Re λ <= 0 and Im λ >= 0."""
        with torch.no_grad():
            self.Lambda.abs_().mul_(torch.tensor([-1.0, 1.0], device=self.Lambda.device))

    def discretise(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log λ̄ = λΔs, B̄, b̄, C) as complex tensors; exact ZOH for a diagonal system."""
        lam = torch.view_as_complex(self.Lambda)
        log_lam_bar = lam * (torch.exp(self.log_step) * self.step_scale)
        gain = (torch.exp(log_lam_bar) - 1.0) / lam
        b_bar = gain[:, None] * torch.view_as_complex(self.B)
        bias_bar = gain * torch.view_as_complex(self.B_bias)
        return log_lam_bar, b_bar, bias_bar, torch.view_as_complex(self.C)

    # -- offline -----------------------------------------------------------------------------------
    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, H_in) -> (B, ceil(L / decimation), H_out)."""
        if self.decimation > 1:
            u = u[:, :: self.decimation]
        self.project_stable()
        residual = self._residual(u)
        if self.norm is not None:
            u = self.norm(u.reshape(-1, self.h_in)).reshape(u.shape)  # stats over batch and time
        log_lam, b_bar, bias_bar, c = self.discretise()
        # Real GEMMs into and out of the state-major planes (2, N, B, L): u is real and only Re(C x) is
        # needed, so 2 real MACs per entry instead of a complex product, and no layout copies around the scan.
        bsz, length, _ = u.shape
        w_in = torch.cat([b_bar.real, b_bar.imag], dim=0)  # (2N, H_in)
        bias = torch.cat([bias_bar.real, bias_bar.imag], dim=0)
        v = torch.addmm(bias[:, None], w_in, u.reshape(-1, self.h_in).T)  # (2N, B L)
        y = scan_readout(log_lam.real, log_lam.imag, v.view(2, self.n_state, bsz, length), c) + self.C_bias[:, 0]
        return self._channel_dropout(F.leaky_relu(y, 0.01)) + residual

    def _residual(self, u: torch.Tensor) -> torch.Tensor:
        if self.skip is not None:
            return torch.matmul(u, self.skip.T)
        return u.expand(*u.shape[:-1], self.h_out) if self.h_in != self.h_out else u

    def _channel_dropout(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout <= 0:
            return y
        gen = getattr(self, "_gen", None)
        keep = torch.rand(y.shape[0], 1, y.shape[2], generator=gen) >= self.dropout
        return y * keep.to(y.device, y.dtype) / (1.0 - self.dropout)

    # -- streaming ---------------------------------------------------------------------------------
    def stream_matrices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(λ̄, B̄, b̄, C) for step(); computed once per stream, not per sample."""
        log_lam, b_bar, bias_bar, c = self.discretise()
        return torch.exp(log_lam), b_bar, bias_bar, c

    def step_state(self, x: torch.Tensor, u_t: torch.Tensor, disc: tuple) -> torch.Tensor:
        """One state update at this layer's rate: x <- λ̄ x + B̄ u + b̄ (u_t already normalised)."""
        lam_bar, b_bar, bias_bar, _ = disc
        return lam_bar * x + torch.matmul(u_t.to(b_bar.dtype), b_bar.T) + bias_bar

    def readout(self, x: torch.Tensor, u_raw: torch.Tensor, disc: tuple) -> torch.Tensor:
        """Output when the next layer needs a sample: LeakyReLU(Re(C x + c)) + skip(u)."""
        y = torch.matmul(x, disc[3].T).real + self.C_bias[:, 0]
        return F.leaky_relu(y, 0.01) + self._residual(u_raw)

    def normalise(self, u_t: torch.Tensor) -> torch.Tensor:
        return self.norm(u_t) if self.norm is not None else u_t


class RZOH(nn.Module):
    """Random zero-order hold (training only, no parameters): hold blocks of k = 2^m samples.

    One draw per forward call for the whole batch, from the module's own generator.
    """

    def __init__(self, p: float, seed: int = 0):
        super().__init__()
        self.p = p
        self.gen = torch.Generator().manual_seed(seed)

    def hold_factor(self) -> int:
        r = torch.rand((), generator=self.gen).item() / self.p
        if r < 1e-3 or r > 1.0:
            return 1
        return int(min(2 ** math.floor(-math.log2(r)), 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        k = self.hold_factor()
        if k <= 1:
            return x
        length = x.shape[1]
        idx = torch.arange(length, device=x.device) // k * k  # each step takes its block's first sample
        return x[:, idx]


class SEdgeClassifier(nn.Module):
    """Raw audio (B, samples) at 16000 / input_scale Hz -> logits (B, 35)."""

    def __init__(self, config: SEdgeConfig, num_classes: int = NUM_CLASSES_SC35, rzoh: bool | None = None,
                 seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.config = config
        widths = (1, *config.output_sizes)
        self.layers = nn.ModuleList(
            SEdgeLayer(widths[i], n, widths[i + 1], config.trainable_skip, config.norm, config.init,
                       config.dropout, gen)
            for i, n in enumerate(config.state_sizes)
        )
        for i, layer in enumerate(self.layers):  # channel-dropout masks: own generators, not the global RNG
            layer._gen = torch.Generator().manual_seed(seed * 1000 + 100 + i)
        use_rzoh = config.rzoh is not None if rzoh is None else rzoh
        ps = config.rzoh or _rzoh_p(len(self.layers))
        self.rzoh = nn.ModuleList(
            RZOH(p, seed * 1000 + 200 + i) if use_rzoh else nn.Identity() for i, p in enumerate(ps)
        )
        h_last = widths[-1]
        bound = 1.0 / math.sqrt(h_last)
        w = (torch.rand(num_classes, h_last, generator=gen) * 2 - 1) * bound
        self.decoder_weight = nn.Parameter(w / w.norm(dim=1, keepdim=True) / math.sqrt(3.0))
        self.decoder_bias = nn.Parameter((torch.rand(num_classes, generator=gen) * 2 - 1) * bound)
        # Global standardisation of the waveform (train-set mean/std in the recipe); identity until trained.
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))
        self.input_scale = 1  # step scale of the signal fed to forward (16000 / input rate)

    # -- rate / step scale -------------------------------------------------------------------------
    def set_step_scale(self, scales: list[int], previous: list[int] | None = None) -> None:
        """Per-layer step scales s_i (Δ·s_i); layer i decimates its input by s_i / previous[i].

        previous defaults to [input_scale, s_0, ..., s_{L-2}], the chain the reference scripts pass.
        """
        if len(scales) != len(self.layers):
            raise BadInputError(f"set_step_scale needs {len(self.layers)} scales, got {len(scales)}")
        previous = previous or [self.input_scale, *scales[:-1]]
        self.input_scale = previous[0]  # the first layer's previous rate is the rate of the audio fed in
        for layer, s, s_prev in zip(self.layers, scales, previous, strict=True):
            if s % s_prev:
                raise BadInputError(f"step scales must form a divisible chain: {s} is not a multiple of {s_prev}")
            layer.step_scale, layer.decimation = float(s), s // s_prev

    def set_sample_rate(self, rate: int) -> None:
        """Run natively on audio at `rate` Hz (16000 / rate must be an integer): every layer steps by s."""
        if NATIVE_RATE % rate:
            raise BadInputError(f"S-Edge runs at 16000 / k Hz; {rate} Hz does not divide 16000")
        self.input_scale = NATIVE_RATE // rate
        self.set_step_scale([self.input_scale] * len(self.layers))

    def step_chain(self) -> list[int]:
        return [int(layer.step_scale) for layer in self.layers]

    # -- offline -----------------------------------------------------------------------------------
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = ((audio - self.input_mean) / (self.input_std + 1e-5)).unsqueeze(-1)
        for layer, hold in zip(self.layers, self.rzoh, strict=True):
            x = hold(layer(x))
        return self._decode(x.mean(dim=1))

    def _decode(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.linear(pooled, self.decoder_weight, self.decoder_bias)

    # -- streaming ---------------------------------------------------------------------------------
    def init_state(self, batch: int) -> dict:
        """State between samples: discretised matrices, tick counter, complex layer states, running mean."""
        dev = self.decoder_weight.device
        for layer in self.layers:
            layer.project_stable()
        return {
            "disc": [layer.stream_matrices() for layer in self.layers],  # fixed for the whole stream
            "t": 0,
            "x": [torch.zeros(batch, layer.n_state, dtype=torch.complex64, device=dev) for layer in self.layers],
            "sum": torch.zeros(batch, self.layers[-1].h_out, device=dev),
            "count": 0,
        }

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Feed one input sample per item (B,) -> (logits of the clip so far, new state).

        Layer i updates at input ticks t with t mod k_i = 0 (k_i = s_i / input_scale); its read-out is
        computed only when the next layer (or the pooling, for the last layer) consumes it, as in the
        C++ engine. The logits after the last sample equal the offline forward.
        """
        t = state["t"]
        u_raw = ((x_t - self.input_mean) / (self.input_std + 1e-5)).unsqueeze(-1)
        new_x = list(state["x"])
        new_sum, count = state["sum"], state["count"]
        for i, layer in enumerate(self.layers):
            if t % self._ticks(i):
                break
            disc = state["disc"][i]
            new_x[i] = layer.step_state(new_x[i], layer.normalise(u_raw), disc)
            last = i == len(self.layers) - 1
            if last or t % self._ticks(i + 1) == 0:
                u_raw = layer.readout(new_x[i], u_raw, disc)
                if last:
                    new_sum, count = new_sum + u_raw, count + 1
        state = {"disc": state["disc"], "t": t + 1, "x": new_x, "sum": new_sum, "count": count}
        return self._decode(new_sum / max(count, 1)), state

    def _ticks(self, i: int) -> int:
        return int(self.layers[i].step_scale) // self.input_scale


# ----------------------------------------------------------------------------------------------
# Builders and cards


def build_sedge(size: str = "tiny", num_classes: int = NUM_CLASSES_SC35, rzoh: bool | None = None,
                seed: int = 0) -> SEdgeClassifier:
    if size not in CONFIGS:
        raise BadInputError(f"unknown S-Edge size {size!r}; known: {', '.join(CONFIGS)}")
    return SEdgeClassifier(CONFIGS[size], num_classes=num_classes, rzoh=rzoh, seed=seed)


def _cost(card: ModelCard, rate: int):
    from kwsbench.cost import sedge_cost  # late import: cost imports model shapes, not the reverse

    return sedge_cost(card, rate)


for _size in CONFIGS:
    register(ModelCard(
        name=f"s-edge-{_size}",
        family="s-edge",
        builder=build_sedge,
        kwargs={"size": _size},
        input="raw",
        native_rate=NATIVE_RATE,
        protocol="v2-35",
        num_classes=NUM_CLASSES_SC35,
        can_change_rate=True,
        can_stream=True,
        cost=_cost,
        checkpoint=None,  # no public weights: train with `kwsbench train`
        params=PUBLISHED_PARAMS[_size],
        description=f"S-Edge {_size}: complex diagonal ZOH SSM on raw audio (repository-formula params)",
        source="Bittner et al., Machine Learning 114(8):175 (2025); S-Edge repository commit 94f2453",
    ))
