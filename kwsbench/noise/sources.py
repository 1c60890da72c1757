"""Finding noise sources by name, resolving recordings, and rendering noise for utterances."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from kwsbench.errors import BadInputError
from kwsbench.noise.definitions import NoiseSource, definition_dirs, load_all, load_definition
from kwsbench.noise.generators import RenderContext, RenderInfo, render_one, utterance_rng
from kwsbench.paths import packaged, shared_dir

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def list_sources(noise_dir: Path | str | None = None) -> list[str]:
    """Names of every defined noise source, the packaged ones and those in the user's noise folder (`noise_dir`,
    else `KWSBENCH_NOISE_DIR`); recordings included, whether or not their files exist."""
    return sorted(load_all(noise_dir=noise_dir))


def resolve_name(name: str, noise_dir: Path | str | None = None) -> str:
    """The source a `--noise` item names: a source's name, or a suffix only one source ends with."""
    known = list_sources(noise_dir)
    if name in known:
        return name
    hits = [s for s in known if s.endswith(name) or s.endswith(f"-{name}")]
    if len(hits) == 1:
        return hits[0]
    raise BadInputError(f"unknown noise source {name!r}. Known sources: {', '.join(known)}; pass one of them to "
                        "--noise (see `kwsbench noise list`)")


def get_source(name: str, noise_dir: Path | str | None = None) -> NoiseSource:
    """The definition called `name` (or a path to a YAML definition). Unknown -> list of known."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return load_definition(as_path)
    sources = load_all(noise_dir=noise_dir)
    if name not in sources:
        raise BadInputError(
            f"unknown noise source {name!r}; known: {', '.join(sorted(sources))} "
            f"(definitions in {', '.join(str(d) for d in definition_dirs(noise_dir))})"
        )
    return sources[name]


def noise_dir_candidates(noise_dir: Path | str | None) -> list[Path]:
    """Where recordings are looked for, first match wins: the explicit folder, else
    `KWSBENCH_NOISE_DIR`, the project's `noise/recordings/`, the shared GSC background folder."""
    if noise_dir is not None:
        return [Path(noise_dir).expanduser()]
    env = os.environ.get("KWSBENCH_NOISE_DIR")
    found = [Path(env).expanduser()] if env else []
    return [*found, packaged("noise") / "recordings", shared_dir() / "data" / "gsc_background_noise"]


def _find_file(folder: Path, name: str) -> Path | None:
    direct = folder / name
    if direct.is_file():
        return direct
    # Definitions name the GSC files by stem, so `.wav` (archive) and `.flac` (re-encoded) both work.
    stem = direct.with_suffix("") if direct.suffix.lower() in AUDIO_SUFFIXES else direct
    for suffix in AUDIO_SUFFIXES:
        if stem.with_suffix(suffix).is_file():
            return stem.with_suffix(suffix)
    return None


def resolve_recordings(source: NoiseSource, noise_dir: Path | str | None = None) -> list[Path]:
    """The files of a recording source; BadInputError saying where it looked when one is missing."""
    files = source.params["files"]
    folders = noise_dir_candidates(noise_dir)
    for folder in folders:
        found = [_find_file(folder, f) for f in files]
        if all(found):
            return [p for p in found if p is not None]
    if noise_dir is not None and not Path(noise_dir).expanduser().is_dir():
        raise BadInputError(f"noise folder {noise_dir} does not exist (needed by noise source {source.name!r})")
    raise BadInputError(
        f"noise source {source.name!r} needs {', '.join(files)}; not found in "
        f"{', '.join(str(f) for f in folders)}. Pass --noise-dir (e.g. Speech Commands' _background_noise_ "
        "folder) or set KWSBENCH_NOISE_DIR."
    )


@dataclass
class Recording:
    path: Path
    audio: np.ndarray  # float32 mono at the requested rate
    sha256: str


def load_recording(path: Path, rate: int, min_samples: int) -> Recording:
    """Decode, keep channel 0, resample to `rate`; reject non-finite or too short files."""
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as err:
        raise BadInputError(f"noise recording {path} cannot be decoded ({err})") from err
    audio = np.ascontiguousarray(data[:, 0])
    if not np.all(np.isfinite(audio)):
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise BadInputError(f"noise recording {path} contains {bad} NaN/inf samples; repair or remove the file")
    if file_rate != rate:
        from kwsbench.audio import resample

        audio = np.asarray(resample(audio, file_rate, rate), dtype=np.float32)
    if len(audio) < min_samples:
        raise BadInputError(
            f"noise recording {path} has {len(audio)} samples at {rate} Hz; at least {min_samples} are needed"
        )
    return Recording(path, audio, hashlib.sha256(audio.tobytes()).hexdigest())


def render(
    source: NoiseSource,
    utterance_ids: list[str] | tuple[str, ...],
    seed: int,
    ctx: RenderContext,
    speaker_ids: list[str] | tuple[str, ...] | None = None,
    with_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[RenderInfo]]:
    """(len(utterance_ids), ctx.length) float32: each row from its own (seed, source, utterance)
    generator, so any batching or order of the ids gives bit-identical rows."""
    out = np.empty((len(utterance_ids), ctx.length), dtype=np.float32)
    infos: list[RenderInfo] = []
    speakers = speaker_ids if speaker_ids is not None else [""] * len(utterance_ids)
    for i, uid in enumerate(utterance_ids):
        rng = utterance_rng(seed, source.name, uid)
        out[i], info = render_one(source.kind, source.params, rng, ctx, speakers[i])
        infos.append(info)
    return (out, infos) if with_info else out
