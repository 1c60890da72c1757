"""The embedded default data: a small keyword set synthesised offline with espeak-ng.

espeak-ng comes from the `espeakng-loader` wheel (libespeak-ng.so plus its voice data), driven
through ctypes. The set has the canonical 12-folder test-set layout, so `load_clipset` reads it as
protocol v2-12-official. Everything is a function of the seed: speaker pool, words, voice
parameters, placement, gain, noise floor and the `_silence_` noises; clip (class c, index n) draws
from its own generator seeded by (seed, c, n), so its content does not depend on the others.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from kwsbench.audio import fix_length, resample
from kwsbench.data.clipset import CLIP_SAMPLES, KEYWORDS_10, SAMPLE_RATE
from kwsbench.errors import BadInputError, MissingDependencyError
from kwsbench.paths import data_home, make_folder

UNKNOWN_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four", "happy", "house",
    "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "visual", "wow", "zero",
)
ACCENTS = ("en-us", "en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-us-nyc")
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Annie", "Andy", "john", "linda", "steph", "robert", "paul", "edward",
)
DEFAULT_PER_CLASS = 40
DEFAULT_SPEAKERS = 48
# Bump when the generator changes, so ensure_default_dataset regenerates rather than reusing old audio.
SYNTH_VERSION = 1

# espeak-ng C API constants (speak_lib.h): output mode, parameter ids, text flags.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE = 1, 2, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Speaker:
    """One synthetic voice: accent + variant, and its pitch / range / rate (words per minute) / gain."""

    accent: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int
    gain_db: float

    @property
    def id(self) -> str:
        """8 hex digits, the shape of a GSC speaker hash, so `parse_speaker` finds it."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:8]


class Espeak:
    """The espeak-ng library through ctypes. The C library keeps its voice state globally, so create one
    per process (the worker of `synthesize_in_fresh_process`) and use it from one thread at a time."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:
            raise MissingDependencyError(
                "the synthetic data set needs espeak-ng from the espeakng-loader wheel: pip install espeakng-loader"
            ) from err
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if self.rate <= 0:
            raise MissingDependencyError("espeak-ng failed to initialise (espeakng-loader data path unusable)")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the C side holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n: int, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(self, text: str, speaker: Speaker) -> np.ndarray:
        """float32 samples at `self.rate` (22,050 Hz) of `text` spoken by `speaker`."""
        lib = self.lib
        if lib.espeak_SetVoiceByName(f"{speaker.accent}+{speaker.variant}".encode()) != 0:
            raise BadInputError(f"espeak-ng has no voice {speaker.accent}+{speaker.variant}")
        lib.espeak_SetParameter(_P_RATE, speaker.rate, 0)
        lib.espeak_SetParameter(_P_PITCH, speaker.pitch, 0)
        lib.espeak_SetParameter(_P_RANGE, speaker.pitch_range, 0)
        lib.espeak_SetParameter(_P_VOLUME, 100, 0)
        self._chunks = []
        data = text.encode()
        lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / np.float32(32768.0)


def make_speakers(seed: int, count: int = DEFAULT_SPEAKERS) -> list[Speaker]:
    """A deterministic pool of distinct voices."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EA]))
    speakers: dict[str, Speaker] = {}
    while len(speakers) < count:
        s = Speaker(
            accent=ACCENTS[int(rng.integers(len(ACCENTS)))],
            variant=VARIANTS[int(rng.integers(len(VARIANTS)))],
            pitch=int(rng.integers(20, 81)),
            pitch_range=int(rng.integers(20, 81)),
            rate=int(rng.integers(120, 231)),
            gain_db=float(np.round(rng.uniform(-18.0, 0.0), 1)),
        )
        speakers.setdefault(s.id, s)
    return list(speakers.values())


def _place(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Trim espeak's leading/trailing silence, then put the word at a random offset in one second."""
    active = np.flatnonzero(np.abs(speech) > 1e-3)
    if active.size:
        speech = speech[active[0]:active[-1] + 1]
    speech = speech[:CLIP_SAMPLES]
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    start = int(rng.integers(0, CLIP_SAMPLES - speech.size + 1))
    out[start:start + speech.size] = speech
    return out


def _resample_all(waves: list[np.ndarray], rate: int) -> list[np.ndarray]:
    """One batched call (zero-padded to a common length), so the sinc kernel is built once, not per clip;
    the padding lies after each clip's end and is cut off again."""
    if not waves:
        return []
    batch = np.zeros((len(waves), max(w.size for w in waves)), dtype=np.float32)
    for k, w in enumerate(waves):
        batch[k, :w.size] = w
    out = np.asarray(resample(batch, rate, SAMPLE_RATE))
    return [out[k, :-(-w.size * SAMPLE_RATE // rate)] for k, w in enumerate(waves)]


def _speech_clip(x: np.ndarray, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """Place a 16 kHz word in one second at the speaker's gain, over a faint noise floor."""
    x = _place(np.asarray(x, dtype=np.float32), rng)
    peak = float(np.abs(x).max(initial=0.0))
    if peak > 0:
        x = x * np.float32(0.7 / peak * 10 ** (speaker.gain_db / 20))
    # a faint noise floor, as in real recordings; digital silence breaks log / PCEN front ends
    floor = 10 ** (rng.uniform(-75.0, -55.0) / 20)
    return (x + floor * rng.standard_normal(CLIP_SAMPLES)).astype(np.float32)


def synthesize_in_fresh_process(requests: list[tuple[str, Speaker]]) -> tuple[int, list[np.ndarray]]:
    """Speak each (text, speaker) in order in a new Python process: (rate, waveforms).

    espeak-ng's output depends on state left by earlier utterances (prosody, and breath noise from the
    C library's rand(), which other libraries' threads such as torch's also call). A fresh process that
    loads nothing but numpy and espeak-ng and runs the same requests in the same order reproduces them
    bit for bit, whatever the caller did before.
    """
    payload = json.dumps([[text, asdict(sp)] for text, sp in requests]).encode()
    code = "from kwsbench.data.synth import _worker_main; _worker_main()"
    proc = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, check=False)
    if proc.returncode != 0:
        raise MissingDependencyError(f"the espeak-ng worker failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    with np.load(io.BytesIO(proc.stdout), allow_pickle=False) as z:
        return int(z["rate"]), [z[f"c{k}"] for k in range(len(requests))]


def _worker_main() -> None:
    """Entry of the worker process: JSON requests on stdin, an .npz of waveforms on stdout."""
    if "torch" in sys.modules:
        raise RuntimeError("the espeak worker must not load torch (its threads would perturb espeak's rand())")
    requests = [(text, Speaker(**sp)) for text, sp in json.loads(sys.stdin.buffer.read())]
    engine = Espeak()
    libc = ctypes.CDLL(None)
    libc.srand.argtypes = [ctypes.c_uint]
    arrays: dict[str, np.ndarray] = {}
    for k, (text, speaker) in enumerate(requests):
        # this process is ours alone, so reseeding libc's and espeak's generators disturbs no one
        libc.srand(k + 1)
        engine.lib.espeak_ng_SetRandSeed(ctypes.c_long(k + 1))
        arrays[f"c{k}"] = engine.say(text, speaker)
    buf = io.BytesIO()
    np.savez(buf, rate=np.int64(engine.rate), **arrays)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()


def _colored_noise(rng: np.random.Generator, exponent: float) -> np.ndarray:
    """1/f^exponent noise (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(CLIP_SAMPLES))
    f = np.fft.rfftfreq(CLIP_SAMPLES, 1 / SAMPLE_RATE)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (exponent / 2), n=CLIP_SAMPLES)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _silence_clip(rng: np.random.Generator) -> np.ndarray:
    """Background noise of a random colour and level (from near-digital silence to loud hum-like noise)."""
    x = _colored_noise(rng, float(rng.choice([0.0, 1.0, 2.0])))
    if rng.random() < 0.3:  # a mains-hum-like tone on top, as in many room recordings
        t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
        x = x + rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t + rng.uniform(0, 6.28))
    level = 10 ** (rng.uniform(-70.0, -15.0) / 20)
    return np.clip(x * level / (np.sqrt(np.mean(x**2)) + 1e-12), -1.0, 32767 / 32768).astype(np.float32)


def generate(out: str | Path, seed: int = 0, per_class: int = DEFAULT_PER_CLASS, fmt: str = "flac",
             n_speakers: int = DEFAULT_SPEAKERS) -> Path:
    """Write the synthetic set into `out` (canonical 12-folder layout, 16 kHz, 1 s, 16-bit)."""
    if per_class < 1:
        raise BadInputError(f"per_class must be at least 1, not {per_class}")
    if fmt not in ("flac", "wav"):
        raise BadInputError(f"format must be flac or wav, not {fmt!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BadInputError(f"{out} is not empty; synthesise into a new folder so no stale clips mix in")
    speakers = make_speakers(seed, n_speakers)
    classes = (*KEYWORDS_10, "_silence_", "_unknown_")
    # plan every clip first (names, words, voices), then synthesise all speech in one fixed order
    plan: list[tuple[Path, np.random.Generator, str, Speaker | None]] = []
    for c, folder in enumerate(classes):
        make_folder(out / folder, f"synthetic set in {out}")
        used: dict[str, int] = {}
        for n in range(per_class):
            rng = np.random.default_rng(np.random.SeedSequence([seed, c, n]))
            if folder == "_silence_":
                plan.append((out / folder / f"{n:04d}.{fmt}", rng, "", None))
                continue
            word = folder if folder != "_unknown_" else UNKNOWN_WORDS[int(rng.integers(len(UNKNOWN_WORDS)))]
            speaker = speakers[int(rng.integers(len(speakers)))]
            tag = f"{word}_{speaker.id}"
            k = used.get(tag, 0)
            used[tag] = k + 1
            prefix = f"{word}_" if folder == "_unknown_" else ""
            plan.append((out / folder / f"{prefix}{speaker.id}_nohash_{k}.{fmt}", rng, word, speaker))
    rate, speech = synthesize_in_fresh_process([(w, s) for _, _, w, s in plan if s is not None])
    spoken = iter(_resample_all(speech, rate))
    clips = [(path, _silence_clip(rng) if speaker is None else _speech_clip(next(spoken), speaker, rng))
             for path, rng, _word, speaker in plan]
    # FLAC encoding was most of the synthesis time (2.4 ms a clip); libsndfile runs without the GIL, so the
    # files are written on two threads (each file's bytes are the same whichever thread writes it)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda item: _write(item[0], item[1], fmt), clips))
    (out / "README.txt").write_text(
        f"kwsbench synthetic keyword set (espeak-ng), seed {seed}, {per_class} clips per class, "
        f"generator version {SYNTH_VERSION}. Speaker ids are hashes of the voice parameters.\n"
    )
    return out


def _write(path: Path, x: np.ndarray, fmt: str) -> None:
    x = fix_length(x, CLIP_SAMPLES)
    sf.write(str(path), x, SAMPLE_RATE, subtype="PCM_16", format=fmt.upper())


def ensure_default_dataset(seed: int = 0) -> Path:
    """The default synthetic set under data_home()/synth, generated on first use.

    Generation goes to a temporary folder beside the target, renamed into place when complete, so
    an interrupted run never leaves a half set that later runs would take for the real one.
    """
    target = data_home() / "synth" if seed == 0 else data_home() / f"synth-seed{seed}"
    stamp = target / ".kwsbench-synth"
    expected = f"version={SYNTH_VERSION} seed={seed} per_class={DEFAULT_PER_CLASS}\n"
    if stamp.is_file() and stamp.read_text() == expected:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    except OSError as err:  # an unwritable or impossible data home: say which, not a traceback
        raise BadInputError(f"cannot write the embedded synthetic set to {target.parent} ({err.strerror}); set "
                            "KWSBENCH_DATA to a folder you can write") from err
    try:
        generate(tmp, seed=seed, per_class=DEFAULT_PER_CLASS)
        (tmp / ".kwsbench-synth").write_text(expected)
        if stamp.is_file() and stamp.read_text() == expected:
            return target  # another process (a torchrun rank) finished first and may be reading it: keep it
        if target.exists():
            shutil.rmtree(target)  # an older version or an incomplete copy
        try:
            os.rename(tmp, target)
        except OSError:
            # another process finished first; its set is identical (same seed), so use it
            if not (stamp.is_file() and stamp.read_text() == expected):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
