"""Verdicts: a published row against a measured cell, as a pure function of the two.

MATCH (|measured - reported| <= tol), WITHIN_CI (reported value inside the measured interval), DEVIATES,
NOT_COMPARABLE (protocol, class set, split, SNR definition, rate or an unverified number differ; still
shown side by side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kwsbench.results.baselines import Reported

if TYPE_CHECKING:
    from kwsbench.results.store import StoredCell

MATCH, WITHIN_CI, DEVIATES, NOT_COMPARABLE = "MATCH", "WITHIN_CI", "DEVIATES", "NOT_COMPARABLE"


@dataclass
class Comparison:
    reported: Reported
    measured: float | None  # percent
    ci: tuple[float, float] | None  # percent
    verdict: str
    reasons: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured - self.reported.value


def comparability(rep: Reported, cell: StoredCell) -> list[str]:
    """Why a reported row and a measured cell cannot be compared (empty: comparable)."""
    reasons = []
    if rep.protocol != str(cell.protocol).lower():
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


def verdict(rep: Reported, cell: StoredCell, tol: float = 2.0) -> Comparison:
    """Compare one reported row with one measured cell (accuracy in 0..1 in the cell)."""
    measured = 100.0 * cell.accuracy
    # the measured interval: the union of Wilson and (where present) the speaker bootstrap interval
    lows = [v for v in (cell.ci_low, cell.boot_low) if v is not None]
    highs = [v for v in (cell.ci_high, cell.boot_high) if v is not None]
    ci = (100.0 * min(lows), 100.0 * max(highs)) if lows and highs else None
    reasons = comparability(rep, cell)
    if reasons:
        return Comparison(rep, measured, ci, NOT_COMPARABLE, reasons)
    if abs(measured - rep.value) <= tol + 1e-9:
        return Comparison(rep, measured, ci, MATCH)
    if ci and ci[0] <= rep.value <= ci[1]:
        return Comparison(rep, measured, ci, WITHIN_CI)
    return Comparison(rep, measured, ci, DEVIATES)


def matching_rows(baselines: list[Reported], model_names: set[str], cell: StoredCell) -> list[Reported]:
    """Reported rows for the cell's model (any of its names) and condition."""
    return [r for r in baselines if r.model in model_names and r.noise == cell.noise
            and (r.snr_db is None if cell.snr_db is None else r.snr_db == cell.snr_db)]
