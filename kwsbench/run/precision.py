"""Full fp32 arithmetic on CUDA while a run evaluates models.

torch runs cuDNN convolutions in TF32 by default (`torch.backends.cudnn.allow_tf32` is True: a 10-bit
mantissa for the products), while matrix products default to fp32. A GPU cell of a convolutional model would
then be computed at a lower precision than the same cell on the CPU, under the same cell key. The benchmark's
numbers are fp32 everywhere: a run turns TF32 off for its duration and puts the caller's settings back after,
so a notebook that chose TF32 for its own work keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def exact_fp32() -> Iterator[None]:
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

