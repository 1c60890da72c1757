"""Verdicts: a published row against a measured cell, as a pure function of the two.

The tolerance of a row is the larger of `--tol` and the spread its protocol's own repeated measurements
show (a row's `spread`, with its source); the measured interval widens it:

- MATCH: |measured - reported| <= tolerance;
- WITHIN_CI: the reported value lies within the measured interval widened by the tolerance;
- DEVIATES: farther than that;
- NOT_COMPARABLE: protocol (with no bridge), class set, split, SNR definition, rate or an unverified number
  differ; still shown side by side.

A row of another protocol that a post-stratified bridge reaches (`results.bridge`) is judged the same way
on the bridged estimate, labelled CONSISTENT* (MATCH or WITHIN_CI) or DEVIATES*, never plain MATCH. No
bridge crosses a split.

Several noise seeds (`verdict_over_seeds`): the measured value is the mean over the seeds, its interval the mean
of the seeds' interval bounds (every seed scores the same clips), and the measured seed spread (the range of the
seeds' values) is a spread like the row's own: the tolerance is the largest of `--tol`, the row's spread and the
measured seed spread, and `tol_basis` says which.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kwsbench.results.baselines import Reported
from kwsbench.results.bridge import BridgeEstimate

if TYPE_CHECKING:
    from kwsbench.results.store import StoredCell

MATCH, WITHIN_CI, DEVIATES, NOT_COMPARABLE = "MATCH", "WITHIN_CI", "DEVIATES", "NOT_COMPARABLE"
CONSISTENT_BRIDGED, DEVIATES_BRIDGED = "CONSISTENT*", "DEVIATES*"
JUDGED = (MATCH, WITHIN_CI, DEVIATES, CONSISTENT_BRIDGED, DEVIATES_BRIDGED)
DEVIATING = (DEVIATES, DEVIATES_BRIDGED)


@dataclass(frozen=True)
class SeedSpread:
    """The measured value (pp) of one condition under each noise seed."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def range(self) -> float:
        return max(self.values) - min(self.values)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values)

    def text(self) -> str:
        return f"range {self.range:.2f}, SD {self.sd:.2f} pp over {self.n} seeds"


@dataclass
class Comparison:
    reported: Reported
    measured: float | None  # percent: the cell's accuracy, or the (bridged) post-stratified estimate
    ci: tuple[float, float] | None  # percent
    verdict: str
    reasons: list[str] = field(default_factory=list)
    tol: float = 0.0  # the tolerance used (pp)
    tol_basis: str = "--tol"  # "--tol" or "spread (source)"
    estimate: BridgeEstimate | None = None  # set when the measured value is post-stratified
    bridged: bool = False  # the estimate crosses protocols
    seeds: SeedSpread | None = None  # several noise seeds: measured is their mean

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.reported.value


def comparability(rep: Reported, cell: StoredCell, bridged: bool = False) -> list[str]:
    """Why a reported row and a measured cell cannot be compared (empty: comparable). `bridged`: a
    post-stratified bridge reaches the reported protocol from the measured one."""
    reasons = []
    if rep.protocol != str(cell.protocol).lower() and not bridged:
        reasons.append(f"protocol: reported {rep.protocol}, measured {cell.protocol}")
    if rep.classes != len(cell.label_names):
        reasons.append(f"class set: reported {rep.classes}, measured {len(cell.label_names)}")
    if rep.split != "test":
        reasons.append(f"reported on the {rep.split} split")
    if rep.noise != "clean" and rep.snr_def != cell.snr_def:
        reasons.append(f"SNR definition: reported {rep.snr_def}, measured {cell.snr_def}")
    if rep.rate_hz != cell.rate_hz:
        reasons.append(f"rate: reported {rep.rate_hz}, measured {cell.rate_hz}")
    if rep.verification == "U":
        reasons.append("reported value unverified")
    return reasons


def tolerance(rep: Reported, tol: float, seeds: SeedSpread | None = None) -> tuple[float, str]:
    """max(--tol, the row's protocol spread, the measured seed spread) and what it came from."""
    best = (tol, "--tol")
    if rep.spread is not None and rep.spread > best[0]:
        best = (rep.spread, f"spread ({rep.spread_source})")
    if seeds is not None and seeds.range > best[0]:
        best = (seeds.range, f"measured seed spread (range over {seeds.n} seeds)")
    return best


def cell_interval(cell: StoredCell) -> tuple[float, float] | None:
    """The measured interval in percent: the union of Wilson and (where present) the speaker bootstrap."""
    lows = [v for v in (cell.ci_low, cell.boot_low) if v is not None]
    highs = [v for v in (cell.ci_high, cell.boot_high) if v is not None]
    return (100.0 * min(lows), 100.0 * max(highs)) if lows and highs else None


def decide(measured: float, ci: tuple[float, float] | None, reported: float, tol: float, bridged: bool) -> str:
    if abs(measured - reported) <= tol + 1e-9:
        plain = MATCH
    else:
        lo, hi = ci or (measured, measured)
        plain = WITHIN_CI if lo - tol - 1e-9 <= reported <= hi + tol + 1e-9 else DEVIATES
    if bridged:
        return DEVIATES_BRIDGED if plain == DEVIATES else CONSISTENT_BRIDGED
    return plain


def verdict(rep: Reported, cell: StoredCell, tol: float = 2.0, estimate: BridgeEstimate | None = None,
            bridged: bool = False) -> Comparison:
    """Compare one reported row with one measured cell (accuracy in 0..1 in the cell). `estimate`: the
    post-stratified estimate of the reported protocol's accuracy (`bridged` when it crosses protocols)."""
    tol_used, basis = tolerance(rep, tol)
    reasons = comparability(rep, cell, bridged=bridged and estimate is not None)
    if estimate is not None and not reasons:
        measured, ci = 100.0 * estimate.estimate, (100.0 * estimate.low, 100.0 * estimate.high)
    else:
        measured, ci = 100.0 * cell.accuracy, cell_interval(cell)
    if reasons:
        return Comparison(rep, measured, ci, NOT_COMPARABLE, reasons, tol_used, basis)
    used_bridge = bridged and estimate is not None
    return Comparison(rep, measured, ci, decide(measured, ci, rep.value, tol_used, used_bridge), [], tol_used, basis,
                      estimate, used_bridge)


def verdict_over_seeds(rep: Reported, cells: list[StoredCell], tol: float,
                       estimates: list[BridgeEstimate | None], bridged: bool = False) -> Comparison:
    """One row against the cells of one condition that differ only in the noise seed (`estimates`: per cell, as
    for `verdict`). One cell: `verdict` itself."""
    single = [verdict(rep, c, tol, e, bridged) for c, e in zip(cells, estimates, strict=True)]
    if len(single) == 1 or any(s.verdict == NOT_COMPARABLE or s.ci is None for s in single):
        return single[0]
    spread = SeedSpread(tuple(c.seed for c in cells), tuple(s.measured for s in single))
    measured = statistics.fmean(spread.values)
    ci = (statistics.fmean(s.ci[0] for s in single), statistics.fmean(s.ci[1] for s in single))
    tol_used, basis = tolerance(rep, tol, spread)
    used_bridge = single[0].bridged
    return Comparison(rep, measured, ci, decide(measured, ci, rep.value, tol_used, used_bridge), [], tol_used,
                      basis, single[0].estimate, used_bridge, spread)


def matching_rows(baselines: list[Reported], model_names: set[str], cell: StoredCell) -> list[Reported]:
    """Reported rows for the cell's model (any of its names) and condition."""
    return [r for r in baselines if r.model in model_names and r.noise == cell.noise
            and (r.snr_db is None if cell.snr_db is None else r.snr_db == cell.snr_db)]
