"""The CUDA start-up a run would otherwise pay in its first cells, paid while the noise banks render or load.

A process's first CUDA call creates the context, and the first convolution, matrix product and FFT each load
their library (cuDNN, cuBLAS, cuFFT): about a second together on an H100, which the first model's first cell
used to carry. Triton's runtime starts on its first kernel launch: it hashes its own files (the key of every
compiled kernel) and loads its driver utilities and a launcher, which the first NC-SSM / NanoMamba model's first
cell carried (on an H100, 2026-12-06: nanomamba-small's first cell 0.65-1.0 s, the next such models' 0.03-0.1 s;
with Triton started here 0.06-0.12 s). `start_cuda` does all of it with tiny tensors. The runner hands it to the bank
renderer as the work to do in the parent once the forked workers have their rows (kwsbench.noise.bank), or on a
thread of its own while cached banks load, so no forked worker inherits a CUDA context. It computes nothing any
cell reads: the libraries choose their kernels from each call's own shapes, so every result keeps its bits
(tests/test_warmup.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def start_cuda(device: str, triton: bool = True) -> None:
    """Create the CUDA context of `device`, load cuDNN, cuBLAS and cuFFT by using each once, and start Triton where
    a model of the run will use it (`triton`)."""
    dev = torch.device(device)
    x = torch.ones(2, 1, 8, 8, device=dev)
    F.conv2d(x, torch.ones(1, 1, 3, 3, device=dev))  # cuDNN
    torch.mm(x[0, 0], x[1, 0])  # cuBLAS
    torch.fft.rfft(x.flatten())  # cuFFT
    if triton:
        _start_triton(dev)
    torch.cuda.synchronize(dev)


def _start_triton(dev: torch.device) -> None:
    """Launch one tiny Triton kernel (compiled once, then read from Triton's disk cache like the models' own)."""
    try:  # imported here: a CPU run never pays Triton's import
        import triton
        import triton.language as tl
    except ImportError:  # a CPU-only torch has no Triton, and the models take their torch paths
        return

    @triton.jit
    def _touch(out):
        tl.store(out, 1.0)

    try:
        _touch[(1,)](torch.zeros(1, device=dev))
    except Exception:  # noqa: BLE001 - only speed is at stake: a Triton that cannot run fails in the models' cells,
        pass  # with the model's name on the error, not here before any model ran
