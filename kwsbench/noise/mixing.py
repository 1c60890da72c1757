"""Declared-SNR mixing: scale the noise, never the speech.

Definitions (recorded with every result, DESIGN.md contract 2):

- `rms`: the clean level is the RMS over the whole clip (padding and pauses included), the
  published NC-SSM protocol and what torchaudio / audiomentations do.
- `active`: the clean level is the RMS over active frames only. The clip is cut into
  non-overlapping 20 ms frames (320 samples at 16 kHz; a trailing partial frame is dropped); a
  frame is active when its mean energy is at least the clip's peak frame energy minus 30 dB.
  A simple energy VAD, not ITU-T P.56; on 1-s keyword clips it reads a few dB above `rms`.

In both, the noise level is the RMS of the whole noise clip, so SNR = 20 log10(clean level /
noise RMS). A clean clip whose level is below the floor (1e-5 RMS, -100 dBFS: digital silence or
near it) is mixed as if its level were the floor, so all-zero clips get a small, defined amount
of noise instead of a division by zero; an all-zero noise clip stays zero. No clipping is applied:
the mixture may leave [-1, 1], as in the published protocol.
"""

from __future__ import annotations

import numpy as np
import torch

from kwsbench.noise.definitions import SNR_DEFINITIONS

LEVEL_FLOOR = 1e-5  # RMS, i.e. -100 dBFS
ACTIVE_FRAME_S = 0.02
ACTIVE_THRESHOLD_DB = 30.0

Array = np.ndarray | torch.Tensor


def _check_definition(definition: str) -> None:
    if definition not in SNR_DEFINITIONS:
        from kwsbench.errors import BadInputError

        raise BadInputError(f"unknown SNR definition {definition!r}; use one of {', '.join(SNR_DEFINITIONS)}")


def _frames(x: Array, rate: int) -> Array:
    frame = max(1, round(ACTIVE_FRAME_S * rate))
    usable = (x.shape[-1] // frame) * frame
    if usable == 0:  # shorter than one frame: the whole clip is one frame
        return x[..., None, :]
    return x[..., :usable].reshape(*x.shape[:-1], usable // frame, frame)


def speech_level(clean: Array, definition: str = "rms", rate: int = 16000) -> Array:
    """Per-row clean level (RMS units, float64) under the SNR definition; rows on the last axis."""
    _check_definition(definition)
    if isinstance(clean, torch.Tensor):
        x = clean.to(torch.float64)
        if definition == "rms":
            return x.square().mean(dim=-1).sqrt()
        energy = _frames(x, rate).square().mean(dim=-1)
        peak = energy.amax(dim=-1, keepdim=True)
        active = energy >= peak * 10.0 ** (-ACTIVE_THRESHOLD_DB / 10.0)
        return ((energy * active).sum(dim=-1) / active.sum(dim=-1).clamp(min=1)).sqrt()
    x = np.asarray(clean, dtype=np.float64)
    if definition == "rms":
        return np.sqrt(np.mean(np.square(x), axis=-1))
    energy = np.mean(np.square(_frames(x, rate)), axis=-1)
    peak = np.max(energy, axis=-1, keepdims=True)
    active = energy >= peak * 10.0 ** (-ACTIVE_THRESHOLD_DB / 10.0)
    return np.sqrt(np.sum(energy * active, axis=-1) / np.maximum(np.sum(active, axis=-1), 1))


def noise_gain(clean: Array, noise: Array, snr_db: float | Array, definition: str = "rms", rate: int = 16000) -> Array:
    """Per-row factor g such that clean + g * noise has the target SNR (float64, shape (N,) or ())."""
    level = speech_level(clean, definition, rate)
    if isinstance(clean, torch.Tensor):
        n_rms = noise.to(torch.float64).square().mean(dim=-1).sqrt()
        # a scalar SNR is filled on the device: a copy from host memory would make the host wait for the device's
        # queue (a GPU run queues the next cell's forwards while it scores the previous cell)
        if isinstance(snr_db, int | float):
            snr = torch.full((), float(snr_db), dtype=torch.float64, device=clean.device)
        else:
            snr = torch.as_tensor(snr_db, dtype=torch.float64, device=clean.device)
        level = level.clamp(min=LEVEL_FLOOR)
        return torch.where(n_rms > 0, level / (n_rms.clamp(min=1e-300) * 10.0 ** (snr / 20.0)), 0.0)
    n_rms = np.sqrt(np.mean(np.square(np.asarray(noise, dtype=np.float64)), axis=-1))
    snr = np.asarray(snr_db, dtype=np.float64)
    level = np.maximum(level, LEVEL_FLOOR)
    return np.where(n_rms > 0, level / (np.maximum(n_rms, 1e-300) * 10.0 ** (snr / 20.0)), 0.0)


def mix(clean: Array, noise: Array, snr_db: float | Array, definition: str = "rms", rate: int = 16000) -> Array:
    """clean + g * noise, row by row, at `snr_db` (scalar or one value per row).

    clean and noise: (N, T) or (T,), both numpy or both torch (any device; the result is on it).
    Output dtype = clean's dtype; the gain is computed in float64 for the 0.01 dB guarantee.
    """
    if isinstance(clean, torch.Tensor) != isinstance(noise, torch.Tensor):
        raise TypeError("clean and noise must both be numpy arrays or both torch tensors")
    if clean.shape != noise.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and noise {tuple(noise.shape)} differ in shape")
    gain = noise_gain(clean, noise, snr_db, definition, rate)
    if isinstance(clean, torch.Tensor):
        g = gain.to(clean.dtype if clean.is_floating_point() else torch.float32)
        return clean + g[..., None] * noise.to(g.dtype)
    dtype = clean.dtype if np.issubdtype(clean.dtype, np.floating) else np.float32
    # A float32 gain costs < 1e-6 dB and avoids a float64 copy of the whole clip set.
    g = np.asarray(gain, dtype=dtype)
    return clean.astype(dtype, copy=False) + g[..., None] * noise.astype(dtype, copy=False)


def achieved_snr(clean: Array, mixture: Array, definition: str = "rms", rate: int = 16000) -> Array:
    """Measured SNR in dB of a mixture, with the noise taken as mixture - clean (float64)."""
    if isinstance(clean, torch.Tensor):
        noise = mixture.to(torch.float64) - clean.to(torch.float64)
        n_rms = noise.square().mean(dim=-1).sqrt()
        return 20.0 * torch.log10(speech_level(clean, definition, rate) / n_rms)
    noise = np.asarray(mixture, dtype=np.float64) - np.asarray(clean, dtype=np.float64)
    n_rms = np.sqrt(np.mean(np.square(noise), axis=-1))
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(speech_level(clean, definition, rate) / n_rms)
