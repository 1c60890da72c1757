"""How long a run will take, said before it starts: cells to compute and a rough wall time.

A model's speed (clips per second) comes, in this order, from:
1. the store: the median speed of that model's earlier cells on the same kind of device;
2. on a CPU, the speed table shipped beside this module (cpu_speeds.json: every model's clips/s in a
   `kwsbench run --quick` on a 2-core machine, written by `benchmarks/main_job.py --write-speeds`), scaled by
   this machine's matrix-multiply rate measured at start-up against the rate measured with the table; on a CUDA
   device the table measured on one H200 (gpu_speeds.json, `benchmarks/gpu_speeds.py`), not scaled;
3. MACs per clip (kwsbench.cost) divided by a MAC rate: from the store's earlier cells on that device, else
   from the table's models (scaled as above), else DEFAULT_MAC_RATE (GPU_MAC_RATE on CUDA).
The note says which models were estimated which way, so nobody takes the figure for a measurement. No model
is built for the estimate unless it falls through to 3 and the table does not list its MACs (counting MACs
builds conv nets and runs them).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kwsbench.models.registry import ModelCard
from kwsbench.results.store import CellKey, Store

# MACs per second of a kwsbench forward on a 2-core CPU when the store has nothing to calibrate with: the
# default run (`kwsbench run --noise babble --snr -5`, 26 models x 2 cells x 480 clips) did 1.8 GMAC/s in
# aggregate on the shared 2-core machine (per model 0.3-15 GMAC/s: SSM scans cost more than their MACs)
DEFAULT_MAC_RATE = 2e9
# loading weights, the first forward, scoring and storing: seconds a cell costs beyond its clips. On a CPU the
# table's speeds include the first forward; what is left is measured in the quick run: model build ~25 ms per
# model (2 cells) + store ~7 ms per cell.
CELL_OVERHEAD_S = 0.02
SPEED_TABLE = Path(__file__).with_name("cpu_speeds.json")
# Every registry card's clips/s on one H200 (registry run, 1,250 clips, batch 2048): on another GPU a guide only,
# but far closer than MACs at one rate, which announced "roughly 4 min" for a 75-s registry run once S-Edge's
# eval ran 3-4x faster than the rate had been set from.
GPU_SPEED_TABLE = Path(__file__).with_name("gpu_speeds.json")
# The same two on a CUDA device, from one H200 (2026-12-04): the public grid, 12 models x 36 conditions x
# 1,245 clips (7.5 T MACs), took 9.6 s; most cells took ~10 ms whatever their MACs (the first cell of a model,
# with its warm-up and graph capture, ~0.5 s), so a cell's fixed cost dominates and the MAC rate matters only
# for the large models (s-edge-full, 2.2 G MACs a clip, ran at 1.35k clips/s = 3 T MAC/s). Without these the
# CPU figures announced "roughly 64 min" for that 12-s run.
GPU_MAC_RATE = 2e12
GPU_CELL_OVERHEAD_S = 0.015
# What a model costs a process once, whatever its cells: building it and loading its weights (~25 ms on a
# 2-core CPU, see CELL_OVERHEAD_S); on a GPU also the first forward and CUDA graph capture (0.04-0.17 s for
# every model after the process's first on one H200, 2026-12-04). Used to deal cells out to torchrun ranks.
MODEL_OVERHEAD_S = 0.03
GPU_MODEL_OVERHEAD_S = 0.15


@dataclass
class Estimate:
    cells: int = 0  # every cell of the plan this process owns
    stored: int = 0  # already in the store (reused, unless --force)
    seconds: float = 0.0
    measured: list[str] = field(default_factory=list)  # models timed from the store's earlier cells
    from_macs: list[str] = field(default_factory=list)  # models estimated from their MACs
    unknown: list[str] = field(default_factory=list)  # no history and no cost function
    from_table: list[str] = field(default_factory=list)  # models from the CPU speed table, scaled
    mac_rate: float = DEFAULT_MAC_RATE
    mac_rate_measured: bool = False
    mac_rate_basis: str = "assumed, no earlier runs here"
    matmul_here: float | None = None  # GFLOP/s measured at start-up (CPU)
    matmul_table: float | None = None  # GFLOP/s measured with the speed table
    table_machine: str = ""  # the machine the speed table was measured on
    per_clip: dict[str, float] = field(default_factory=dict)  # expected seconds per clip, per model with a basis
    cell_overhead: float = CELL_OVERHEAD_S
    model_overhead: float = MODEL_OVERHEAD_S

    def cell_seconds(self, model: str, clips: int) -> float:
        """Expected seconds of one cell still to compute; a model without any basis counts as the median
        model (only used to deal cells out, never added to the announced total)."""
        per_clip = self.per_clip.get(model)
        if per_clip is None:
            per_clip = statistics.median(self.per_clip.values()) if self.per_clip else 0.0
        return clips * per_clip + self.cell_overhead

    @property
    def to_compute(self) -> int:
        return self.cells - self.stored

    def describe(self) -> str:
        basis = []
        if self.measured:
            basis.append(f"{len(self.measured)} models from their speed in earlier runs on this device")
        if self.from_table and self.matmul_here is not None:
            basis.append(f"{len(self.from_table)} from a speed table measured on a 2-core CPU, scaled by this "
                         f"machine's matmul rate ({self.matmul_here:.0f} GFLOP/s here, {self.matmul_table:.0f} there)")
        elif self.from_table:
            basis.append(f"{len(self.from_table)} from a speed table measured on "
                         f"{self.table_machine or 'another machine'} (not scaled to this device)")
        if self.from_macs:
            basis.append(f"{len(self.from_macs)} from MACs at {self.mac_rate / 1e9:.1f} GMAC/s ({self.mac_rate_basis})")
        if self.unknown:
            basis.append(f"{len(self.unknown)} with no basis, not counted ({', '.join(self.unknown)})")
        stored = f", {self.stored} already stored (reused)" if self.stored else ""
        return (f"{self.to_compute} cells to compute{stored}; roughly {duration(self.seconds)} "
                f"(estimate: {'; '.join(basis) or 'nothing to compute'})")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _device_kind(device: str) -> str:
    """'cuda' or 'cpu' (or 'mps'), from a plan's device or a run's recorded one such as 'cpu (cpu)'."""
    first = (str(device).split() or [""])[0]
    return "cuda" if first.startswith("cuda") else first


def history(store: Store, device: str) -> dict[str, list[float]]:
    """clips/s of earlier ok cells, per model, from runs on the same kind of device. A model's first cell in a
    run also paid its one-off costs (first forward, kernel selection: bc-resnet-1's clean cell of a quick run
    read 15-46 clips/s where its next read 313-1,177), so it is left out wherever that run has later cells of
    the model."""
    kind = _device_kind(device)
    runs = {run_id for run_id, dev in store.conn.execute("SELECT run_id, device FROM runs")
            if _device_kind(dev or "") == kind}
    rows = store.conn.execute("SELECT model, run_id, n, seconds FROM cells WHERE status = 'ok' AND seconds > 0 "
                              "AND n > 0 ORDER BY model, run_id, created, rowid")
    per_run: dict[tuple[str, int], list[float]] = {}
    for model, run_id, n, seconds in rows:
        if run_id in runs:
            per_run.setdefault((model, run_id), []).append(n / seconds)
    speeds: dict[str, list[float]] = {}
    for (model, _), cells in per_run.items():
        speeds.setdefault(model, []).extend(cells[1:] or cells)
    return speeds


def _macs(card: ModelCard) -> int | None:
    from kwsbench.cost import model_cost

    if card.cost is None:
        return None
    try:
        return int(model_cost(card, card.native_rate).total_macs)
    except Exception:  # noqa: BLE001 - an estimate never stops a run
        return None


CALIBRATION_MODELS = 3  # models with history whose MACs calibrate the MAC rate (each costs a model build)
MATMUL_N = 384  # square fp32 matmul timed at start-up: ~113 MFLOP, a few ms on a 2-core CPU


def matmul_gflops(repeats: int = 7) -> float:
    """fp32 matrix-multiply rate of one core of this machine now, GFLOP/s: the fastest of `repeats` timed
    products after one warm-up. A machine busy with other work still reads slower (every product is slowed),
    while one product delayed does not halve the estimate (the median read 58 instead of ~125 GFLOP/s once,
    on a fresh home right after data synthesis). One thread, as each CPU model worker runs
    (kwsbench.run.workers): on two threads a product waits for a descheduled thread whenever another job holds
    a core, and read 3-9 instead of ~145 GFLOP/s under a load of 4, announcing minutes for a 40-s run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)  # the values do not matter; the caller's global RNG stays untouched
        a = torch.rand(MATMUL_N, MATMUL_N, generator=gen)
        b = torch.rand(MATMUL_N, MATMUL_N, generator=gen)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return 2 * MATMUL_N**3 / min(times) / 1e9


@dataclass(frozen=True)
class SpeedTable:
    """Clips/s per model measured in one run, and MACs per clip. A CPU's table holds the matmul rate measured
    beside it (speeds are scaled by this machine's against it); a GPU's has none (speeds used as measured)."""

    matmul_gflops: float | None  # None: a GPU's table, used as measured (no CPU matmul rate scales it)
    clips_per_s: dict[str, float]
    macs: dict[str, int]
    measured: str = ""  # where and when
    machine: str = ""  # the machine in a few words, for the run's announcement ("one NVIDIA H200")

    @classmethod
    def load(cls, path: Path | None = None) -> SpeedTable | None:
        try:
            raw = json.loads((path or SPEED_TABLE).read_text())
            matmul = raw.get("matmul_gflops")
            matmul = None if matmul is None else float(matmul)
            if matmul is not None and not (math.isfinite(matmul) and matmul > 0):
                raise ValueError(f"matmul_gflops {matmul}")  # the estimate would divide by it
            # a speed of 0 (a rate rounded to 0 by benchmarks/gpu_speeds.py) is no speed: the model goes by its MACs
            speeds = {k: float(v) for k, v in raw["clips_per_s"].items()}
            return cls(matmul, {k: v for k, v in speeds.items() if math.isfinite(v) and v > 0},
                       {k: int(v) for k, v in raw.get("macs", {}).items()}, str(raw.get("measured", "")),
                       str(raw.get("machine", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no table (or a damaged one)
            return None

    def mac_rate(self) -> float | None:
        """MACs/s of the table's models (median), for models the table does not list."""
        rates = [self.clips_per_s[m] * macs for m, macs in self.macs.items() if m in self.clips_per_s and macs]
        return statistics.median(rates) if rates else None


def _calibrate_macs(est: Estimate, cards: list[ModelCard], speeds: dict[str, list[float]],
                    table: SpeedTable | None, scale: Callable[[], float], known_macs: dict[str, int]) -> None:
    """The MAC rate for models with neither history nor a table entry: earlier cells, else the table."""
    known = [c for c in cards if c.name in speeds and c.cost is not None][:CALIBRATION_MODELS]
    rates = [statistics.median(speeds[c.name]) * m for c in known for m in [known_macs.get(c.name) or _macs(c)] if m]
    if rates:
        est.mac_rate, est.mac_rate_measured, est.mac_rate_basis = statistics.median(rates), True, \
            "measured in earlier runs"
    elif table is not None and table.mac_rate():
        est.mac_rate, est.mac_rate_measured = table.mac_rate() * scale(), True
        est.mac_rate_basis = "the speed table's models, scaled by this machine's matmul rate"


def estimate(cards: list[ModelCard], cells_of: Callable[[ModelCard], list[CellKey | None]], clips: int,
             store: Store, device: str, workers: int = 1, lanes: int = 1) -> Estimate:
    """`cells_of(card)`: the keys of the card's cells (None where the key cannot be known before the model
    loads); a key already stored ok is not counted as work. `workers`: models evaluated at once (CPU runs,
    kwsbench.run.workers); `lanes`: threads per model (in lanes of clips or inside each forward,
    kwsbench.run.lanes). The table's speeds and the MAC rate are one thread's, so a model is counted `lanes`
    times as fast (one model on two threads ran about twice its one-thread speed); speeds from the store are whole
    cells' as they ran (most often in the same set-up as this run), so they are taken as they are."""
    kind = _device_kind(device)
    gpu = kind == "cuda"
    est = Estimate(mac_rate=GPU_MAC_RATE if gpu else DEFAULT_MAC_RATE,
                   cell_overhead=GPU_CELL_OVERHEAD_S if gpu else CELL_OVERHEAD_S,
                   model_overhead=GPU_MODEL_OVERHEAD_S if gpu else MODEL_OVERHEAD_S)
    speeds = history(store, device)
    shipped = SpeedTable.load()
    # the CPU table's speeds are a CPU's, the GPU table's an H200's; the CPU table's MAC counts hold on any device
    table = shipped if kind == "cpu" else SpeedTable.load(GPU_SPEED_TABLE) if gpu else None
    known_macs = shipped.macs if shipped is not None else {}
    if table is not None:
        est.table_machine = table.machine

    def scale() -> float:  # this machine's matmul rate over the table's, measured once, when first needed
        if table.matmul_gflops is None:
            return 1.0
        if est.matmul_here is None:
            est.matmul_here, est.matmul_table = matmul_gflops(), table.matmul_gflops
        return est.matmul_here / est.matmul_table

    todo: dict[str, int] = {}
    for card in cards:
        keys = cells_of(card)
        stored = sum(1 for k in keys if k is not None and store.has_ok(k))
        est.cells += len(keys)
        est.stored += stored
        if len(keys) > stored:
            todo[card.name] = len(keys) - stored
    in_table = table.clips_per_s if table is not None else {}
    unmeasured = [c for c in cards if c.name in todo and c.name not in speeds and c.name not in in_table]
    # counting MACs builds a model (and runs conv nets): ~0.1-0.4 s each, so the table's counts come first
    macs = {c.name: known_macs.get(c.name) or _macs(c) for c in unmeasured}
    if unmeasured:
        _calibrate_macs(est, cards, speeds, table, scale, known_macs)
    for card in cards:
        if card.name not in todo:
            continue
        if card.name in speeds:
            est.measured.append(card.name)
            per_clip = 1.0 / statistics.median(speeds[card.name])
        elif card.name in in_table:
            est.from_table.append(card.name)
            per_clip = 1.0 / (in_table[card.name] * scale() * lanes)
        elif macs.get(card.name):
            est.from_macs.append(card.name)
            per_clip = macs[card.name] / (est.mac_rate * lanes)
        else:
            est.unknown.append(card.name)
            continue
        est.per_clip[card.name] = per_clip
        est.seconds += todo[card.name] * est.cell_seconds(card.name, clips)
    est.seconds /= max(1, min(workers, len(todo)))
    return est
