"""The arithmetic precision a run evaluates models in: fp32 (the default), tf32 or bf16, on CUDA.

torch runs cuDNN convolutions in TF32 by default (`torch.backends.cudnn.allow_tf32` is True: a 10-bit
mantissa for the products), while matrix products default to fp32. A GPU cell of a convolutional model would
then be computed at a lower precision than the same cell on the CPU, under the same cell key. So a run sets
both switches for its duration and puts the caller's settings back after (a notebook that chose TF32 for its
own work keeps it):

- `fp32`: TF32 off for cuDNN and cuBLAS: the same arithmetic as the CPU (the benchmark's reference numbers);
- `tf32`: TF32 on for both (convolutions and matrix products with 10-bit-mantissa products, fp32 sums);
- `bf16`: TF32 off, and the model's forward under `torch.autocast(dtype=torch.bfloat16)`. The front end is
  part of the model, so it is under autocast too: autocast runs the ops on its lower-precision list
  (convolutions, matrix products: the mel projection, the DCT, linear layers, attention) in bf16 and keeps
  its fp32 list in fp32 (log, exp, pow, softmax, norms...); ops on neither list (the FFT, element-wise ops)
  run in the dtype they are given. What stays fp32 outside the model: the audio, noise mixing and rate change
  before it, and the logits after it (cast back to fp32), so arg-max, accuracy and intervals are fp32.

The precision is part of every cell's key (kwsbench.results.store.CellKey), so cells of different precisions
never replace or stand in for one another. tf32 and bf16 are CUDA-only options (kwsbench.run.plan
`check_precision` says why).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from kwsbench.errors import BadInputError
from kwsbench.run.plan import DEFAULT_PRECISION, PRECISIONS

TF32_BF16_CAPABILITY = (8, 0)  # Ampere: the first NVIDIA GPUs whose tensor cores compute TF32 and bf16


def check_gpu_supports(precision: str, device: str) -> None:
    """tf32 and bf16 need a GPU of compute capability 8.0 or newer: BadInputError (exit 5) on an older one. There
    TF32 does not exist (the products would silently be fp32, in cells keyed tf32) and bf16 is not native."""
    if precision == DEFAULT_PRECISION or not device.startswith("cuda"):
        return
    capability = tuple(torch.cuda.get_device_capability(device))
    if capability < TF32_BF16_CAPABILITY:
        raise BadInputError(
            f"precision {precision} needs an NVIDIA GPU of compute capability 8.0 (Ampere) or newer; {device} "
            f"({torch.cuda.get_device_name(device)}) is {capability[0]}.{capability[1]}: run with the default "
            "--precision fp32 there")


@contextmanager
def precision_mode(precision: str = DEFAULT_PRECISION) -> Iterator[None]:
    """The TF32 switches `precision` needs, for the duration of the block; the caller's come back after."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not one of {PRECISIONS}")
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class Autocast(torch.nn.Module):
    """A model's forward under bf16 autocast on `device_type`, logits returned in fp32.

    The autocast cache is off: inside a captured CUDA graph (kwsbench.run.graphs) a cached cast of a weight
    would be made once during capture and freed at the block's end, so each forward casts its weights itself
    (captured into the graph like any other kernel)."""

    def __init__(self, model: torch.nn.Module, device_type: str, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.model, self.device_type, self.dtype = model, device_type, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False):
            logits = self.model(x)
        return logits.float()


def for_precision(model: torch.nn.Module, precision: str, device: str) -> torch.nn.Module:
    """The callable that evaluates `model` at `precision`: the model itself, or under bf16 autocast."""
    if precision == "bf16":
        return Autocast(model, torch.device(device).type)
    return model
