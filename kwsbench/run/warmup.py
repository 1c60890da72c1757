"""The CUDA start-up a run would otherwise pay in its first cell, paid while the noise-bank workers render.

A process's first CUDA call creates the context, and the first convolution, matrix product and FFT each load
their library (cuDNN, cuBLAS, cuFFT): about a second together on an H100, which the first model's first cell
used to carry. `start_cuda` does all of it with tiny tensors. The runner hands it to the bank renderer as the
work to do in the parent once the forked workers have their rows (kwsbench.noise.bank.render_jobs), so the two
overlap and no forked worker inherits a CUDA context. It computes nothing any cell reads: the libraries choose
their kernels from each call's own shapes, so every result keeps its bits (tests/test_warmup.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def start_cuda(device: str) -> None:
    """Create the CUDA context of `device` and load cuDNN, cuBLAS and cuFFT by using each once."""
    dev = torch.device(device)
    x = torch.ones(2, 1, 8, 8, device=dev)
    F.conv2d(x, torch.ones(1, 1, 3, 3, device=dev))  # cuDNN
    torch.mm(x[0, 0], x[1, 0])  # cuBLAS
    torch.fft.rfft(x.flatten())  # cuFFT
    torch.cuda.synchronize(dev)
