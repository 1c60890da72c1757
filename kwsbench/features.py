"""Front-end pieces: STFT magnitude, mel filterbanks, log-mel, MFCC, PCEN, instance norm.

Every variant is named and exact, because published checkpoints depend on details that
differ between implementations (window periodicity, padding mode, magnitude vs power,
how mel edges are rounded to FFT bins, the log offset). The numbers here follow
reference/nc-ssm.md §5.1-5.3 for the NC-SSM family and torchaudio's filterbanks otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

MEL_KINDS = ("htk-floor-bins", "htk", "slaney")


def hann_window(length: int, periodic: bool = True, device: torch.device | str | None = None) -> torch.Tensor:
    """0.5 - 0.5 cos(2 pi n / L) (periodic) or / (L - 1) (symmetric), float32."""
    return torch.hann_window(length, periodic=periodic, dtype=torch.float32, device=device)


def stft_magnitude(
    x: torch.Tensor,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: torch.Tensor | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    power: float = 1.0,
    exact: bool = True,
) -> torch.Tensor:
    """|STFT(x)|**power, (B, n_fft // 2 + 1, frames), one-sided, not normalised.

    exact=False: from re² + im² (within 1 ulp of hypot, 2.7x faster on the CPU; power 2 skips the root), for
    the CPU inference paths of the convolutional cards (kwsbench/models/conv_inference.py) and of the NC-SSM /
    NanoMamba front end.

    A window shorter than n_fft is centred inside the frame by torch (zeros on both sides),
    which is what the NC-SSM CNN front end (win 400 in 512) relies on.
    """
    win_length = win_length or n_fft
    if window is None:
        window = hann_window(win_length, device=x.device)
    spec = torch.stft(
        x.float(),
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window.to(x.device),
        center=center,
        pad_mode=pad_mode,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    if not exact:
        energy = torch.addcmul(spec.real * spec.real, spec.imag, spec.imag)  # one pass fewer than mul, mul, add
        return energy if power == 2.0 else energy.pow_(power / 2) if power != 1.0 else energy.sqrt_()
    # hypot of the parts equals complex abs bit for bit here and runs ~2x faster on the CPU
    mag = torch.hypot(spec.real, spec.imag)
    return mag if power == 1.0 else mag.pow(power)


def hz_to_mel_htk(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz_htk(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank_floor_bins(
    n_fft: int = 512, n_mels: int = 40, sample_rate: int = 16000, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """HTK-mel triangles on FFT bins b = floor((n_fft + 1) f / rate), no area normalisation.

    The NC-SSM repository's `mel_fb` (reference §5.2): computed in float64, cast to float32,
    it reproduces the checkpoint buffer bit for bit. Shape (n_mels, n_fft // 2 + 1).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    mels = np.linspace(hz_to_mel_htk(f_min), hz_to_mel_htk(f_max), n_mels + 2)
    bins = np.floor((n_fft + 1) * mel_to_hz_htk(mels) / sample_rate).astype(np.int64)
    fb = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float64)
    for i in range(n_mels):
        lo, mid, hi = bins[i], bins[i + 1], bins[i + 2]
        for j in range(lo, mid):
            fb[i, j] = (j - lo) / max(mid - lo, 1)
        for j in range(mid, hi):
            fb[i, j] = (hi - j) / max(hi - mid, 1)
    return torch.from_numpy(fb.astype(np.float32))


def mel_filterbank(
    kind: str = "htk-floor-bins",
    n_fft: int = 512,
    n_mels: int = 40,
    sample_rate: int = 16000,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """A named mel filterbank, (n_mels, n_fft // 2 + 1) float32.

    "htk-floor-bins": the NC-SSM repository's matrix; "htk" / "slaney": torchaudio's
    melscale_fbanks (the librosa-style continuous triangles; "slaney" with area normalisation).
    """
    if kind == "htk-floor-bins":
        return mel_filterbank_floor_bins(n_fft, n_mels, sample_rate, f_min, f_max)
    if kind not in MEL_KINDS:
        raise ValueError(f"unknown mel filterbank kind {kind!r}; choose one of {MEL_KINDS}")
    import torchaudio.functional as AF

    f_max = sample_rate / 2 if f_max is None else f_max
    fb = AF.melscale_fbanks(
        n_freqs=n_fft // 2 + 1,
        f_min=f_min,
        f_max=f_max,
        n_mels=n_mels,
        sample_rate=sample_rate,
        norm="slaney" if kind == "slaney" else None,
        mel_scale=kind,
    )
    return fb.T.contiguous().float()


class LogMel(nn.Module):
    """Raw audio (B, samples) -> log(mel · |STFT|**power + log_offset), (B, n_mels, frames).

    Defaults are the NC-SSM CNN front end (reference §5.3 with win_length 400). The window and
    filterbank are non-persistent buffers: the CNN checkpoints carry no front-end tensors, and
    `set_sample_rate` rebuilds both. `log="log10"` / `"db"` give the other common variants.
    """

    def __init__(
        self,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        sample_rate: int = 16000,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel: str = "htk-floor-bins",
        power: float = 1.0,
        log_offset: float = 1e-8,
        log: str = "ln",
        center: bool = True,
        pad_mode: str = "reflect",
        periodic: bool = True,
    ) -> None:
        super().__init__()
        self.n_mels, self.mel, self.power, self.log_offset, self.log = n_mels, mel, power, log_offset, log
        self.f_min, self.f_max, self.center, self.pad_mode, self.periodic = f_min, f_max, center, pad_mode, periodic
        # Durations are what stays fixed when the rate changes.
        self._durations = (n_fft / sample_rate, win_length / sample_rate, hop_length / sample_rate)
        self._configure(n_fft, win_length, hop_length, sample_rate)

    def _configure(self, n_fft: int, win_length: int, hop_length: int, sample_rate: int) -> None:
        self.n_fft, self.win_length, self.hop_length, self.sample_rate = n_fft, win_length, hop_length, sample_rate
        f_max = None if self.f_max is None else min(self.f_max, sample_rate / 2)
        fb = mel_filterbank(self.mel, n_fft, self.n_mels, sample_rate, self.f_min, f_max)
        # a rate change on a model already moved to a GPU keeps the buffers there
        device = self.mel_fb.device if hasattr(self, "mel_fb") else None
        self.register_buffer("mel_fb", fb.to(device), persistent=False)
        self.register_buffer("window", hann_window(win_length, self.periodic).to(device), persistent=False)

    def set_sample_rate(self, rate: int) -> None:
        """Same window, hop and FFT durations at the new rate (filterbank capped at the new Nyquist)."""
        n_fft, win, hop = (max(1, round(d * rate)) for d in self._durations)
        self._configure(n_fft, win, hop, rate)

    def magnitude(self, x: torch.Tensor, exact: bool = True) -> torch.Tensor:
        return stft_magnitude(
            x, self.n_fft, self.hop_length, self.win_length, self.window, self.center, self.pad_mode, self.power,
            exact,
        )

    def forward(self, x: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """exact=False: the faster magnitude of `stft_magnitude` (float rounding only)."""
        mel = torch.matmul(self.mel_fb, self.magnitude(x, exact))
        if self.log == "ln":
            return torch.log(mel + self.log_offset)
        if self.log == "log10":
            return torch.log10(mel + self.log_offset)
        if self.log == "db":
            return 10.0 * torch.log10(torch.clamp(mel, min=self.log_offset))
        raise ValueError(f"unknown log variant {self.log!r}; choose ln, log10 or db")


def instance_norm_time(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per item and band over time (B, M, T): biased variance, no affine, no running stats."""
    return F.instance_norm(x, eps=eps)


def ema_smoother(x: torch.Tensor, s: torch.Tensor | float) -> torch.Tensor:
    """M_0 = x_0; M_t = (1 - s_t) M_{t-1} + s_t x_t over the last axis (s broadcastable to x).

    A first-order recursion: exact only as a loop; T is ~100 frames so the loop is cheap.
    """
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device).expand_as(x)
    # Time-major contiguous copies: per-frame slices of the last axis would be strided.
    xs, ss = x.movedim(-1, 0).contiguous(), s.movedim(-1, 0).contiguous()
    # What does not depend on M is computed for all frames at once (the same products, so the same bits).
    keep, take = 1 - ss, ss * xs
    out = torch.empty_like(xs)
    m = xs[0]
    out[0] = m
    for t in range(1, xs.shape[0]):
        m = keep[t] * m + take[t]
        out[t] = m
    return out.movedim(0, -1)


def pcen(
    x: torch.Tensor,
    smoothed: torch.Tensor,
    alpha: torch.Tensor | float,
    delta: torch.Tensor | float,
    r: torch.Tensor | float,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-channel energy normalisation (Wang et al. 2017): (x / (eps + M)**alpha + delta)**r - delta**r.

    `smoothed` is the AGC smoother M of x (e.g. `ema_smoother`). Parameters broadcast against x.
    """
    delta = torch.as_tensor(delta, dtype=x.dtype, device=x.device)
    gain = (eps + smoothed).pow(-torch.as_tensor(alpha, dtype=x.dtype, device=x.device))
    return (x * gain + delta).pow(r) - delta.pow(r)


# Hello Edge MFCC: 40 ms window, 20 ms stride, 40 HTK mel bands 20-4000 Hz, 10 coefficients
MFCC_WINDOW_S, MFCC_HOP_S, MFCC_N_MELS, MFCC_N_COEFFS, MFCC_F_LOW, MFCC_F_HIGH = 0.040, 0.020, 40, 10, 20.0, 4000.0


class MFCC(nn.Module):
    """(B, samples) -> (B, frames, 10): the Hello Edge DS-CNN features (TensorFlow audio_ops recipe: magnitude
    spectrum, HTK-mel triangles, log, DCT-II; a close re-statement, not bit-identical). Window and hop keep
    their duration at any rate."""

    def __init__(self, sample_rate: int = 16000):
        super().__init__()
        self.set_sample_rate(sample_rate)

    def set_sample_rate(self, rate: int) -> None:
        self.sample_rate = rate
        self.win = round(MFCC_WINDOW_S * rate)
        self.hop = round(MFCC_HOP_S * rate)
        self.n_fft = 2 ** math.ceil(math.log2(self.win))
        fb = mel_filterbank("htk", self.n_fft, MFCC_N_MELS, rate, MFCC_F_LOW, min(MFCC_F_HIGH, rate / 2)).T.contiguous()
        # Non-persistent: derived from the rate, never part of a checkpoint.
        self.register_buffer("fbank", fb, persistent=False)
        self.register_buffer("window", hann_window(self.win, periodic=True), persistent=False)
        dct = torchaudio.functional.create_dct(MFCC_N_COEFFS, MFCC_N_MELS, norm="ortho")
        self.register_buffer("dct", dct, persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # Frames of the window length (not of n_fft), zero-padded to n_fft: 49 frames per second, as TF.
        frames = audio.float().unfold(-1, self.win, self.hop) * self.window.to(audio.device)
        spec = torch.fft.rfft(frames, n=self.n_fft).abs()  # (B, frames, bins)
        mel = torch.matmul(spec, self.fbank.to(audio.device))  # (B, frames, mels)
        return torch.matmul(torch.log(mel.clamp_min(1e-12)), self.dct.to(audio.device))
