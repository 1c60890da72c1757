"""`kwsbench report`: a self-contained folder (index.html + PNGs + leaderboard CSV/MD) from the results store.

The HTML has no external assets: inline CSS, images by relative file name in the same folder, no scripts.
What the figures show is one consistent slice of the store (see `select_view`): the clip set, seed and SNR
definition holding the most cells, at fp32 where the store has fp32 cells (else the precision holding the most),
one cell per model and condition (the newest). Everything stored is still
in the full cell table and in leaderboard.csv. Reading the store is read-only.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kwsbench.errors import BadInputError, StoreError, StoreMissingError
from kwsbench.paths import default_store
from kwsbench.report import figures
from kwsbench.results.clipsets import ClipSetKey, Labels, Selection, group, select
from kwsbench.results.leaderboard import TidyRow, store_labels_of, store_rows, stored_models_matching
from kwsbench.results.store import Store, StoredCell, condition_label

VERDICT_ORDER = ("DEVIATES", "DEVIATES*", "WITHIN_CI", "MATCH", "CONSISTENT*", "NOT_COMPARABLE")


@dataclass
class ReportOptions:
    store: Path = field(default_factory=default_store)  # $KWSBENCH_STORE, else runs/kwsbench.sqlite
    out: Path = Path("report")
    models: list[str] | None = None  # None: every model in the store
    condition: str | None = None  # "NOISE:SNR" or "clean" for the heatmap / confusion / Pareto; None: picked
    rate: int | None = None  # rate of the SNR, Pareto and per-class figures; None: 16000 if stored, else highest
    baselines: Path | None = None  # folder of baseline YAML (default: the project's baselines/)
    tol: float = 2.0  # MATCH tolerance in percentage points
    selection: Selection = field(default_factory=Selection)  # one clip set (--data/--protocol/--weights/--run)


@dataclass
class ReportResult:
    index: Path
    files: list[Path]
    notes: list[str]
    cells: int  # cells in the report's view


@dataclass
class View:
    """The slice of the store the figures are drawn from."""

    cells: list[StoredCell]  # one per (model, noise, snr, rate, rate_mode), newest first wins
    fingerprint: str
    seed: int
    snr_def: str
    rate: int
    excluded: int  # ok cells outside the slice (other clip set / seed / SNR definition / precision)
    precision: str = "fp32"  # the arithmetic of the slice's cells (kwsbench.run.precision)


@dataclass
class _Set:
    """One clip set (and weights manifest) of the report: what its figures are drawn from and how they are named."""

    key: ClipSetKey
    view: View
    cond: tuple[str, float | None]
    caption: str  # data set, n, weights, seed: in every figure title of this clip set
    chance_pct: float | None
    slug: str  # file-name tag of this clip set's figures
    rows: dict[tuple, TidyRow]  # seed-aggregated leaderboard rows with rank groups, by (model, noise, snr)


@dataclass
class _Page:
    sections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


# -- selection ---------------------------------------------------------------------------------

def parse_condition(text: str) -> tuple[str, float | None]:
    """'clean' -> ('clean', None); 'NOISE:SNR' -> (noise, snr)."""
    text = text.strip()
    if text == "clean":
        return "clean", None
    noise, sep, snr = text.rpartition(":")
    try:
        if not sep or not noise:
            raise ValueError(text)
        return noise, float(snr)
    except ValueError as err:
        raise BadInputError(f"--condition {text!r}: expected NOISE:SNR (e.g. factory-ncssm:0) or clean") from err


def _mode(values: list[Any]) -> Any:
    return Counter(values).most_common(1)[0][0]


def select_view(cells: list[StoredCell], rate: int | None = None) -> View:
    """The most populated clip set / seed / SNR definition, fp32 where there is fp32 (the reference the other
    precisions are measured against); duplicates of one condition keep the newest cell."""
    fingerprint = _mode([c.fingerprint for c in cells])
    mine = [c for c in cells if c.fingerprint == fingerprint]
    precisions = [c.precision for c in mine]
    precision = "fp32" if "fp32" in precisions else _mode(precisions)
    mine = [c for c in mine if c.precision == precision]
    seed = _mode([c.seed for c in mine])
    noisy_defs = [c.snr_def for c in mine if c.noise != "clean"]
    snr_def = _mode(noisy_defs) if noisy_defs else ""
    mine = [c for c in mine if c.seed == seed and (c.noise == "clean" or c.snr_def == snr_def)]
    newest: dict[tuple, dict] = {}
    for c in sorted(mine, key=lambda c: (c.created, c.run_id)):
        newest[(c.model, c.noise, c.snr_db, c.rate_hz, c.rate_mode)] = c
    kept = list(newest.values())
    rates = {c.rate_hz for c in kept}
    if rate is None:
        rate = 16000 if 16000 in rates else max(rates)
    elif rate not in rates:
        raise BadInputError(f"--rate {rate}: no stored cell at that rate; stored rates: "
                            f"{', '.join(str(r) for r in sorted(rates))}; pass one of them")
    return View(kept, fingerprint, seed, snr_def, rate, excluded=len(cells) - len(mine), precision=precision)


def at_rate(view: View) -> list[dict]:
    """One cell per model and condition at the view's rate, the model's native run preferred."""
    out: dict[tuple, dict] = {}
    for c in view.cells:
        if c.rate_hz != view.rate:
            continue
        key = (c.model, c.noise, c.snr_db)
        if key not in out or c.rate_mode == "native":
            out[key] = c
    return sorted(out.values(), key=_cell_order)


def _cell_order(c: StoredCell) -> tuple:
    return (c.model, c.noise != "clean", c.noise, -1e9 if c.snr_db is None else c.snr_db,
            -c.rate_hz, c.rate_mode, c.precision != "fp32", c.precision)


def default_condition(cells: list[StoredCell]) -> tuple[str, float | None]:
    """The noisy condition measured for most models, SNR nearest 0 dB; clean when nothing is noisy."""
    counts = Counter((c.noise, c.snr_db) for c in cells if c.noise != "clean")
    if not counts:
        return "clean", None
    return max(counts, key=lambda k: (counts[k], -abs(k[1]), -k[1], k[0]))


# -- cost --------------------------------------------------------------------------------------

def model_macs(model: str, rate: int) -> tuple[int | None, str]:
    """MACs per 1-s clip from the model card's cost function; (None, why) for a stored model that is no
    registered card or whose card has no cost function. A cost function that fails raises."""
    from kwsbench.cost import model_cost
    from kwsbench.models.registry import find_card

    card = find_card(model)
    if card is None:
        return None, f"{model} is no registered model"
    if card.cost is None:
        return None, f"model {model!r} has no cost function on its card"
    return model_cost(card, rate).total_macs, ""


# -- HTML helpers ------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def pct(value: float | None) -> str:
    """How an accuracy fraction is printed in the report: percent with two decimals."""
    return "" if value is None else f"{100.0 * value:.2f}"


def _ci(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f"{pct(lo)}–{pct(hi)}"


def _table(headers: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _img(path: Path | None, alt: str) -> str:
    return "" if path is None else f'<figure><img src="{_e(path.name)}" alt="{_e(alt)}"></figure>'


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}figure{margin:.6em 0}img{max-width:100%;border:1px solid #eee}
.MATCH{background:#c8ecc8}.CONSISTENT{background:#c8ecc8}.WITHIN_CI{background:#e6f2b8}.DEVIATES{background:#f6c4c4}
.NOT_COMPARABLE{background:#e4e4e4;color:#555}.note{color:#7a4b00}small{color:#666}
code,pre{font-size:.85em;background:#f7f7f7}pre{padding:.5em;overflow-x:auto}
.swatch{display:inline-block;width:1.1em;margin-right:.2em}small.grp{color:#555}
.cms{display:flex;flex-wrap:wrap;gap:.6em}.cms figure{width:48%;margin:0}div.wide{overflow-x:auto}
figcaption{font-size:.85em;text-align:center}h2.clipset{background:#eef3fa;padding:.3em .4em;border:1px solid #c9d6e8}
"""


_MARKER_TEXT = {"o": "●", "s": "■", "^": "▲", "D": "◆", "v": "▼", "P": "✚", "X": "✖", "*": "★", "h": "⬢"}


def _swatch(styles: dict, model: str) -> str:
    """The model's colour and marker, as in the figures."""
    st = styles.get(model)
    r, g, b, _ = st.colour if st else (0.3, 0.3, 0.3, 1.0)
    rgb = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    mark = _MARKER_TEXT.get(st.marker, "●") if st else "●"
    return f'<span class="swatch" style="color:{rgb}">{mark}</span>{_e(model)}'


# -- sections ----------------------------------------------------------------------------------

def _grid_section(cells: list[StoredCell], cs: _Set, styles: dict) -> str:
    """Accuracy per model (rows) and condition (columns) at the view's rate: the mean over the stored seeds, with
    the rank group of that condition (models sharing a letter cannot be told apart)."""
    conds = sorted({(c.noise, c.snr_db) for c in cells},
                   key=lambda k: (k[0] != "clean", k[0], -1e9 if k[1] is None else k[1]))
    models = sorted({c.model for c in cells})
    rows = []
    for model in models:
        tds = []
        for noise, snr in conds:
            r = cs.rows.get((model, noise, snr))
            if r is None:
                tds.append("<td></td>")
                continue
            tip = f"Wilson 95% {r.wilson_low_pct:.2f}–{r.wilson_high_pct:.2f}" if r.wilson_low_pct is not None else ""
            if r.seed_sd_pct is not None:
                tip += f"; seed SD {r.seed_sd_pct:.2f} over seeds {r.seed}"
            tds.append(f'<td title="{_e(tip)}">{r.accuracy_pct:.2f} <small class=grp>{_e(r.rank_group)}</small>'
                       "</td>")
        rows.append(f'<tr><td class="l">{_swatch(styles, model)}</td>{"".join(tds)}</tr>')
    headers = ["model"] + [condition_label(n, s) for n, s in conds]
    seeds = sorted({r.seed for r in cs.rows.values()})
    return (f"<h3>Accuracy grid ({cs.view.rate} Hz, %, seeds {_e(' / '.join(seeds))})</h3><p><small>Mean over "
            "the noise seeds. Letters: rank groups of each column: models sharing a letter cannot be told apart "
            "(exact McNemar, Benjamini–Hochberg at FDR 0.05 over the column's pairs); <b>a</b> holds the best. "
            "Hover a number for its Wilson 95% interval and seed SD.</small></p>" + _table(headers, rows, "grid"))


def _cells_section(cells: list[StoredCell], labels: Labels) -> str:
    rows = []
    for c in sorted(cells, key=lambda c: (labels.key(c), _cell_order(c))):
        key = labels.key(c)
        snr = "" if c.snr_db is None else f"{c.snr_db:g}"
        f1 = "" if c.macro_f1 is None else f"{c.macro_f1:.4f}"
        attrs = (f'data-key="{_e(c.cell_key)}" data-model="{_e(c.model)}" data-noise="{_e(c.noise)}" '
                 f'data-snr="{snr}" data-rate="{c.rate_hz}" data-mode="{_e(c.rate_mode)}"')
        rows.append(
            f'<tr class="cell" {attrs}><td class="l">{_e(key.data)}</td><td class="l">{_e(key.weights)}</td>'
            f'<td class="l">{_e(c.model)}</td><td class="l">{_e(c.noise)}</td>'
            f'<td>{snr}</td><td class="l">{_e(c.snr_def)}</td><td>{c.rate_hz}</td>'
            f'<td class="l">{_e(c.rate_mode)}</td><td class="l">{_e(c.decimation)}</td>'
            f'<td class="l">{_e(c.precision)}</td>'
            f'<td class="n">{c.n}</td><td class="correct">{c.correct}</td>'
            f'<td class="acc">{pct(c.accuracy)}</td><td class="ci">{_ci(c.ci_low, c.ci_high)}</td>'
            f'<td>{_ci(c.boot_low, c.boot_high)}</td><td>{f1}</td>'
            f'<td class="l"><code>{_e(c.checkpoint_sha256[:12])}</code></td>'
            f'<td class="l"><code>{_e(c.fingerprint[:12])}</code></td><td>{c.seed}</td>'
            f'<td>{c.run_id}</td></tr>')
    headers = ["data set", "weights", "model", "noise", "SNR dB", "SNR def", "rate Hz", "rate mode", "decimation",
               "precision", "n", "correct", "accuracy %", "Wilson 95% CI", "speaker bootstrap 95% CI", "macro F1",
               "checkpoint", "clip set", "seed", "run"]
    return ("<h2>All cells</h2><p><small>Every successful cell of the selected models, as stored "
            "(accuracy = correct / n). The same rows are in <a href=\"leaderboard.csv\">leaderboard.csv</a>."
            "</small></p><div class=wide>" + _table(headers, rows, "cells") + "</div>")


def _snr_section(cells: list[StoredCell], cs: _Set, styles: dict, out: Path, page: _Page) -> None:
    path = figures.accuracy_vs_snr(cells, styles, out / f"accuracy_vs_snr_{cs.slug}.png", cs.caption, cs.chance_pct)
    page.sections.append("<h3>Accuracy vs SNR</h3>" + (_img(path, f"accuracy vs SNR, {cs.caption}") if path else
                         "<p class=note>No noisy cells in this clip set: nothing to plot.</p>"))
    if path:
        page.files.append(path)


def _pareto_section(cells: list[StoredCell], cs: _Set, styles: dict, out: Path, page: _Page) -> None:
    macs, missing = {}, []
    for model in sorted({c.model for c in cells}):
        value, why = model_macs(model, cs.view.rate)
        if value is None:
            missing.append(f"{model}: {why}")
        else:
            macs[model] = value
    panels = []
    for noise, snr in [("clean", None)] + ([cs.cond] if cs.cond[0] != "clean" else []):
        pts = [figures.CostPoint(c.model, macs[c.model], c.accuracy, c.ci_low, c.ci_high) for c in cells
               if c.noise == noise and c.snr_db == snr and c.model in macs]
        panels.append((f"{condition_label(noise, snr)} @ {cs.view.rate} Hz", pts))
    path = figures.accuracy_vs_macs(panels, styles, out / f"accuracy_vs_macs_{cs.slug}.png", cs.caption,
                                    cs.chance_pct)
    rows = [f'<tr><td class="l">{_swatch(styles, m)}</td><td>{v:,}</td></tr>' for m, v in sorted(macs.items())]
    text = "<h3>Accuracy vs MACs</h3>" + _img(path, f"accuracy vs MACs (Pareto), {cs.caption}")
    if rows:
        text += _table(["model", f"MACs per 1-s clip at {cs.view.rate} Hz"], rows, "macs")
    if missing:
        text += "<p class=note>Left out of the Pareto plot (no MAC count):</p><ul>" + "".join(
            f"<li>{_e(m)}</li>" for m in missing) + "</ul>"
        page.notes.extend(f"no MACs for {m}" for m in missing if f"no MACs for {m}" not in page.notes)
    page.sections.append(text)
    if path:
        page.files.append(path)


def _rate_section(cs: _Set, styles: dict, out: Path, page: _Page) -> None:
    panels = []
    for noise, snr in [("clean", None)] + ([cs.cond] if cs.cond[0] != "clean" else []):
        panels.append((condition_label(noise, snr), [c for c in cs.view.cells if c.noise == noise
                                                     and c.snr_db == snr]))
    path = figures.accuracy_vs_rate(panels, styles, out / f"accuracy_vs_rate_{cs.slug}.png", cs.caption,
                                    cs.chance_pct)
    if path:
        page.files.append(path)
        page.sections.append("<h3>Accuracy vs sample rate</h3><p><small>Solid: the model run at the rate "
                             "(native); dashed: band-limited input at the model's own rate. Bars: Wilson 95%."
                             "</small></p>" + _img(path, f"accuracy vs sample rate, {cs.caption}"))
    else:
        page.sections.append("<h3>Accuracy vs sample rate</h3><p class=note>Only one rate stored: "
                             "nothing to plot (run with <code>--rates 16000,8000,4000</code>).</p>")


def _class_section(store: Store, cells: list[StoredCell], cs: _Set, styles: dict, out: Path, page: _Page) -> None:
    chosen = [c for c in cells if c.noise == cs.cond[0] and c.snr_db == cs.cond[1]]
    title = f"{condition_label(*cs.cond)} @ {cs.view.rate} Hz"
    _, _, labels = store.clips(cs.view.fingerprint)
    models, per_class, images, label_names = [], [], [], []
    for c in chosen:
        preds = store.predictions(c.cell_key)
        if len(preds) != len(labels) or len(labels) == 0:
            page.notes.append(f"{c.model} {title}: no per-utterance predictions stored; no confusion matrix")
            continue
        label_names = c.label_names
        m = figures.confusion_matrix(labels, preds, len(label_names))
        models.append(c.model)
        per_class.append(figures.per_class_from_confusion(m))
        path = figures.confusion_figure(m, label_names, f"{c.model}, {title}\n{cs.caption}",
                                        out / f"confusion_{cs.slug}_{_safe_name(c.model)}.png")
        images.append((c.model, path))
    heat = figures.per_class_heatmap(models, per_class, label_names,
                                     f"Per-class accuracy, {title}\n{cs.caption}",
                                     out / f"per_class_accuracy_{cs.slug}.png")
    text = f"<h3>Per class: {_e(title)}</h3>"
    if heat is None:
        page.sections.append(text + "<p class=note>No cell with stored predictions at this condition.</p>")
        return
    page.files.append(heat)
    rows = [f'<tr class="perclass" data-model="{_e(m)}" data-clipset="{_e(cs.slug)}"><td class="l">'
            f'{_swatch(styles, m)}</td>' + "".join(f"<td>{pct(v)}</td>" for v in pc) + "</tr>"
            for m, pc in zip(models, per_class, strict=True)]
    text += _img(heat, "per-class accuracy") + _table(["model", *label_names], rows, "perclass")
    text += "<h4>Confusion matrices</h4><div class=cms>"
    for model, path in images:  # side by side, two to a row; each opens full size from the folder
        page.files.append(path)
        text += f'<figure><a href="{_e(path.name)}"><img src="{_e(path.name)}" alt="confusion matrix {_e(model)}">' \
                f"</a><figcaption>{_e(model)}</figcaption></figure>"
    page.sections.append(text + "</div>")


def reproduce_comparisons(store: Store, cells: list[StoredCell], baselines: Path | None,
                          tol: float) -> tuple[list[tuple], str]:
    """(cell, Comparison) for every published row matching a stored condition, judged by the function `reproduce`
    uses (`results.judge`: bridged estimates, seed spreads); ('', why) when none can be made."""
    from kwsbench.models.registry import all_cards
    from kwsbench.results.baselines import load_baselines, load_protocol_priors
    from kwsbench.results.judge import judge

    try:
        rows, priors = load_baselines(baselines), load_protocol_priors(baselines)
    except BadInputError as err:
        return [], str(err)
    aliases = {c.name: {c.name, *c.aliases} for c in all_cards()}
    comps, _ = judge(store, cells, rows, priors, tol, aliases)
    return comps, ""


def _verdict_row(cell: StoredCell, v) -> str:
    r = v.reported
    css = v.verdict.rstrip("*") + (" bridged" if v.bridged else "")
    seeds = "" if v.seeds is None else f"{v.seeds.range:.2f} (SD {v.seeds.sd:.2f}, {v.seeds.n} seeds)"
    tol = "" if v.verdict == "NOT_COMPARABLE" else f"{v.tol:.2f} ({v.tol_basis})"
    how = "; ".join(v.reasons)
    if v.bridged and v.estimate is not None:
        counts = ", ".join(f"{k} {n}" for k, n in v.estimate.counts.items())
        how = f"bridged estimate of {r.protocol} (items: {counts})"
        if v.estimate.missing:
            how += f"; {', '.join(v.estimate.missing)} term not measured, bounded"
    return (f'<tr class="verdict {css}" data-key="{_e(cell.cell_key)}"><td class="l">{_e(cell.model)}'
            f'</td><td class="l">{_e(condition_label(cell.noise, cell.snr_db))}</td><td>{cell.rate_hz}</td>'
            f'<td class="measured">{v.measured:.2f}</td><td>{"" if not v.ci else f"{v.ci[0]:.2f}–{v.ci[1]:.2f}"}'
            f'</td><td class="seeds">{_e(seeds)}</td><td class="reported">{r.value:.2f}</td>'
            f'<td>{round(v.delta, 2) + 0.0:+.2f}</td><td class="tol">{_e(tol)}</td><td class="l v">{v.verdict}</td>'
            f'<td class="l">{_e(r.paper)}<br><small>{_e(r.source)}; {_e(r.protocol)} ({_e(r.split)}), verification '
            f'{_e(r.verification)}</small></td><td class="l"><small>{_e(how)}</small></td></tr>')


def _verdict_section(store: Store, cells: list[StoredCell], opts: ReportOptions, page: _Page) -> None:
    comps, why = reproduce_comparisons(store, cells, opts.baselines, opts.tol)
    text = f"<h2>Reproduce: measured vs published (tolerance {opts.tol:g} pp)</h2>"
    if not comps:
        page.sections.append(text + f"<p class=note>No published row matches a stored cell. {_e(why)}</p>")
        return
    comps.sort(key=lambda cv: (VERDICT_ORDER.index(cv[1].verdict), cv[0].model, _cell_order(cv[0])))
    counts = Counter(v.verdict for _, v in comps)
    rows: dict[bool, list[str]] = {True: [], False: []}  # comparable or not
    for cell, v in comps:
        rows[v.verdict != "NOT_COMPARABLE"].append(_verdict_row(cell, v))
    summary = ", ".join(f'<span class="{k.rstrip("*")}">{k}: {counts[k]}</span>' for k in VERDICT_ORDER if counts[k])
    text += (f"<p>{summary}</p><p><small>The same verdicts as `python reproduce.py` on this store (one function, "
             "kwsbench.results.judge). MATCH: |Δ| ≤ tolerance; WITHIN_CI: the published value lies in the measured "
             "interval (Wilson ∪ speaker bootstrap) widened by the tolerance; DEVIATES: neither; CONSISTENT* / "
             "DEVIATES*: the same tests on the bridged (post-stratified) estimate of the published protocol's "
             "accuracy, with its speaker-cluster interval; NOT_COMPARABLE: protocol (with no bridge), class set, "
             "split, SNR definition, rate or verification differ (shown side by side). The tolerance is the largest "
             "of --tol, the row's protocol spread and the measured seed spread (range over the seeds; then the "
             "measured value is the mean over the seeds).</small></p>")
    headers = ["model", "condition", "rate Hz", "measured % (* bridged estimate)", "measured 95% interval",
               "seed spread pp", "published %", "Δ pp", "tolerance pp (basis)", "verdict", "source",
               "bridge / why not comparable"]
    if rows[True]:
        text += _table(headers, rows[True], "verdicts")
    if rows[False]:
        # usually the longest list (other protocols, validation-split numbers): folded, still one click away
        text += (f"<details><summary>{len(rows[False])} NOT_COMPARABLE rows (side by side, not judged)</summary>"
                 + _table(headers, rows[False], "verdicts") + "</details>")
    page.sections.append(text)


def _provenance_section(store: Store, cells: list[StoredCell], page: _Page) -> None:
    run_ids = {c.run_id for c in cells}
    rows = [_run_row(run) for run in store.runs() if run["run_id"] in run_ids]
    text = "<h2>Provenance</h2><h3>Runs</h3>" + _table(
        ["run", "started / finished (UTC)", "status", "commit", "device", "versions", "seed", "clip set", "plan"],
        rows, "runs")
    clip_rows = []
    for fp in sorted({c.fingerprint for c in cells}):
        _, speakers, labels = store.clips(fp)
        protocols = sorted({c.protocol for c in cells if c.fingerprint == fp})
        clip_rows.append(f'<tr><td class="l"><code>{_e(fp)}</code></td><td class="l">{_e(", ".join(protocols))}'
                         f'</td><td>{len(labels)}</td><td>{len({s for s in speakers if s})}</td></tr>')
    text += "<h3>Clip sets</h3>" + _table(["fingerprint (sha256)", "protocol", "clips", "speakers"], clip_rows)
    ck_rows = sorted({(c.model, c.checkpoint_sha256) for c in cells})
    text += "<h3>Checkpoints</h3>" + _table(
        ["model", "checkpoint sha256"],
        [f'<tr><td class="l">{_e(m)}</td><td class="l"><code>{_e(s)}</code></td></tr>' for m, s in ck_rows])
    noise_rows = sorted({(c.noise, c.noise_version) for c in cells if c.noise != "clean"})
    text += "<h3>Noise sources</h3>" + _table(
        ["noise", "version / definition key"],
        [f'<tr><td class="l">{_e(n)}</td><td class="l"><code>{_e(v)}</code></td></tr>' for n, v in noise_rows])
    page.sections.append(text)


def _run_row(run: dict) -> str:
    """A run's provenance as a table row: when, status, commit, device, versions, seed, clip set and plan."""
    try:
        versions = json.loads(run["versions"] or "{}")
    except json.JSONDecodeError:  # plain text where JSON was expected: shown as it is, not lost
        versions = {"raw": run["versions"]}
    vtext = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return (
        f'<tr class="run" data-run="{run["run_id"]}"><td>{run["run_id"]}</td><td class="l">{_e(run["created"])}'
        f'<br>{_e(run["finished"])}</td><td class="l">{_e(run["status"])}</td><td class="l"><code>'
        f'{_e(run["git_commit"]) or "(not a git checkout)"}</code></td><td class="l">{_e(run["device"])}</td>'
        f'<td class="l">torch {_e(run["torch"])}, CUDA {_e(run["cuda"]) or "none"}<br><small>{_e(vtext)}'
        f'</small></td><td>{_e(run["seed"])}</td><td class="l"><code>{_e(run["fingerprint"])}</code><br>'
        f'{_e(run["protocol"])}</td><td class="l"><details><summary>plan</summary><pre>'
        f'{_e(_pretty(run["plan"]))}</pre></details></td></tr>')


def _pretty(plan_json: str | None) -> str:
    try:
        return json.dumps(json.loads(plan_json or "{}"), indent=1, sort_keys=True)
    except json.JSONDecodeError:
        return plan_json or ""


def _failed_section(failed: list[dict]) -> str:
    if not failed:
        return ""
    rows = [f'<tr><td class="l">{_e(c.model)}</td><td class="l">{_e(condition_label(c.noise, c.snr_db))}'
            f'</td><td>{c.rate_hz}</td><td class="l"><small>{_e(c.error)}</small></td></tr>'
            for c in sorted(failed, key=_cell_order)]
    return "<h2>Failed cells</h2>" + _table(["model", "condition", "rate Hz", "error"], rows)


# -- the report --------------------------------------------------------------------------------

def _filter_models(cells: list[StoredCell], failed: list[dict], models: list[str] | None) -> tuple[list, list]:
    if not models:
        return cells, failed
    keep = stored_models_matching(models, {c.model for c in cells + failed})
    return [c for c in cells if c.model in keep], [c for c in failed if c.model in keep]


_OWN_FIGURES = ("accuracy_vs_*.png", "per_class_accuracy*.png", "confusion_*.png")


def _clear_previous(out: Path) -> None:
    """Remove the figures of an earlier report in this folder, so none is left that this one does not show.

    Only in a folder that holds an earlier kwsbench report, and only files named like this module's figures.
    """
    index = out / "index.html"
    if not index.is_file() or "<title>kwsbench report</title>" not in index.read_text(errors="replace"):
        return
    for pattern in _OWN_FIGURES:
        for path in out.glob(pattern):
            path.unlink()


def _write_leaderboards(store: Store, cells: list[StoredCell], out: Path, page: _Page) -> None:
    from kwsbench.results.leaderboard import leaderboard

    for name, fmt, wide, per_seed in (("leaderboard.csv", "csv", False, True),
                                      ("leaderboard_seeds.csv", "csv", False, False),
                                      ("leaderboard_wide.csv", "csv", True, False),
                                      ("leaderboard.md", "md", True, False)):
        path = out / name
        path.write_text(leaderboard(cells, fmt=fmt, wide=wide, per_seed=per_seed, store=store))
        page.files.append(path)


def _clip_set(store: Store, key: ClipSetKey, cells: list[StoredCell], opts: ReportOptions,
              condition: tuple[str, float | None] | None, page: _Page) -> _Set | None:
    """The view of one clip set: rate, seed and condition of its figures, caption, rank-grouped rows."""
    rates = {c.rate_hz for c in cells}
    if opts.rate is not None and opts.rate not in rates:
        page.notes.append(f"{key.title()}: no cell at {opts.rate} Hz (stored: "
                          f"{', '.join(str(r) for r in sorted(rates))}); left out of the figures")
        return None
    view = select_view(cells, opts.rate)
    main = at_rate(view)
    cond = condition or default_condition(main)
    if not any(c.noise == cond[0] and c.snr_db == cond[1] for c in main):
        page.notes.append(f"{key.title()}: {condition_label(*cond)} not stored at {view.rate} Hz; its per-class "
                          "figures use the default condition")
        cond = default_condition(main)
    n = main[0].n if main else 0
    seeds = sorted({c.seed for c in cells})
    seed_text = f"seed {view.seed}" if len(seeds) == 1 else f"seed {view.seed} of {len(seeds)}"
    precision = "" if view.precision == "fp32" else f", {view.precision}"
    caption = f"{key.data} ({key.protocol}), n = {n} clips, {key.weights} weights, {seed_text}{precision}"
    classes = len(main[0].label_names) if main and main[0].label_names else 0
    keep = {(c.model, c.noise, c.snr_db, c.rate_hz, c.rate_mode, c.snr_def, c.decimation, c.precision) for c in main}
    rows = {(r.model, r.noise, r.snr_db): r for r in store_rows(store, cells, per_seed=False)
            if r.rate_hz == view.rate and (r.model, r.noise, r.snr_db, r.rate_hz, r.rate_mode, r.snr_def,
                                           r.decimation, r.precision) in keep}
    return _Set(key, view, cond, caption, 100.0 / classes if classes else None, key.slug(), rows)


def _clip_set_sections(store: Store, index: int, cs: _Set, cells: list[StoredCell], styles: dict, out: Path,
                       page: _Page) -> None:
    main = at_rate(cs.view)
    excluded = len(cells) - len(cs.view.cells)
    head = (f'<h2 class="clipset" id="clipset-{index}">Clip set {index}: {_e(cs.key.data)}, {_e(cs.key.weights)} '
            f'weights</h2><p>Protocol {_e(cs.key.protocol)}, fingerprint <code>{_e(cs.key.fingerprint[:12])}</code>'
            f", {len({c.model for c in cells})} models, {len(cells)} cells. Figures: {_e(cs.caption)}, SNR "
            f"definition {_e(cs.view.snr_def or 'n/a')}, {cs.view.rate} Hz; chosen condition "
            f"{_e(condition_label(*cs.cond))}.</p>")
    if excluded:
        head += (f"<p class=note>{excluded} cells of this clip set (other seeds, SNR definition, rate mode or "
                 "precision) are in "
                 "the grid means and the tables but not the figures.</p>")
    page.sections.append(head + _grid_section(main, cs, styles))
    _snr_section(main, cs, styles, out, page)
    _pareto_section(main, cs, styles, out, page)
    _rate_section(cs, styles, out, page)
    _class_section(store, main, cs, styles, out, page)


def build_report(opts: ReportOptions) -> ReportResult:
    """Write out/index.html, its PNGs and the leaderboard files; returns what was written and the notes.

    One section per clip set and weights manifest (or the one `opts.selection` picks), each with its own
    figures; results of different clip sets never share a table or a figure."""
    from kwsbench.results.judge import check_tolerance

    check_tolerance(opts.tol)  # before the figures are drawn, not when the verdicts are
    store_path, out = _checked_paths(opts)
    with Store(store_path, read_only=True) as store:
        cells, failed = _filter_models(store.cells(), store.cells(status="failed"), opts.models)
        if not cells:
            raise StoreError(f"{store_path} holds no successful cell{' of those models' if opts.models else ''}: "
                             "run `kwsbench run` first")
        labels = store_labels_of(store, cells + failed)
        cells = select(cells, labels, opts.selection)
        failed = [c for c in failed if opts.selection.keeps(c, labels.key(c))]
        condition = parse_condition(opts.condition) if opts.condition else None
        _check_request(cells, condition, opts.rate)
        _prepare_folder(out)
        styles = figures.model_styles(c.model for c in cells)
        page = _Page()
        sets = []
        for i, (key, mine) in enumerate(group(cells, labels).items(), 1):
            cs = _clip_set(store, key, mine, opts, condition, page)
            if cs is not None:
                sets.append((i, cs))
                _clip_set_sections(store, i, cs, mine, styles, out, page)
        _verdict_section(store, cells, opts, page)
        page.sections.append(_cells_section(cells, labels))
        page.sections.append(_failed_section(failed))
        _provenance_section(store, cells + failed, page)
        _write_leaderboards(store, cells, out, page)
    index = out / "index.html"
    index.write_text(_page_html(page, sets, store_path, cells))
    return ReportResult(index=index, files=[index, *page.files], notes=page.notes,
                        cells=sum(len(cs.view.cells) for _, cs in sets))


def _checked_paths(opts: ReportOptions) -> tuple[Path, Path]:
    """The store (it must exist: a report never creates one) and the report folder (it must not be a file)."""
    store_path = Path(opts.store)
    if not store_path.is_file():
        raise StoreMissingError(f"no results store at {store_path.resolve()}: run `kwsbench run` first, or pass "
                                "--store PATH (or set KWSBENCH_STORE)")
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"report --out {out} is a file; the report is a folder (index.html, figures, tables): "
                            "pass a folder path")
    return store_path, out


def _prepare_folder(out: Path) -> None:
    """Create the report folder, without an earlier report's figures; made only once the request is known good."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInputError(f"report --out {out}: cannot create the folder ({err.strerror}); pass a folder "
                            "you can write to") from err
    _clear_previous(out)


def _check_request(cells: list[StoredCell], condition: tuple[str, float | None] | None, rate: int | None) -> None:
    """--rate and --condition must name something stored in at least one clip set."""
    rates = {c.rate_hz for c in cells}
    if rate is not None and rate not in rates:
        raise BadInputError(f"--rate {rate}: no stored cell at that rate; stored rates: "
                            f"{', '.join(str(r) for r in sorted(rates))}; pass one of them")
    if condition is not None and not any(c.noise == condition[0] and c.snr_db == condition[1] for c in cells):
        have = sorted({condition_label(c.noise, c.snr_db) for c in cells})
        raise BadInputError(f"--condition {condition_label(*condition)}: not stored; stored: {', '.join(have)}")


def _page_html(page: _Page, sets: list[tuple[int, _Set]], store_path: Path, cells: list[StoredCell]) -> str:
    models = sorted({c.model for c in cells})
    notes = "".join(f"<li>{_e(n)}</li>" for n in page.notes)
    toc = "".join(f'<li><a href="#clipset-{i}">Clip set {i}: {_e(cs.key.title())}</a></li>' for i, cs in sets)
    head = (f"<h1>kwsbench report</h1><p>Store <code>{_e(store_path.name)}</code>: {len(cells)} cells, "
            f"{len(models)} models, {len(sets)} clip set(s). Each clip set (data set, protocol, fingerprint) and "
            "weights manifest has its own section, figures and rankings; results of different clip sets are never "
            "mixed. Accuracies in percent; intervals are Wilson 95%.</p><ul>" + toc + "</ul>"
            "<p>Leaderboard: <a href=\"leaderboard.csv\">leaderboard.csv</a> (one row per cell), "
            "<a href=\"leaderboard_seeds.csv\">leaderboard_seeds.csv</a> (seeds averaged), "
            "<a href=\"leaderboard_wide.csv\">leaderboard_wide.csv</a> and <a href=\"leaderboard.md\">"
            "leaderboard.md</a> (one row per model and clip set).</p>")
    if notes:
        head += f"<p class=note>Notes:</p><ul class=note>{notes}</ul>"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kwsbench report</title>"
            f"<style>{_CSS}</style></head><body>{head}{''.join(page.sections)}</body></html>\n")
