"""Per-utterance noise generators, one function per definition kind.

Each generator takes a numpy Generator that belongs to exactly one (seed, source, utterance)
and draws everything from it in a fixed order, so the waveform is a pure function of those three
values (plus, for babble and recordings, the talker pool and the files, which are keyed too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np


def stable_hash(text: str) -> int:
    """First 8 bytes of sha256(UTF-8) as an unsigned integer: stable across runs and machines."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def utterance_rng(seed: int, source_name: str, utterance_id: str) -> np.random.Generator:
    """The generator for one (seed, source, utterance) triple (DESIGN.md contract 1)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), stable_hash(source_name),
                                                         stable_hash(utterance_id)]))


@dataclass
class RenderContext:
    """What a generator may need besides its RNG.

    pool_audio / pool_speakers / pool_ids: the babble talker pool, sorted by utterance id so that
    the choice never depends on the clip set's row order. recordings: decoded noise files at `rate`.
    segments / segment_speakers: speech with its leading and trailing silence cut, at unit RMS: the clip
    set's non-target words (babble-streams) or the speech engine's sentences (babble-tts), in a fixed order.
    """

    rate: int = 16000
    length: int = 16000
    pool_audio: np.ndarray | None = None
    pool_speakers: tuple[str, ...] = ()
    pool_ids: tuple[str, ...] = ()
    recordings: list[np.ndarray] = field(default_factory=list)
    segments: list[np.ndarray] = field(default_factory=list)
    segment_speakers: tuple[str, ...] = ()
    segment_ids: tuple[str, ...] = ()  # what each segment is (utterance id, or voice/sentence number)


@dataclass
class RenderInfo:
    """How one waveform was made, for tests and for `noise show`: talker rows or (file, offset)."""

    talkers: list[int] = field(default_factory=list)  # pool rows (babble-clips) or segments (streams, tts)
    streams: int = 0  # concurrent talkers of babble-streams / babble-tts
    segment: tuple[int, int] | None = None


def _normalise(x: np.ndarray, how: str) -> np.ndarray:
    # Scale does not matter after SNR mixing; unit RMS keeps rendered files comparable, peak 0.7
    # is what the published generators return.
    if how == "peak":
        peak = float(np.max(np.abs(x)))
        return x * (0.7 / peak) if peak > 0 else x
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return x / rms if rms > 0 else x


# What every utterance of a source shares (time axes, spectral masks, windows, fixed tones) is computed
# once per process: rendering a bank repeats it thousands of times. The cached arrays are read-only and
# the arithmetic on them is unchanged, so every waveform keeps its bits (no BANK_FORMAT change).

def _frozen(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x


@lru_cache(maxsize=32)
def time_axis(n: int, rate: int) -> np.ndarray:
    """Sample times in seconds, arange(n) / rate."""
    return _frozen(np.arange(n) / rate)


@lru_cache(maxsize=32)
def _spectral_gain(n: int, exponent: float, keep_dc: bool, rate: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    freqs[0] = 1.0
    gain = freqs ** (-exponent / 2.0)
    if not keep_dc:
        gain[0] = 0.0
    return _frozen(gain)


@lru_cache(maxsize=32)
def _band_mask(n: int, low: float, high: float, smooth_bins: int, rate: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    mask = ((freqs >= low) & (freqs <= high)).astype(np.float64)
    if smooth_bins > 1:
        mask = np.convolve(mask, np.ones(smooth_bins) / smooth_bins, mode="same")
    return _frozen(mask)


@lru_cache(maxsize=8192)
def _hann_burst(length: int) -> np.ndarray:
    return _frozen(np.hanning(length))


@lru_cache(maxsize=32)
def _zero_phase_chord(n: int, rate: int, freqs: tuple[float, ...]) -> np.ndarray:
    """sum of sin(2 pi f t) over `freqs`, added left to right, on the clip's time axis."""
    t = time_axis(n, rate)
    total = np.sin(2 * np.pi * freqs[0] * t)
    for f in freqs[1:]:
        total = total + np.sin(2 * np.pi * f * t)
    return _frozen(total)


def shaped_noise(rng: np.random.Generator, n: int, exponent: float, keep_dc: bool, rate: int = 16000) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent, shaped in the FFT domain.

    keep_dc=True reproduces the published pink generator (the DC bin's frequency set to 1, so DC
    passes unscaled); False removes DC, which a physical noise has none of.
    """
    white = rng.standard_normal(n)
    if exponent == 0:
        return white
    return np.fft.irfft(np.fft.rfft(white) * _spectral_gain(n, float(exponent), bool(keep_dc), rate), n)


def band_noise(rng: np.random.Generator, n: int, band: list[float], smooth_bins: int, rate: int) -> np.ndarray:
    """White noise through an FFT band mask whose edges are smoothed by a moving average."""
    white = rng.standard_normal(n)
    mask = _band_mask(n, float(band[0]), float(band[1]), int(smooth_bins), rate)
    return np.fft.irfft(np.fft.rfft(white) * mask, n)


def gen_white(rng: np.random.Generator, p: dict[str, Any], ctx: RenderContext, info: RenderInfo) -> np.ndarray:
    return rng.standard_normal(ctx.length)


def gen_colored(rng: np.random.Generator, p: dict[str, Any], ctx: RenderContext, info: RenderInfo) -> np.ndarray:
    return shaped_noise(rng, ctx.length, p["exponent"], p["keep_dc"], ctx.rate)


def gen_factory(rng: np.random.Generator, p: dict[str, Any], ctx: RenderContext, info: RenderInfo) -> np.ndarray:
    n, rate = ctx.length, ctx.rate
    t = time_axis(n, rate)
    out = np.zeros(n)
    for h in range(1, p["hum_harmonics"] + 1):
        # Decaying harmonics: amplitude * base / (h * base) = amplitude / h.
        out += (p["hum_amplitude"] / h) * np.sin(2 * np.pi * p["hum_base_hz"] * h * t + rng.uniform(0, 2 * np.pi))
    out += p["rumble_gain"] * band_noise(rng, n, p["rumble_band_hz"], p["rumble_smooth_bins"], rate)
    lo, hi = p["impact_count"]
    for _ in range(int(rng.integers(lo, hi + 1))):
        start = int(rng.integers(0, max(1, n - p["impact_start_margin"])))
        length = int(rng.integers(p["impact_length"][0], p["impact_length"][1] + 1))
        amp = rng.uniform(*p["impact_amplitude"])
        burst = amp * _hann_burst(length) * rng.standard_normal(length)
        end = min(n, start + length)
        out[start:end] += burst[: end - start]
    pink = shaped_noise(rng, n, 1.0, p["pink_keep_dc"], rate)
    peak = float(np.max(np.abs(pink)))
    out += p["pink_gain"] * (pink / peak if peak > 0 else pink)
    return out


def gen_street(rng: np.random.Generator, p: dict[str, Any], ctx: RenderContext, info: RenderInfo) -> np.ndarray:
    n, rate = ctx.length, ctx.rate
    t = time_axis(n, rate)
    out = p["rumble_gain"] * band_noise(rng, n, p["rumble_band_hz"], p["rumble_smooth_bins"], rate)
    lo, hi = p["horn_count"]
    for _ in range(int(rng.integers(lo, hi + 1))):
        freq = rng.uniform(*p["horn_hz"])
        length = int(rng.integers(p["horn_length"][0], p["horn_length"][1] + 1))
        amp = rng.uniform(*p["horn_amplitude"])
        start = int(rng.integers(0, max(1, n - p["horn_start_margin"])))
        end = min(n, start + length)
        tone = amp * _hann_burst(length) * np.sin(2 * np.pi * freq * np.arange(length) / rate)
        out[start:end] += tone[: end - start]
    out += p["road_gain"] * rng.standard_normal(n)
    f_e = rng.uniform(*p["engine_hz"])
    phases = rng.uniform(0, 2 * np.pi, size=2) if p["engine_random_phase"] else np.zeros(2)
    g1, g2 = p["engine_gains"]
    out += g1 * np.sin(2 * np.pi * f_e * t + phases[0]) + g2 * np.sin(2 * np.pi * 2 * f_e * t + phases[1])
    return out


def gen_babble_synthetic(
    rng: np.random.Generator, p: dict[str, Any], ctx: RenderContext, info: RenderInfo
) -> np.ndarray:
    """The published sinusoid 'babble': a tonal chord per talker, not speech."""
    n, rate = ctx.length, ctx.rate
    out = np.zeros(n)
    f_low, f_high = p["formants_hz"]
    chord = _zero_phase_chord(n, rate, (float(f_low), float(p["formant_mid_hz"]), float(f_high)))
    lo, hi = p["talker_count"]
    for _ in range(int(rng.integers(lo, hi + 1))):
        f0 = rng.uniform(*p["f0_hz"])
        start = int(rng.uniform(*p["onset_s"]) * rate)
        length = int(rng.uniform(*p["duration_s"]) * rate)
        end = min(n, start + length)
        if end <= start:
            continue
        # Zero-phase tones on the clip's own time axis, evaluated only under the envelope; the fixed
        # formant chord is the same for every talker, so it comes precomputed.
        t = time_axis(n, rate)[start:end]
        voice = (p["f0_gain"] * np.sin(2 * np.pi * f0 * t) + p["f0_harmonic_gain"] * np.sin(4 * np.pi * f0 * t)
                 + p["formant_gain"] * chord[start:end])
        out[start:end] += voice * _hann_burst(length)[: end - start]
    return out


def eligible_talkers(ctx: RenderContext, target_speaker: str, pool: str) -> np.ndarray:
    """Pool rows whose speaker is known and differs from the target's ("" = unknown: never used)."""
    speakers = np.asarray(ctx.pool_speakers, dtype=object)
    ok = (speakers != "") & (speakers != target_speaker)
    if pool == "unknown-only":
        ok &= np.asarray([uid.startswith("_unknown_/") for uid in ctx.pool_ids], dtype=bool)
    return np.flatnonzero(ok)


def gen_babble(
    rng: np.random.Generator, p: dict[str, Any], ctx: RenderContext, info: RenderInfo, target_speaker: str = ""
) -> np.ndarray:
    """Real-speech babble: K talkers from the pool, each RMS-normalised and circularly shifted by a
    random offset (so a word can land anywhere, also across the clip edge), then summed."""
    if ctx.pool_audio is None:
        raise ValueError("babble needs a talker pool (a clip set)")
    rows = eligible_talkers(ctx, target_speaker, p["pool"])
    lo, hi = p["talker_count"]
    k = int(rng.integers(lo, hi + 1))
    if len(rows) < k:
        raise ValueError(f"babble needs {k} talkers other than speaker {target_speaker!r}; the pool has {len(rows)}")
    chosen = rng.choice(rows, size=k, replace=False)
    offsets = rng.integers(0, ctx.length, size=k)
    out = np.zeros(ctx.length)
    for row, off in zip(chosen, offsets, strict=True):
        talker = ctx.pool_audio[row].astype(np.float64)
        out += np.roll(_normalise(talker, "rms"), int(off))
    info.talkers = [int(r) for r in chosen]
    return out


FRAME_S = 0.02  # frames for finding where speech starts and ends
ACTIVE_DB = 30.0  # a frame is speech when it is within this many dB of the loudest frame


MIN_SEGMENTS = 4


def trim_to_speech(x: np.ndarray, rate: int) -> np.ndarray:
    """From the first to the last frame within ACTIVE_DB of the loudest, at unit RMS (float64); a clip with
    no energy gives an empty array."""
    x = np.asarray(x, dtype=np.float64)
    hop = max(1, int(FRAME_S * rate))
    n = len(x) // hop
    if n == 0:
        return np.zeros(0)
    energy = np.square(x[: n * hop]).reshape(n, hop).mean(axis=1)
    if energy.max() <= 0:
        return np.zeros(0)
    active = np.flatnonzero(energy >= energy.max() * 10 ** (-ACTIVE_DB / 10))
    seg = x[active[0] * hop:(active[-1] + 1) * hop]
    return _normalise(seg, "rms")


def speech_stream(rng: np.random.Generator, segments: list[np.ndarray], rows: np.ndarray, length: int,
                  rate: int, pause_s: list[float]) -> tuple[np.ndarray, list[int]]:
    """`length` samples of continuous speech: segments drawn from `rows` one after another with a pause of
    pause_s (uniform) between them, entered at a uniform point of the first one (speech from the first sample)."""
    out = np.zeros(length)
    used: list[int] = []
    row = int(rng.choice(rows))
    pos = -int(rng.integers(0, max(1, len(segments[row]))))
    while pos < length:
        seg = segments[row]
        lo, hi = max(0, pos), min(length, pos + len(seg))
        if hi > lo:
            out[lo:hi] = seg[lo - pos:hi - pos]
            used.append(row)
        pos += len(seg) + int(rng.uniform(*pause_s) * rate)
        row = int(rng.choice(rows))
    return out, used


def gen_babble_streams(rng: np.random.Generator, p: dict[str, Any], ctx: RenderContext, info: RenderInfo,
                       target_speaker: str = "") -> np.ndarray:
    """Babble: K concurrent streams of continuous speech, each a chain of segments (words of the clip set's
    non-target classes, or sentences of the speech engine) never spoken by the target's speaker; each
    stream at unit RMS, so the talkers are equally loud."""
    speakers = np.asarray(ctx.segment_speakers, dtype=object)
    ok = (speakers != "") & (speakers != target_speaker)
    ok &= np.asarray([len(s) > 0 for s in ctx.segments], dtype=bool)
    rows = np.flatnonzero(ok)
    lo, hi = p["talker_count"]
    k = int(rng.integers(lo, hi + 1))
    if len(rows) < MIN_SEGMENTS:  # streams may share words, but a pool of one word is no babble
        who = f"speaker {target_speaker!r}" if target_speaker else "the target clip's speaker"
        raise ValueError(f"babble needs at least {MIN_SEGMENTS} speech segments (non-target words) not spoken by "
                         f"{who}; this clip set has {len(rows)}. Run it on more clips (a larger --per-class, or "
                         "without it), or use `--noise babble-tts`, which needs none of the clip set's words")
    voices = sorted(set(speakers[rows]))
    if p["stream_voice"] == "one" and len(voices) < k:
        raise ValueError(f"babble needs {k} voices other than {target_speaker!r}; the pool has {len(voices)}")
    chosen = rng.choice(len(voices), size=k, replace=False) if p["stream_voice"] == "one" else [None] * k
    out = np.zeros(ctx.length)
    info.streams = k
    for voice in chosen:
        mine = rows if voice is None else rows[speakers[rows] == voices[int(voice)]]
        stream, used = speech_stream(rng, ctx.segments, mine, ctx.length, ctx.rate, p["pause_s"])
        out += _normalise(stream, "rms")
        info.talkers.extend(used)
    return out


def gen_recording(rng: np.random.Generator, p: dict[str, Any], ctx: RenderContext, info: RenderInfo) -> np.ndarray:
    """A segment of one of the files: file chosen with probability proportional to the number of
    possible segment starts in it, so every start position over all files is equally likely."""
    starts = np.array([len(r) - ctx.length + 1 for r in ctx.recordings], dtype=np.float64)
    f = int(rng.choice(len(starts), p=starts / starts.sum()))
    off = int(rng.integers(0, int(starts[f])))
    info.segment = (f, off)
    return ctx.recordings[f][off: off + ctx.length].astype(np.float64)


GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "white": gen_white,
    "colored": gen_colored,
    "factory": gen_factory,
    "street": gen_street,
    "babble-synthetic": gen_babble_synthetic,
    "babble-clips": gen_babble,
    "babble-streams": gen_babble_streams,
    "babble-tts": gen_babble_streams,
    "recording": gen_recording,
}
# generators that exclude the target utterance's speaker
_SPEAKER_AWARE = {"babble-clips", "babble-streams", "babble-tts"}


def render_one(
    kind: str, params: dict[str, Any], rng: np.random.Generator, ctx: RenderContext, target_speaker: str = ""
) -> tuple[np.ndarray, RenderInfo]:
    """One float32 waveform of ctx.length samples, normalised as the definition says."""
    info = RenderInfo()
    if kind in _SPEAKER_AWARE:
        x = GENERATORS[kind](rng, params, ctx, info, target_speaker)
    else:
        x = GENERATORS[kind](rng, params, ctx, info)
    return _normalise(x, params["normalise"]).astype(np.float32), info
