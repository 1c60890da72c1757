"""The noise bank: one deterministic noise waveform per utterance of a clip set, rendered once and
cached on disk under paths.cache_dir()/noise, keyed by (clip-set fingerprint, source definition and
version, seed, and for recordings the decoded audio's sha256)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kwsbench.data.clipset import CLIP_SAMPLES, ClipSet
from kwsbench.errors import BadInputError
from kwsbench.noise.definitions import NoiseSource
from kwsbench.noise.generators import RenderContext
from kwsbench.noise.mixing import mix
from kwsbench.noise.sources import get_source, load_recording, render, resolve_recordings
from kwsbench.paths import cache_dir

BANK_FORMAT = 1  # bump when the rendering code changes the waveforms for an unchanged definition


def build_context(source: NoiseSource, clipset: ClipSet | None, noise_dir: Path | str | None = None,
                  ) -> tuple[RenderContext, list[str]]:
    """The render context for a source and the content hashes that must enter the bank key."""
    rate = clipset.sample_rate if clipset is not None else 16000
    ctx = RenderContext(rate=rate, length=CLIP_SAMPLES)
    extra: list[str] = []
    if source.needs_recordings:
        recs = [load_recording(p, rate, CLIP_SAMPLES) for p in resolve_recordings(source, noise_dir)]
        ctx.recordings = [r.audio for r in recs]
        extra = [r.sha256 for r in recs]
    if source.needs_clipset:
        if clipset is None:
            raise BadInputError(f"noise source {source.name!r} draws talkers from a clip set; give one (--data-dir)")
        order = np.argsort(np.asarray(clipset.utterance_ids, dtype=object), kind="stable")
        ctx.pool_audio = clipset.audio[order]
        ctx.pool_ids = tuple(clipset.utterance_ids[i] for i in order)
        ctx.pool_speakers = tuple(clipset.speaker_ids[i] for i in order)
    return ctx, extra


class NoiseBank:
    """Noise for every utterance of `clipset` from `source` under `seed`.

    .noise: (N, 16000) float32 in the clip set's row order; .key: the cache key; .loaded_from_cache.
    Rows are stored on disk in sorted utterance-id order, because the fingerprint does not depend
    on row order and two clip sets with the same fingerprint may list their rows differently.
    """

    def __init__(self, clipset: ClipSet, source: NoiseSource | str, seed: int = 0,
                 noise_dir: Path | str | None = None, use_cache: bool = True) -> None:
        self.source = get_source(source, noise_dir) if isinstance(source, str) else source
        self.seed = int(seed)
        self.clipset = clipset
        self._noise_dir = noise_dir
        self._ctx: RenderContext | None = None
        extra: list[str] = []
        if self.source.needs_recordings:
            self._ctx, extra = build_context(self.source, clipset, noise_dir)
        self.key = bank_key(clipset.fingerprint, self.source, self.seed, extra)
        self.render_seconds = 0.0
        self.loaded_from_cache = False
        self.noise = self._load_or_render(use_cache)

    @property
    def path(self) -> Path:
        return cache_dir() / "noise" / f"{self.key}.npy"

    def _load_or_render(self, use_cache: bool) -> np.ndarray:
        ids = np.asarray(self.clipset.utterance_ids, dtype=object)
        order = np.argsort(ids, kind="stable")
        if use_cache and self.path.is_file():
            stored = np.load(self.path, allow_pickle=False)
            if stored.shape == (len(ids), CLIP_SAMPLES) and stored.dtype == np.float32:
                self.loaded_from_cache = True
                out = np.empty_like(stored)
                out[order] = stored
                return out
        start = time.perf_counter()
        ctx = self._ctx
        if ctx is None:
            ctx, _ = build_context(self.source, self.clipset, self._noise_dir)
        sorted_ids = [self.clipset.utterance_ids[i] for i in order]
        sorted_speakers = [self.clipset.speaker_ids[i] for i in order]
        try:
            stored = render_parallel(self.source, sorted_ids, self.seed, ctx, sorted_speakers)
        except ValueError as err:  # e.g. too few babble talkers in a tiny clip set
            msg = f"noise source {self.source.name!r} cannot be rendered for this clip set: {err}"
            raise BadInputError(msg) from err
        self.render_seconds = time.perf_counter() - start
        if use_cache:
            _atomic_save(self.path, stored, self._meta())
        out = np.empty_like(stored)
        out[order] = stored
        return out

    def _meta(self) -> dict:
        return {"format": BANK_FORMAT, "fingerprint": self.clipset.fingerprint, "source": self.source.name,
                "version": self.source.version, "definition_key": self.source.key, "seed": self.seed,
                "clips": len(self.clipset)}

    def mix(self, snr_db: float | np.ndarray, definition: str = "rms", device: str | torch.device | None = None,
            ) -> np.ndarray | torch.Tensor:
        """The clip set mixed at `snr_db` in one vectorised call; a torch tensor when `device` is given."""
        if device is None:
            return mix(self.clipset.audio, self.noise, snr_db, definition, self.clipset.sample_rate)
        clean = torch.from_numpy(self.clipset.audio).to(device)
        noise = torch.from_numpy(self.noise).to(device)
        snr = snr_db if np.isscalar(snr_db) else torch.as_tensor(snr_db, device=device)
        return mix(clean, noise, snr, definition, self.clipset.sample_rate)


WORKERS_ENV = "KWSBENCH_NOISE_WORKERS"
_CHUNK = 128  # utterances per task: big enough to amortise the transfer, small enough to balance
_JOB: tuple | None = None  # (source, ids, seed, ctx, speakers), inherited by forked workers


def noise_workers() -> int:
    """Worker processes for rendering: KWSBENCH_NOISE_WORKERS, else the CPUs this process may use (max 16)."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 16))


def _render_span(span: tuple[int, int]) -> np.ndarray:
    source, ids, seed, ctx, speakers = _JOB
    return render(source, ids[span[0]:span[1]], seed, ctx, speakers[span[0]:span[1]])


def render_parallel(source: NoiseSource, ids: list[str], seed: int, ctx: RenderContext, speakers: list[str],
                    workers: int | None = None) -> np.ndarray:
    """`render` split over forked worker processes. Each row comes from its own (seed, source, utterance)
    generator, so splitting the ids into spans changes no sample; the spans are reassembled in order."""
    global _JOB
    workers = noise_workers() if workers is None else workers
    spans = [(i, min(i + _CHUNK, len(ids))) for i in range(0, len(ids), _CHUNK)]
    # fork shares the talker pool / recordings copy-on-write; without fork, or for a small bank, stay serial
    if workers < 2 or len(spans) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return render(source, ids, seed, ctx, speakers)
    _JOB = (source, list(ids), seed, ctx, list(speakers))
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(spans))) as pool:
            parts = pool.map(_render_span, spans, chunksize=1)
    finally:
        _JOB = None
    return np.concatenate(parts, axis=0)


def bank_key(fingerprint: str, source: NoiseSource, seed: int, extra: list[str] | None = None) -> str:
    blob = json.dumps({"format": BANK_FORMAT, "fingerprint": fingerprint, "definition": source.key,
                       "version": source.version, "seed": int(seed), "files": extra or []}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _atomic_save(path: Path, array: np.ndarray, meta: dict) -> None:
    """Write beside the target and rename, so a killed run never leaves a truncated bank."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
