"""The noise bank: one deterministic noise waveform per utterance of a clip set, rendered once and
cached on disk under paths.cache_dir()/noise, keyed by (clip-set fingerprint, source definition and
version, seed, and for recordings the decoded audio's sha256)."""

from __future__ import annotations

import hashlib
import json
import mmap
import multiprocessing
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kwsbench.data.cache import file_crc32, read_checked_npy
from kwsbench.data.clipset import CLIP_SAMPLES, ClipSet
from kwsbench.errors import BadInputError
from kwsbench.noise.definitions import NoiseSource
from kwsbench.noise.generators import RenderContext, trim_to_speech
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
    if source.kind == "babble-streams":
        _non_target_words(source, ctx)
    if source.kind == "babble-tts":
        from kwsbench.noise.tts import pool_sha256, tts_pool

        p = source.params
        audio, speakers = tts_pool(p["voices"], p["sentences_per_voice"], p["voice_seed"])
        ctx.segments = [trim_to_speech(a, rate) for a in audio]
        ctx.segment_speakers = speakers
        ctx.segment_ids = tuple(f"tts/{k:03d}" for k in range(len(audio)))
        extra = [pool_sha256(audio)]
    return ctx, extra


def _non_target_words(source: NoiseSource, ctx: RenderContext) -> None:
    """babble-streams speaks the clip set's `_unknown_` words (never a keyword), each trimmed to its speech."""
    rows = [i for i, (uid, spk) in enumerate(zip(ctx.pool_ids, ctx.pool_speakers, strict=True))
            if uid.startswith("_unknown_/") and spk]
    if not rows:
        raise BadInputError(f"noise source {source.name!r} speaks the clip set's non-target (_unknown_) words, and "
                            "this clip set has none with a known speaker; use --noise babble-tts (speech engine)")
    ctx.segments = [trim_to_speech(ctx.pool_audio[i], ctx.rate) for i in rows]
    ctx.segment_speakers = tuple(ctx.pool_speakers[i] for i in rows)
    ctx.segment_ids = tuple(ctx.pool_ids[i] for i in rows)


class NoiseBank:
    """Noise for every utterance of `clipset` from `source` under `seed`.

    .noise: (N, 16000) float32 in the clip set's row order; .key: the cache key; .loaded_from_cache.
    Rows are stored on disk in sorted utterance-id order, because the fingerprint does not depend
    on row order and two clip sets with the same fingerprint may list their rows differently.
    """

    def __init__(self, clipset: ClipSet, source: NoiseSource | str, seed: int = 0,
                 noise_dir: Path | str | None = None, use_cache: bool = True, render_now: bool = True,
                 load_now: bool = True) -> None:
        self.source = get_source(source, noise_dir) if isinstance(source, str) else source
        self.seed = int(seed)
        self.clipset = clipset
        self._noise_dir = noise_dir
        self._use_cache = use_cache
        self._ctx: RenderContext | None = None
        extra: list[str] = []
        if self.source.keyed_by_content:
            self._ctx, extra = build_context(self.source, clipset, noise_dir)
        self.key = bank_key(clipset.fingerprint, self.source, self.seed, extra)
        self._order = np.argsort(np.asarray(clipset.utterance_ids, dtype=object), kind="stable")
        self.noise: np.ndarray | None = None
        self.loaded_from_cache = False
        if use_cache and load_now:
            self._load_cached()
        if self.noise is None and render_now:
            self._finish(render_jobs([self.job()])[0])

    @classmethod
    def many(cls, clipset: ClipSet, sources: list[NoiseSource | str], seed: int = 0,
             noise_dir: Path | str | None = None, use_cache: bool = True,
             on_render: Callable[[list[str]], None] | None = None,
             meanwhile: Callable[[], None] | None = None) -> list[NoiseBank]:
        """The banks of several sources for one clip set: cached ones loaded, the others rendered together in
        one pool of workers, so the rows of all of them balance over the workers and the pool starts once.
        `on_render` hears the names of the sources about to be rendered (for a progress note); `meanwhile`, when
        given, runs once in this process while the workers render (`render_jobs`), or, when every bank is
        cached, on a thread of its own while they load (nothing forks then)."""
        banks = [cls(clipset, s, seed, noise_dir, use_cache, render_now=False, load_now=False) for s in sources]
        cached = [b for b in banks if use_cache and b.path.is_file()]
        beside = _Beside(meanwhile) if meanwhile is not None and len(cached) == len(banks) else None
        try:
            _each(NoiseBank._load_cached, cached)  # checksums and reads release the GIL: one thread per bank
        finally:
            if beside is not None:
                beside.join()
                meanwhile = None
        todo = [b for b in banks if b.noise is None]
        if todo and on_render is not None:
            on_render([b.source.name for b in todo])
        if not todo and meanwhile is not None:
            meanwhile()
        # a damaged cache file found after the work ran on its thread (a CUDA context, say) renders here, unforked
        workers = 1 if beside is not None else None
        rendered = render_jobs([b.job() for b in todo], workers=workers, meanwhile=meanwhile) if todo else []
        errors = _each(NoiseBank._finish, todo, rendered, keep=(BadInputError,))
        if errors:  # the others are still cached before the first failure is raised
            raise errors[0]
        return banks

    @property
    def path(self) -> Path:
        return cache_dir() / "noise" / f"{self.key}.npy"

    def _load_cached(self) -> None:
        """The cached rows into `.noise`, where the cache has them. A file that fails its checksum (truncated,
        damaged, or written without one) is reported and rendered again, never used."""
        if not self.path.is_file():
            return
        sidecar = self.path.with_suffix(".json")
        stored = None
        try:
            meta = json.loads(sidecar.read_text())
            size, crc = int(meta["bytes"]), str(meta["crc32"])
        except (OSError, ValueError, KeyError, TypeError):
            problem = "has no readable checksum sidecar"
        else:
            try:
                stored, problem = read_checked_npy(self.path, size, crc), ""
            except OSError as err:
                problem = f"unreadable ({err})"
            except ValueError as err:
                problem = str(err)
        if stored is not None and (stored.shape != (len(self._order), CLIP_SAMPLES) or stored.dtype != np.float32):
            problem = f"holds {stored.dtype} {stored.shape}, not this bank's rows"
        if problem:
            warnings.warn(f"noise-bank cache file {self.path} {problem}; the bank is rendered again", stacklevel=2)
            return
        self.noise = self._in_row_order(stored)
        self.loaded_from_cache = True

    def _in_row_order(self, stored: np.ndarray) -> np.ndarray:
        """The stored rows (sorted utterance ids) in the clip set's order: torch's row gather runs on the intra-op
        threads (a GSC-size bank: 22 ms against 25-230 ms for numpy's scatter on the 2-core machine)."""
        inverse = torch.from_numpy(np.argsort(self._order))
        return torch.from_numpy(stored).index_select(0, inverse).numpy()

    def job(self) -> RenderJob:
        """What rendering this bank takes: rows in sorted utterance-id order (the stored order)."""
        ctx = self._ctx
        if ctx is None:
            ctx, _ = build_context(self.source, self.clipset, self._noise_dir)
        ids = [self.clipset.utterance_ids[i] for i in self._order]
        speakers = [self.clipset.speaker_ids[i] for i in self._order]
        return RenderJob(self.source, ids, self.seed, ctx, speakers)

    def _finish(self, stored: np.ndarray | ValueError) -> None:
        if isinstance(stored, ValueError):  # e.g. too few babble talkers in a tiny clip set
            msg = f"noise source {self.source.name!r} cannot be rendered for this clip set: {stored}"
            raise BadInputError(msg) from stored
        if self._use_cache:
            try:
                _atomic_save(self.path, stored, self._meta())
            except OSError as err:  # an unwritable or full cache costs speed, not correctness
                warnings.warn(f"could not write the noise-bank cache under {self.path.parent} ({err.strerror or err}); "
                              "the bank is used from memory this run. Free space there or set KWSBENCH_CACHE to a "
                              "writable folder", stacklevel=2)
        self.noise = self._in_row_order(stored)

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
_CHUNK = 128  # most utterances per task: big enough to amortise a task, small enough to balance the workers
_JOBS: tuple | None = None  # (jobs, shared outputs), inherited by forked workers
# Fewer rows than this render in this process: starting the pool costs ~30 ms, a row 0.25-1 ms (2-core machine:
# 12 rows of white noise 3 ms serial against 30 ms on two workers, 240 rows of street 243 against 174 ms). It
# also keeps the small sets of the test suite away from fork, where the hang below was seen twice.
_MIN_POOL_ROWS = 128
# Seconds to wait for one task's answer (<= 128 rows: ~1 s, 0.3 s measured for street) before the pool counts as
# stuck. A forked child can block for ever on a lock another thread of the parent held at the fork (seen twice
# in the test suite on 12-row banks, once a child in a futex wait); the banks are then rendered in this process
# instead, with a warning, the same samples.
TASK_TIMEOUT_S = 60.0


@dataclass
class RenderJob:
    """One bank to render: rows for `ids` (with their speakers) from `source` under `seed`."""

    source: NoiseSource
    ids: list[str]
    seed: int
    ctx: RenderContext
    speakers: list[str]


def noise_workers() -> int:
    """Worker processes for rendering: KWSBENCH_NOISE_WORKERS, else the CPUs this process may use (max 16)."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise BadInputError(f"environment variable {WORKERS_ENV}={env!r} must be a whole number >= 1 (worker "
                                f"processes for rendering noise banks); set it to e.g. 2, or unset it")
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 16))


def _render_rows(job: RenderJob, start: int, stop: int) -> np.ndarray:
    return render(job.source, job.ids[start:stop], job.seed, job.ctx, job.speakers[start:stop])


def _render_task(task: tuple[int, int, int]) -> str:
    """In a worker: render one span of one job straight into the shared output ('' or the error)."""
    j, start, stop = task
    jobs, outs = _JOBS
    try:
        outs[j][start:stop] = _render_rows(jobs[j], start, stop)
    except ValueError as err:
        return str(err)
    return ""


def _shared_rows(rows: int, length: int) -> np.ndarray:
    """A float32 (rows, length) array in anonymous shared memory: what forked workers write, the parent sees,
    with no copy of the rows through a pipe."""
    buf = mmap.mmap(-1, max(1, rows * length * 4))
    return np.frombuffer(buf, dtype=np.float32, count=rows * length).reshape(rows, length)


def render_jobs(jobs: list[RenderJob], workers: int | None = None,
                meanwhile: Callable[[], None] | None = None) -> list[np.ndarray | ValueError]:
    """Every job's rows, split into spans over one pool of forked workers. Each row comes from its own (seed,
    source, utterance) generator, so the split changes no sample. A job that cannot be rendered (ValueError,
    e.g. too few babble talkers) gives its error in place of its rows; the others are still rendered.

    `meanwhile` runs exactly once in this process: after the workers are forked and have their tasks (so what it
    starts, a CUDA context say, is never inherited by a fork), or first when the rows are rendered here."""
    global _JOBS
    workers = noise_workers() if workers is None else workers
    total = sum(len(job.ids) for job in jobs)
    chunk = max(1, min(_CHUNK, -(-total // (4 * workers))))  # >= 4 tasks per worker: the last ones even out
    tasks = [(j, a, min(a + chunk, len(job.ids))) for j, job in enumerate(jobs) for a in range(0, len(job.ids), chunk)]
    # fork shares the talker pools / recordings copy-on-write; without fork, or for a small bank, stay serial
    if workers < 2 or len(tasks) < 2 or total < _MIN_POOL_ROWS or "fork" not in multiprocessing.get_all_start_methods():
        if meanwhile is not None:
            meanwhile()
        return [_serial(job) for job in jobs]
    outs = [_shared_rows(len(job.ids), job.ctx.length) for job in jobs]
    _JOBS = (jobs, outs)
    errors: dict[int, str] = {}
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
            answers = pool.imap(_render_task, tasks)
            if meanwhile is not None:
                meanwhile()
                meanwhile = None  # ran: the serial fallback below must not run it again
            for j, _, _ in tasks:
                err = answers.next(timeout=TASK_TIMEOUT_S)
                if err:
                    errors.setdefault(j, err)
    except multiprocessing.TimeoutError:  # leaving the `with` terminated the stuck workers
        warnings.warn(f"noise-bank workers gave no answer within {TASK_TIMEOUT_S:.0f} s; rendering the banks in "
                      f"this process instead (same samples, slower); {WORKERS_ENV}=1 always does", stacklevel=2)
        if meanwhile is not None:
            meanwhile()
        return [_serial(job) for job in jobs]
    finally:
        _JOBS = None
    return [ValueError(errors[j]) if j in errors else out for j, out in enumerate(outs)]


def _serial(job: RenderJob) -> np.ndarray | ValueError:
    try:
        return _render_rows(job, 0, len(job.ids))
    except ValueError as err:
        return err


def bank_key(fingerprint: str, source: NoiseSource, seed: int, extra: list[str] | None = None) -> str:
    blob = json.dumps({"format": BANK_FORMAT, "fingerprint": fingerprint, "definition": source.key,
                       "version": source.version, "seed": int(seed), "files": extra or []}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _atomic_save(path: Path, array: np.ndarray, meta: dict) -> None:
    """Write beside the target and rename, so a killed run never leaves a truncated bank; the sidecar JSON,
    written last, carries the file's checksum (a bank without a matching sidecar is never used)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        checksum = file_crc32(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sidecar = path.with_suffix(".json")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps({**meta, "bytes": path.stat().st_size, "crc32": checksum}, indent=1))
        os.replace(tmp, sidecar)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _Beside:
    """`work` on a thread of its own, its error re-raised by `join` in the caller's thread."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self._work = work
        self._thread = threading.Thread(target=self._run, name="kwsbench-beside-banks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            self.error = err

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error


def _each(method: Callable, banks: list[NoiseBank], *args: list,
          keep: tuple[type[Exception], ...] = ()) -> list[Exception]:
    """`method(bank, *row)` for every bank (with the matching item of each list in `args`), one thread per bank
    (up to the CPUs): what they do (checksums, file reads and writes, row gathers) releases the GIL. Errors of
    types in `keep` are returned in the banks' order once all are done; any other is raised."""
    if not banks:
        return []
    calls = [(bank, *row) for bank, *row in zip(banks, *args, strict=True)]
    workers = min(len(calls), noise_workers())
    if workers < 2:
        outcomes = [_outcome(method, call, keep) for call in calls]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="kwsbench-banks") as pool:
            outcomes = list(pool.map(lambda call: _outcome(method, call, keep), calls))
    return [err for err in outcomes if err is not None]


def _outcome(method: Callable, call: tuple, keep: tuple[type[Exception], ...]) -> Exception | None:
    try:
        method(*call)
    except keep as err:
        return err
    return None
