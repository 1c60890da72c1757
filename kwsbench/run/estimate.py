"""How long a run will take, said before it starts: cells to compute and a rough wall time.

A model's speed (clips per second) comes from the store where it can: the median speed of that model's
earlier cells on the same kind of device. A model with no history gets MACs per clip (kwsbench.cost)
divided by a MAC rate: the median rate of the store's earlier cells on that device, else DEFAULT_MAC_RATE.
The note says which models were estimated which way, so nobody takes the figure for a measurement.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from kwsbench.models.registry import ModelCard
from kwsbench.results.store import CellKey, Store

# MACs per second of a kwsbench forward on a 2-core CPU when the store has nothing to calibrate with: the
# default run (`kwsbench run --noise babble --snr -5`, 26 models x 2 cells x 480 clips) did 1.8 GMAC/s in
# aggregate on the shared 2-core machine (per model 0.3-15 GMAC/s: SSM scans cost more than their MACs)
DEFAULT_MAC_RATE = 2e9
# loading weights, the first forward, scoring and storing: seconds a cell costs beyond its clips
CELL_OVERHEAD_S = 0.3
# The same two on a CUDA device, from one H200 (2026-12-04): the public grid, 12 models x 36 conditions x
# 1,245 clips (7.5 T MACs), took 9.6 s; most cells took ~10 ms whatever their MACs (the first cell of a model,
# with its warm-up and graph capture, ~0.5 s), so a cell's fixed cost dominates and the MAC rate matters only
# for the large models (s-edge-full, 2.2 G MACs a clip, ran at 1.35k clips/s = 3 T MAC/s). Without these the
# CPU figures announced "roughly 64 min" for that 12-s run.
GPU_MAC_RATE = 2e12
GPU_CELL_OVERHEAD_S = 0.015


@dataclass
class Estimate:
    cells: int = 0  # every cell of the plan this process owns
    stored: int = 0  # already in the store (reused, unless --force)
    seconds: float = 0.0
    measured: list[str] = field(default_factory=list)  # models timed from the store's earlier cells
    from_macs: list[str] = field(default_factory=list)  # models estimated from their MACs
    unknown: list[str] = field(default_factory=list)  # no history and no cost function
    mac_rate: float = DEFAULT_MAC_RATE
    mac_rate_measured: bool = False

    @property
    def to_compute(self) -> int:
        return self.cells - self.stored

    def describe(self) -> str:
        basis = []
        if self.measured:
            basis.append(f"{len(self.measured)} models from their speed in earlier runs on this device")
        if self.from_macs:
            how = "measured in earlier runs" if self.mac_rate_measured else "assumed, no earlier runs here"
            basis.append(f"{len(self.from_macs)} from MACs at {self.mac_rate / 1e9:.1f} GMAC/s ({how})")
        if self.unknown:
            basis.append(f"{len(self.unknown)} with no basis, not counted ({', '.join(self.unknown)})")
        stored = f", {self.stored} already stored (reused)" if self.stored else ""
        return (f"{self.to_compute} cells to compute{stored}; roughly {_duration(self.seconds)} "
                f"(estimate: {'; '.join(basis) or 'nothing to compute'})")


def _duration(seconds: float) -> str:
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
    """clips/s of every earlier ok cell, per model, from runs on the same kind of device."""
    kind = _device_kind(device)
    runs = {run_id for run_id, dev in store.conn.execute("SELECT run_id, device FROM runs")
            if _device_kind(dev or "") == kind}
    rows = store.conn.execute("SELECT model, run_id, n, seconds FROM cells WHERE status = 'ok' AND seconds > 0")
    speeds: dict[str, list[float]] = {}
    for model, run_id, n, seconds in rows:
        if run_id in runs and n:
            speeds.setdefault(model, []).append(n / seconds)
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


def estimate(cards: list[ModelCard], cells_of: Callable[[ModelCard], list[CellKey | None]], clips: int,
             store: Store, device: str) -> Estimate:
    """`cells_of(card)`: the keys of the card's cells (None where the key cannot be known before the model
    loads); a key already stored ok is not counted as work."""
    gpu = _device_kind(device) == "cuda"
    est = Estimate(mac_rate=GPU_MAC_RATE if gpu else DEFAULT_MAC_RATE)
    overhead = GPU_CELL_OVERHEAD_S if gpu else CELL_OVERHEAD_S
    speeds = history(store, device)
    todo: dict[str, int] = {}
    for card in cards:
        keys = cells_of(card)
        stored = sum(1 for k in keys if k is not None and store.has_ok(k))
        est.cells += len(keys)
        est.stored += stored
        if len(keys) > stored:
            todo[card.name] = len(keys) - stored
    unmeasured = [c for c in cards if c.name in todo and c.name not in speeds]
    macs = {c.name: _macs(c) for c in unmeasured}
    if unmeasured:
        known = [c for c in cards if c.name in speeds and c.cost is not None][:CALIBRATION_MODELS]
        rates = [statistics.median(speeds[c.name]) * m for c in known for m in [_macs(c)] if m]
        if rates:
            est.mac_rate, est.mac_rate_measured = statistics.median(rates), True
    for card in cards:
        if card.name not in todo:
            continue
        if card.name in speeds:
            est.measured.append(card.name)
            per_clip = 1.0 / statistics.median(speeds[card.name])
        elif macs.get(card.name):
            est.from_macs.append(card.name)
            per_clip = macs[card.name] / est.mac_rate
        else:
            est.unknown.append(card.name)
            continue
        est.seconds += todo[card.name] * (clips * per_clip + overhead)
    return est
