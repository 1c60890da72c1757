"""S-Edge's eval forward on a GPU: each layer a Triton scan between its input projection and its read-out.

The training path (`sedge._LayerCore`) folds input projection, recurrence and read-out of a chunk of k steps
into one block-Toeplitz GEMM, which costs k·H_in·H_out MACs a step plus a recursive scan over the chunk ends:
for the 96- and 64-wide layers of the large sizes that is ~2x the model's own MACs in skinny, many-kernel
form (9-10 % of the H200's fp32 rate in eval). Inference needs no gradient, so here each layer does exactly
the model's arithmetic:

    v = u_n B̄ᵀ + b̄      one GEMM (BatchNorm folded into B̄ and b̄), (B·L, H_in) x (H_in, 2N); for an input
                         of at most 64 channels a dot product inside the scan kernel instead (`projects_inside`)
    x_t = λ̄ x_{t-1} + v_t   the diagonal complex recurrence, in place: a Triton kernel, one program per
                         (clip, block of states), walking time in tiles with an associative scan inside a
                         tile and the carried state between tiles (memory-bound: one read, one write);
                         the carry is multiplied by a table of λ̄^(j+1), each power rounded once, which
                         keeps slow states (|λ̄| near 1) as exact as the chunked path keeps them
    y = Re(C x) + c      one GEMM, (B·L, 2N) x (2N, H_out)
    z = LeakyReLU(y) + skip(u)   one fused elementwise kernel for the identity residual (the last layer
                         returns z's mean over time); for an output of at most 64 channels the read-out,
                         LeakyReLU and residual or trainable skip are one Triton kernel (`fuses_readout`)

Real planes throughout: a row of v and x holds (Re x_1..x_N, Im x_1..x_N). For a one-channel input (the
first layer) the projection is an outer product, done inside the scan kernel. Clips run in tiles, so the
temporaries stay a few GB whatever the batch. fp32 only; the result equals the chunked path to rounding
(tests/test_sedge_eval.py). Without CUDA or Triton the model keeps the chunked path; the kernel also runs under
Triton's interpreter (TRITON_INTERPRET=1) on CPU tensors, which is how the CPU test checks it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from kwsbench.models.conv_inference import bn_affine

try:  # Triton ships with torch's CUDA wheels on Linux; a CPU-only install has none and keeps the chunked path
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

if TYPE_CHECKING:
    from kwsbench.models.sedge import SEdgeClassifier, SEdgeLayer

_ROWS_PER_TILE = 1 << 22  # clip-time rows per tile of clips: ~2 GB per 128-wide fp32 temporary
_SCAN_T = 64  # time steps per scan tile
_SCAN_CB = 32  # complex states per program
_SCAN_WARPS = 4
_READOUT_WARPS = 4
_EW_BLOCK = 2048  # elements per program of the LeakyReLU + residual kernel
_K_STEP = 16  # dot products over 33-48 inputs in chunks of 16 (`_k_padding`); 0: one power-of-two chunk
_PROJECT_MAX_IN = 64  # layers this wide or narrower project their input inside the scan kernel (see `scan`)
_GIVEN, _SCALAR, _PROJECTED = 0, 1, 2  # what the scan kernel reads: v, a one-channel input, an H_in-wide input
_READOUT_MAX_OUT = 64  # layers with this many output channels or fewer read out in one kernel (`fuses_readout`)
_READOUT_MAX_IN = 64  # ... and this many input channels or fewer: a trainable skip's dot product holds whole rows
_READOUT_ROWS, _READOUT_K = 64, 32  # rows per program and state columns per step of the read-out kernel
_NO_RESIDUAL, _IDENTITY, _BROADCAST, _SKIP = 0, 1, 2, 3  # what the read-out kernel adds after LeakyReLU
_ENABLED = [True]  # `scan_eval(False)` switches the GPU eval path off (benchmarks compare the two)
# the settings above that a benchmark may change for a sweep (`parse_setting`); the kinds are not settings
TUNABLE = ("_ROWS_PER_TILE", "_SCAN_T", "_SCAN_CB", "_SCAN_WARPS", "_READOUT_WARPS", "_EW_BLOCK", "_K_STEP",
            "_PROJECT_MAX_IN", "_READOUT_MAX_OUT", "_READOUT_MAX_IN", "_READOUT_ROWS", "_READOUT_K")


def parse_setting(text: str) -> tuple[str, int] | None:
    """NAME=INT with NAME one of this module's tunable settings (e.g. `_K_STEP=0`): (NAME, INT); None otherwise.
    benchmarks/sedge_gpu.py (--variants) and sedge_kernels.py (--set) sweep them without a code edit."""
    name, _, value = text.partition("=")
    if name in TUNABLE and value.lstrip("-").isdigit():
        return name, int(value)
    return None


@contextlib.contextmanager
def scan_eval(enabled: bool) -> Iterator[None]:
    """Within the block, the eval forward on a GPU uses this path (True) or the chunked training path (False)."""
    old = _ENABLED[0]
    _ENABLED[0] = enabled
    try:
        yield
    finally:
        _ENABLED[0] = old


def applies(model: SEdgeClassifier, audio: torch.Tensor) -> bool:
    """This path runs an eval forward without gradients of float32 audio on a CUDA device, Triton present (TF32
    reaches its GEMMs through torch's matmul switch like any other; under autocast see `forward`). A gradient
    wanted for the audio (a saliency map of a frozen model) keeps the chunked path: the Triton kernels have no
    backward."""
    if triton is None or not _ENABLED[0] or model.training or audio.dtype != torch.float32 or not audio.is_cuda:
        return False
    return not (torch.is_grad_enabled() and (audio.requires_grad or any(p.requires_grad for p in model.parameters())))


if triton is not None:

    @triton.jit
    def _combine(ar, ai, xr, xi, br, bi, yr, yi):
        # (a, x) earlier, (b, y) later: the later step applied after the earlier one is (b·a, b·x + y)
        return br * ar - bi * ai, br * ai + bi * ar, br * xr - bi * xi + yr, br * xi + bi * xr + yi

    @triton.jit
    def _scan_kernel(src, dst, w, bias, lam_re, lam_im, pw, length: tl.constexpr,
                     N: tl.constexpr, CB: tl.constexpr, T: tl.constexpr, SOURCE: tl.constexpr,
                     H_IN: tl.constexpr, KP: tl.constexpr, KC: tl.constexpr, PREC: tl.constexpr):
        """dst[b, t] = λ̄ dst[b, t-1] + v[b, t] over one clip and CB states. SOURCE says what v is: _GIVEN,
        src (B, L, 2N) itself; _SCALAR, src (B, L) times w (2N,) plus bias (the one-channel input projection);
        _PROJECTED, src (B, L, H_IN) times w (H_IN, 2N) plus bias, dot products per time tile over KC input
        channels at a time (KP: H_IN padded, `_k_padding`; PREC: "ieee", or "tf32" when the run asked for
        TF32), so v never goes through memory. pw (2, T, N): λ̄^(j+1), each power rounded once (see `scan`). The length
        is a compile-time constant (one compilation per clip length; Triton's interpreter needs it so)."""
        b = tl.program_id(0).to(tl.int64)
        c = tl.program_id(1) * CB + tl.arange(0, CB)
        cok = c < N
        r = tl.arange(0, T)
        lr = tl.load(lam_re + c, mask=cok, other=0.0)
        li = tl.load(lam_im + c, mask=cok, other=0.0)
        a_re = tl.zeros((T, CB), tl.float32) + lr[None, :]
        a_im = tl.zeros((T, CB), tl.float32) + li[None, :]
        pw_off = r[:, None] * N + c[None, :]
        pw_ok = (r[:, None] < T) & cok[None, :]
        p_re = tl.load(pw + pw_off, mask=pw_ok, other=0.0)
        p_im = tl.load(pw + T * N + pw_off, mask=pw_ok, other=0.0)
        if SOURCE == 1:  # _SCALAR
            w_re = tl.load(w + c, mask=cok, other=0.0)[None, :]
            w_im = tl.load(w + N + c, mask=cok, other=0.0)[None, :]
        if SOURCE == 2 and KP == KC:  # _PROJECTED in one chunk: this block's columns of W_B, loaded once
            k = tl.arange(0, KC)
            w_off = k[:, None] * (2 * N) + c[None, :]
            w_ok = (k[:, None] < H_IN) & cok[None, :]
            w_re = tl.load(w + w_off, mask=w_ok, other=0.0)
            w_im = tl.load(w + w_off + N, mask=w_ok, other=0.0)
        if SOURCE != 0:
            b_re = tl.load(bias + c, mask=cok, other=0.0)[None, :]
            b_im = tl.load(bias + N + c, mask=cok, other=0.0)[None, :]
        c_re = tl.zeros((CB,), tl.float32)
        c_im = tl.zeros((CB,), tl.float32)
        last = (r == T - 1)[:, None]
        row0 = b * length
        for t0 in range(0, length, T):
            t = t0 + r
            ok = (t < length)[:, None] & cok[None, :]
            off = (row0 + t)[:, None] * (2 * N) + c[None, :]
            if SOURCE == 1:
                s = tl.load(src + row0 + t, mask=t < length, other=0.0)[:, None]
                x_re = s * w_re + b_re
                x_im = s * w_im + b_im
            elif SOURCE == 2:
                x_re = tl.zeros((T, CB), tl.float32)
                x_im = tl.zeros((T, CB), tl.float32)
                for k0 in tl.static_range(0, KP, KC):
                    k = k0 + tl.arange(0, KC)
                    uu = tl.load(src + (row0 + t)[:, None] * H_IN + k[None, :],
                                 mask=(t < length)[:, None] & (k[None, :] < H_IN), other=0.0)
                    if KP != KC:  # several chunks: each chunk's rows of W_B come from the cache every tile
                        w_off = k[:, None] * (2 * N) + c[None, :]
                        w_ok = (k[:, None] < H_IN) & cok[None, :]
                        w_re = tl.load(w + w_off, mask=w_ok, other=0.0)
                        w_im = tl.load(w + w_off + N, mask=w_ok, other=0.0)
                    x_re = tl.dot(uu, w_re, x_re, input_precision=PREC)
                    x_im = tl.dot(uu, w_im, x_im, input_precision=PREC)
                x_re += b_re  # the bias after the products, as before the chunks
                x_im += b_im
            else:
                x_re = tl.load(src + off, mask=ok, other=0.0)
                x_im = tl.load(src + off + N, mask=ok, other=0.0)
            _, _, x_re, x_im = tl.associative_scan((a_re, a_im, x_re, x_im), 0, _combine)
            # add the state carried in from the previous tile, times λ̄^(j+1) from the table: the scan's own
            # products of the rounded λ̄ would make the carry's multiplier off by ~T ulps, and for slow states
            # (|λ̄| ~ 0.9995) that error grows by 1/(1 - |λ̄|^T) along the clip (4e-4 of the logits measured)
            y_re = x_re + p_re * c_re[None, :] - p_im * c_im[None, :]
            y_im = x_im + p_re * c_im[None, :] + p_im * c_re[None, :]
            tl.store(dst + off, y_re, mask=ok)
            tl.store(dst + off + N, y_im, mask=ok)
            c_re = tl.sum(tl.where(last, y_re, 0.0), axis=0)
            c_im = tl.sum(tl.where(last, y_im, 0.0), axis=0)


if triton is not None:

    @triton.jit
    def _leaky_residual_kernel(y, u, total, H: tl.constexpr, BROADCAST: tl.constexpr, BLOCK: tl.constexpr):
        i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        ok = i < total
        a = tl.load(y + i, mask=ok, other=0.0)
        res = tl.load(u + (i // H if BROADCAST else i), mask=ok, other=0.0)
        tl.store(y + i, tl.where(a >= 0, a, a * 0.01) + res, mask=ok)


if triton is not None:

    @triton.jit
    def _readout_kernel(x, w_c, c, u, skip_t, z, rows, K: tl.constexpr, H_IN: tl.constexpr, H_OUT: tl.constexpr,
                        KS: tl.constexpr, KC: tl.constexpr, HP: tl.constexpr, BM: tl.constexpr,
                        BK: tl.constexpr, RESIDUAL: tl.constexpr, PREC: tl.constexpr):
        """z = LeakyReLU(x W_C + c) + residual for BM rows: x (R, K), W_C (K, H_OUT), u (R, H_IN); the residual
        is u (_IDENTITY), u's one channel on every output (_BROADCAST), u skip_t with skip_t (H_IN, H_OUT)
        (_SKIP) or nothing. HP: H_OUT rounded up to a power of two of at least 16; the skip's dot product runs
        over KC input channels at a time (KS: H_IN padded, `_k_padding`)."""
        r = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
        rok = (r < rows)[:, None]
        h = tl.arange(0, HP)
        hok = (h < H_OUT)[None, :]
        acc = tl.zeros((BM, HP), tl.float32)
        for k0 in range(0, K, BK):
            k = k0 + tl.arange(0, BK)
            a = tl.load(x + r[:, None] * K + k[None, :], mask=rok & (k < K)[None, :], other=0.0)
            b = tl.load(w_c + k[:, None] * H_OUT + h[None, :], mask=(k < K)[:, None] & hok, other=0.0)
            acc = tl.dot(a, b, acc, input_precision=PREC)
        acc += tl.load(c + h, mask=h < H_OUT, other=0.0)[None, :]
        acc = tl.where(acc >= 0, acc, acc * 0.01)
        if RESIDUAL == 1:  # _IDENTITY
            acc += tl.load(u + r[:, None] * H_IN + h[None, :], mask=rok & hok, other=0.0)
        if RESIDUAL == 2:  # _BROADCAST
            acc += tl.load(u + r[:, None], mask=rok, other=0.0)
        if RESIDUAL == 3:  # _SKIP
            for i0 in tl.static_range(0, KS, KC):
                i = i0 + tl.arange(0, KC)
                uu = tl.load(u + r[:, None] * H_IN + i[None, :], mask=rok & (i < H_IN)[None, :], other=0.0)
                sk = tl.load(skip_t + i[:, None] * H_OUT + h[None, :], mask=(i < H_IN)[:, None] & hok, other=0.0)
                acc = tl.dot(uu, sk, acc, input_precision=PREC)
        tl.store(z + r[:, None] * H_OUT + h[None, :], acc, mask=rok & hok)


def fuses_readout(h_in: int, h_out: int) -> bool:
    """Whether a layer reads out in one kernel: y = Re(C x) + c, LeakyReLU and the residual or skip.

    With a narrow output the read-out GEMM is short and memory-bound, and LeakyReLU and the skip each pass over
    its output again (about five reads and writes of it per row); one kernel writes it once. Wider outputs keep
    cuBLAS's GEMM."""
    return h_out <= _READOUT_MAX_OUT and h_in <= _READOUT_MAX_IN


def _dot_precision() -> str:
    """The kernels' dot-product precision: TF32 when the run asked for it (`--precision tf32` turns torch's
    matmul switch on, as cuBLAS's GEMMs see it), IEEE fp32 otherwise."""
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def _k_padding(h_in: int) -> tuple[int, int]:
    """(padded width, chunk) of a dot product over h_in input channels: one chunk of the next power of two (at
    least 16, a dot product's least), its weights held in registers. With `_K_STEP` 16, 33-48 channels go in
    chunks of 16 instead (40 channels: 48 products a row, not 64; the chunk's weights read each tile).

    Only where they save a quarter of the products: chunks of 16 for every width made the kernels slower on one
    H200 (2026-12-05, with other changes). Where they apply they remove s-edge-large's read-out spills (856 bytes
    -> 0-28, `benchmarks/sedge_kernels.py`) and, on one H100 (two calls), lifted large from 34.3-34.7 to
    36.8-36.9 % of the fp32 rate, small from 22.8-24.2 to 23.9-25.3 % and medium by under 2 %; the products add
    in another order (logits within 2e-7 relative, 0 of 1,024 predictions changed, CLI stores identical)."""
    whole = max(16, triton.next_power_of_2(h_in))
    stepped = -(-h_in // _K_STEP) * _K_STEP if _K_STEP else whole
    return (stepped, _K_STEP) if 4 * stepped <= 3 * whole else (whole, whole)


def readout_constants(k: int, h_in: int, h_out: int, residual: int) -> dict:
    """The read-out kernel's compile-time arguments for a layer of 2N = k, h_in, h_out and a residual kind."""
    ks, kc = _k_padding(h_in)
    return {"K": k, "H_IN": h_in, "H_OUT": h_out, "KS": ks, "KC": kc, "HP": max(16, triton.next_power_of_2(h_out)),
            "BM": _READOUT_ROWS, "BK": _READOUT_K, "RESIDUAL": residual, "PREC": _dot_precision()}


def readout(x: torch.Tensor, ops: dict, u: torch.Tensor, residual: int) -> torch.Tensor:
    """LeakyReLU(x W_C + c) + residual(u) as (R, H_out): x (R, 2N), u (R, H_in)."""
    rows, k = x.shape
    h_in, h_out = u.shape[1], ops["w_c"].shape[1]
    z = x.new_empty(rows, h_out)
    skip_t = ops.get("skip_t", ops["c"])
    _readout_kernel[(triton.cdiv(rows, _READOUT_ROWS),)](
        x, ops["w_c"], ops["c"], u, skip_t, z, rows, **readout_constants(k, h_in, h_out, residual),
        num_warps=_READOUT_WARPS)
    return z


def scan_tables(log_lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(λ̄ as (2, N) planes, λ̄^(j+1) for j < T as (2, T, N)) from log λ̄ (N,) complex; the powers are taken in
    float64 and rounded once each."""
    lam = torch.exp(log_lam)
    planes = torch.stack([lam.real, lam.imag]).float().contiguous()
    j = torch.arange(1, _SCAN_T + 1, device=log_lam.device, dtype=torch.float64)[:, None]
    pw = torch.exp(j * log_lam.to(torch.complex128)[None, :])
    return planes, torch.stack([pw.real, pw.imag]).float().contiguous()


def _state_block(n: int) -> int:
    return min(_SCAN_CB, triton.next_power_of_2(n))


def projects_inside(h_in: int, n: int) -> bool:
    """Whether a layer of this input width and state size projects its input inside the scan kernel.

    For a narrow input the projection v = u W_B is a short GEMM whose output (2N wide) is written once and read
    back by the scan: more memory traffic than arithmetic. Inside the kernel v stays in registers and the scan
    reads only u (H_in wide). Wide inputs keep cuBLAS's GEMM; a dot product needs a block of at least 16 states."""
    return 1 < h_in <= _PROJECT_MAX_IN and _state_block(n) >= 16


def scan(src: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor], out: torch.Tensor,
         w: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x_t = λ̄ x_{t-1} + v_t from x_{-1} = 0 on real planes; tables from `scan_tables`; out (B, L, 2N).
    v is src (B, L, 2N) itself (may be `out`) when w is None, else src·w + bias: src (B, L) with w (2N,), or
    src (B, L, H_in) with w (H_in, 2N) (`projects_inside`); bias (2N,)."""
    bsz, length, n2 = out.shape
    n = n2 // 2
    planes, pw = tables
    source = _GIVEN if w is None else _SCALAR if src.dim() == 2 else _PROJECTED
    constants = scan_constants(n, length, source, src.shape[2] if source == _PROJECTED else 1, pw.shape[1])
    dummy = planes[0]
    _scan_kernel[(bsz, triton.cdiv(n, constants["CB"]))](
        src, out, dummy if w is None else w, dummy if w is None else bias, planes[0], planes[1], pw, **constants,
        num_warps=_SCAN_WARPS)
    return out


def scan_constants(n: int, length: int, source: int, h_in: int, steps: int | None = None) -> dict:
    """The scan kernel's compile-time arguments for n states, a clip of `length` steps, a source kind, its input
    width (1 unless _PROJECTED) and the time steps per tile (default _SCAN_T; `scan` passes its power table's)."""
    kp, kc = _k_padding(h_in)
    return {"length": length, "N": n, "CB": _state_block(n), "T": steps or _SCAN_T, "SOURCE": source,
            "H_IN": h_in, "KP": kp, "KC": kc, "PREC": _dot_precision()}


def layer_kinds(layer: SEdgeLayer, pool: bool) -> tuple[int, int | None]:
    """(what the layer's scan reads: _SCALAR, _PROJECTED or _GIVEN; its fused read-out's residual kind, None when
    it reads out with cuBLAS instead): the choices `_layer` makes."""
    h_in, h_out = layer.h_in, layer.h_out
    source = _SCALAR if h_in == 1 else _PROJECTED if projects_inside(h_in, layer.n_state) else _GIVEN
    if pool or not fuses_readout(h_in, h_out):
        return source, None
    return source, (_SKIP if layer.skip is not None else _NO_RESIDUAL if not _identity_residual(layer)
                    else _BROADCAST if h_in == 1 else _IDENTITY)


def _identity_residual(layer: SEdgeLayer) -> bool:
    """Whether the layer adds its input to its output (the residual _LayerCore adds; a one-channel input is
    broadcast), as opposed to a trainable skip or nothing."""
    return layer.skip is None and (layer.h_in == layer.h_out or layer.h_in == 1)


def leaky_residual(y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """y <- LeakyReLU(y) + u in place, y (R, H) and u (R, H) or (R, 1): one pass instead of torch's two."""
    rows, h = y.shape
    total = rows * h
    _leaky_residual_kernel[(triton.cdiv(total, _EW_BLOCK),)](y, u, total, H=h, BROADCAST=u.shape[1] == 1,
                                                            BLOCK=_EW_BLOCK)
    return y


def _layer_operators(layer: SEdgeLayer) -> dict:
    """The layer's real operators: scan tables, W_B (H_in, 2N) and bias with BatchNorm folded, W_C (2N, H_out), c."""
    log_lam, b_bar, bias_bar, c = layer.discretise()
    w_b = torch.cat([b_bar.real, b_bar.imag]).T  # (H_in, 2N)
    b_v = torch.cat([bias_bar.real, bias_bar.imag])
    if layer.norm is not None:  # eval BatchNorm is u_n = sc u + sh per channel
        sc, sh = bn_affine(layer.norm)
        b_v = b_v + sh @ w_b
        w_b = w_b * sc[:, None]
    w_c = torch.cat([c.real, -c.imag], 1).T  # Re(C x) = C_re x_re - C_im x_im
    ops = {"scan": scan_tables(log_lam), "w_b": w_b.contiguous(),
           "b_v": b_v.contiguous(), "w_c": w_c.contiguous(), "c": layer.C_bias[:, 0].contiguous()}
    if layer.skip is not None:
        ops["skip_t"] = layer.skip.T.contiguous()
    return ops


def _layer(layer: SEdgeLayer, ops: dict, u: torch.Tensor, pool: bool) -> torch.Tensor:
    """One layer on a tile of clips u (B, L, H_in) -> (B, L', H_out), or its mean over time (B, H_out)."""
    if layer.decimation > 1:
        u = u[:, :: layer.decimation]
    u = u.contiguous()
    bsz, length, h_in = u.shape
    n2 = ops["scan"][0].shape[1] * 2
    rows = bsz * length
    x = u.new_empty(bsz, length, n2)
    source, kind = layer_kinds(layer, pool)
    if source == _SCALAR:
        scan(u.view(bsz, length), ops["scan"], x, ops["w_b"][0].contiguous(), ops["b_v"])
    elif source == _PROJECTED:
        scan(u, ops["scan"], x, ops["w_b"], ops["b_v"])
    else:
        torch.addmm(ops["b_v"], u.view(rows, h_in), ops["w_b"], out=x.view(rows, n2))
        scan(x, ops["scan"], x)
    h_out = ops["w_c"].shape[1]
    if kind is not None:
        return readout(x.view(rows, n2), ops, u.view(rows, h_in), kind).view(bsz, length, h_out)
    identity = _identity_residual(layer)
    y = torch.addmm(ops["c"], x.view(rows, n2), ops["w_c"])
    del x
    z = y.view(bsz, length, h_out)
    if identity and not pool:
        return leaky_residual(y, u.view(rows, h_in)).view(bsz, length, h_out)
    F.leaky_relu_(y, 0.01)
    if layer.skip is not None:
        if pool:  # the skip is linear: the mean of u through it
            return z.mean(1) + u.mean(1) @ layer.skip.T
        y.addmm_(u.view(rows, h_in), layer.skip.T)
        return z
    if pool:
        return z.mean(1) + u.mean(1) if identity else z.mean(1)
    return z


def forward(model: SEdgeClassifier, audio: torch.Tensor) -> torch.Tensor:
    """Logits (B, classes) of an eval forward, clips in tiles of about _ROWS_PER_TILE rows.

    Under autocast (`run --precision bf16`) the layers compute in fp32 and only the decoder runs under the
    caller's autocast, as on the chunked path (`SEdgeLayer._run`)."""
    with torch.autocast(audio.device.type, enabled=False):
        for layer in model.layers:
            layer.project_stable()
        ops = [_layer_operators(layer) for layer in model.layers]
        per_tile = max(1, _ROWS_PER_TILE // max(audio.shape[1], 1))
        pooled = []
        last = len(model.layers) - 1
        for b0 in range(0, audio.shape[0], per_tile):
            x = ((audio[b0:b0 + per_tile] - model.input_mean) / (model.input_std + 1e-5)).unsqueeze(-1)
            for i, layer in enumerate(model.layers):
                x = _layer(layer, ops[i], x, pool=i == last)
            pooled.append(x)
    return model._decode(torch.cat(pooled) if len(pooled) > 1 else pooled[0])
