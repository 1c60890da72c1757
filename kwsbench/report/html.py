"""`kwsbench report`: a self-contained folder (index.html + PNGs + leaderboard CSV/MD) from the results store.

The HTML has no external assets: inline CSS, images by relative file name in the same folder, no scripts.
What the figures show is one consistent slice of the store (see `select_view`): the clip set, seed and SNR
definition holding the most cells, one cell per model and condition (the newest). Everything stored is still
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
from kwsbench.results.store import Store, StoredCell, condition_label

VERDICT_ORDER = ("DEVIATES", "WITHIN_CI", "MATCH", "NOT_COMPARABLE")


@dataclass
class ReportOptions:
    store: Path = field(default_factory=default_store)  # $KWSBENCH_STORE, else runs/kwsbench.sqlite
    out: Path = Path("report")
    models: list[str] | None = None  # None: every model in the store
    condition: str | None = None  # "NOISE:SNR" or "clean" for the heatmap / confusion / Pareto; None: picked
    rate: int | None = None  # rate of the SNR, Pareto and per-class figures; None: 16000 if stored, else highest
    baselines: Path | None = None  # folder of baseline YAML (default: the project's baselines/)
    tol: float = 2.0  # MATCH tolerance in percentage points


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
    excluded: int  # ok cells outside the slice (other clip set / seed / SNR definition)


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
    """The most populated clip set / seed / SNR definition; duplicates of one condition keep the newest cell."""
    fingerprint = _mode([c.fingerprint for c in cells])
    mine = [c for c in cells if c.fingerprint == fingerprint]
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
    return View(kept, fingerprint, seed, snr_def, rate, excluded=len(cells) - len(mine))


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
            -c.rate_hz, c.rate_mode)


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
.MATCH{background:#c8ecc8}.WITHIN_CI{background:#e6f2b8}.DEVIATES{background:#f6c4c4}
.NOT_COMPARABLE{background:#e4e4e4;color:#555}.note{color:#7a4b00}small{color:#666}
code,pre{font-size:.85em;background:#f7f7f7}pre{padding:.5em;overflow-x:auto}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}
"""


def _swatch(colors: dict, model: str) -> str:
    r, g, b, _ = colors.get(model, (0.3, 0.3, 0.3, 1.0))
    rgb = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    return f'<span class="swatch" style="background:{rgb}"></span>{_e(model)}'


# -- sections ----------------------------------------------------------------------------------

def _grid_section(cells: list[StoredCell], view: View, colors: dict) -> str:
    """Accuracy per model (rows) and condition (columns) at the view's rate."""
    conds = sorted({(c.noise, c.snr_db) for c in cells},
                   key=lambda k: (k[0] != "clean", k[0], -1e9 if k[1] is None else k[1]))
    by = {(c.model, c.noise, c.snr_db): c for c in cells}
    rows = []
    for model in sorted({c.model for c in cells}):
        tds = []
        for noise, snr in conds:
            c = by.get((model, noise, snr))
            tds.append("<td></td>" if c is None else
                       f'<td title="95% CI {_ci(c.ci_low, c.ci_high)}">{pct(c.accuracy)}</td>')
        rows.append(f'<tr><td class="l">{_swatch(colors, model)}</td>{"".join(tds)}</tr>')
    headers = ["model"] + [condition_label(n, s) for n, s in conds]
    return (f"<h2>Accuracy grid ({view.rate} Hz, %)</h2><p><small>Hover a number for its Wilson 95% interval; "
            f"every interval is in the full cell table below.</small></p>" + _table(headers, rows, "grid"))


def _cells_section(cells: list[StoredCell]) -> str:
    rows = []
    for c in sorted(cells, key=_cell_order):
        snr = "" if c.snr_db is None else f"{c.snr_db:g}"
        f1 = "" if c.macro_f1 is None else f"{c.macro_f1:.4f}"
        attrs = (f'data-key="{_e(c.cell_key)}" data-model="{_e(c.model)}" data-noise="{_e(c.noise)}" '
                 f'data-snr="{snr}" data-rate="{c.rate_hz}" data-mode="{_e(c.rate_mode)}"')
        rows.append(
            f'<tr class="cell" {attrs}><td class="l">{_e(c.model)}</td><td class="l">{_e(c.noise)}</td>'
            f'<td>{snr}</td><td class="l">{_e(c.snr_def)}</td><td>{c.rate_hz}</td>'
            f'<td class="l">{_e(c.rate_mode)}</td><td class="l">{_e(c.decimation)}</td>'
            f'<td class="n">{c.n}</td><td class="correct">{c.correct}</td>'
            f'<td class="acc">{pct(c.accuracy)}</td><td class="ci">{_ci(c.ci_low, c.ci_high)}</td>'
            f'<td>{_ci(c.boot_low, c.boot_high)}</td><td>{f1}</td>'
            f'<td class="l"><code>{_e(c.checkpoint_sha256[:12])}</code></td>'
            f'<td class="l"><code>{_e(c.fingerprint[:12])}</code></td><td>{c.seed}</td>'
            f'<td>{c.run_id}</td></tr>')
    headers = ["model", "noise", "SNR dB", "SNR def", "rate Hz", "rate mode", "decimation", "n", "correct",
               "accuracy %", "Wilson 95% CI", "speaker bootstrap 95% CI", "macro F1", "checkpoint", "clip set",
               "seed", "run"]
    return ("<h2>All cells</h2><p><small>Every successful cell of the selected models, as stored "
            "(accuracy = correct / n). The same rows are in <a href=\"leaderboard.csv\">leaderboard.csv</a>."
            "</small></p>" + _table(headers, rows, "cells"))


def _snr_section(cells: list[StoredCell], colors: dict, out: Path, page: _Page) -> None:
    path = figures.accuracy_vs_snr(cells, colors, out / "accuracy_vs_snr.png")
    page.sections.append("<h2>Accuracy vs SNR</h2>" + (_img(path, "accuracy vs SNR") if path else
                         "<p class=note>No noisy cells in this view: nothing to plot.</p>"))
    if path:
        page.files.append(path)


def _pareto_section(cells: list[StoredCell], view: View, cond: tuple[str, float | None], colors: dict, out: Path,
                    page: _Page) -> None:
    macs, missing = {}, []
    for model in sorted({c.model for c in cells}):
        value, why = model_macs(model, view.rate)
        if value is None:
            missing.append(f"{model}: {why}")
        else:
            macs[model] = value
    panels = []
    for noise, snr in [("clean", None)] + ([cond] if cond[0] != "clean" else []):
        pts = [figures.CostPoint(c.model, macs[c.model], c.accuracy) for c in cells
               if c.noise == noise and c.snr_db == snr and c.model in macs]
        panels.append((f"{condition_label(noise, snr)} @ {view.rate} Hz", pts))
    path = figures.accuracy_vs_macs(panels, colors, out / "accuracy_vs_macs.png")
    rows = [f'<tr><td class="l">{_swatch(colors, m)}</td><td>{v:,}</td></tr>' for m, v in sorted(macs.items())]
    text = "<h2>Accuracy vs MACs</h2>" + _img(path, "accuracy vs MACs (Pareto)")
    if rows:
        text += _table(["model", f"MACs per 1-s clip at {view.rate} Hz"], rows, "macs")
    if missing:
        text += "<p class=note>Left out of the Pareto plot (no MAC count):</p><ul>" + "".join(
            f"<li>{_e(m)}</li>" for m in missing) + "</ul>"
        page.notes.extend(f"no MACs for {m}" for m in missing)
    page.sections.append(text)
    if path:
        page.files.append(path)


def _rate_section(view: View, cond: tuple[str, float | None], colors: dict, out: Path, page: _Page) -> None:
    panels = []
    for noise, snr in [("clean", None)] + ([cond] if cond[0] != "clean" else []):
        cs = [c for c in view.cells if c.noise == noise and c.snr_db == snr]
        panels.append((condition_label(noise, snr), cs))
    path = figures.accuracy_vs_rate(panels, colors, out / "accuracy_vs_rate.png")
    if path:
        page.files.append(path)
        page.sections.append("<h2>Accuracy vs sample rate</h2><p><small>Solid: the model run at the rate "
                             "(native); dashed: band-limited input at the model's own rate. Bars: Wilson 95%."
                             "</small></p>" + _img(path, "accuracy vs sample rate"))
    else:
        page.sections.append("<h2>Accuracy vs sample rate</h2><p class=note>Only one rate stored: "
                             "nothing to plot (run with <code>--rates 16000,8000,4000</code>).</p>")


def _class_section(store: Store, cells: list[StoredCell], view: View, cond: tuple[str, float | None], colors: dict,
                   out: Path, page: _Page) -> None:
    chosen = [c for c in cells if c.noise == cond[0] and c.snr_db == cond[1]]
    title = f"{condition_label(*cond)} @ {view.rate} Hz"
    _, _, labels = store.clips(view.fingerprint)
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
        path = figures.confusion_figure(m, label_names, f"{c.model}: {title}",
                                        out / f"confusion_{_safe_name(c.model)}.png")
        images.append((c.model, path))
    heat = figures.per_class_heatmap(models, per_class, label_names, f"Per-class accuracy, {title}",
                                     out / "per_class_accuracy.png")
    text = f"<h2>Per class: {_e(title)}</h2>"
    if heat is None:
        page.sections.append(text + "<p class=note>No cell with stored predictions at this condition.</p>")
        return
    page.files.append(heat)
    rows = [f'<tr class="perclass" data-model="{_e(m)}"><td class="l">{_swatch(colors, m)}</td>'
            + "".join(f"<td>{pct(v)}</td>" for v in pc) + "</tr>" for m, pc in zip(models, per_class, strict=True)]
    text += _img(heat, "per-class accuracy") + _table(["model", *label_names], rows, "perclass")
    text += "<h3>Confusion matrices</h3>"
    for model, path in images:
        page.files.append(path)
        text += f"<h4>{_e(model)}</h4>" + _img(path, f"confusion matrix {model}")
    page.sections.append(text)


def reproduce_comparisons(cells: list[StoredCell], baselines: Path | None, tol: float) -> tuple[list[tuple], str]:
    """(cell, Comparison) for every published row matching a stored cell; ('', why) when none can be made."""
    from kwsbench.results.baselines import load_baselines
    from kwsbench.results.verdicts import matching_rows, verdict

    try:
        rows = load_baselines(baselines)
    except BadInputError as err:
        return [], str(err)
    from kwsbench.models.registry import all_cards

    aliases = {c.name: {c.name, *c.aliases} for c in all_cards()}
    out = []
    for cell in cells:
        for rep in matching_rows(rows, aliases.get(cell.model, {cell.model}), cell):
            out.append((cell, verdict(rep, cell, tol)))
    return out, ""


def _verdict_section(cells: list[StoredCell], opts: ReportOptions, page: _Page) -> None:
    comps, why = reproduce_comparisons(cells, opts.baselines, opts.tol)
    text = f"<h2>Reproduce: measured vs published (tolerance {opts.tol:g} pp)</h2>"
    if not comps:
        page.sections.append(text + f"<p class=note>No published row matches a stored cell. {_e(why)}</p>")
        return
    comps.sort(key=lambda cv: (VERDICT_ORDER.index(cv[1].verdict), cv[0].model, _cell_order(cv[0])))
    counts = Counter(v.verdict for _, v in comps)
    rows: dict[bool, list[str]] = {True: [], False: []}  # comparable or not
    for cell, v in comps:
        r = v.reported
        rows[v.verdict != "NOT_COMPARABLE"].append(
            f'<tr class="verdict {v.verdict}" data-key="{_e(cell.cell_key)}"><td class="l">{_e(cell.model)}'
            f'</td><td class="l">{_e(condition_label(cell.noise, cell.snr_db))}</td><td>{cell.rate_hz}</td>'
            f'<td class="measured">{v.measured:.2f}</td><td>{"" if not v.ci else f"{v.ci[0]:.2f}–{v.ci[1]:.2f}"}'
            f'</td><td class="reported">{r.value:.2f}</td><td>{round(v.delta, 2) + 0.0:+.2f}</td>'
            f'<td class="l v">{v.verdict}</td><td class="l">{_e(r.paper)}<br><small>{_e(r.source)}; '
            f'{_e(r.protocol)} ({_e(r.split)}), verification {_e(r.verification)}</small></td>'
            f'<td class="l"><small>{_e("; ".join(v.reasons))}</small></td></tr>')
    summary = ", ".join(f'<span class="{k}">{k}: {counts[k]}</span>' for k in VERDICT_ORDER if counts[k])
    text += (f"<p>{summary}</p><p><small>MATCH: |Δ| ≤ tolerance; WITHIN_CI: the published value lies in the "
             "measured interval (Wilson ∪ speaker bootstrap); DEVIATES: neither; NOT_COMPARABLE: protocol, "
             "class set, split, SNR definition, rate or verification differ (shown side by side).</small></p>")
    headers = ["model", "condition", "rate Hz", "measured %", "measured 95% interval (Wilson ∪ bootstrap)",
               "published %", "Δ pp", "verdict", "source", "why not comparable"]
    if rows[True]:
        text += _table(headers, rows[True], "verdicts")
    if rows[False]:
        # usually the longest list (other protocols, validation-split numbers): folded, still one click away
        text += (f"<details><summary>{len(rows[False])} NOT_COMPARABLE rows (side by side, not judged)</summary>"
                 + _table(headers, rows[False], "verdicts") + "</details>")
    page.sections.append(text)


def _provenance_section(store: Store, cells: list[StoredCell], page: _Page) -> None:
    run_ids = sorted({c.run_id for c in cells})
    rows = []
    for run in (r for r in store.runs() if r["run_id"] in run_ids):
        try:
            versions = json.loads(run["versions"] or "{}")
        except json.JSONDecodeError:
            versions = {"raw": run["versions"]}
        vtext = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        rows.append(
            f'<tr class="run" data-run="{run["run_id"]}"><td>{run["run_id"]}</td><td class="l">{_e(run["created"])}'
            f'<br>{_e(run["finished"])}</td><td class="l">{_e(run["status"])}</td><td class="l"><code>'
            f'{_e(run["git_commit"]) or "(not a git checkout)"}</code></td><td class="l">{_e(run["device"])}</td>'
            f'<td class="l">torch {_e(run["torch"])}, CUDA {_e(run["cuda"]) or "none"}<br><small>{_e(vtext)}'
            f'</small></td><td>{_e(run["seed"])}</td><td class="l"><code>{_e(run["fingerprint"])}</code><br>'
            f'{_e(run["protocol"])}</td><td class="l"><details><summary>plan</summary><pre>'
            f'{_e(_pretty(run["plan"]))}</pre></details></td></tr>')
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
    stored = sorted({c.model for c in cells + failed})
    keep = set()
    for name in models:
        if name in stored:
            keep.add(name)
            continue
        if any(ch in name for ch in "*?["):  # a glob, as --models takes everywhere
            import fnmatch

            hits = [m for m in stored if fnmatch.fnmatch(m.lower(), name.lower())]
            if not hits:
                raise BadInputError(f"--models: {name!r} matches no stored model; stored: {', '.join(stored)}")
            keep.update(hits)
            continue
        from kwsbench.models.registry import find_card

        card = find_card(name)  # an alias of a stored model; an unknown name is reported below
        canonical = card.name if card is not None else name
        if canonical not in stored:
            raise BadInputError(f"--models: {name!r} has no cell in the store; stored models: {', '.join(stored)}")
        keep.add(canonical)
    return [c for c in cells if c.model in keep], [c for c in failed if c.model in keep]


_OWN_FIGURES = ("accuracy_vs_*.png", "per_class_accuracy.png", "confusion_*.png")


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


def build_report(opts: ReportOptions) -> ReportResult:
    """Write out/index.html, its PNGs and the leaderboard files; returns what was written and the notes."""
    store_path = Path(opts.store)
    if not store_path.is_file():
        raise StoreMissingError(f"no results store at {store_path.resolve()}: run `kwsbench run` first, or pass "
                                "--store PATH (or set KWSBENCH_STORE)")
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"report --out {out} is a file; the report is a folder (index.html, figures, tables): "
                            "pass a folder path")
    with Store(store_path, read_only=True) as store:
        cells, failed = _filter_models(store.cells(), store.cells(status="failed"), opts.models)
        if not cells:
            raise StoreError(f"{store_path} holds no successful cell{' of those models' if opts.models else ''}: "
                             "run `kwsbench run` first")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BadInputError(f"report --out {out}: cannot create the folder ({err.strerror}); pass a folder "
                                "you can write to") from err
        _clear_previous(out)
        view = select_view(cells, opts.rate)
        main = at_rate(view)
        cond = parse_condition(opts.condition) if opts.condition else default_condition(main)
        if not any(c.noise == cond[0] and c.snr_db == cond[1] for c in main):
            have = sorted({condition_label(c.noise, c.snr_db) for c in main})
            raise BadInputError(f"--condition {condition_label(*cond)}: not stored at {view.rate} Hz; stored: "
                                f"{', '.join(have)}")
        colors = figures.model_colors(c.model for c in cells)
        page = _Page()
        if view.excluded:
            page.notes.append(f"{view.excluded} cells of another clip set, seed or SNR definition are in the "
                              "tables but not the figures")
        page.sections.append(_grid_section(main, view, colors))
        _snr_section(main, colors, out, page)
        _pareto_section(main, view, cond, colors, out, page)
        _rate_section(view, cond, colors, out, page)
        _class_section(store, main, view, cond, colors, out, page)
        _verdict_section(cells, opts, page)
        page.sections.append(_cells_section(cells))
        page.sections.append(_failed_section(failed))
        _provenance_section(store, cells + failed, page)
        _write_leaderboards(store, cells, out, page)
    index = out / "index.html"
    index.write_text(_page_html(page, view, cond, store_path, cells))
    return ReportResult(index=index, files=[index, *page.files], notes=page.notes, cells=len(view.cells))


def _page_html(page: _Page, view: View, cond: tuple[str, float | None], store_path: Path,
               cells: list[StoredCell]) -> str:
    models = sorted({c.model for c in cells})
    protocols = sorted({c.protocol for c in view.cells})
    notes = "".join(f"<li>{_e(n)}</li>" for n in page.notes)
    head = (f"<h1>kwsbench report</h1><p>Store <code>{_e(store_path.name)}</code>: {len(cells)} cells, "
            f"{len(models)} models. Figures: clip set <code>{_e(view.fingerprint[:12])}</code> "
            f"({_e(', '.join(protocols))}), seed {view.seed}, SNR definition {_e(view.snr_def or 'n/a')}, "
            f"{view.rate} Hz; chosen condition {_e(condition_label(*cond))}. Accuracies in percent; intervals "
            f"are Wilson 95%.</p><p>Leaderboard: <a href=\"leaderboard.csv\">leaderboard.csv</a> (one row per "
            f"cell), <a href=\"leaderboard_wide.csv\">leaderboard_wide.csv</a> and <a href=\"leaderboard.md\">"
            f"leaderboard.md</a> (one row per model).</p>")
    if notes:
        head += f"<p class=note>Notes:</p><ul class=note>{notes}</ul>"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kwsbench report</title>"
            f"<style>{_CSS}</style></head><body>{head}{''.join(page.sections)}</body></html>\n")

