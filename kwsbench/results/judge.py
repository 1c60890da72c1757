"""Judge stored cells against the papers' rows: the one function `reproduce` and the HTML report both call, so
the two can never disagree about a store.

For each measured condition (the cells that differ only in the noise seed are one condition) and each published
row of that model and condition: the bridged (post-stratified) estimate where the store holds what the bridge
needs (`results.bridge`), one verdict per seed, and over several seeds one verdict on their mean with the seed
spread (`results.verdicts.verdict_over_seeds`).

The silence items a bridge measures (crops of the background-noise recordings, or all-zero audio) are cells of
their own protocol, `<reported protocol>:silence...`; they are looked up in the store, the one with the most
items first, and never judged themselves.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from kwsbench.data.clipset import BRIDGE_ITEMS_MARK, KEYWORDS_10, is_bridge_items
from kwsbench.results.baselines import ProtocolPrior, Reported
from kwsbench.results.bridge import BridgeEstimate, Stratum, post_stratified
from kwsbench.results.store import FP32, Store, StoredCell
from kwsbench.results.verdicts import DEVIATING, NOT_COMPARABLE, Comparison, matching_rows, verdict_over_seeds


def is_silence_items(cell: StoredCell) -> bool:
    return is_bridge_items(cell.protocol)


def _condition(cell: StoredCell, seed: bool = False) -> tuple:
    return (cell.model, cell.checkpoint_sha256, cell.noise, cell.noise_version, cell.snr_db, cell.snr_def,
            cell.rate_hz, cell.rate_mode, cell.decimation, cell.precision, *((cell.seed,) if seed else ()))


def silence_index(cells: Iterable[StoredCell]) -> dict[tuple, StoredCell]:
    """(reported protocol, condition with seed) -> the silence-item cell with the most items."""
    out: dict[tuple, StoredCell] = {}
    for c in cells:
        if not is_silence_items(c):
            continue
        key = (str(c.protocol).split(BRIDGE_ITEMS_MARK, 1)[0], *_condition(c, seed=True))
        if key not in out or (c.n or 0) > (out[key].n or 0):
            out[key] = c
    return out


def bridge_estimate(store: Store, cell: StoredCell, rep: Reported, priors: dict[str, ProtocolPrior],
                    silence: dict[tuple, StoredCell]) -> BridgeEstimate | None:
    """The reported protocol's accuracy, post-stratified from the cell's per-clip predictions (None when either
    protocol's composition is not recorded or the predictions are not stored)."""
    prior, measured = priors.get(rep.protocol), priors.get(str(cell.protocol))
    names = list(cell.label_names)
    if prior is None or measured is None or not {"silence", "unknown", *KEYWORDS_10} <= set(names):
        return None
    _, speakers, labels = store.clips(cell.fingerprint)
    predictions = store.predictions(cell.cell_key)
    if len(predictions) != len(labels):
        return None
    correct = (predictions == labels).astype(np.float64)
    keyword = np.isin(labels, [names.index(k) for k in KEYWORDS_10])
    weights = prior.weights()
    strata, missing = [], {}
    for name, mask in (("keyword", keyword), ("unknown", labels == names.index("unknown"))):
        strata.append(Stratum(name, weights[name], correct[mask], tuple(np.asarray(speakers, dtype=object)[mask])))
    if prior.silence == measured.silence:
        mask = labels == names.index("silence")
        strata.append(Stratum("silence", weights["silence"], correct[mask], ("",) * int(mask.sum())))
    elif (sil := silence.get((rep.protocol, *_condition(cell, seed=True)))) is not None:
        sil_correct = (store.predictions(sil.cell_key) == names.index("silence")).astype(np.float64)
        # identical all-zero items (clean): their recall is known exactly once the predictions agree
        exact = prior.silence == "zeros" and cell.noise == "clean" and len(set(sil_correct.tolist())) == 1
        strata.append(Stratum("silence", weights["silence"], sil_correct, ("",) * len(sil_correct), exact=exact))
    else:
        missing["silence"] = weights["silence"]
    if any(len(s.correct) == 0 for s in strata):
        return None
    return post_stratified(strata, missing)


def check_tolerance(tol: float) -> None:
    """--tol is a width in percentage points: a negative or non-finite one would judge nothing it claims to
    (|Δ| <= -3 never holds; a NaN makes every comparison false). Bad input, refused before any work."""
    import math

    from kwsbench.errors import BadInputError

    if not (math.isfinite(tol) and tol >= 0):
        raise BadInputError(f"--tol must be a finite number of percentage points >= 0, got {tol}; e.g. --tol 2")


def judge(store: Store, cells: list[StoredCell], baselines: list[Reported], priors: dict[str, ProtocolPrior],
          tol: float, aliases: dict[str, set[str]]) -> tuple[list[tuple[StoredCell, Comparison]], list[StoredCell]]:
    """(cell, Comparison) per measured condition and matching row, DEVIATES first and NOT_COMPARABLE last (the
    cell is the condition's lowest seed), and the conditions no paper reports. `aliases`: model -> its names."""
    check_tolerance(tol)
    silence = silence_index(store.cells())
    groups: dict[tuple, list[StoredCell]] = {}
    for c in cells:
        # the papers' numbers are fp32 measurements: a tf32 / bf16 cell is compared with its fp32 cell, not them
        if not is_silence_items(c) and c.precision == FP32:
            groups.setdefault((c.fingerprint, *_condition(c)), []).append(c)
    comparisons, unmatched = [], []
    for members in groups.values():
        members.sort(key=lambda c: c.seed)
        first = members[0]
        rows = matching_rows(baselines, aliases.get(first.model, {first.model}), first)
        if not rows:
            unmatched.append(first)
        for r in rows:
            estimates = [bridge_estimate(store, c, r, priors, silence) if r.split == "test" else None
                         for c in members]
            comparisons.append((first, verdict_over_seeds(r, members, tol, estimates,
                                                          bridged=r.protocol != first.protocol)))
    comparisons.sort(key=lambda cv: (cv[1].verdict not in DEVIATING, cv[1].verdict == NOT_COMPARABLE))
    return comparisons, unmatched


VERDICT_COLUMNS = ("model", "checkpoint", "fingerprint", "noise", "snr_db", "rate_hz", "reported_protocol", "split",
                   "paper", "source", "reported_pct", "measured_pct", "ci_low_pct", "ci_high_pct", "delta_pp",
                   "bridged", "n_seeds", "seeds", "seed_range_pp", "seed_sd_pp", "tol_pp", "tol_basis", "verdict",
                   "why_not_comparable")


def verdict_rows(comparisons: list[tuple[StoredCell, Comparison]]) -> list[dict]:
    """The verdict table as export rows (VERDICT_COLUMNS): one per condition and published row, with the seed
    spread beside each (empty with one seed)."""
    out = []
    for cell, v in comparisons:
        r, s = v.reported, v.seeds
        out.append(dict(zip(VERDICT_COLUMNS, (
            cell.model, cell.checkpoint_sha256, cell.fingerprint, cell.noise, cell.snr_db, cell.rate_hz, r.protocol,
            r.split, r.paper, r.source, r.value, v.measured, v.ci[0] if v.ci else None, v.ci[1] if v.ci else None,
            v.delta, v.bridged, s.n if s else 1, ",".join(map(str, s.seeds)) if s else str(cell.seed),
            s.range if s else None, s.sd if s else None, None if v.verdict == NOT_COMPARABLE else v.tol,
            "" if v.verdict == NOT_COMPARABLE else v.tol_basis, v.verdict, "; ".join(v.reasons)), strict=True)))
    return out
