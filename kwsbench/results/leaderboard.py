"""The leaderboard: tidy rows (one per stored cell) and a wide view (one row per model), as CSV,
Markdown or JSON. Numbers in CSV are plain (no thousands separators); accuracies are fractions 0..1."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kwsbench.results.store import StoredCell

TIDY_COLUMNS = ("model", "checkpoint", "protocol", "fingerprint", "noise", "snr_db", "snr_def", "rate_hz",
                "rate_mode", "n", "accuracy", "ci_low", "ci_high", "params", "macs")
FORMATS = ("csv", "md", "json")


@dataclass
class TidyRow:
    model: str
    checkpoint: str
    protocol: str
    fingerprint: str
    noise: str
    snr_db: float | None
    snr_def: str
    rate_hz: int
    rate_mode: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    params: int | None
    macs: int | None


def _cost(model: str, rate: int, cache: dict) -> tuple[int | None, int | None]:
    """Params and MACs per 1-s clip from kwsbench.cost where it exists (else empty)."""
    if (model, rate) in cache:
        return cache[(model, rate)]
    params = macs = None
    try:
        from kwsbench.cost import model_cost
        from kwsbench.models.registry import get_card

        cost = model_cost(get_card(model), rate)
        params = next((int(getattr(cost, a)) for a in ("params", "trainable_params", "parameters")
                       if getattr(cost, a, None) is not None), None)
        macs = next((int(getattr(cost, a)) for a in ("macs", "macs_total", "total_macs")
                     if getattr(cost, a, None) is not None), None)
    except Exception:  # noqa: BLE001 - cost is optional; a missing or failing cost leaves the columns empty
        pass
    cache[(model, rate)] = (params, macs)
    return params, macs


def tidy_rows(cells: list[StoredCell], with_cost: bool = True) -> list[TidyRow]:
    cache: dict = {}
    rows = []
    for c in cells:
        params, macs = _cost(c.model, c.rate_hz, cache) if with_cost else (None, None)
        rows.append(TidyRow(
            model=c.model, checkpoint=c.checkpoint_sha256[:12], protocol=c.protocol,
            fingerprint=c.fingerprint[:12], noise=c.noise, snr_db=c.snr_db, snr_def=c.snr_def,
            rate_hz=c.rate_hz, rate_mode=c.rate_mode, n=c.n, accuracy=c.accuracy, ci_low=c.ci_low,
            ci_high=c.ci_high, params=params, macs=macs,
        ))
    return rows


def wide_rows(tidy: list[TidyRow]) -> list[dict[str, Any]]:
    """One row per model (and checkpoint, clip set, rate): clean, mean over SNRs per noise, mean noisy, rank."""
    groups: dict[tuple, list[TidyRow]] = {}
    for r in tidy:
        groups.setdefault((r.model, r.checkpoint, r.protocol, r.fingerprint, r.rate_hz, r.rate_mode), []).append(r)
    noises = sorted({r.noise for r in tidy if r.noise != "clean"})
    out = []
    for (model, ckpt, protocol, fp, rate, mode), rows in groups.items():
        clean = [r.accuracy for r in rows if r.noise == "clean"]
        row: dict[str, Any] = {"model": model, "checkpoint": ckpt, "protocol": protocol, "fingerprint": fp,
                               "rate_hz": rate, "rate_mode": mode, "clean": clean[0] if clean else None}
        noisy = []
        for n in noises:
            vals = [r.accuracy for r in rows if r.noise == n]
            row[n] = sum(vals) / len(vals) if vals else None
            noisy.extend(vals)
        row["mean_noisy"] = sum(noisy) / len(noisy) if noisy else None
        row["params"], row["macs"] = rows[0].params, rows[0].macs
        out.append(row)
    # rank within each clip set and rate: by mean noisy accuracy, then clean
    def score(r):
        noisy, clean = r["mean_noisy"], r["clean"]
        return (noisy if noisy is not None else -1.0, clean if clean is not None else -1.0)

    for key in {(r["fingerprint"], r["rate_hz"], r["rate_mode"]) for r in out}:
        members = sorted((r for r in out if (r["fingerprint"], r["rate_hz"], r["rate_mode"]) == key), key=score,
                         reverse=True)
        for i, r in enumerate(members, 1):
            r["rank"] = i
    return sorted(out, key=lambda r: (r["fingerprint"], r["rate_hz"], r["rank"]))


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def _plain(v: Any) -> str:
    if v is None or isinstance(v, float) and not math.isfinite(v):
        return ""
    if isinstance(v, float):  # fixed point, never exponent or thousands separators
        text = f"{v:.6f}".rstrip("0").rstrip(".")
        return text if text not in ("", "-0") else "0"
    return str(v)


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} not one of {FORMATS}")
    if fmt == "json":
        # strict JSON: a value that JSON cannot hold (NaN, inf, from a store older than the SNR bounds) is null
        return json.dumps(_finite(rows), indent=2, allow_nan=False) + "\n"
    cols = list(rows[0]) if rows else list(TIDY_COLUMNS)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_plain(r.get(c)) for c in cols])
        return buf.getvalue()
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [(f"{r[c]:.4f}" if isinstance(r.get(c), float) and c not in ("snr_db",) else _plain(r.get(c)))
                 for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def leaderboard(cells: list[StoredCell], fmt: str = "csv", wide: bool = False, with_cost: bool = True) -> str:
    tidy = tidy_rows(cells, with_cost=with_cost)
    rows = wide_rows(tidy) if wide else [asdict(r) for r in tidy]
    return render(rows, fmt)
