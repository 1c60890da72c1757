"""NC-SSM / NanoMamba frame recurrences for inference on a GPU: one Triton kernel each instead of T small kernels.

The selective scan. The materialised path (`ncssm.selective_scan(method="materialised")`, which training keeps)
builds the decays exp(-A Δ_t), the drives Δ_t u_t B_t + ε_t u_t and the states h_t as whole (T, B, E, N)
tensors and walks the recursion frame by frame over them: at batch 2048 each is hundreds of MB, streamed several
times through memory, and the walk is T small kernels. Here one program holds the (E-block, N) state of one clip
in registers and walks the T frames, reading Δ, u, B, C and ε of a frame and writing y_t = C_t · h_t: inputs
and output are read and written once, nothing of size T·E·N exists. The same products in the same order
(decay from -exp(A_log) · Δ with the device library's exp, drive from (Δ u) · B plus ε u, h = drive + decay · h
clamped to ±bound); the sum over N (a tree here, a matrix product there) and torch's fused multiply-add in
`addcmul` round differently (relative ~1e-7 of y).

The front end's recurrences, which depend on their own last value and so were a loop of ~6 kernels a frame:
the running noise tracker (`ncssm.track_noise`) and the PCEN smoother (`features.ema_smoother`), one program per
128 (clip, band) rows walking the frames. Launched without fused multiply-adds, each product and sum rounds as
torch's separate kernels round it: the same bits as the loops.

float32 inference only (no backward). Like S-Edge's GPU path (sedge_eval), the kernels also run under Triton's
interpreter (TRITON_INTERPRET=1, read when Triton is imported) on CPU tensors, which is how the CPU tests check
them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

try:  # Triton ships with torch's CUDA wheels on Linux; a CPU-only install has none and keeps the materialised path
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

_BLOCK_E = 32  # channels per program: with N <= 16 states the (32, N) state stays in registers
_ENABLED = [True]  # `kernel_scan(False)` switches the kernel off (benchmarks compare the two paths)


@contextlib.contextmanager
def kernel_scan(enabled: bool) -> Iterator[None]:
    """Within the block, GPU inference takes the Triton scan (True) or the materialised path (False)."""
    old = _ENABLED[0]
    _ENABLED[0] = enabled
    try:
        yield
    finally:
        _ENABLED[0] = old


def applies(*tensors: torch.Tensor) -> bool:
    """The kernel serves float32 inference on a CUDA device with no gradient wanted (it has no backward)."""
    if triton is None or not _ENABLED[0] or any(t.dtype != torch.float32 or not t.is_cuda for t in tensors):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


if triton is not None:
    from triton.language.extra import libdevice

    # Sizes and strides are not specialised on (Triton would compile again for each model's widths): the
    # compilations are per clip length, state width and ε/bound, a handful for the whole registry.
    @triton.jit(do_not_specialize=["E", "N", "sdb", "sdt", "sde", "sub", "sut", "sue", "sbb", "sbt", "sbn",
                                   "scb", "sct", "scn", "seb", "set_"])
    def _selective_scan_kernel(
        delta, u, bmat, cmat, neg_a, eps, y, E, N,
        sdb, sdt, sde, sub, sut, sue, sbb, sbt, sbn, scb, sct, scn, seb, set_,
        length: tl.constexpr, BE: tl.constexpr, NP: tl.constexpr, HAS_EPS: tl.constexpr, BOUND: tl.constexpr,
        LIBDEVICE: tl.constexpr,
    ):
        """One clip (program_id 0) and BE channels (program_id 1): h (BE, NP) walks the clip's frames. The
        length is a compile-time constant (one compilation per clip length; Triton's interpreter needs it so)."""
        b = tl.program_id(0).to(tl.int64)
        e = tl.program_id(1) * BE + tl.arange(0, BE)
        n = tl.arange(0, NP)
        eok, nok = e < E, n < N
        a = tl.load(neg_a + e[:, None] * N + n[None, :], mask=eok[:, None] & nok[None, :], other=0.0)
        h = tl.zeros((BE, NP), tl.float32)
        for t in range(length):
            d = tl.load(delta + b * sdb + t * sdt + e * sde, mask=eok, other=0.0)
            x = tl.load(u + b * sub + t * sut + e * sue, mask=eok, other=0.0)
            bt = tl.load(bmat + b * sbb + t * sbt + n * sbn, mask=nok, other=0.0)
            ct = tl.load(cmat + b * scb + t * sct + n * scn, mask=nok, other=0.0)
            if LIBDEVICE:  # the device library's exp (within ~1 ulp, as torch's); tl.exp is a faster approximation
                decay = libdevice.exp(a * d[:, None])
            else:  # Triton's interpreter has no device library: numpy's exp
                decay = tl.exp(a * d[:, None])
            drive = (d * x)[:, None] * bt[None, :]
            if HAS_EPS:
                drive = drive + (tl.load(eps + b * seb + t * set_) * x)[:, None]
            h = drive + decay * h
            if BOUND > 0:
                h = tl.clamp(h, -BOUND, BOUND, propagate_nan=tl.PropagateNan.ALL)
            tl.store(y + (b * length + t) * E + e, tl.sum(h * ct[None, :], axis=1), mask=eok)


    # The front end's recurrences read and write time-major (T, rows) arrays: at each frame a warp touches 32
    # consecutive rows, one coalesced access (on the (B, F, T) layout the same loads were 32 scattered ones, and
    # the tracker's kernel took ~1 ms a call at 2,048 clips instead of ~0.1 ms).
    @triton.jit(do_not_specialize=["rows"])
    def _ema_kernel(x, s, out, rows, length: tl.constexpr, BLOCK: tl.constexpr):
        """out = the EMA over the frames of BLOCK rows of x with coefficients s (all (T, rows)): m_0 = x_0,
        m_t = (1 - s_t) m_{t-1} + s_t x_t, each product and sum rounded as torch's kernels round them."""
        r = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
        ok = r < rows
        acc = tl.load(x + r, mask=ok, other=0.0)
        tl.store(out + r, acc, mask=ok)
        for t in range(1, length):
            st = tl.load(s + t * rows + r, mask=ok, other=0.0)
            xt = tl.load(x + t * rows + r, mask=ok, other=0.0)
            acc = (1 - st) * acc + st * xt
            tl.store(out + t * rows + r, acc, mask=ok)

    @triton.jit(do_not_specialize=["rows"])
    def _track_kernel(x, n0, gamma, beta, out, rows, length: tl.constexpr, BLOCK: tl.constexpr):
        """out (T, rows): n_t = (1 - a_t) n_{t-1} + a_t x_t, a_t = γ where x_t > n_{t-1} else β, over BLOCK rows
        of x (T, rows), from n0 (rows,); the same operations as `ncssm.track_noise(method="select")`."""
        r = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
        ok = r < rows
        g, bt = tl.load(gamma), tl.load(beta)
        n = tl.load(n0 + r, mask=ok, other=0.0)
        for t in range(length):
            xt = tl.load(x + t * rows + r, mask=ok, other=0.0)
            a = tl.where(xt > n, g, bt)
            n = (1 - a) * n + a * xt
            tl.store(out + t * rows + r, n, mask=ok)

def selective_scan(delta: torch.Tensor, u: torch.Tensor, B: torch.Tensor, C: torch.Tensor, A_log: torch.Tensor,
                   eps: torch.Tensor | None, bound: float | None) -> torch.Tensor:
    """y (B, T, E) of `ncssm.selective_scan`; delta, u (B, T, E), B, C (B, T, N), eps (B, T, 1) or None, any
    strides (the block's u is a transposed view)."""
    batch, length, E = u.shape
    N = B.shape[-1]
    y = u.new_empty(batch, length, E)
    if batch == 0 or length == 0:
        return y
    neg_a = (-torch.exp(A_log)).contiguous()
    eps_arg, eps_strides = (eps, (eps.stride(0), eps.stride(1))) if eps is not None else (u, (0, 0))
    grid = (batch, triton.cdiv(E, _BLOCK_E))
    _selective_scan_kernel[grid](
        delta, u, B, C, neg_a, eps_arg, y, E, N,
        *delta.stride(), *u.stride(), *B.stride(), *C.stride(), *eps_strides,
        length=length, BE=_BLOCK_E, NP=triton.next_power_of_2(N), HAS_EPS=eps is not None, BOUND=float(bound or 0.0),
        LIBDEVICE=os.environ.get("TRITON_INTERPRET") != "1", **_launch_options(),
    )
    return y


_ROWS_PER_PROGRAM = 128  # rows of the front-end recurrences per program (one thread a row)


def _launch_options() -> dict:
    """No fused multiply-adds: each product and sum rounds on its own, as torch's separate kernels round them,
    so the front-end recurrences give the materialised path's bits (Triton's interpreter takes no options)."""
    return {} if os.environ.get("TRITON_INTERPRET") == "1" else {"enable_fp_fusion": False}


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """(B, M, T) -> a contiguous (T, B, M) copy (one coalesced pass)."""
    return x.movedim(-1, 0).contiguous()


def ema_smoother(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """`features.ema_smoother` over the last axis of x (B, M, T) with s broadcastable to x; (B, M, T) out (a
    view of a time-major array)."""
    length = x.shape[-1]
    xs, ss = _time_major(x), _time_major(s.expand_as(x))
    out = torch.empty_like(xs)
    rows = xs[0].numel()
    if rows and length:
        _ema_kernel[(triton.cdiv(rows, _ROWS_PER_PROGRAM),)](
            xs, ss, out, rows, length=length, BLOCK=_ROWS_PER_PROGRAM, **_launch_options())
    return out.movedim(0, -1)


def track_noise(mag: torch.Tensor, n0: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """`ncssm.track_noise(method="select")` of mag (B, F, T) from n0 (B, F); (B, F, T) out (a view of a time-major
    array)."""
    length = mag.shape[-1]
    xs = _time_major(mag)
    out = torch.empty_like(xs)
    rows = xs[0].numel()
    if rows and length:
        _track_kernel[(triton.cdiv(rows, _ROWS_PER_PROGRAM),)](
            xs, n0.contiguous(), gamma, beta, out, rows, length=length, BLOCK=_ROWS_PER_PROGRAM,
            **_launch_options())
    return out.movedim(0, -1)
