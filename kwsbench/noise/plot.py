"""A figure of a noise: long-term spectrum (Welch, dB) over a log frequency axis, and a spectrogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def long_term_spectrum(audio: np.ndarray, rate: int, nperseg: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz, power spectral density in dB) by Welch's method."""
    from scipy.signal import welch

    freqs, psd = welch(audio.astype(np.float64), fs=rate, nperseg=min(nperseg, len(audio)))
    return freqs, 10.0 * np.log10(np.maximum(psd, 1e-20))


def plot_noise(audio: np.ndarray, rate: int, title: str, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig = noise_figure(audio, rate, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def noise_figure(audio: np.ndarray, rate: int, title: str):
    """The figure `plot_noise` writes: spectrum above, spectrogram with its dB colour bar below."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a display
    import matplotlib.pyplot as plt

    freqs, psd_db = long_term_spectrum(audio, rate)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), constrained_layout=True)
    keep = freqs > 0
    ax1.semilogx(freqs[keep], psd_db[keep], lw=1)
    ax1.set(title=f"{title}: long-term spectrum", xlabel="frequency (Hz)", ylabel="PSD (dB/Hz)")
    ax1.grid(True, which="both", alpha=0.3)
    *_, image = ax2.specgram(audio, NFFT=512, Fs=rate, noverlap=384, cmap="magma")
    ax2.set(title="spectrogram", xlabel="time (s)", ylabel="frequency (Hz)")
    top = image.get_clim()[1]
    image.set_clim(top - 80.0, top)  # an 80 dB range: the few near-empty bins no longer wash the colours out
    fig.colorbar(image, ax=ax2, label="power (dB/Hz)")  # specgram draws 10 log10 of its PSD
    return fig
