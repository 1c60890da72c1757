"""Audio I/O: read any soundfile format, resample with torchaudio, fix the length to one clip."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from kwsbench.errors import BadInputError

if TYPE_CHECKING:
    import torch

def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode `path` to (float32 samples in [-1, 1), sample rate), mixing multi-channel files to mono.

    A 16-bit file read as float32 by soundfile is int16 / 32768, so the int16 values survive exactly.
    Raises BadInputError naming the file when it cannot be decoded or holds no samples.
    """
    x, rate = read_audio_raw(path)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    return x, rate


def read_audio_raw(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode without mixing down: (samples,) for mono, (samples, channels) otherwise."""
    path = Path(path)
    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise BadInputError(
            f"cannot decode audio file {path}: {err}. Replace or delete it, or pass --on-bad-file skip."
        ) from err
    if x.shape[0] == 0:
        raise BadInputError(f"audio file {path} holds no samples. Replace or delete it, or pass --on-bad-file skip.")
    if not np.isfinite(x).all():  # float WAV / FLAC can hold them; a model would score garbage (or cast to ints)
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise BadInputError(f"audio file {path} holds {bad} NaN or infinite samples. Replace or delete it, or pass "
                            "--on-bad-file skip.")
    if x.shape[1] == 1:
        x = x[:, 0]
    return np.ascontiguousarray(x), int(rate)


def resample(x: np.ndarray | torch.Tensor, from_rate: int, to_rate: int) -> np.ndarray | torch.Tensor:
    """Band-limited resampling along the last axis (torchaudio's sinc interpolation).

    Returns the same kind (numpy or torch) it was given; a torch tensor stays on its device.
    """
    # imported here so that reading audio (and the espeak worker process) does not load torch
    import torch
    import torchaudio.functional as taf

    if from_rate == to_rate:
        return x
    if isinstance(x, torch.Tensor):
        return taf.resample(x, int(from_rate), int(to_rate))
    y = taf.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(from_rate), int(to_rate))
    return y.numpy()


def fix_length(x: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end or cut to exactly `length` samples along the last axis."""
    n = x.shape[-1]
    if n == length:
        return x
    if n > length:
        return x[..., :length]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, length - n)]
    return np.pad(x, pad)


# -- rate change (the noisy 16 kHz batch brought to a lower rate, and back) ----------------------------

def decimate(x: torch.Tensor, from_rate: int, to_rate: int, method: str) -> torch.Tensor:
    if to_rate == from_rate:
        return x
    if method == "drop":
        if from_rate % to_rate:
            raise BadInputError(f"'drop' decimation needs an integer factor, got {from_rate} -> {to_rate}")
        return x[:, :: from_rate // to_rate].contiguous()
    import torchaudio.functional as taf

    return taf.resample(x, from_rate, to_rate)


def upsample(x: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    if to_rate == from_rate:
        return x
    import torchaudio.functional as taf

    return taf.resample(x, from_rate, to_rate)
