"""Plan -> cells: batched inference over the clip set under every condition, on CPU or CUDA.

Per run the clip set is decoded once and each noise bank is built once; per model the weights are
loaded once and every condition is swept over the whole clip set in large batches. A model that fails
to load or to run becomes failed cells carrying the error; the run goes on.

Rates (issue 6): the noise is mixed at 16 kHz (the SNR is measured there), then
- `native`: the input is decimated to the rate and a model with can_change_rate runs at that rate
  (`set_sample_rate`); a model that cannot change rate gets no cell for that rate (reported as skipped);
- `bandlimit`: the input is decimated to the rate and resampled back up, and the model runs at its own
  rate — what a 16 kHz model hears from a low-rate microphone.
Decimation is `sinc` (torchaudio's anti-aliased resampler) or `drop` (every k-th sample, no filter).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.profiler import record_function

from kwsbench.audio import decimate, upsample
from kwsbench.checkpoints import LoadedModel, load_model, trained_on_this_set
from kwsbench.data.clipset import ClipSet
from kwsbench.data.subsets import stratified_subset
from kwsbench.errors import BadInputError, CheckpointError
from kwsbench.models.registry import ModelCard, all_cards, named_directly, resolve
from kwsbench.progress import Progress
from kwsbench.provenance import environment
from kwsbench.results import stats
from kwsbench.results.store import CellKey, CellResult, Store, condition_label
from kwsbench.run import distributed as dist_
from kwsbench.run.distributed import Shard
from kwsbench.run.graphs import GraphedForward
from kwsbench.run.lanes import LaneAborted, lanes_per_model, run_lanes
from kwsbench.run.plan import Plan, check_precision
from kwsbench.run.precision import check_gpu_supports, for_precision, precision_mode
from kwsbench.run.warmup import start_cuda
from kwsbench.run.workers import MainThreadCalls, RunStopped, cpu_workers, run_in_workers

if TYPE_CHECKING:  # imported lazily at run time: the estimate is only made when a run announces itself
    from kwsbench.run.estimate import Estimate

CLEAN = "clean"
CLEAN_SEED = 0  # the seed in every clean cell's key (and of its speaker bootstrap)
N_BOOT = 1000

# (card, checkpoint or None, device) -> the model in eval mode, the sha256 of its weights, its classes
ModelLoader = Callable[[ModelCard, str | None, str], LoadedModel]


@dataclass(frozen=True)
class Condition:
    noise: str  # CLEAN or a noise source name
    snr_db: float | None
    rate_hz: int
    seed: int = 0  # the noise seed (CLEAN_SEED for a clean cell)
    show_seed: bool = False  # several seeds in the plan: labels name the seed

    def label(self) -> str:
        seed = f" seed {self.seed}" if self.show_seed and self.noise != CLEAN else ""
        return f"{condition_label(self.noise, self.snr_db)}{seed} @ {self.rate_hz} Hz"


class NoiseProvider:
    """Noise banks and mixing through kwsbench.noise; tests may pass a stand-in with the same methods."""

    def __init__(self, noise_dir: str | None = None):
        self.noise_dir = noise_dir
        self._ready: dict[tuple[str, str, int], np.ndarray] = {}  # rendered by prepare(), not yet handed out

    def resolve(self, name: str) -> str:
        from kwsbench.noise import resolve_name

        return resolve_name(name, self.noise_dir)

    def prepare(self, clipset: ClipSet, names: list[str], seed: int,
                on_render: Callable[[list[str]], None] | None = None,
                meanwhile: Callable[[], None] | None = None) -> None:
        """Load or render the banks of `names` at once: the missing ones share one pool of render workers
        (`on_render` hears their names first; `meanwhile` runs once in this process while they render)."""
        from kwsbench.noise import NoiseBank

        todo = [n for n in names if (clipset.fingerprint, n, seed) not in self._ready]
        banks = NoiseBank.many(clipset, todo, seed, noise_dir=self.noise_dir, on_render=on_render,
                               meanwhile=meanwhile)
        for name, bank in zip(todo, banks, strict=True):
            self._ready[(clipset.fingerprint, name, seed)] = bank.noise

    def bank(self, clipset: ClipSet, name: str, seed: int) -> tuple[np.ndarray, str]:
        from kwsbench.noise import NoiseBank, get_source

        source = get_source(name, self.noise_dir)
        noise = self._ready.pop((clipset.fingerprint, name, seed), None)
        if noise is None:
            noise = NoiseBank(clipset, source, seed, noise_dir=self.noise_dir).noise
        return noise, self.version(name)

    def version(self, name: str) -> str:
        """The noise version recorded in a cell's key (the definition hash pins the exact generator parameters,
        not only the declared version number)."""
        from kwsbench.noise import get_source

        source = get_source(name, self.noise_dir)
        return f"v{source.version}/{source.key[:16]}"

    def mix(self, clean: torch.Tensor, noise: torch.Tensor, snr_db: float, definition: str) -> torch.Tensor:
        from kwsbench.noise import mix

        return mix(clean, noise, snr_db, definition=definition)


def default_loader(card: ModelCard, checkpoint: str | None, device: str) -> LoadedModel:
    return load_model(card, checkpoint=checkpoint, device=device)


def _default_sha(card: ModelCard, checkpoint: str | None) -> str:
    from kwsbench import checkpoints as ck

    return str(ck.checkpoint_sha256(card, checkpoint))


default_loader.sha256 = _default_sha  # what the estimate uses to find stored cells before loading


@dataclass
class RunSummary:
    run_id: int
    computed: int = 0
    reused: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # model, condition, error
    skipped_models: list[tuple[str, str]] = field(default_factory=list)  # model, reason
    warnings: list[str] = field(default_factory=list)
    skipped_cells: list[tuple[str, str, str]] = field(default_factory=list)
    cell_keys: list[str] = field(default_factory=list)
    clips: int = 0
    seconds: float = 0.0
    clip_evals: int = 0
    timings: dict[str, float] = field(default_factory=lambda: {"load": 0.0, "noise_banks": 0.0, "store": 0.0})
    ranks: list[tuple[int, float]] = field(default_factory=list)  # sharded run: (cells, seconds) of each rank

    @property
    def ok(self) -> bool:
        return not self.failed


# -- data --------------------------------------------------------------------------------------

SYNTHETIC_PROTOCOL = "synthetic-12"


def load_clips(plan: Plan) -> ClipSet:
    from kwsbench.data.speech_commands import load_clipset

    if plan.data_dir is None:
        from kwsbench.data.synth import ensure_default_dataset

        data_dir = ensure_default_dataset(seed=0)
    else:
        data_dir = Path(plan.data_dir)
    clipset = load_clipset(data_dir, protocol=plan.protocol, on_bad_file=plan.on_bad_file)
    if plan.data_dir is None:
        # same 12-folder layout as the canonical test set, but synthetic speech: never comparable with a
        # published number on real Speech Commands, so it gets a protocol name of its own
        clipset.protocol = SYNTHETIC_PROTOCOL
    if plan.per_class:
        clipset = stratified_subset(clipset, plan.per_class, plan.seed)
    return clipset


def conditions(plan: Plan, noise_names: list[str]) -> list[Condition]:
    """Clean always, then every noise x SNR x seed, each at every rate. Clean audio has no noise: its cell is
    computed once and keyed with seed CLEAN_SEED whatever the plan's seeds, so every run shares it."""
    seeds = plan.noise_seeds()
    many = len(seeds) > 1
    out = []
    for rate in plan.rates:
        out.append(Condition(CLEAN, None, rate, CLEAN_SEED, many))
        out.extend(Condition(n, float(s), rate, seed, many) for n in noise_names for seed in seeds for s in plan.snr)
    return out


# -- rates -------------------------------------------------------------------------------------

def model_input(x16: torch.Tensor, card: ModelCard, rate: int, plan: Plan) -> torch.Tensor:
    """The 16 kHz (noisy) batch as the model must see it for this rate and rate mode."""
    if plan.rate_mode == "bandlimit" or rate == card.native_rate:
        low = decimate(x16, 16000, rate, plan.decimation) if rate < 16000 else x16
        return upsample(low, rate, card.native_rate) if rate != card.native_rate else low
    return decimate(x16, 16000, rate, plan.decimation)


def provenance(plan: Plan, clipset: ClipSet, device: str) -> dict[str, Any]:
    return {**environment(device), "plan": plan.to_dict(), "seed": plan.seed,
            "fingerprint": clipset.fingerprint, "protocol": clipset.protocol}


# -- the runner --------------------------------------------------------------------------------

def select_models(plan: Plan) -> tuple[list[ModelCard], frozenset[str]]:
    """The cards to run and the names among them asked for by name (missing weights then fail their cells;
    a model that 'all' or a glob swept in, or the default selection, is skipped with one line instead)."""
    if plan.models:
        return resolve(plan.models), frozenset(named_directly(plan.models))
    return all_cards(), frozenset()


def _score(labels: np.ndarray, preds: np.ndarray, speakers: tuple[str, ...], num_classes: int, seed: int) -> dict:
    correct_vec = preds == labels
    n, correct = len(labels), int(correct_vec.sum())
    lo, hi = stats.wilson_interval(correct, n)
    blo = bhi = None
    if any(speakers):
        blo, bhi = stats.speaker_bootstrap_interval(correct_vec, speakers, seed=seed, n_boot=N_BOOT)
    return dict(
        accuracy=correct / n if n else None, n=n, correct=correct, ci_low=lo, ci_high=hi, boot_low=blo,
        boot_high=bhi, per_class=stats.per_class_accuracy(labels, preds, num_classes),
        macro_f1=stats.macro_f1(labels, preds, num_classes),
    )


FIRST_BATCH = 32  # clips in a model's first CPU batch, before its speed is known
BATCH_TARGET_S = 2.0  # a slow model's CPU batches last about this long
# Largest CPU batch. In the quick run (27 models, 2 threads) batches of 64 ran as fast as 240 in total, while the
# scan tensors of the SSMs grow with the batch (mamba-kws holds several (batch, frames, 128, 16) floats per layer):
# peak RSS 4.3 GB at 240 clips a batch against 1.5 GB at 64, and the allocator keeps that peak (allocator.py).
CPU_MAX_BATCH = 64


@dataclass
class Pace:
    """Batch sizes for one model. On a CPU a slow model gets batches of about BATCH_TARGET_S seconds, so the
    progress inside its cells moves and Ctrl-C is answered soon; a fast model gets --batch-size, at most
    CPU_MAX_BATCH. On CUDA the batch is always --batch-size (one captured graph per batch shape). Each clip's
    logits do not depend on the batch it is in (eval mode), so this changes timing and memory only."""

    limit: int
    adaptive: bool
    clips_per_s: float | None = None

    def size(self) -> int:
        if not self.adaptive:
            return self.limit
        limit = min(self.limit, CPU_MAX_BATCH)
        if self.clips_per_s is None:
            return min(limit, FIRST_BATCH)
        return max(min(limit, FIRST_BATCH), min(limit, int(self.clips_per_s * BATCH_TARGET_S)))

    def record(self, clips: int, seconds: float) -> None:
        if seconds > 0:
            self.clips_per_s = clips / seconds


@torch.inference_mode()
def _predict(model: Callable[[torch.Tensor], torch.Tensor], clean: torch.Tensor, noise: torch.Tensor | None,
             cond: Condition, card: ModelCard, plan: Plan, provider: NoiseProvider,
             on_batch: Callable[[int], None] | None = None, pace: Pace | None = None, lanes: int = 1) -> torch.Tensor:
    """Every clip's prediction under `cond` (int64, on the clips' device), in `lanes` contiguous lanes of clips on
    their own CPU threads (kwsbench.run.lanes; 1: on this thread). `on_batch` gets the number of clips handed to
    the model so far. On a GPU nothing here waits for the device: the caller reads the predictions when it needs
    them (`_finish_cell`), so the device can work on one cell while the host scores and stores the one before."""
    pace = pace or Pace(plan.batch_size, adaptive=False)
    done = [0] * max(1, lanes)  # clips done per lane
    count_lock = threading.Lock()

    def lane(index: int, part: range, failed: threading.Event) -> list[torch.Tensor]:
        preds = []
        start = part.start
        while start < part.stop:
            if failed.is_set():
                raise LaneAborted
            stop = min(start + pace.size(), part.stop)
            t0 = time.perf_counter()
            x = clean[start:stop]
            if noise is not None:
                x = provider.mix(x, noise[start:stop], cond.snr_db, plan.snr_def)
            logits = model(model_input(x, card, cond.rate_hz, plan))
            preds.append(torch.argmax(logits, dim=-1))
            pace.record(stop - start, time.perf_counter() - t0)
            start = stop
            with count_lock:  # so the count handed on never goes down
                done[index] = stop - part.start
                if on_batch is not None:
                    on_batch(sum(done))
        return preds

    preds = [p for lane_preds in run_lanes(lane, clean.shape[0], lanes) for p in lane_preds]
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64, device=clean.device)


def _changes_rate(state: ModelState, rate: int, plan: Plan) -> bool:
    """Whether a cell at `rate` makes `_set_rate` rebuild the model."""
    return (plan.rate_mode == "native" and state.card.can_change_rate and state.model is not None
            and state.rate != rate)


def _set_rate(state: ModelState, rate: int, plan: Plan) -> bool:
    """Put a rate-changing model at `rate` for a native-rate cell; True when the model changed. The model
    stays at that rate until a cell asks for another (conditions come grouped by rate)."""
    if not _changes_rate(state, rate, plan):
        return False
    model = state.model
    model.set_sample_rate(rate)
    state.rate = rate
    # a rate change rebuilds derived tensors (filterbanks, windows, kernels) where the model's code makes
    # them, often on the CPU: bring the whole model back to the run's device
    model.to(plan.device)
    return True


def run_plan(plan: Plan, loader: ModelLoader | None = None, noise: NoiseProvider | None = None,
             clipset: ClipSet | None = None, show_progress: bool = True, shard: Shard | None = None) -> RunSummary:
    """Evaluate the plan into its store; see the module docstring. Returns what happened.

    With a `shard` of world size > 1 (a torchrun job, see kwsbench.run.distributed) this rank computes only
    its own cells into a shard store, and rank 0 merges the shards into the store; the returned summary
    on rank 0 covers every rank.
    """
    from kwsbench.noise.bank import noise_workers

    noise_workers()  # environment variables are checked before anything is opened or decoded
    deal = dist_.deal_from_env()
    loader = loader or default_loader
    provider = noise or NoiseProvider(plan.noise_dir)
    shard = shard or Shard()
    device = plan.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    check_precision(plan.precision, device)
    check_gpu_supports(plan.precision, device)
    t0 = time.perf_counter()
    # open the store first: a corrupt or foreign store fails before any decoding or model work.
    # Rank 0 creates it before the other ranks open it, so two processes never create the schema at once.
    if shard.rank == 0:
        store = Store(plan.store)
    dist_.barrier(shard)
    if shard.rank != 0:
        store = Store(plan.store)
    with store:
        cards, named = select_models(plan)
        noise_names = [provider.resolve(n) for n in plan.noise]
        clipset = clipset if clipset is not None else load_clips(plan)
        conds = conditions(plan, noise_names)
        run_id = 0
        if shard.rank == 0:
            # cells of an earlier run whose ranks died are merged first, so resume skips them
            _merge_shards(store, plan.store)
            run_id = store.begin_run(provenance(plan, clipset, device))
            store.save_clips(clipset.fingerprint, clipset.utterance_ids, clipset.speaker_ids, clipset.labels)
        summary = RunSummary(run_id=dist_.broadcast(shard, run_id), clips=len(clipset))
        if clipset.skipped:
            summary.warnings.append(f"{clipset.skipped} clips could not be read and were left out "
                                    "(--on-bad-file skip); the accuracies are over the others")
        dist_.barrier(shard)
        forecast = None
        if shard.rank == 0 and (show_progress or shard.sharded):
            workers, lanes = _cpu_parallelism(plan, len(cards), shard)
            forecast = _forecast(plan, cards, conds, clipset, provider, store, loader, workers, lanes)
        if shard.sharded:  # rank 0 deals the cells out by their expected cost; every rank gets the same owners
            owners = forecast.deal(shard.world) if forecast is not None and deal == "cost" else None
            owners = dist_.broadcast(shard, owners)
            shard = replace(shard, owners=tuple(owners) if owners is not None else None)
        mine = sum(shard.owns(i) for i in range(len(cards) * len(conds)))
        progress = Progress(mine, enabled=show_progress)
        if forecast is not None and show_progress:
            progress.note(_announce(plan, cards, conds, clipset, forecast, shard))
        out = Store(dist_.shard_store_path(plan.store, shard.rank)) if shard.sharded else store
        try:
            with precision_mode(plan.precision):
                _run_models(plan, cards, named, conds, clipset, loader, provider, _Sink(store, out), summary,
                            progress, shard)
        except BaseException as err:  # the run's status is final whatever stopped it
            if shard.rank == 0:
                _finish_quietly(store, summary.run_id, "interrupted" if isinstance(err, KeyboardInterrupt)
                                else "failed")
            raise
        finally:
            progress.close()
            summary.warnings += [f"damaged cell recomputed: {d}" for d in store.damaged + (
                out.damaged if out is not store else [])]
            if out is not store:
                out.close()
        if shard.sharded:
            summary.ranks = [(mine, time.perf_counter() - t0)]
            dist_.barrier(shard)
            parts = dist_.gather(shard, summary)
            if shard.rank == 0:
                _merge_shards(store, plan.store)
                summary = _combine(parts)
        summary.seconds = time.perf_counter() - t0
        if shard.rank == 0:
            store.finish_run(summary.run_id, "completed" if summary.ok else "failed")
        dist_.barrier(shard)
    return summary


def _finish_quietly(store: Store, run_id: int, status: str) -> None:
    """Record how the run ended; a store that cannot take it (full disk...) must not hide the original error."""
    try:
        store.finish_run(run_id, status)
    except Exception:  # noqa: BLE001 - the error being raised is the one the user needs
        pass


class _Sink:
    """Where cells are looked up (the merged store) and where they are written (the same store, or this
    rank's shard store in a sharded run)."""

    def __init__(self, store: Store, out: Store):
        self.store, self.out = store, out
        self.calls = MainThreadCalls()  # model workers' store calls run on the thread that owns the connection

    def has_ok(self, key: CellKey) -> bool:
        return self.calls.call(self._has_ok, key)

    def _has_ok(self, key: CellKey) -> bool:
        return self.store.has_ok(key) or (self.out is not self.store and self.out.has_ok(key))

    def put_cell(self, run_id: int, cell: CellResult) -> None:
        self.calls.call(self.out.put_cell, run_id, cell)


def _merge_shards(store: Store, path: str) -> None:
    for part in dist_.leftover_shards(path):
        store.merge_from(part)
        part.unlink()


def _combine(parts: list[RunSummary]) -> RunSummary:
    total = parts[0]
    for p in parts[1:]:
        total.computed += p.computed
        total.reused += p.reused
        total.clip_evals += p.clip_evals
        total.failed += p.failed
        total.skipped_cells += p.skipped_cells
        total.ranks += p.ranks
        total.cell_keys += p.cell_keys
        total.skipped_models += [m for m in p.skipped_models if m not in total.skipped_models]
        total.warnings += [w for w in p.warnings if w not in total.warnings]
        for k, v in p.timings.items():
            total.timings[k] = total.timings.get(k, 0.0) + v
    return total


@dataclass
class Forecast:
    """The whole plan's time estimate and every cell's expected seconds (0 for a cell stored or not run)."""

    estimate: Estimate
    costs: list[list[float]]  # [model][condition]

    def deal(self, world: int) -> list[int]:
        return dist_.balance(self.costs, self.estimate.model_overhead, world)

    def rank_seconds(self, owners: tuple[int, ...], world: int) -> list[float]:
        """Expected seconds of each rank: its cells, plus the model overhead once per model it runs."""
        seconds = [0.0] * world
        flat = [(m, c) for m, row in enumerate(self.costs) for c in row]
        for r in range(world):
            models = {m for i, (m, _) in enumerate(flat) if owners[i] == r}
            seconds[r] = sum(c for i, (_, c) in enumerate(flat) if owners[i] == r) + \
                len(models) * self.estimate.model_overhead
        return seconds


def _forecast(plan: Plan, cards: list[ModelCard], conds: list[Condition], clipset: ClipSet,
              provider: NoiseProvider, store: Store, loader: ModelLoader, workers: int = 1,
              lanes: int = 1) -> Forecast:
    """What every cell of the plan will cost (see kwsbench.run.estimate), from keys known before any model
    is loaded: a cell already stored ok costs nothing."""
    from kwsbench.run.estimate import estimate

    versions: dict[str, str | None] = {}

    def key(card: ModelCard, sha: str | None, cond: Condition) -> CellKey | None:
        if cond.noise != CLEAN and cond.noise not in versions:  # a stand-in provider may not know it
            versions[cond.noise] = provider.version(cond.noise) if hasattr(provider, "version") else None
        version = "" if cond.noise == CLEAN else versions[cond.noise]
        return None if sha is None or version is None else _cell_key(plan, card, sha, clipset, cond, version)

    keys: dict[str, list[CellKey | None | bool]] = {}  # per condition: the key, or False where it cannot run
    for card in cards:
        sha = None if plan.force else _known_sha(loader, card, plan)
        keys[card.name] = [False if _cannot_run(plan, card, c) else key(card, sha, c) for c in conds]
    est = estimate(cards, lambda card: [k for k in keys[card.name] if k is not False], len(clipset), store,
                   plan.device, workers=workers, lanes=lanes)
    costs = [[0.0 if k is False or (k is not None and store.has_ok(k)) else est.cell_seconds(card.name, len(clipset))
              for k in keys[card.name]] for card in cards]
    return Forecast(est, costs)


def _announce(plan: Plan, cards: list[ModelCard], conds: list[Condition], clipset: ClipSet, forecast: Forecast,
              shard: Shard) -> str:
    """What the run will do and roughly how long it takes; in a sharded run, how the ranks share it."""
    from kwsbench.run.estimate import duration

    seeds = plan.noise_seeds()
    # a clean-only plan still carries the default SNRs, which no condition uses: say "clean only" instead
    noisy = (f"{len(plan.noise)} noise x {len(plan.snr)} SNR{f' x {len(seeds)} seeds' if len(seeds) > 1 else ''}"
             " + clean" if plan.noise else "clean only")
    grid = (f"{len(cards)} models x {len(conds)} conditions ({noisy}, {len(plan.rates)} rate(s)) on "
            f"{len(clipset):,} clips")
    text = f"{grid}: {forecast.estimate.describe()}"
    if shard.sharded:
        cells = len(cards) * len(conds)
        owners = shard.owners or tuple(i % shard.world for i in range(cells))
        per_rank = forecast.rank_seconds(owners, shard.world)
        text += (f"; over {shard.world} ranks dealt {'by expected cost' if shard.owners else 'round-robin'}: "
                 + ", ".join(f"rank {r} {owners.count(r)} cells ~{duration(t)}" for r, t in enumerate(per_rank)))
    return text


def _known_sha(loader: ModelLoader, card: ModelCard, plan: Plan) -> str | None:
    """The checkpoint's sha256 without loading the model, where the loader can tell it (its `sha256`
    attribute); None when it cannot (missing weights, a loader without it)."""
    sha_of = getattr(loader, "sha256", None)
    if sha_of is None:
        return None
    try:
        return sha_of(card, plan.checkpoints.get(card.name))
    except Exception:  # noqa: BLE001 - only the estimate needs it; the run reports the real error
        return None


def _cannot_run(plan: Plan, card: ModelCard, cond: Condition) -> bool:
    return plan.rate_mode == "native" and cond.rate_hz != card.native_rate and not card.can_change_rate


@dataclass
class RunContext:
    """What every cell of one process's share of a run reads or adds to: the plan, the clips (and their
    audio on the run's device), noise banks, where cells go and what happened so far."""

    plan: Plan
    clipset: ClipSet
    clean: torch.Tensor  # the clip set's audio, float32 on the run's device
    provider: NoiseProvider
    store: _Sink
    summary: RunSummary
    progress: Progress
    # every (noise source, seed) this process's cells use; their banks load together
    noise_names: list[tuple[str, int]]
    # (name, seed) -> (bank on device, version)
    banks: dict[tuple[str, int], tuple[torch.Tensor, str]] = field(default_factory=dict)
    # CPU model workers (kwsbench.run.workers): the summary and progress are updated under this lock
    lock: threading.RLock = field(default_factory=threading.RLock)
    stop: threading.Event = field(default_factory=threading.Event)
    lanes: int = 1  # CPU threads per model: lanes of clips for the cards with cpu_lanes (kwsbench.run.lanes)


@dataclass
class ModelState:
    """One model while its conditions are swept: the loaded weights (None when loading failed, with the
    error every cell then carries) and the rate it runs at now, kept here rather than on the module."""

    card: ModelCard
    model: torch.nn.Module | None
    forward: GraphedForward | None
    sha: str
    labels: tuple[str, ...]  # the classes the checkpoint says the model predicts; () when it does not say
    load_error: str
    rate: int
    pace: Pace
    keys: list[str] = field(default_factory=list)  # its cells' key digests, in the plan's order
    finished_at: float = 0.0  # perf_counter when its last cell finished (`_finish_cell`)


def _run_models(plan: Plan, cards: list[ModelCard], named: frozenset[str], conds: list[Condition], clipset: ClipSet,
                loader: ModelLoader, provider: NoiseProvider, store: _Sink, summary: RunSummary,
                progress: Progress, shard: Shard) -> None:
    owned = [[c for j, c in enumerate(conds) if shard.owns(m * len(conds) + j)] for m in range(len(cards))]
    ctx = RunContext(
        plan=plan, clipset=clipset, clean=torch.from_numpy(np.ascontiguousarray(clipset.audio, dtype=np.float32)),
        provider=provider, store=store, summary=summary, progress=progress,
        noise_names=sorted({(c.noise, c.seed) for my_conds in owned for c in my_conds if c.noise != CLEAN}))
    triton = any(card.runs_triton_on_gpu for card, my_conds in zip(cards, owned, strict=True) if my_conds)
    if plan.device.startswith("cuda") and ctx.noise_names:
        _load_banks(ctx, meanwhile=lambda: _to_device(ctx, triton))  # CUDA starts while the banks render or load
    else:
        _to_device(ctx, triton)
    stop_after = dist_.exit_after(shard.rank)
    jobs = [(card, my_conds) for card, my_conds in zip(cards, owned, strict=True) if my_conds]
    workers, ctx.lanes = _cpu_parallelism(plan, len(jobs), shard)
    if workers == 1:
        for card, my_conds in jobs:
            summary.cell_keys += _run_model(ctx, card, my_conds, loader, card.name in named, stop_after)
        return
    if ctx.noise_names:
        _load_banks(ctx)  # before the workers: every model reads the same banks
    # longest models first, so the last one to finish does not run alone for long (order of results unchanged)
    speeds = _table_speeds()
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][1]) / speeds.get(jobs[i][0].name, float("inf")))
    keys = run_in_workers([lambda i=i: _run_model(ctx, *jobs[i], loader, jobs[i][0].name in named, stop_after)
                           for i in order],
                          workers, store.calls, ctx.stop)
    by_job = dict(zip(order, keys, strict=True))
    for i in range(len(jobs)):
        summary.cell_keys += by_job[i]


def _to_device(ctx: RunContext, triton: bool) -> None:
    """The clips onto the run's device. On CUDA the context (unless the caller made it already), the libraries
    every model needs (cuDNN, cuBLAS, cuFFT) and, where a model of the run uses it (`triton`), Triton's runtime
    start here, not in the models' first cells."""
    t0 = time.perf_counter()
    ctx.clean = ctx.clean.to(ctx.plan.device)
    if ctx.plan.device.startswith("cuda"):
        start_cuda(ctx.plan.device, triton)
        ctx.summary.timings["cuda_start"] = time.perf_counter() - t0


def _cpu_parallelism(plan: Plan, models: int, shard: Shard) -> tuple[int, int]:
    """(models evaluated at once, lanes of clips per model) of a CPU run (kwsbench.run.workers, .lanes);
    (1, 1) on a GPU or in a sharded run."""
    if plan.device != "cpu" or shard.sharded:
        return 1, 1
    workers = cpu_workers(models)
    return workers, lanes_per_model(torch.get_num_threads(), workers)


def _run_model(ctx: RunContext, card: ModelCard, conds: list[Condition], loader: ModelLoader, explicit: bool,
               stop_after: int | None) -> list[str]:
    """Every condition of one model; returns its cells' key digests."""
    plan, progress = ctx.plan, ctx.progress
    state = _load(ctx, card, loader, explicit)
    if state is None:
        with ctx.lock:
            progress.done += len(conds)
        return []
    _run_cells(ctx, state, conds, stop_after)
    forward = state.forward
    if forward is not None and forward.fallback_reason and plan.cuda_graphs and plan.device.startswith("cuda"):
        progress.note(f"{card.name}: ran without CUDA graphs ({forward.fallback_reason})")
    keys = state.keys
    del state, forward
    if plan.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return keys


def _table_speeds() -> dict[str, float]:
    """Clips/s per model in the CPU speed table (kwsbench.run.estimate); {} without one."""
    from kwsbench.run.estimate import SpeedTable

    table = SpeedTable.load()
    return table.clips_per_s if table is not None else {}


def _load(ctx: RunContext, card: ModelCard, loader: ModelLoader, explicit: bool) -> ModelState | None:
    """The model's weights on the run's device; None when a model nobody asked for has none (skipped)."""
    plan, summary = ctx.plan, ctx.summary
    t_load = time.perf_counter()
    try:
        loaded = loader(card, plan.checkpoints.get(card.name), plan.device)
    except CheckpointError as err:
        if not explicit:
            with ctx.lock:
                summary.skipped_models.append((card.name, str(err)))
            return None
        loaded, load_error = None, f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - any load failure becomes failed cells, the run goes on
        loaded, load_error = None, f"{type(err).__name__}: {err}"
    else:
        load_error = ""
    finally:
        with ctx.lock:
            summary.timings["load"] += time.perf_counter() - t_load
    contaminated = trained_on_this_set(plan.checkpoints.get(card.name), ctx.clipset.protocol)
    if contaminated:
        with ctx.lock:
            summary.warnings.append(f"{card.name}: {contaminated}")
            ctx.progress.note(f"WARNING {card.name}: {contaminated}")
    if loaded is None:
        return ModelState(card=card, model=None, forward=None, sha="unavailable", labels=(),
                          load_error=load_error, rate=card.native_rate, pace=Pace(plan.batch_size, adaptive=False))
    forward = GraphedForward(for_precision(loaded.module, plan.precision, plan.device), enabled=plan.cuda_graphs)
    return ModelState(card=card, model=loaded.module, forward=forward, sha=loaded.sha256, labels=tuple(loaded.labels),
                      load_error="", rate=card.native_rate,
                      pace=Pace(plan.batch_size, adaptive=not plan.device.startswith("cuda")))


def _cell_key(plan: Plan, card: ModelCard, sha: str, clipset: ClipSet, cond: Condition, noise_version: str) -> CellKey:
    native = cond.rate_hz == card.native_rate
    return CellKey(
        model=card.name, checkpoint_sha256=sha, fingerprint=clipset.fingerprint, noise=cond.noise,
        noise_version=noise_version, snr_db=cond.snr_db, snr_def="" if cond.noise == CLEAN else plan.snr_def,
        rate_hz=cond.rate_hz, rate_mode="native" if native else plan.rate_mode,
        decimation="" if native and cond.rate_hz == 16000 else plan.decimation, seed=cond.seed,
        precision=plan.precision,
    )


def _check_labels(state: ModelState, clipset: ClipSet) -> None:
    """The model must predict the clip set's classes: by name and order where its checkpoint records them."""
    card, labels = state.card, state.labels
    if labels and labels != tuple(clipset.label_names):
        raise BadInputError(f"{card.name}: its checkpoint predicts {', '.join(labels)}; the clip set "
                            f"({clipset.protocol}) has {', '.join(clipset.label_names)}")
    if not labels and card.num_classes != len(clipset.label_names):
        raise BadInputError(f"{card.name} predicts {card.num_classes} classes, the clip set has "
                            f"{len(clipset.label_names)} ({clipset.protocol})")


def _memory_hint(err: Exception, plan: Plan) -> str:
    """What to do when a batch did not fit (the cell failed; the cells stored so far are kept)."""
    if isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err):
        return (f" -- batch of {plan.batch_size} clips did not fit in memory; run the same command again with a "
                f"smaller --batch-size (stored cells are reused)")
    return ""


def _load_banks(ctx: RunContext, meanwhile: Callable[[], None] | None = None) -> None:
    """Every noise bank this process's cells use, onto the run's device (rendering the missing ones together);
    `meanwhile` runs once in this process while the workers render the first seed's banks."""
    plan, clipset = ctx.plan, ctx.clipset
    t_bank = time.perf_counter()
    seeds = sorted({seed for _, seed in ctx.noise_names})
    for seed in seeds:
        def announce(rendering: list[str], seed: int = seed) -> None:
            what = f" (seed {seed})" if len(seeds) > 1 else ""
            ctx.progress.note(f"rendering noise banks {', '.join(rendering)}{what} for {len(clipset):,} clips "
                              "(cached for later runs)")

        ctx.provider.prepare(clipset, [n for n, s in ctx.noise_names if s == seed], seed, on_render=announce,
                             meanwhile=meanwhile)
        meanwhile = None
    for name, seed in ctx.noise_names:
        arr, ver = ctx.provider.bank(clipset, name, seed)
        ctx.banks[(name, seed)] = (torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(plan.device),
                                   ver)
    ctx.summary.timings["noise_banks"] += time.perf_counter() - t_bank


@dataclass
class _Started:
    """A cell whose forwards were handed to the model: its predictions may still be on their way (GPU)."""

    cond: Condition
    result: CellResult  # status "failed" with the error until `_finish_cell` scores the predictions
    preds: torch.Tensor | None  # on the host; None when the model failed to load or the forward raised
    ready: torch.cuda.Event | None  # on a GPU: recorded after the predictions' copy to the host was queued
    t0: float


def overlaps_cells(plan: Plan) -> bool:
    """Whether a model's next cell starts before the previous one is scored and stored: on a GPU, where the
    forwards run asynchronously (on a CPU the host computes the forward itself, there is nothing to overlap)."""
    return plan.device.startswith("cuda")


def _run_cells(ctx: RunContext, state: ModelState, conds: list[Condition], stop_after: int | None) -> None:
    """Every condition of one model, in order. On a GPU one cell stays in flight: the next cell's forwards are
    queued before the host scores and stores the previous one, so the device does not idle while it does. Cells
    are finished (scored, stored, reported) in the plan's order either way."""
    overlap = overlaps_cells(ctx.plan)
    pending: list[_Started] = []  # at most one

    def settle() -> None:
        while pending:
            _finish_cell(ctx, state, pending.pop())
            if stop_after is not None and ctx.summary.computed >= stop_after:
                os._exit(17)  # test hook: a worker that dies without any clean-up

    try:
        for cond in conds:
            if ctx.stop.is_set():
                raise RunStopped
            if cond.noise != CLEAN and (cond.noise, cond.seed) not in ctx.banks:
                settle()
                _load_banks(ctx)
            started = _start_cell(ctx, state, cond, settle)
            settle()  # the previous cell, while the device works on this one
            if started is not None:
                pending.append(started)
            if not overlap:
                settle()
    finally:
        settle()  # a stopped run still stores the cell it computed


def _start_cell(ctx: RunContext, state: ModelState, cond: Condition, settle: Callable[[], None]) -> _Started | None:
    """Hand the cell's clips to the model; None when the cell needs no forward (stored, or it cannot run).
    `settle` finishes the cell still in flight: called before anything that must come after it (a progress line,
    a rate change that rebuilds the model's tensors)."""
    plan, clipset, summary, progress, card = ctx.plan, ctx.clipset, ctx.summary, ctx.progress, state.card
    if _cannot_run(plan, card, cond):
        settle()
        with ctx.lock:
            summary.skipped_cells.append((card.name, cond.label(), "model cannot change rate natively"))
            progress.cell(card.name, cond.label(), "skipped (cannot change rate; try --rate-mode bandlimit)", None)
        return None
    noise_t, version = ctx.banks[(cond.noise, cond.seed)] if cond.noise != CLEAN else (None, "")
    key = _cell_key(plan, card, state.sha, clipset, cond, version)
    state.keys.append(key.digest())
    if state.model is not None and not plan.force and ctx.store.has_ok(key):
        settle()
        with ctx.lock:
            summary.reused += 1
            progress.cell(card.name, cond.label(), "stored", None)
        return None
    result = CellResult(key=key, protocol=clipset.protocol, label_names=tuple(clipset.label_names), status="failed",
                        error=state.load_error)
    t0 = time.perf_counter()
    preds = ready = None
    if state.model is not None:
        try:
            _check_labels(state, clipset)
            if _changes_rate(state, cond.rate_hz, plan):
                settle()  # the cell in flight reads the tensors the rate change replaces
                _set_rate(state, cond.rate_hz, plan)
                state.forward.reset()  # so do the captured graphs
            with record_function("kwsbench.predict"):  # named spans for torch.profiler (no cost otherwise)
                preds = _predict(state.forward, ctx.clean, noise_t, cond, card, plan, ctx.provider,
                                 _on_batch(ctx, card.name, cond.label()), state.pace,
                                 ctx.lanes if card.cpu_lanes else 1)
            if preds.is_cuda:  # queued now, behind this cell's forwards and ahead of the next cell's
                preds = preds.to("cpu", non_blocking=True)
                ready = torch.cuda.Event()
                ready.record()
        except Exception as err:  # noqa: BLE001 - a failing forward is a failed cell
            result.error = f"{type(err).__name__}: {err}{_memory_hint(err, plan)}"
    return _Started(cond, result, preds, ready, t0)


def _finish_cell(ctx: RunContext, state: ModelState, started: _Started) -> None:
    """Score a started cell's predictions (waiting for the device where they are computed), store the cell and
    report it. Its seconds run from its start or the previous cell's finish, whichever is later, so the cells'
    seconds add up to the model's time even while two overlap."""
    plan, clipset, summary, progress, card = ctx.plan, ctx.clipset, ctx.summary, ctx.progress, state.card
    cond, result = started.cond, started.result
    if started.preds is not None:
        try:
            with record_function("kwsbench.score"):
                if started.ready is not None:
                    started.ready.synchronize()  # a device error of the forward shows here
                preds = started.preds.numpy()
                scores = _score(clipset.labels, preds, clipset.speaker_ids, len(clipset.label_names), cond.seed)
            result = CellResult(key=result.key, protocol=clipset.protocol, label_names=tuple(clipset.label_names),
                                status="ok", predictions=preds, **scores)
        except Exception as err:  # noqa: BLE001 - a failing forward is a failed cell
            result.error = f"{type(err).__name__}: {err}{_memory_hint(err, plan)}"
    now = time.perf_counter()
    result.seconds = now - max(started.t0, state.finished_at)
    state.finished_at = now
    t_store = time.perf_counter()
    with record_function("kwsbench.results.store"):
        ctx.store.put_cell(summary.run_id, result)
    speed = result.n / result.seconds if result.status == "ok" and result.seconds > 0 else None
    with ctx.lock:
        summary.timings["store"] += time.perf_counter() - t_store
        if result.status == "ok":
            summary.computed += 1
            summary.clip_evals += result.n
        else:
            summary.failed.append((card.name, cond.label(), result.error))
        progress.cell(card.name, cond.label(), result.status if result.status == "ok" else "FAILED", speed)


def _on_batch(ctx: RunContext, model: str, condition: str) -> Callable[[int], None]:
    """Progress inside a cell; where the run is being stopped, the model's worker stops here (RunStopped)."""
    inner = ctx.progress.within(model, condition, ctx.clean.shape[0])

    def on_batch(done: int) -> None:
        if ctx.stop.is_set():
            raise RunStopped
        with ctx.lock:
            inner(done)

    return on_batch
