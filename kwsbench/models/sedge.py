"""S-Edge: complex diagonal state-space classifiers on raw 16 kHz audio (Bittner et al., 2025).

Follows the paper-faithful code state (commit 94f2453) as described in ../shared/reference/s-edge.md:
complex diagonal Λ with per-state log step, complex B and C with input/output biases, no D, exact
zero-order-hold discretisation with a step multiplier (step_scale), LeakyReLU(0.01), identity or
trainable skip, optional BatchNorm pre-norm, mean over time and a linear decoder (35 classes, SC35).

Offline forward uses an exact chunked scan (block-Toeplitz inside chunks, recursion over chunk ends),
so training never loops over time steps in Python (inference on a GPU takes sedge_eval's leaner path: two GEMMs
around a Triton scan per layer, the same logits to rounding); `step()` is the plain per-sample recurrence that
the authors' C++ engine runs, including layer-wise decimation chains.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
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
# Training path: the layer as a block-Toeplitz linear map over chunks of K steps
#
# Inside a chunk of K steps entered with state s, ZOH gives x_{t0+k} = λ̄^(k+1) s + Σ_{j<=k} λ̄^(k-j) (B̄ u_j + b̄),
# so the pre-activation Re(C x + c) of the whole chunk is one real GEMM of the chunk's raw inputs (K·H_in)
# against a block-Toeplitz matrix M (K·H_in, K·H_out), plus a GEMM of the entry state (2N) against G, plus a
# constant row. The chunk-end states are a GEMM of the same inputs against P (K·H_in, 2N) and then a scan
# over chunks with λ̄^K (scan_planes, on 1/K of the data). Every big tensor stays time-major (B·L, H), which
# is the layout the GEMMs read and write, so there are no permutes or copies of full-size tensors; BatchNorm
# folds into M, P and the constant rows. The chunk length per layer trades K·H_in·H_out MACs for the state
# traffic 2N·(H_in + H_out) (see _chunk_len).


def _chunk_len(h_in: int, n_state: int, h_out: int, length: int) -> int:
    """Chunk length k for one layer shape (measured on a 2-core CPU, batch 32 x 16000 fwd+bwd).

    Cost per step ~ k·H_in·H_out (block-Toeplitz GEMM, grows with k) + the chunk-end scan over L/k chunks
    (shrinks with k); the best k is large for narrow inputs and small for wide ones. Divisors of the length
    avoid padding.
    """
    width = h_in * h_out
    target = 64 if width <= 8 else 16 if width <= 128 else 8 if width <= 512 else 4 if width <= 1400 else 2
    for k in range(min(target, max(length, 1)), 1, -1):  # largest k <= target dividing the length
        if length % k == 0 and k * 2 > target:
            return k
    return max(1, min(target, length))


def _chunk_operators(log_lam: torch.Tensor, b_bar: torch.Tensor, bias_bar: torch.Tensor, c: torch.Tensor,
                     c_bias: torch.Tensor, k: int):
    """(M, P, G, row, e0) of one layer for chunks of k steps (all complex maths on small tensors).

    M (k·H_in, k·H_out): Re Σ_n C_hn λ̄_n^(t-j) B̄_ni for j <= t; P (k·H_in, 2N): (Re, Im) λ̄^(k-1-j) B̄;
    G (2N, k·H_out): read-out of the entry state, Re(C λ̄^(t+1) s); row (k·H_out): c + Re C Σ_{d<=t} λ̄^d b̄;
    e0 (2N): chunk-end state of the bias alone.
    """
    n, h_in = b_bar.shape
    h_out = c.shape[0]
    d = torch.arange(k + 1, device=log_lam.device, dtype=log_lam.real.dtype)
    pw = torch.exp(d[:, None] * log_lam[None, :])  # λ̄^d, (k+1, N)
    lag = torch.einsum("dn,ni,hn->dih", pw[:k], b_bar, c).real  # (k, H_in, H_out): response at lag d
    t = torch.arange(k, device=log_lam.device)
    diff = t[None, :] - t[:, None]  # [j, t] -> t - j
    blocks = lag[diff.clamp(min=0)] * (diff >= 0).to(lag.dtype)[:, :, None, None]  # (j, t, H_in, H_out)
    m = blocks.permute(0, 2, 1, 3).reshape(k * h_in, k * h_out)
    end = pw[:k].flip(0)[:, None, :] * b_bar.T[None]  # (j, H_in, N): λ̄^(k-1-j) B̄
    p = torch.stack([end.real, end.imag], dim=2).reshape(k * h_in, 2 * n)
    cg = pw[1:, :, None] * c.T[None]  # (t, N, H_out): C λ̄^(t+1)
    g = torch.stack([cg.real, -cg.imag]).permute(0, 2, 1, 3).reshape(2 * n, k * h_out)
    geo = torch.cumsum(pw[:k], dim=0)  # Σ_{d<=t} λ̄^d, (k, N)
    row = (torch.mm(geo * bias_bar[None, :], c.T.to(geo.dtype)).real + c_bias).reshape(k * h_out)
    e_b = geo[-1] * bias_bar
    return m, p, g, row, torch.cat([e_b.real, e_b.imag])


def _entry_states(e: torch.Tensor, a_re: torch.Tensor, a_im: torch.Tensor, k: int, bsz: int) -> torch.Tensor:
    """Chunk-local end states e (B·C, 2N) -> the true state entering each chunk (B·C, 2N), by a scan with λ̄^k."""
    n2 = e.shape[1]
    planes = e.view(bsz, -1, 2, n2 // 2).permute(2, 3, 0, 1)  # (2, N, B, C): small (1/k of the inputs)
    ends = scan_planes(a_re * k, a_im * k, planes.contiguous())
    entry = F.pad(ends[..., :-1], (1, 0))  # state entering chunk c = state at the end of chunk c-1
    return entry.permute(2, 3, 0, 1).reshape(-1, n2)


_TILE_STEPS = 32768  # time steps per CPU tile of whole clips: keeps the per-tile temporaries in cache


def _clips_per_tile(u: torch.Tensor, length: int) -> int:
    """Whole clips per tile: a few on a CPU (cache), the whole batch on an accelerator, where a tile loop would
    only add kernel launches."""
    return max(1, _TILE_STEPS // max(length, 1)) if u.device.type == "cpu" else u.shape[0]


def _batch_stats(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of u (B, L, H) over batch and time (two-pass, tiled over clips)."""
    bsz, length, _ = u.shape
    count = bsz * length
    mean = u.sum(dim=(0, 1)) / count
    tb = _clips_per_tile(u, length)
    sq = torch.zeros_like(mean)
    for b0 in range(0, bsz, tb):
        d = u[b0:b0 + tb] - mean
        sq += d.mul_(d).sum(dim=(0, 1))
    return mean, sq / count


def _entry_states_backward(g_s: torch.Tensor, s: torch.Tensor, a_re: torch.Tensor, a_im: torch.Tensor, k: int,
                           bsz: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adjoint of `_entry_states`: (grad of the chunk-local ends e, grad of Re a, grad of Im a).

    The chunk recursion x_c = μ x_{c-1} + e_c (μ = λ̄^k, real 2x2 form R(μ)) has the adjoint
    g_e_c = g_x_c + R(μ)ᵀ g_e_{c+1}: a reverse scan with conj(μ), and dL/dμ = Σ_c <g_e_c, x_{c-1}> with
    x_{c-1} the entry state s_c; then μ = exp(k a) gives dL/da.
    """
    n2 = s.shape[1]
    n = n2 // 2
    g_planes = g_s.view(bsz, -1, 2, n).permute(2, 3, 0, 1).flip(-1)  # (2, N, B, C), reversed in chunks
    g_x = F.pad(g_planes[..., :-1], (1, 0))  # grad of the state at the end of each chunk (reversed order)
    g_e = scan_planes(a_re * k, -a_im * k, g_x.contiguous()).flip(-1).permute(2, 3, 0, 1).reshape(-1, n2)
    ge_re, ge_im, s_re, s_im = g_e[:, :n], g_e[:, n:], s[:, :n], s[:, n:]
    g_mr = (ge_re * s_re + ge_im * s_im).sum(0)
    g_mi = (ge_im * s_re - ge_re * s_im).sum(0)
    mag = torch.exp(k * a_re)
    mu_r, mu_i = mag * torch.cos(k * a_im), mag * torch.sin(k * a_im)
    return g_e, k * (mu_r * g_mr + mu_i * g_mi), k * (mu_r * g_mi - mu_i * g_mr)


class _LayerCore(torch.autograd.Function):
    """The big part of one layer: z = LeakyReLU(ub M + s G + row) [· mask] + skip(u), or its mean over time.

    Inputs: u (B, L_pad, H_in) raw (un-normalised) inputs with L_pad a multiple of k; the unnormalised chunk
    operators (M, P, G, row, e0) from `_chunk_operators`; a = log λ̄ as (re, im) for the chunk-end scan; the
    trainable skip (or None); BatchNorm as a per-channel affine map folded into M, P, row and e0 here, so the
    normalised input is never formed. The work runs over tiles of whole clips, so the full-size temporaries
    (pre-activations, their gradients) live in cache and the only full-size allocations are the output, its
    sign mask and the input gradient. The backward is the transposed GEMMs per tile; the small chunk-end scan
    is differentiated by autograd on its own (1/k-size) graph; BatchNorm's statistics are differentiated by
    hand (their gradient is a per-channel affine function of u, added in the second tile pass).
    """

    @staticmethod
    def forward(ctx, u, m, p, g, row, e0, a_re, a_im, skip, bn_w, bn_b, mean, var, mask, cfg):
        k, length, eps, batch_stats, pool, save = cfg
        bsz, l_pad, h_in = u.shape
        h_out = row.shape[0] // k
        ub = u.view(-1, k * h_in)
        rows = l_pad // k  # chunk rows per clip
        if mean is not None:  # u_n = sc u + sh per channel: M' = diag(sc) M, row' = row + sh M (same for P, e0)
            sc = torch.rsqrt(var + eps)
            if bn_w is not None:
                sc = sc * bn_w
            sh = -mean * sc
            if bn_b is not None:
                sh = sh + bn_b
            sc_rep, sh_rep = sc.repeat(k), sh.repeat(k)
            row_f = torch.addmv(row, m.T, sh_rep)
            e0_f = torch.addmv(e0, p.T, sh_rep)
            m_f, p_f = m * sc_rep[:, None], p * sc_rep[:, None]
        else:
            sc = sh = sc_rep = sh_rep = None
            m_f, p_f, row_f, e0_f = m, p, row, e0
        e = torch.addmm(e0_f, ub, p_f)  # (B·C, 2N) chunk-local end states
        s = _entry_states(e, a_re, a_im, k, bsz)  # true entry states
        s = torch.cat([s, s.new_ones(s.shape[0], 1)], 1)  # the constant row rides on the entry-state GEMM
        g_aug = torch.cat([g, row_f[None]], 0)
        tb = _clips_per_tile(u, l_pad)
        out = u.new_empty(bsz, h_out) if pool else u.new_empty(bsz, l_pad, h_out)
        # sign of the pre-activation for the LeakyReLU backward; bfloat16 keeps every sign (same exponent range)
        pos = torch.empty(bsz, l_pad, h_out, dtype=torch.bfloat16, device=u.device) if save else None
        for b0 in range(0, bsz, tb):
            b1 = min(b0 + tb, bsz)
            r0, r1 = b0 * rows, b1 * rows
            y = torch.mm(ub[r0:r1], m_f, out=None if pool else out[b0:b1].view(-1, k * h_out))
            y.addmm_(s[r0:r1], g_aug)
            if save:
                pos[b0:b1].view_as(y).copy_(y)
            F.leaky_relu_(y, 0.01)
            z = y.view(b1 - b0, l_pad, h_out)
            if mask is not None:
                z.mul_(mask[b0:b1])
            if skip is not None:
                z.view(-1, h_out).addmm_(u[b0:b1].view(-1, h_in), skip.T)
            elif h_in == h_out or h_in == 1:
                z.add_(u[b0:b1])  # identity residual (broadcast when H_in = 1)
            if pool:
                out[b0:b1] = z[:, :length].sum(1) / length
        if save:
            ctx.save_for_backward(u, m, p, g, s, e, skip, mask, pos, a_re, a_im, sc_rep, sh_rep, mean, var, bn_w,
                                  m_f, p_f)
            ctx.cfg = cfg
        return out

    @staticmethod
    def backward(ctx, gout):
        u, m, p, g, s, e, skip, mask, pos, a_re, a_im, sc_rep, sh_rep, mean, var, bn_w, m_f, p_f = ctx.saved_tensors
        k, length, eps, batch_stats, pool, _ = ctx.cfg
        need = ctx.needs_input_grad
        bsz, l_pad, h_in = u.shape
        h_out = g.shape[1] // k
        ub = u.view(-1, k * h_in)
        rows = l_pad // k
        tb = _clips_per_tile(u, l_pad)
        need_u = need[0]
        identity = skip is None and (h_in == h_out or h_in == 1)
        g_mf = torch.zeros_like(m)
        g_ga = g.new_zeros(g.shape[0] + 1, g.shape[1])  # [G; row]
        g_skip = torch.zeros_like(skip) if skip is not None else None
        g_s = s.new_empty(s.shape[0], s.shape[1] - 1)
        g_u = torch.empty_like(u) if need_u else None
        gout = gout.contiguous()
        for b0 in range(0, bsz, tb):
            b1 = min(b0 + tb, bsz)
            r0, r1 = b0 * rows, b1 * rows
            if pool:
                gz = (gout[b0:b1] / length)[:, None, :].expand(b1 - b0, l_pad, h_out)
                if l_pad != length:
                    gz = torch.cat([gz[:, :length], gz.new_zeros(b1 - b0, l_pad - length, h_out)], 1)
                gz = gz.contiguous()
            else:
                gz = gout[b0:b1]
            g1 = gz * mask[b0:b1] if mask is not None else gz
            gy = torch.ops.aten.leaky_relu_backward(g1, pos[b0:b1].to(g1.dtype), 0.01, False).view(-1, k * h_out)
            g_mf.addmm_(ub[r0:r1].T, gy)
            g_ga.addmm_(s[r0:r1].T, gy)
            torch.mm(gy, g.T, out=g_s[r0:r1])
            gz2, u2 = gz.reshape(-1, h_out), u[b0:b1].view(-1, h_in)
            if skip is not None:
                g_skip.addmm_(gz2.T, u2)
            if need_u:
                gu = torch.mm(gy, m_f.T, out=g_u[b0:b1].view(-1, k * h_in)).view(-1, h_in)
                if skip is not None:
                    gu.addmm_(gz2, skip)
                elif identity:
                    gu.add_(gz2 if h_in == h_out else gz2.sum(1, keepdim=True))
        g_g, g_row = g_ga[:-1], g_ga[-1]
        g_e, g_ar, g_ai = _entry_states_backward(g_s, s[:, :-1], a_re, a_im, k, bsz)
        g_pf = torch.mm(ub.T, g_e)
        g_e0 = g_e.sum(0)
        # undo the BatchNorm folding (all small)
        g_m, g_p, g_bw, g_bb = g_mf, g_pf, None, None
        c1 = c2 = None
        if sc_rep is not None:
            g_m = g_mf * sc_rep[:, None] + sh_rep[:, None] * g_row[None, :]
            g_p = g_pf * sc_rep[:, None] + sh_rep[:, None] * g_e0[None, :]
            g_sc = ((g_mf * m).sum(1) + (g_pf * p).sum(1)).view(k, h_in).sum(0)
            g_sh = (torch.mv(m, g_row) + torch.mv(p, g_e0)).view(k, h_in).sum(0)
            rstd = torch.rsqrt(var + eps)
            g_sc_tot = g_sc - mean * g_sh  # sh = b - mean sc
            g_bw = g_sc_tot * rstd if bn_w is not None else None
            g_bb = g_sh
            if batch_stats and need_u:
                w = bn_w if bn_w is not None else torch.ones_like(rstd)
                g_mean = -(sc_rep[:h_in]) * g_sh
                g_var = g_sc_tot * w * (-0.5) * rstd ** 3
                count = bsz * length
                c2 = 2.0 * g_var / count
                c1 = g_mean / count - c2 * mean  # d/du of (mean, var): c1 + c2 u per channel
        if need_u:
            for b0 in range(0, bsz, tb):
                b1 = min(b0 + tb, bsz)
                r0, r1 = b0 * rows, b1 * rows
                gu = g_u[b0:b1].view(-1, k * h_in)
                gu.addmm_(g_e[r0:r1], p_f.T)
                if c2 is not None:
                    gu.view(-1, h_in).add_(torch.addcmul(c1, u[b0:b1].view(-1, h_in), c2))
        return (g_u, g_m, g_p, g_g, g_row, g_e0, g_ar, g_ai, g_skip, g_bw, g_bb, None, None, None, None)


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


def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for this device type; a type autocast does not know (meta tensors, used to build
    models without memory) has none."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


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
        self.mask_slot: torch.Tensor | None = None  # see SEdgeClassifier.randomness_slots

    # -- discretisation --------------------------------------------------------------------------
    def project_stable(self) -> None:
        """Stability projection (stability: abs, symmetric=False): Re λ <= 0 and Im λ >= 0."""
        with torch.no_grad():  # in place on the two planes: no host tensor, so a CUDA graph can capture it
            self.Lambda.abs_()
            self.Lambda[..., 0].neg_()

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
        return self._run(u, pool=False)

    def _run(self, u: torch.Tensor, pool: bool) -> torch.Tensor:
        """The layer on u (B, L, H_in); with pool, return its mean over time (B, H_out) instead."""
        if _autocast_enabled(u.device.type):
            # `run --precision bf16`: the fused kernel writes into views of fp32 buffers and multiplies by fp32
            # operators, which autocast does not cast; the layer computes in fp32 on fp32 input instead
            with torch.autocast(u.device.type, enabled=False):
                return self._run(u.float(), pool)
        if self.decimation > 1:
            u = u[:, :: self.decimation]
        self.project_stable()
        bsz, length, _ = u.shape
        log_lam, b_bar, bias_bar, c = self.discretise()
        k = _chunk_len(self.h_in, self.n_state, self.h_out, length)
        m, p, g, row, e0 = _chunk_operators(log_lam, b_bar, bias_bar, c, self.C_bias[:, 0], k)
        bn = self.norm
        mean = var = None
        batch_stats = False
        if bn is not None:
            mean, var, batch_stats = self._norm_stats(u)
        pad = (-length) % k
        u = F.pad(u, (0, 0, 0, pad)) if pad else u.contiguous()
        mask = self._dropout_mask(bsz, u.device, u.dtype)
        save = torch.is_grad_enabled() and (u.requires_grad or any(t.requires_grad for t in self.parameters()))
        cfg = (k, length, bn.eps if bn is not None else 0.0, batch_stats, pool, save)
        out = _LayerCore.apply(u, m, p, g, row, e0, log_lam.real, log_lam.imag, self.skip,
                               bn.weight if bn is not None else None, bn.bias if bn is not None else None,
                               mean, var, mask, cfg)
        if pool or not pad:
            return out
        return out[:, :length]

    def _norm_stats(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(mean, var, from_batch) of BatchNorm1d over batch and time; updates the running stats in training."""
        bn = self.norm
        if bn.training or bn.running_mean is None:
            with torch.no_grad():
                mean, var = _batch_stats(u.detach())
                if bn.training and bn.track_running_stats:
                    bn.num_batches_tracked.add_(1)
                    f = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                    cnt = u.shape[0] * u.shape[1]
                    bn.running_mean.mul_(1 - f).add_(mean, alpha=f)
                    bn.running_var.mul_(1 - f).add_(var * (cnt / max(cnt - 1, 1)), alpha=f)
            return mean, var, True
        return bn.running_mean, bn.running_var, False

    def _residual(self, u: torch.Tensor) -> torch.Tensor:
        if self.skip is not None:
            return torch.matmul(u, self.skip.T)
        return u.expand(*u.shape[:-1], self.h_out) if self.h_in != self.h_out else u

    def _dropout_mask(self, bsz: int, device, dtype) -> torch.Tensor | None:
        """Channel-dropout factor (B, 1, H_out), kept/(1-p): one mask per clip and channel, own generator."""
        if not self.training or self.dropout <= 0:
            return None
        if self.mask_slot is not None:  # a captured training step: the mask drawn before each replay
            return self.mask_slot
        return self.draw_mask(bsz).to(device, dtype)

    def draw_mask(self, bsz: int) -> torch.Tensor:
        """The next channel-dropout factor on the host (float32): the only draw of this layer's generator."""
        keep = torch.rand(bsz, 1, self.h_out, generator=getattr(self, "_gen", None)) >= self.dropout
        return keep.to(torch.float32) / (1.0 - self.dropout)

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
        self.hold_slot: torch.Tensor | None = None  # see SEdgeClassifier.randomness_slots

    def hold_factor(self) -> int:
        r = torch.rand((), generator=self.gen).item() / self.p
        if r < 1e-3 or r > 1.0:
            return 1
        return int(min(2 ** math.floor(-math.log2(r)), 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.hold_slot is not None:  # a captured training step: k drawn before each replay, on the device
            t = torch.arange(x.shape[1], device=x.device)  # k = 1 gives the identity, as the branch below does
            return x.index_select(1, t - t.remainder(self.hold_slot))
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
        # Global standardisation of the waveform (s-edge.md §4: one scalar mean and std over the training
        # samples); identity until the trainer sets it (standardise_input), then saved with the weights.
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))
        self.input_scale = 1  # step scale of the signal fed to forward (16000 / input rate)

    def standardise_input(self, mean: float, std: float) -> None:
        """Feed (audio - mean) / (std + 1e-5) to the first layer, as the reference recipe does with the
        training set's global statistics. Without it the sizes without BatchNorm (full, naive) see the raw
        waveform (std 0.04-0.09 on the project's sets) and their training loss stays at ln(classes)."""
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise BadInputError(f"input standardisation needs a finite mean and a positive std, got {mean}, {std}")
        self.input_mean.fill_(mean)
        self.input_std.fill_(std)

    # -- the model's own generators (dropout masks, RZOH holds) ----------------------------------------
    def _generators(self) -> dict[str, torch.Generator]:
        gens = {f"layers.{i}": layer._gen for i, layer in enumerate(self.layers)}
        return gens | {f"rzoh.{i}": hold.gen for i, hold in enumerate(self.rzoh) if isinstance(hold, RZOH)}

    def generator_states(self) -> dict[str, torch.Tensor]:
        """Where each generator stands: a training checkpoint keeps them, so a resumed run draws what an
        uninterrupted one would (they are seeded once, at build time)."""
        return {name: gen.get_state() for name, gen in self._generators().items()}

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        gens = self._generators()
        if set(states) != set(gens):
            raise BadInputError(f"generator states for {sorted(states)} do not fit this model's {sorted(gens)}")
        for name, state in states.items():
            gens[name].set_state(state)

    # -- a training step captured in a CUDA graph ---------------------------------------------------
    @contextlib.contextmanager
    def randomness_slots(self, batch: int, device: torch.device | str) -> Iterator[None]:
        """While open, the training forward reads its random draws (channel-dropout masks, RZOH holds) from
        fixed device tensors instead of drawing them on the host, so the whole step can be captured in a CUDA
        graph; `fill_randomness_slots` puts the next step's draws there before each replay. The tensors stay
        after the block (the graph reads them); outside it the forward draws as usual.
        """
        layers = [layer for layer in self.layers if layer.dropout > 0]
        holds = [hold for hold in self.rzoh if isinstance(hold, RZOH)]
        if getattr(self, "_slots", None) is None or self._slots[0].shape[0] != batch:
            masks = torch.zeros(batch, 1, sum(layer.h_out for layer in layers), device=device)
            self._slots = (masks, torch.ones(len(holds), dtype=torch.long, device=device))
        masks, ks = self._slots
        views = masks.split([layer.h_out for layer in layers], dim=2) if layers else ()
        try:
            for layer, view in zip(layers, views, strict=True):
                layer.mask_slot = view
            for i, hold in enumerate(holds):
                hold.hold_slot = ks[i]
            yield
        finally:
            for layer in layers:
                layer.mask_slot = None
            for hold in holds:
                hold.hold_slot = None

    def fill_randomness_slots(self) -> None:
        """Draw the next step's dropout masks and RZOH holds into the slots: the same generators and values
        an eager step draws, each slot set in one copy from pinned host memory (no synchronisation)."""
        masks, ks = self._slots
        drawn = [layer.draw_mask(masks.shape[0]) for layer in self.layers if layer.dropout > 0]
        holds = [hold.hold_factor() for hold in self.rzoh if isinstance(hold, RZOH)]
        if drawn:
            masks.copy_(torch.cat(drawn, dim=2).pin_memory() if masks.is_cuda else torch.cat(drawn, dim=2),
                        non_blocking=True)
        if holds:
            host = torch.tensor(holds, dtype=torch.long)
            ks.copy_(host.pin_memory() if ks.is_cuda else host, non_blocking=True)

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
        if audio.is_cuda and not self.training:  # the only case the GPU eval path can take: Triton loads here,
            from kwsbench.models import sedge_eval  # not with every model command (the first eager warm-up forward
            # imports it, before any CUDA graph capture)
            if sedge_eval.applies(self, audio):  # inference on a GPU: two GEMMs around a Triton scan per layer
                return sedge_eval.forward(self, audio)
        x = ((audio - self.input_mean) / (self.input_std + 1e-5)).unsqueeze(-1)
        last = len(self.layers) - 1
        for i, (layer, hold) in enumerate(zip(self.layers, self.rzoh, strict=True)):
            if i == last and (isinstance(hold, nn.Identity) or not hold.training):
                return self._decode(layer._run(x, pool=True))  # mean over time fused into the last layer
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
        published_params=PUBLISHED_PARAMS[_size], recipe="s-edge",
        description=f"S-Edge {_size}: complex diagonal ZOH SSM on raw audio (repository-formula params)",
        source="Bittner et al., Machine Learning 114(8):175 (2025); S-Edge repository commit 94f2453",
    ))
