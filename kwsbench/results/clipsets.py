"""What a stored cell was measured on, in words: the clip set (a readable data-set name, protocol, fingerprint)
and the weights manifest of its checkpoint. Results of different clip sets or weights never share a table,
a ranking or a figure; these are the keys that keep them apart, and the filters that pick one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

from kwsbench.data.clipset import is_bridge_items
from kwsbench.errors import BadInputError

if TYPE_CHECKING:
    from kwsbench.results.store import StoredCell

EMBEDDED = "embedded synthetic"  # a run without --data-dir evaluates the embedded synthetic keyword set
UNLISTED = "unlisted"  # a checkpoint no manifest names (a file passed by path, a test model)


@dataclass(frozen=True, order=True)
class ClipSetKey:
    """One clip set under one weights manifest: the unit every table, ranking and figure is drawn for."""

    data: str  # readable data-set name: the data folder's name, or "embedded synthetic"
    protocol: str
    fingerprint: str  # full sha256 of the clip list
    weights: str  # manifest of the checkpoints ("nc-ssm", "synth", "gsc-mini") or "unlisted"

    def title(self) -> str:
        """How a clip set is named in titles: data set, protocol, short fingerprint, weights."""
        return f"{self.data} ({self.protocol}, {self.fingerprint[:8]}), {self.weights} weights"

    def slug(self) -> str:
        """A file-name-safe tag (figure names of this clip set)."""
        keep = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in f"{self.data}_{self.weights}")
        return f"{keep}_{self.fingerprint[:8]}"


@dataclass(frozen=True)
class Labels:
    """Data-set names per fingerprint (from the runs' stored plans) and weights manifest per checkpoint."""

    data_names: dict[str, str]
    weights: dict[tuple[int, str, str], str]  # (run_id, model, checkpoint sha256) -> manifest

    def key(self, cell: StoredCell) -> ClipSetKey:
        return ClipSetKey(self.data_names.get(cell.fingerprint, "unknown data"), cell.protocol, cell.fingerprint,
                          self.weights.get((cell.run_id, cell.model, cell.checkpoint_sha256), UNLISTED))


def _plan(run: dict) -> dict:
    try:
        plan = json.loads(run.get("plan") or "{}")
    except json.JSONDecodeError:
        return {}
    return plan if isinstance(plan, dict) else {}


def data_name(plan: dict) -> str:
    """The data folder's name, or the embedded set's name when the run had no --data-dir."""
    folder = plan.get("data_dir")
    return PurePath(str(folder)).name or str(folder) if folder else EMBEDDED


def _manifest_of_sha() -> dict[str, str]:
    from kwsbench.checkpoints import manifests

    try:
        found = manifests()
    except Exception:  # noqa: BLE001 - a broken user manifest must not hide results; the plan still names weights
        return {}
    return {e.sha256: m.name for m in found.values() for e in m.entries}


def _weights_from_plan(plan: dict, model: str) -> str | None:
    ref = (plan.get("checkpoints") or {}).get(model)
    if isinstance(ref, str) and ":" in ref and "/" not in ref:
        return ref.split(":", 1)[0]
    return None


def labels_for(runs: list[dict], cells: Iterable[StoredCell]) -> Labels:
    """Names for the cells' clip sets and weights. A fingerprint measured by several runs takes the newest run's
    data-set name; a checkpoint is named by the manifest that lists its sha256, else by the run's plan."""
    plans = {r["run_id"]: _plan(r) for r in runs}
    names: dict[str, str] = {}
    for r in sorted(runs, key=lambda r: r["run_id"]):
        if r.get("fingerprint"):
            names[r["fingerprint"]] = data_name(plans[r["run_id"]])
    by_sha = _manifest_of_sha()
    weights = {}
    for c in cells:
        key = (c.run_id, c.model, c.checkpoint_sha256)
        if key not in weights:
            weights[key] = (by_sha.get(c.checkpoint_sha256) or _weights_from_plan(plans.get(c.run_id, {}), c.model)
                            or UNLISTED)
    return Labels(names, weights)


@dataclass(frozen=True)
class Selection:
    """The filters of leaderboard, compare and report: each keeps cells whose clip set matches (None: any)."""

    data: str | None = None  # data-set name (folder name or "embedded synthetic"), or a fingerprint prefix
    protocol: str | None = None
    weights: str | None = None
    run: int | None = None

    def keeps(self, cell: StoredCell, key: ClipSetKey) -> bool:
        if is_bridge_items(key.protocol) and self.protocol != key.protocol:
            return False  # a bridge's silence items: shown only when their protocol is asked for
        return ((self.data is None or self.data in (key.data,) or key.fingerprint.startswith(self.data))
                and (self.protocol is None or key.protocol == self.protocol)
                and (self.weights is None or key.weights == self.weights)
                and (self.run is None or cell.run_id == self.run))

    def describe(self) -> str:
        parts = [f"--{k} {v}" for k, v in (("data", self.data), ("protocol", self.protocol),
                                           ("weights", self.weights), ("run", self.run)) if v is not None]
        return " ".join(parts)


def select(cells: list[StoredCell], labels: Labels, selection: Selection) -> list[StoredCell]:
    """The cells the selection keeps; a selection that keeps nothing is an error naming what is stored."""
    kept = [c for c in cells if selection.keeps(c, labels.key(c))]
    if cells and not kept:
        stored = sorted({labels.key(c) for c in cells})
        listing = "; ".join(f"--data '{k.data}' --protocol {k.protocol} --weights {k.weights} "
                            f"(fingerprint {k.fingerprint[:12]})" for k in stored)
        runs = sorted({c.run_id for c in cells})
        raise BadInputError(f"{selection.describe()}: no stored cell matches. Stored clip sets: {listing}; "
                            f"runs {', '.join(map(str, runs))}")
    return kept


def group(cells: list[StoredCell], labels: Labels) -> dict[ClipSetKey, list[StoredCell]]:
    """Cells by clip set and weights, in a stable order (by data-set name, protocol, fingerprint, weights)."""
    out: dict[ClipSetKey, list[StoredCell]] = {}
    for c in cells:
        out.setdefault(labels.key(c), []).append(c)
    return dict(sorted(out.items()))
