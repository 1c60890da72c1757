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
"""

from __future__ import annotations

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


def tolerance(rep: Reported, tol: float) -> tuple[float, str]:
    """max(--tol, the row's protocol spread) and what it came from."""
    if rep.spread is not None and rep.spread > tol:
        return rep.spread, f"spread ({rep.spread_source})"
    return tol, "--tol"


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


def matching_rows(baselines: list[Reported], model_names: set[str], cell: StoredCell) -> list[Reported]:
    """Reported rows for the cell's model (any of its names) and condition."""
    return [r for r in baselines if r.model in model_names and r.noise == cell.noise
            and (r.snr_db is None if cell.snr_db is None else r.snr_db == cell.snr_db)]
