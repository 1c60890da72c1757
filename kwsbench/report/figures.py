"""Report figures: one function per figure, each writing one PNG and returning its path (None when the
data hold nothing to draw).

Figures are drawn on bare `matplotlib.figure.Figure` objects with the Agg canvas, never through pyplot, so
no global figure state or backend switch leaks into the caller. Every figure takes the same styles
(`model_styles`: colour, marker and line style, distinct for up to 90 models), keyed by the sorted model names
of the whole report, so a model looks the same everywhere. Every figure carries a caption (data set, clip count,
weights, seed) in its title, and the chance level where accuracy is drawn. Accuracies come in as fractions
(0..1) and are drawn in percent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

if TYPE_CHECKING:
    from kwsbench.results.store import StoredCell

Colour = tuple[float, float, float, float]
DPI = 110
# 10 colours x 9 markers (coprime counts: the pair (colour, marker) repeats only after 90 models), plus a line
# style per block of ten so neighbours in the name order differ in three ways
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
_LINES = ("-", "--", "-.", ":")
MAX_BANDS = 8  # more overlapping interval bands than this hide the lines
CHANCE_STYLE = dict(color="0.35", ls=(0, (1, 2)), lw=1.2)


@dataclass(frozen=True)
class Style:
    colour: Colour
    marker: str
    line: str | tuple


def model_styles(models: Iterable[str]) -> dict[str, Style]:
    """A stable style per model: its position in the sorted name list picks colour, marker and line style."""
    names = sorted(set(models))
    cmap = matplotlib.colormaps["tab10"]
    return {name: Style(tuple(cmap(i % 10)), _MARKERS[i % len(_MARKERS)], _LINES[(i // 10) % len(_LINES)])
            for i, name in enumerate(names)}


_FALLBACK = Style((0.3, 0.3, 0.3, 1.0), "o", "-")


def _style(styles: dict[str, Style], model: str) -> Style:
    return styles.get(model, _FALLBACK)


def _chance(ax, chance_pct: float | None) -> None:
    if chance_pct is not None:
        ax.axhline(chance_pct, **CHANCE_STYLE, zorder=1)


def _legend_handles(models: list[str], styles: dict[str, Style], with_line: bool = True) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_style(styles, m).colour, marker=_style(styles, m).marker,
                      ls=_style(styles, m).line if with_line else "none", ms=6, label=m) for m in models]
    return handles


def _chance_handle(chance_pct: float | None) -> list:
    from matplotlib.lines import Line2D

    return [] if chance_pct is None else [Line2D([], [], **CHANCE_STYLE, label=f"chance ({chance_pct:.1f} %)")]


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    # no Software/URL text chunk: the report folder carries no links to the outside
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _pct(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else 100.0 * v for v in values], dtype=np.float64)


# -- accuracy vs SNR ---------------------------------------------------------------------------

def _snr_positions(snrs: list[float]) -> tuple[dict[float, float], bool]:
    """x position of each SNR: the SNR itself, unless the gaps are so uneven (e.g. -60 beside -5..5) that one SNR
    would stretch the axis; then evenly spaced categories labelled with their SNR."""
    gaps = np.diff(sorted(snrs))
    if len(gaps) >= 2 and gaps.max() > 3 * np.median(gaps):
        return {s: float(i) for i, s in enumerate(sorted(snrs))}, True
    return {s: float(s) for s in snrs}, False


def accuracy_vs_snr(cells: list[StoredCell], styles: dict[str, Style], path: Path, caption: str = "",
                    chance_pct: float | None = None) -> Path | None:
    """One panel per noise source, one line per model with its Wilson 95 % band (a lone SNR: error bars), clean
    as a short mark at the panel's right edge, chance drawn."""
    noises = sorted({c.noise for c in cells if c.noise != "clean" and c.snr_db is not None})
    if not noises:
        return None
    models = sorted({c.model for c in cells})
    cols = min(3, len(noises))
    rows = math.ceil(len(noises) / cols)
    # wide enough for the caption and a 4-column legend even with one panel (constrained layout clips, never grows)
    fig = _new_figure(max(4.8 * cols, 9.0), 3.6 * rows + 0.5 + 0.22 * math.ceil((len(models) + 2) / 4))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    clean = {c.model: c.accuracy for c in cells if c.noise == "clean"}
    bands = len(models) <= MAX_BANDS
    for ax, noise in zip(axes, noises, strict=False):
        _snr_panel(ax, noise, [c for c in cells if c.noise == noise], clean, styles, bands)
        _chance(ax, chance_pct)
    for ax in axes[len(noises):]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("accuracy (%)")
    handles = _legend_handles(models, styles) + _chance_handle(chance_pct)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize="small")
    # a model with one SNR in a panel gets error bars whatever the model count: the caption says what is drawn
    lone = any(len({c.snr_db for c in cells if c.noise == n and c.model == m}) == 1 for n in noises for m in models)
    what = ("bands / bars: Wilson 95 %" if bands else
            f"bars: Wilson 95 %; no bands above {MAX_BANDS} models" if lone else
            f"no Wilson bands above {MAX_BANDS} models: see the tables")
    fig.suptitle(f"Accuracy vs SNR: {caption}\n({what})", fontsize="medium")
    return _save(fig, path)


def _snr_panel(ax, noise: str, mine: list[StoredCell], clean: dict[str, float | None], styles: dict[str, Style],
               bands: bool) -> None:
    """One noise source's panel: a line (with its band) or an error bar per model, and each model's clean mark."""
    pos, categorical = _snr_positions(sorted({c.snr_db for c in mine}))
    names = sorted({c.model for c in mine})
    dodge = _dodge(names) if len(pos) == 1 else dict.fromkeys(names, 0.0)
    for model in names:
        pts = sorted((c for c in mine if c.model == model), key=lambda c: c.snr_db)
        x = np.array([pos[c.snr_db] + dodge[model] for c in pts], dtype=np.float64)
        st = _style(styles, model)
        acc, lo, hi = _pct([c.accuracy for c in pts]), _pct([c.ci_low for c in pts]), _pct([c.ci_high for c in pts])
        if len(pts) > 1:
            if bands:
                ax.fill_between(x, lo, hi, color=st.colour, alpha=0.12, linewidth=0)
            ax.plot(x, acc, marker=st.marker, ms=4, color=st.colour, ls=st.line, lw=1.3, label=model)
        else:
            ax.errorbar(x, acc, yerr=[acc - lo, hi - acc], marker=st.marker, ms=5, color=st.colour, ls="none",
                        capsize=3, label=model)
    xs = sorted(pos.values())
    if len(xs) == 1:  # one SNR: the models side by side around it and around the clean tick, one unit apart
        clean_x = xs[0] + 1.0
        ax.set_xlim(xs[0] - 0.6, clean_x + 0.6)
    else:
        span = max(xs[-1] - xs[0], 1.0)
        clean_x = xs[-1] + 0.1 * span
        ax.set_xlim(xs[0] - 0.08 * span, xs[-1] + 0.16 * span)
    for model, value in clean.items():  # clean: a short tick right of the noisy points, not a full-width line
        if model in dodge and value is not None:
            st = _style(styles, model)
            ax.plot([clean_x + dodge[model]], [100.0 * value], marker=st.marker, color=st.colour, ms=5,
                    mfc="none", ls="none")
    ticks = sorted(pos)
    ax.set_xticks([pos[t] for t in ticks] + [clean_x], [f"{t:g}" for t in ticks] + ["clean"])
    ax.set_title(noise, fontsize="medium")
    side = "; models side by side, in legend order" if len(xs) == 1 and len(names) > 1 else ""
    ax.set_xlabel("SNR (dB)" + (", evenly spaced" if categorical else "") + "; open marks: clean" + side)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def _dodge(models: list[str]) -> dict[str, float]:
    """x offsets that set the models side by side within +-0.4 of a lone SNR (and of the clean tick): 27 error bars
    stacked on one x, as `kwsbench run --quick` drew them, could not be told apart."""
    if len(models) < 2:
        return dict.fromkeys(models, 0.0)
    return {m: -0.4 + 0.8 * i / (len(models) - 1) for i, m in enumerate(models)}


# -- accuracy vs MACs (Pareto) -----------------------------------------------------------------

@dataclass
class CostPoint:
    model: str
    macs: int
    accuracy: float  # fraction
    ci_low: float | None = None
    ci_high: float | None = None


def _si(value: float, _pos: int = 0) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def pareto_front(points: list[CostPoint]) -> list[CostPoint]:
    """Points no other point beats on both axes (fewer or equal MACs and higher accuracy), by MACs."""
    front: list[CostPoint] = []
    best = -math.inf
    for p in sorted(points, key=lambda p: (p.macs, -p.accuracy)):
        if p.accuracy > best:
            front.append(p)
            best = p.accuracy
    return front


def accuracy_vs_macs(panels: list[tuple[str, list[CostPoint]]], styles: dict[str, Style], path: Path,
                     caption: str = "", chance_pct: float | None = None) -> Path | None:
    """Accuracy vs MACs per clip (log x), one panel per condition, Wilson error bars, Pareto front drawn. Models
    are told apart by colour and marker in a legend beside the panels (labels at the points would pile up)."""
    panels = [(title, pts) for title, pts in panels if pts]
    if not panels:
        return None
    models = sorted({p.model for _, pts in panels for p in pts})
    fig = _new_figure(max(4.6 * len(panels) + 2.4, 9.0), max(4.2, 0.9 + 0.2 * len(models)))
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False, sharey=True)).ravel()
    for ax, (title, pts) in zip(axes, panels, strict=True):
        _macs_panel(ax, title, pts, styles)
        _chance(ax, chance_pct)
    axes[0].set_ylabel("accuracy (%)")
    from matplotlib.lines import Line2D

    handles = (_legend_handles(models, styles, with_line=False)
               + [Line2D([], [], color="black", ls="--", marker="o", mfc="none", ms=9, label="Pareto front")]
               + _chance_handle(chance_pct))
    fig.legend(handles=handles, loc="outside right center", fontsize="small", ncol=1 if len(handles) <= 24 else 2)
    fig.suptitle(f"Accuracy vs MACs: {caption}\n(bars: Wilson 95 %)", fontsize="medium")
    return _save(fig, path)


def _macs_panel(ax, title: str, pts: list[CostPoint], styles: dict[str, Style]) -> None:
    """One condition's panel: each model's point with its Wilson bar, and the Pareto front."""
    for p in pts:
        st = _style(styles, p.model)
        acc = 100.0 * p.accuracy
        yerr = None
        if p.ci_low is not None and p.ci_high is not None:
            yerr = [[acc - 100.0 * p.ci_low], [100.0 * p.ci_high - acc]]
        ax.errorbar([p.macs], [acc], yerr=yerr, color=st.colour, marker=st.marker, ms=6, capsize=2.5,
                    ls="none", zorder=3)
    front = pareto_front(pts)
    # rings mark the front's members, so a one-point front is still visible
    ax.step([p.macs for p in front], [100.0 * p.accuracy for p in front], where="post", color="black",
            lw=1.0, ls="--", alpha=0.7, marker="o", ms=12, mfc="none", zorder=2)
    ax.set_xscale("log")
    # ticks written as 2M / 500k; 1-2-5 steps when the span is short, so one decade still gets labels
    decades = math.log10(max(p.macs for p in pts) / min(p.macs for p in pts))
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2 else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(_si))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = min(p.macs for p in pts), max(p.macs for p in pts)
    ax.set_xlim(lo / 1.6, hi * 1.6)
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("MACs per 1-s clip (log)")
    ax.grid(alpha=0.3, which="both")


# -- accuracy vs rate --------------------------------------------------------------------------

def accuracy_vs_rate(panels: list[tuple[str, list[StoredCell]]], styles: dict[str, Style], path: Path,
                     caption: str = "", chance_pct: float | None = None) -> Path | None:
    """Accuracy vs sample rate per model (solid: native rate change, dashed: band-limited input)."""
    panels = [(t, cs) for t, cs in panels if len({c.rate_hz for c in cs}) >= 2]
    if not panels:
        return None
    models = sorted({c.model for _, cs in panels for c in cs})
    fig = _new_figure(max(4.8 * len(panels) + 2.4, 9.0), max(3.8, 0.9 + 0.2 * len(models)))
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False, sharey=True)).ravel()
    for ax, (title, cs) in zip(axes, panels, strict=True):
        _rate_panel(ax, title, cs, styles)
        _chance(ax, chance_pct)
    axes[0].set_ylabel("accuracy (%)")
    from matplotlib.lines import Line2D

    handles = (_legend_handles(models, styles, with_line=False)
               + [Line2D([], [], color="black", ls="-", label="native rate"),
                  Line2D([], [], color="black", ls="--", marker="o", mfc="white", label="band-limited")]
               + _chance_handle(chance_pct))
    fig.legend(handles=handles, loc="outside right center", fontsize="small", ncol=1 if len(handles) <= 24 else 2)
    fig.suptitle(f"Accuracy vs sample rate: {caption}\n(bars: Wilson 95 %)", fontsize="medium")
    return _save(fig, path)


def _rate_panel(ax, title: str, cs: list[StoredCell], styles: dict[str, Style]) -> None:
    """One panel of accuracy vs rate: per model a native series and, where measured, a band-limited one."""
    for model in sorted({c.model for c in cs}):
        mine = [c for c in cs if c.model == model]
        top = max(c.rate_hz for c in mine)
        # the model at its own rate is one measurement shared by both series
        anchor = [c for c in mine if c.rate_hz == top and c.rate_mode == "native"]
        st = _style(styles, model)
        for mode, style in (("native", "-"), ("bandlimit", "--")):
            own = [c for c in mine if c.rate_mode == mode and c not in anchor]
            banded = any(c.rate_mode == "bandlimit" for c in mine)
            # a series needs points of its own; the lone anchor is drawn only when no band-limited line is
            if not own and (mode == "bandlimit" or banded):
                continue
            pts = sorted(own + anchor, key=lambda c: c.rate_hz)
            if not pts:
                continue
            x = np.array([c.rate_hz / 1000.0 for c in pts])
            acc = _pct([c.accuracy for c in pts])
            err = np.vstack([acc - _pct([c.ci_low for c in pts]), _pct([c.ci_high for c in pts]) - acc])
            ax.errorbar(x, acc, yerr=err, color=st.colour, ls=style, marker=st.marker, ms=4,
                        mfc=st.colour if mode == "native" else "white", capsize=2)
    rates = sorted({c.rate_hz / 1000.0 for c in cs})
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.set_ylim(0, 100)
    ax.set_xlabel("sample rate (kHz)")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)


# -- per-class heatmap and confusion matrices --------------------------------------------------

def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return m


def per_class_from_confusion(m: np.ndarray) -> list[float | None]:
    """Recall per class (None for a class without clips)."""
    support = m.sum(axis=1)
    return [float(m[k, k] / support[k]) if support[k] else None for k in range(m.shape[0])]


def per_class_heatmap(models: list[str], per_class: list[list[float | None]], label_names: Sequence[str],
                      title: str, path: Path) -> Path | None:
    """Rows = models, columns = classes, cell = recall in percent (grey where a class has no clips)."""
    if not models:
        return None
    data = np.array([_pct(row) for row in per_class])
    fig = _new_figure(2.4 + 0.6 * len(label_names), 1.8 + 0.36 * len(models))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for (i, j), v in np.ndenumerate(data):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize="small" if len(label_names) <= 15
                    else "xx-small", color="black" if v > 60 else "white")
    ax.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    ax.set_yticks(range(len(models)), models)
    ax.set_title(title, fontsize="medium")
    fig.colorbar(im, ax=ax, label="per-class accuracy (%)")
    return _save(fig, path)


def confusion_figure(matrix: np.ndarray, label_names: Sequence[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (colour) with the raw counts written in each non-empty cell."""
    support = matrix.sum(axis=1, keepdims=True)
    frac = np.divide(matrix, support, out=np.zeros(matrix.shape, dtype=np.float64), where=support > 0)
    k = len(label_names)
    cell = 0.55 if k <= 15 else 0.32  # inches per class: counts stay readable at 12 classes, the grid at 35
    fig = _new_figure(2.2 + cell * k, 1.9 + cell * k)
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize="small" if k <= 15 else "xx-small",
                    color="white" if frac[i, j] > 0.55 else "black")
    ax.set_xticks(range(k), label_names, rotation=45, ha="right")
    ax.set_yticks(range(k), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize="medium")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    return _save(fig, path)
