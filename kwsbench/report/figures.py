"""Report figures: one function per figure, each writing one PNG and returning its path (None when the
data hold nothing to draw).

Figures are drawn on bare `matplotlib.figure.Figure` objects with the Agg canvas, never through pyplot, so
no global figure state or backend switch leaks into the caller. Every figure takes the same colour map
(`model_colors`), keyed by the sorted model names of the whole report, so a model has one colour everywhere.
Accuracies come in as fractions (0..1) and are drawn in percent.
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
from matplotlib.ticker import NullFormatter

if TYPE_CHECKING:
    from kwsbench.results.store import StoredCell

Colour = tuple[float, float, float, float]
DPI = 110


def model_colors(models: Iterable[str]) -> dict[str, Colour]:
    """A stable colour per model: the position in the sorted name list picks a qualitative colour."""
    names = sorted(set(models))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: tuple(cmap(i % cmap.N)) for i, name in enumerate(names)}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    # no Software/URL text chunk: the report folder carries no links to the outside
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _colour(colors: dict[str, Colour], model: str) -> Colour:
    return colors.get(model, (0.3, 0.3, 0.3, 1.0))


def _pct(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else 100.0 * v for v in values], dtype=np.float64)


# -- accuracy vs SNR ---------------------------------------------------------------------------

def accuracy_vs_snr(cells: list[StoredCell], colors: dict[str, Colour], path: Path) -> Path | None:
    """One panel per noise source, one line per model with its Wilson 95 % band; clean as a dotted line."""
    noises = sorted({c.noise for c in cells if c.noise != "clean" and c.snr_db is not None})
    if not noises:
        return None
    cols = min(3, len(noises))
    rows = math.ceil(len(noises) / cols)
    fig = _new_figure(4.6 * cols, 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    clean = {c.model: c.accuracy for c in cells if c.noise == "clean"}
    for ax, noise in zip(axes, noises, strict=False):
        mine = [c for c in cells if c.noise == noise]
        for model in sorted({c.model for c in mine}):
            pts = sorted((c for c in mine if c.model == model), key=lambda c: c.snr_db)
            x = np.array([c.snr_db for c in pts], dtype=np.float64)
            colour = _colour(colors, model)
            ax.fill_between(x, _pct([c.ci_low for c in pts]), _pct([c.ci_high for c in pts]),
                            color=colour, alpha=0.18, linewidth=0)
            ax.plot(x, _pct([c.accuracy for c in pts]), marker="o", ms=3.5, color=colour, label=model)
            if model in clean:
                ax.axhline(100.0 * clean[model], color=colour, ls=":", lw=1.0, alpha=0.8)
        ax.set_title(noise)
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    for ax in axes[len(noises):]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("accuracy (%)")
    legend: dict[str, object] = {}  # a model may be missing from some panels: collect over all of them
    for ax in axes[:len(noises)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels = sorted(legend)
    handles = [legend[k] for k in labels]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), fontsize="small")
    fig.suptitle("Accuracy vs SNR (bands: Wilson 95 %; dotted: clean)")
    return _save(fig, path)


# -- accuracy vs MACs (Pareto) -----------------------------------------------------------------

@dataclass
class CostPoint:
    model: str
    macs: int
    accuracy: float  # fraction


def pareto_front(points: list[CostPoint]) -> list[CostPoint]:
    """Points no other point beats on both axes (fewer or equal MACs and higher accuracy), by MACs."""
    front: list[CostPoint] = []
    best = -math.inf
    for p in sorted(points, key=lambda p: (p.macs, -p.accuracy)):
        if p.accuracy > best:
            front.append(p)
            best = p.accuracy
    return front


def accuracy_vs_macs(panels: list[tuple[str, list[CostPoint]]], colors: dict[str, Colour],
                     path: Path) -> Path | None:
    """Accuracy vs MACs per clip (log x), one panel per condition, points labelled, Pareto front drawn."""
    panels = [(title, pts) for title, pts in panels if pts]
    if not panels:
        return None
    fig = _new_figure(5.2 * len(panels), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    for ax, (title, pts) in zip(axes, panels, strict=True):
        for p in pts:
            ax.scatter([p.macs], [100.0 * p.accuracy], color=_colour(colors, p.model), s=36, zorder=3)
            ax.annotate(p.model, (p.macs, 100.0 * p.accuracy), textcoords="offset points", xytext=(4, 4),
                        fontsize="x-small")
        front = pareto_front(pts)
        # rings mark the front's members, so a one-point front is still visible
        ax.step([p.macs for p in front], [100.0 * p.accuracy for p in front], where="post", color="black",
                lw=1.0, ls="--", alpha=0.7, marker="o", ms=11, mfc="none", label="Pareto front")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on short decades
        lo, hi = min(p.macs for p in pts), max(p.macs for p in pts)
        ax.set_xlim(lo / 2.0, hi * 3.0)  # room for the labels right of the points
        ax.set_title(title)
        ax.set_xlabel("MACs per 1-s clip (log)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="x-small", loc="lower right")
    return _save(fig, path)


# -- accuracy vs rate --------------------------------------------------------------------------

def accuracy_vs_rate(panels: list[tuple[str, list[dict]]], colors: dict[str, Colour], path: Path) -> Path | None:
    """Accuracy vs sample rate per model (solid: native rate change, dashed: band-limited input)."""
    panels = [(t, cs) for t, cs in panels if len({c.rate_hz for c in cs}) >= 2]
    if not panels:
        return None
    fig = _new_figure(5.0 * len(panels), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False, sharey=True)).ravel()
    for ax, (title, cs) in zip(axes, panels, strict=True):
        for model in sorted({c.model for c in cs}):
            mine = [c for c in cs if c.model == model]
            top = max(c.rate_hz for c in mine)
            # the model at its own rate is one measurement shared by both series
            anchor = [c for c in mine if c.rate_hz == top and c.rate_mode == "native"]
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
                ax.errorbar(x, acc, yerr=err, color=_colour(colors, model), ls=style, marker="o", ms=3.5,
                            capsize=2, label=model if mode == "native" else f"{model} (band-limited)")
        rates = sorted({c.rate_hz / 1000.0 for c in cs})
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.set_xlabel("sample rate (kHz)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("accuracy (%)")
    return _save(fig, path)


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
    fig = _new_figure(1.0 + 0.62 * len(label_names), 1.3 + 0.42 * len(models))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for (i, j), v in np.ndenumerate(data):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize="x-small",
                    color="black" if v > 60 else "white")
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
    fig = _new_figure(1.6 + 0.5 * k, 1.2 + 0.45 * k)
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize="xx-small",
                    color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), label_names, rotation=45, ha="right")
    ax.set_yticks(range(k), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize="medium")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    return _save(fig, path)
