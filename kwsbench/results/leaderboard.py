"""The leaderboard: rows for export (CSV, Markdown, JSON) and for `kwsbench.results()`.

Rows never mix clip sets: every row names its data set, protocol, fingerprint and weights manifest, and rankings
and averages are computed within one clip set and weights manifest only. Accuracies are in percent everywhere
(`*_pct` columns); macro-F1 is a fraction 0..1 as usual.

- per-cell rows (`per_seed=True`): one per stored cell;
- the default rows aggregate cells that differ only in the noise seed: mean over seeds, seed SD and a 95 % t
  interval over seeds (empty with one seed);
- the wide view: one row per model and clip set, averages that say what they average.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from kwsbench.results import ranks as _ranks
from kwsbench.results.clipsets import Labels, labels_for
from kwsbench.results.stats import wilson_interval

if TYPE_CHECKING:
    from kwsbench.results.store import Store, StoredCell

FORMATS = ("csv", "md", "json")


def stored_models_matching(names: list[str], stored: set[str] | list[str]) -> set[str]:
    """The stored model names that `names` (names, registry aliases or shell globs, as `--models` takes them
    everywhere) pick. A name or pattern that picks no stored model is an error listing the stored ones, so a
    typo never reads as "no results" (leaderboard, `kwsbench.results()` and the report share this rule)."""
    import fnmatch

    from kwsbench.errors import BadInputError
    from kwsbench.models.registry import find_card

    stored = sorted(stored)
    keep: set[str] = set()
    for name in names:
        if any(ch in name for ch in "*?["):
            hits = {m for m in stored if fnmatch.fnmatch(m.lower(), name.lower())}
            if not hits:
                raise BadInputError(f"--models: {name!r} matches no stored model; stored: {', '.join(stored)} "
                                    "(pass one of them, or a pattern that matches one)")
            keep |= hits
            continue
        card = find_card(name)  # an alias of a stored model; a name the registry lacks may still be stored
        canonical = name if name in stored or card is None else card.name
        if canonical not in stored:
            raise BadInputError(f"--models: {name!r} has no cell in the store; stored models: {', '.join(stored)}"
                                " (pass one of them, or run the model first)")
        keep.add(canonical)
    return keep


@dataclass
class TidyRow:
    """One row of the leaderboard: one cell, or the cells of one condition over several noise seeds."""

    data: str  # readable data-set name (data folder name, or "embedded synthetic")
    protocol: str
    fingerprint: str  # first 12 hex digits of the clip set's sha256
    weights: str  # manifest of the checkpoint (nc-ssm, synth, gsc-mini) or "unlisted"
    model: str
    checkpoint: str  # first 12 hex digits of the checkpoint's sha256
    noise: str
    snr_db: float | None
    snr_def: str
    rate_hz: int
    rate_mode: str
    decimation: str
    precision: str  # arithmetic of the model's forward: fp32 (the reference), tf32 or bf16 (kwsbench.run.precision)
    seed: str  # the noise seed, or the seeds averaged ("0,1,2,3,4")
    n_seeds: int
    n: int  # clips (per seed)
    correct: int  # correct predictions, summed over the seeds
    accuracy_pct: float | None  # 100 * correct / (n * n_seeds): the mean over seeds
    seed_sd_pct: float | None  # sample SD of the per-seed accuracies (None with one seed)
    seed_ci_low_pct: float | None  # 95 % t interval of the mean over seeds (None with one seed)
    seed_ci_high_pct: float | None
    wilson_low_pct: float | None  # Wilson 95 % of the accuracy on n clips (the clips are the same in every seed)
    wilson_high_pct: float | None
    boot_low_pct: float | None  # speaker bootstrap 95 % (mean of the seeds' bounds); None without speakers
    boot_high_pct: float | None
    macro_f1: float | None  # mean over seeds
    rank: int | None  # 1 + models significantly better in this condition (exact McNemar, BH)
    rank_group: str  # letters: models sharing a letter cannot be told apart in this condition
    params: int | None
    macs: int | None  # MACs per 1-s clip at rate_hz
    run: str  # the run(s) that stored the cells


TIDY_COLUMNS = tuple(f.name for f in fields(TidyRow))


def _cost(model: str, rate: int, cache: dict) -> tuple[int | None, int | None]:
    """Params and MACs per 1-s clip from the model card's cost function. A stored model that is no registered
    card (stored by another version, or a test's) or whose card has no cost function leaves the columns
    empty; a cost function that fails raises. Packaged cards' counts come from the on-disk cost cache when it
    has them, so a leaderboard need not import torch and the model zoo (kwsbench.results.cost_cache)."""
    if (model, rate) not in cache:
        from kwsbench.results import cost_cache

        counts = cost_cache.get(model, rate)
        if counts is None:
            from kwsbench.cost import model_cost
            from kwsbench.models.registry import find_card

            card = find_card(model)
            if card is None or card.cost is None:
                counts = (None, None)
            else:
                cost = model_cost(card, rate)
                counts = (cost.trainable_params, cost.total_macs)
                cost_cache.put(card, rate, counts)
        cache[(model, rate)] = counts
    return cache[(model, rate)]


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals and len(vals) == len(values) else None


Correctness = dict[str, np.ndarray]  # cell_key -> 0/1 per clip (from the stored predictions)


def _condition(c: StoredCell, key_of, per_seed: bool) -> tuple:
    """Cells with the same condition (and clip set, weights) are ranked against each other."""
    return (key_of(c), c.noise, c.noise_version, c.snr_db, c.snr_def, c.rate_hz, c.rate_mode, c.decimation,
            c.precision, c.seed if per_seed else None)


def _entry(c: StoredCell) -> str:
    return f"{c.model}\0{c.checkpoint_sha256}"


def _rank_condition(members: list[list[StoredCell]], correct: Correctness) -> dict[str, tuple[int, str]]:
    """members: per model entry, its cells (one per seed); tested over the seeds all entries share."""
    by_entry = {_entry(cs[0]): {c.seed: c for c in cs} for cs in members}
    usable = {e: m for e, m in by_entry.items() if all(c.cell_key in correct for c in m.values())}
    if len(usable) < 2:
        return {}
    seeds = sorted(set.intersection(*(set(m) for m in usable.values())))
    if not seeds:
        return {}
    # per clip, the count of correct seeds: the clip stays the unit of the test (kwsbench.results.ranks)
    vectors = {e: np.sum([correct[m[s].cell_key] for s in seeds], axis=0) for e, m in usable.items()}
    ranked, _ = _ranks.rank_models(vectors, k=len(seeds))
    return {r.model: (r.rank, r.group) for r in ranked}


def _seed_summary(accs: list[float]) -> tuple[float | None, float | None, float | None]:
    """Seed SD and 95 % t interval of the mean over seeds (None with one seed)."""
    if len(accs) < 2:
        return None, None, None
    from scipy import stats as _sps  # only with several seeds: a one-seed leaderboard starts without scipy

    sd = statistics.stdev(accs)
    half = float(_sps.t.ppf(0.975, len(accs) - 1)) * sd / math.sqrt(len(accs))
    mean = sum(accs) / len(accs)
    return sd, max(0.0, mean - half), min(1.0, mean + half)


def _row(cells: list[StoredCell], labels: Labels, cost: tuple[int | None, int | None],
         rank: tuple[int, str] | None) -> TidyRow:
    """One row from the cells of one condition that differ only in seed (one cell: the cell itself)."""
    cells = sorted(cells, key=lambda c: c.seed)
    c0, key = cells[0], labels.key(cells[0])
    n, k = int(c0.n or 0), len(cells)
    correct = sum(int(c.correct or 0) for c in cells)
    accs = [c.accuracy for c in cells if c.accuracy is not None]
    sd, lo, hi = _seed_summary(accs) if len(accs) == k else (None, None, None)
    acc = correct / (n * k) if n and all(c.n == n for c in cells) else _mean([c.accuracy for c in cells])
    if k == 1:
        wl, wh = c0.ci_low, c0.ci_high
    else:  # the clips are shared by every seed: the clip-sampling interval is that of n clips
        wl, wh = wilson_interval(acc * n, n) if acc is not None and n else (None, None)
    return TidyRow(
        data=key.data, protocol=c0.protocol, fingerprint=c0.fingerprint[:12], weights=key.weights, model=c0.model,
        checkpoint=c0.checkpoint_sha256[:12], noise=c0.noise, snr_db=c0.snr_db, snr_def=c0.snr_def,
        rate_hz=c0.rate_hz, rate_mode=c0.rate_mode, decimation=c0.decimation, precision=c0.precision,
        seed=",".join(str(c.seed) for c in cells), n_seeds=k, n=n, correct=correct, accuracy_pct=_pct(acc),
        seed_sd_pct=_pct(sd), seed_ci_low_pct=_pct(lo), seed_ci_high_pct=_pct(hi), wilson_low_pct=_pct(wl),
        wilson_high_pct=_pct(wh), boot_low_pct=_pct(_mean([c.boot_low for c in cells])),
        boot_high_pct=_pct(_mean([c.boot_high for c in cells])), macro_f1=_mean([c.macro_f1 for c in cells]),
        rank=rank[0] if rank else None, rank_group=rank[1] if rank else "", params=cost[0], macs=cost[1],
        run=",".join(str(r) for r in sorted({c.run_id for c in cells})),
    )


def tidy_rows(cells: list[StoredCell], labels: Labels | None = None, correct: Correctness | None = None,
              per_seed: bool = True, with_cost: bool = True) -> list[TidyRow]:
    """Leaderboard rows: one per cell (`per_seed`), or one per condition with the seeds averaged.

    `labels` name the clip sets and weights (default: from the cells alone, "unknown data"); `correct` holds the
    per-clip correctness of each cell for the rank groups (default: no rank groups)."""
    labels = labels or labels_for([], cells)
    correct = correct or {}
    by_cond: dict[tuple, dict[str, list[StoredCell]]] = {}
    for c in cells:
        by_cond.setdefault(_condition(c, labels.key, per_seed), {}).setdefault(_entry(c), []).append(c)
    cache: dict = {}
    rows = []
    for _, entries in by_cond.items():
        ranks = _rank_condition(list(entries.values()), correct)
        for entry, cs in entries.items():
            cost = _cost(cs[0].model, cs[0].rate_hz, cache) if with_cost else (None, None)
            rows.append(_row(cs, labels, cost, ranks.get(entry)))
    return sorted(rows, key=_row_order)


def _row_order(r: TidyRow) -> tuple:
    # within a condition: by rank, then (ties share a rank) by accuracy, best first, then by name
    return (r.data, r.protocol, r.fingerprint, r.weights, r.rate_hz, r.rate_mode, r.decimation,
            r.precision != "fp32", r.precision, r.noise != "clean",
            r.noise, -1e9 if r.snr_db is None else r.snr_db, r.seed, r.rank or 10**6, -(r.accuracy_pct or 0.0), r.model)


def store_correctness(store: Store, cells: list[StoredCell]) -> Correctness:
    """0/1 correctness per clip of every cell with stored predictions (for the rank groups)."""
    labels_of: dict[str, np.ndarray] = {}
    out = {}
    for c in cells:
        if c.fingerprint not in labels_of:
            labels_of[c.fingerprint] = store.clips(c.fingerprint)[2]
        preds, labels = store.predictions(c.cell_key), labels_of[c.fingerprint]
        if len(preds) == len(labels) and len(labels):
            out[c.cell_key] = preds == labels
    return out


def store_rows(store: Store, cells: list[StoredCell] | None = None, per_seed: bool = True,
               with_cost: bool = True) -> list[TidyRow]:
    """Rows of the store's cells (or the given ones) with clip-set names, weights and rank groups."""
    cells = store.cells() if cells is None else cells
    return tidy_rows(cells, store_labels_of(store, cells), store_correctness(store, cells), per_seed, with_cost)


def store_labels_of(store: Store, cells: list[StoredCell]) -> Labels:
    return labels_for(store.runs(), cells)


def _snr_text(snrs: list[float]) -> str:
    return "_".join(f"{s:g}" for s in snrs)


# the columns that make one table of the wide view: models are compared (and means taken) only within one
WIDE_GROUP = ("data", "protocol", "fingerprint", "weights", "rate_hz", "rate_mode", "decimation", "precision")


@dataclass(frozen=True)
class _NoisyConditions:
    """The noisy (noise, SNR, seed) conditions that any model of one wide table has: a model's mean is given only
    where it has them all, so every mean in a column averages the same conditions."""

    union: frozenset[tuple[str, float | None, str]]
    noises: list[str]
    snrs: dict[str, list[float]]
    seeds: list[str]

    @classmethod
    def of(cls, rows: list[TidyRow]) -> _NoisyConditions:
        union = frozenset((r.noise, r.snr_db, r.seed) for r in rows if r.noise != "clean")
        noises = sorted({n for n, _, _ in union})
        snrs = {n: sorted({s for m, s, _ in union if m == n}) for n in noises}
        return cls(union, noises, snrs, sorted({sd for _, _, sd in union}))

    def described(self) -> str:
        if not self.union:
            return ""
        snr_sets = " / ".join(sorted({", ".join(f"{x:g}" for x in v) for v in self.snrs.values()}))
        n = len(self.union)
        return (f"{n} condition{'s' if n > 1 else ''}: {', '.join(self.noises)} at SNR {snr_sets} dB, "
                f"seed{'s' if len(self.seeds) > 1 or ',' in ''.join(self.seeds) else ''} {' / '.join(self.seeds)}")


def wide_rows(tidy: list[TidyRow]) -> list[dict[str, Any]]:
    """One row per model and clip set (and weights, rate): clean, the mean over SNRs per noise, the mean over all
    noisy conditions. A mean is only given where the model has every condition (and the same seeds) that another
    model of its clip set has; otherwise it is empty, so every mean in a column averages the same conditions."""
    groups: dict[tuple, dict[tuple, list[TidyRow]]] = {}
    for r in tidy:
        g = tuple(getattr(r, k) for k in WIDE_GROUP)
        groups.setdefault(g, {}).setdefault((r.model, r.checkpoint), []).append(r)
    out = []
    for g, models in groups.items():
        conditions = _NoisyConditions.of([r for rs in models.values() for r in rs])
        out += [_wide_row(g, model, ckpt, rs, conditions) for (model, ckpt), rs in models.items()]
    columns: dict[str, None] = {}
    for r in out:
        columns.update(dict.fromkeys(r))
    return _ranked([{c: r.get(c) for c in columns} for r in out])


def _wide_row(group: tuple, model: str, ckpt: str, rows: list[TidyRow], cond: _NoisyConditions) -> dict[str, Any]:
    """One model's row of a wide table: its clean accuracy and its means over `cond`."""
    row: dict[str, Any] = dict(zip(WIDE_GROUP, group, strict=True))
    row.update(model=model, checkpoint=ckpt, seed=";".join(sorted({r.seed for r in rows})))
    have = {(r.noise, r.snr_db, r.seed): r.accuracy_pct for r in rows}
    clean = [r.accuracy_pct for r in rows if r.noise == "clean"]
    row["clean_pct"] = clean[0] if len(clean) == 1 else None
    for n in cond.noises:
        want = [(n, s, sd) for s in cond.snrs[n] for sd in cond.seeds if (n, s, sd) in cond.union]
        row[f"{n}_pct_mean_over_snr_{_snr_text(cond.snrs[n])}"] = _mean([have.get(k) for k in want])
    row["noisy_pct_mean"] = _mean([have.get(k) for k in sorted(cond.union, key=str)]) if cond.union else None
    row["noisy_mean_over"] = cond.described()
    row["params"], row["macs"] = rows[0].params, rows[0].macs
    return row


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows table by table, each ordered by the noisy mean (then clean), with its `position`; a model without a
    complete mean goes last, unplaced."""
    def score(r: dict) -> tuple:
        return (r["noisy_pct_mean"] is not None, r["noisy_pct_mean"] or 0.0, r["clean_pct"] or 0.0)

    def group_of(r: dict) -> tuple:
        return tuple(r[k] for k in WIDE_GROUP)

    ordered = []
    for g in sorted({group_of(r) for r in rows}, key=str):
        members = sorted((r for r in rows if group_of(r) == g), key=score, reverse=True)
        ranked = any(r["noisy_pct_mean"] is not None for r in members)
        for i, r in enumerate(members, 1):
            # a model without the full set of conditions has no place in an order by their mean
            r["position"] = i if r["noisy_pct_mean"] is not None or not ranked else None
        ordered.extend(members)
    return ordered


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


def _md(column: str, v: Any) -> str:
    """Percent with two decimals, fractions (macro-F1) with four, everything else plain."""
    if isinstance(v, float) and math.isfinite(v) and column != "snr_db":
        return f"{v:.2f}" if "_pct" in column else f"{v:.4f}"
    return _plain(v)


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
        cells = [_md(c, r.get(c)) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def leaderboard(cells: list[StoredCell], fmt: str = "csv", wide: bool = False, with_cost: bool = True,
                per_seed: bool = False, store: Store | None = None) -> str:
    """The export text. With `store`, rows carry data-set names, weights manifests and rank groups."""
    if store is not None:
        tidy = store_rows(store, cells, per_seed=per_seed, with_cost=with_cost)
    else:
        tidy = tidy_rows(cells, per_seed=per_seed, with_cost=with_cost)
    rows = wide_rows(tidy) if wide else [asdict(r) for r in tidy]
    return render(rows, fmt)
