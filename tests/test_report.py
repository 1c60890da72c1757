"""`kwsbench report`: figures, a self-contained HTML folder, numbers equal to the store's.

The store is made by the real grid runner on a tiny hand-built clip set with tiny registered test models
(the runner's stand-ins of tests/helpers.py), two of them with a cost function so the Pareto plot has points.
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml
from helpers import MACS, PNG_MAGIC, REPORT_CARDS, REPORT_MODELS, RmsNoise, make_clipset, make_plan, tiny_loader

from kwsbench.cli import main
from kwsbench.errors import EXIT_NO_STORE
from kwsbench.models.registry import registered
from kwsbench.report import figures
from kwsbench.report.html import ReportOptions, build_report, parse_condition
from kwsbench.results.store import Store
from kwsbench.run.runner import run_plan


@pytest.fixture(scope="module", autouse=True)
def report_cards():
    """This module's cards, registered while its tests run (the report reads their cost functions)."""
    with registered(*REPORT_CARDS) as cards:
        yield cards


class _Refs(HTMLParser):
    """Collects every src/href, every tag name, and the rows of the tables the tests read."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()
        self.rows: list[tuple[dict, list[tuple[str, str]]]] = []  # (tr attrs, [(td class, text)])
        self._row = None
        self._td = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self.refs.extend(v for k, v in attrs if k in ("src", "href") and v is not None)
        if tag == "tr":
            self._row = (a, [])
        elif tag in ("td", "th") and self._row is not None:
            self._td = [a.get("class") or "", ""]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._td is not None and self._row is not None:
            self._row[1].append((self._td[0], self._td[1].strip()))
            self._td = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._td is not None:
            self._td[1] += data


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    plan = make_plan(tmp, models=REPORT_MODELS, noise=["white", "hum"], snr=[-5.0, 0.0, 5.0], rates=[16000, 8000])
    run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=6), show_progress=False)
    with Store(plan.store) as st:
        clean_a = next(c for c in st.cells(model="test-report-a", noise="clean", rate_hz=16000))
    measured = round(100 * clean_a.accuracy, 3)
    base = tmp / "baselines"
    base.mkdir()
    rows = [
        {"model": "test-report-a", "condition": "clean", "value": measured, "source": "exact"},
        {"model": "test-report-a", "condition": "clean", "value": measured - 40 if measured > 50 else measured + 40,
         "source": "far off"},
        {"model": "test-report-a", "condition": "clean", "value": measured, "protocol": "other-12", "source": "other"},
    ]
    (base / "test.yaml").write_text(yaml.safe_dump({
        "paper": "test paper", "defaults": {"protocol": "test-12", "classes": 12, "split": "test",
                                            "verification": "P"}, "rows": rows}))
    out = tmp / "out"
    result = build_report(ReportOptions(store=Path(plan.store), out=out, baselines=base, condition="white:0"))
    parser = _Refs()
    parser.feed(result.index.read_text())
    return plan.store, out, result, parser


def test_every_png_is_valid_and_non_trivial(built):
    _, out, result, _ = built
    names = {p.name for p in out.glob("*.png")}
    # one clip set: each figure once, named with the clip set's tag
    for prefix in ("accuracy_vs_snr_", "accuracy_vs_macs_", "accuracy_vs_rate_", "per_class_accuracy_"):
        assert len([n for n in names if n.startswith(prefix)]) == 1, prefix
    for m in REPORT_MODELS:
        assert len([n for n in names if n.startswith("confusion_") and n.endswith(f"_{m}.png")]) == 1, m
    for path in out.glob("*.png"):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 8_000, path.name
        img = mpimg.imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 200
        assert float(np.std(img[..., :3])) > 0.01, f"{path.name} looks blank"  # something was drawn
    assert {p.name for p in result.files} >= names | {"index.html", "leaderboard.csv", "leaderboard.md"}


def test_html_is_self_contained(built):
    _, out, result, parser = built
    text = result.index.read_text()
    assert "http://" not in text and "https://" not in text and "file:" not in text
    assert not parser.tags & {"script", "link", "iframe", "object"}
    assert parser.refs, "the report links its figures and leaderboard files"
    for ref in parser.refs:
        if ref.startswith("#"):  # the table of contents: an anchor in the page itself
            assert f'id="{ref[1:]}"' in text, ref
            continue
        assert "/" not in ref and "\\" not in ref and ":" not in ref, ref
        assert (out / ref).is_file(), f"{ref} referenced but not in the folder"
    srcs = set(re.findall(r'<img src="([^"]+)"', text))
    assert srcs == {p.name for p in out.glob("*.png")}  # every figure written is shown


def test_cell_numbers_equal_the_store(built):
    store_path, _, _, parser = built
    rows = [(a, tds) for a, tds in parser.rows if a.get("class") == "cell"]
    with Store(store_path) as st:
        cells = {c.cell_key: c for c in st.cells()}
        assert len(rows) == len(cells) == 3 * (1 + 2 * 3) * 2 - (1 + 2 * 3)  # the fixed model has no 8 kHz
        for attrs, tds in rows:
            c = cells[attrs["data-key"]]
            by_class = {cls: text for cls, text in tds if cls}
            assert attrs["data-model"] == c.model and int(attrs["data-rate"]) == c.rate_hz
            assert int(by_class["n"]) == c.n and int(by_class["correct"]) == c.correct
            preds = st.predictions(c.cell_key)
            labels = st.clips(c.fingerprint)[2]
            assert c.correct == int(np.sum(preds == labels))
            assert abs(float(by_class["acc"]) - 100 * c.accuracy) <= 0.005 + 1e-9
            lo, hi = (float(v) for v in by_class["ci"].split("–"))
            assert abs(lo - 100 * c.ci_low) <= 0.005 + 1e-9 and abs(hi - 100 * c.ci_high) <= 0.005 + 1e-9


def test_per_class_table_matches_stored_per_class(built):
    store_path, _, _, parser = built
    rows = {a["data-model"]: [t for _, t in tds[1:]] for a, tds in parser.rows if a.get("class") == "perclass"}
    assert set(rows) == set(REPORT_MODELS)
    with Store(store_path) as st:
        for model, texts in rows.items():
            [c] = st.cells(model=model, noise="white", snr_db=0.0, rate_hz=16000)
            # the runner's per-class accuracy was computed on its own path (kwsbench.results.stats)
            for text, stored in zip(texts, c.per_class, strict=True):
                assert (text == "") if stored is None else abs(float(text) - 100 * stored) <= 0.005 + 1e-9


def test_verdict_table_colour_coded(built):
    _, _, result, parser = built
    rows = [(int(tds[2][1]), a["class"].split()[1]) for a, tds in parser.rows
            if a.get("class", "").startswith("verdict ")]
    assert sorted(v for r, v in rows if r == 16000) == ["DEVIATES", "MATCH", "NOT_COMPARABLE"]
    # the published rows are 16 kHz numbers: at 8 kHz every one of them is NOT_COMPARABLE (rate differs)
    assert sorted(v for r, v in rows if r == 8000) == ["NOT_COMPARABLE"] * 3
    css = result.index.read_text()
    for v in ("MATCH", "WITHIN_CI", "DEVIATES", "NOT_COMPARABLE"):
        assert re.search(rf"\.{v}\{{background:#[0-9a-f]{{6}}", css)


def test_models_without_cost_are_noted_not_plotted(built):
    _, _, result, _ = built
    assert any(n.startswith("no MACs for test-tiny-fixed") for n in result.notes)
    assert not any("test-report-a" in n for n in result.notes)
    text = result.index.read_text()
    assert f"<td>{MACS['test-report-a'] + 16000:,}</td>" in text  # the MAC count printed is the cost function's


def test_leaderboard_files_copied(built):
    store_path, out, _, _ = built
    csv_text = (out / "leaderboard.csv").read_text().splitlines()
    with Store(store_path) as st:
        assert len(csv_text) == 1 + len(st.cells())
    assert (out / "leaderboard.md").read_text().startswith("| data |")


def test_pareto_front_is_exactly_the_undominated_points():
    rng = np.random.default_rng(3)
    pts = [figures.CostPoint(f"m{i}", int(m), float(a)) for i, (m, a) in
           enumerate(zip(rng.integers(1, 50, 40), rng.uniform(0, 1, 40), strict=True))]
    front = {p.model for p in figures.pareto_front(pts)}

    def dominated(p):
        return any(q.macs <= p.macs and q.accuracy > p.accuracy for q in pts)

    assert front == {p.model for p in pts if not dominated(p)}
    small = [figures.CostPoint("a", 10, 0.5), figures.CostPoint("b", 20, 0.4), figures.CostPoint("c", 30, 0.7),
             figures.CostPoint("d", 5, 0.3)]
    assert [p.model for p in figures.pareto_front(small)] == ["d", "a", "c"]


def test_styles_are_stable_and_distinct():
    a = figures.model_styles(["z", "a", "m"])
    b = figures.model_styles(["m", "z", "a", "a"])
    assert a == b and len({st.colour for st in a.values()}) == 3


def test_confusion_matrix_counts():
    labels = np.array([0, 0, 1, 2, 2, 2])
    preds = np.array([0, 1, 1, 2, 0, 2])
    m = figures.confusion_matrix(labels, preds, 4)
    assert m.sum() == 6 and m[0, 1] == 1 and m[2, 0] == 1 and np.trace(m) == 4
    assert figures.per_class_from_confusion(m) == [0.5, 1.0, 2 / 3, None]


def test_cli_report_models_filter_and_errors(built, tmp_path, capsys):
    store_path = built[0]
    out = tmp_path / "r"
    assert main(["report", "--store", store_path, "--out", str(out), "--models", "test-report-b",
                 "--condition", "clean"]) == 0
    [only] = out.glob("confusion_*.png")
    assert only.name.endswith("_test-report-b.png")
    parser = _Refs()
    parser.feed((out / "index.html").read_text())
    models = {a["data-model"] for a, _ in parser.rows if a.get("class") in ("cell", "perclass")}
    assert models == {"test-report-b"}  # (the run's plan in the provenance still names every model it ran)
    assert main(["report", "--store", str(tmp_path / "none.sqlite"), "--out", str(out)]) == EXIT_NO_STORE
    assert main(["report", "--store", store_path, "--out", str(out), "--condition", "white"]) == 5
    assert main(["report", "--store", store_path, "--out", str(out), "--condition", "white:7"]) == 5
    assert main(["report", "--store", store_path, "--out", str(out), "--models", "nope"]) == 5
    assert "stored models" in capsys.readouterr().err


def test_parse_condition():
    assert parse_condition("clean") == ("clean", None)
    assert parse_condition("babble-synthetic-ncssm:-5") == ("babble-synthetic-ncssm", -5.0)


def test_corrupt_store_untouched(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(hashlib.sha256(b"x").digest() * 50)
    before = path.read_bytes()
    assert main(["report", "--store", str(path), "--out", str(tmp_path / "o")]) == 6
    assert path.read_bytes() == before and not (tmp_path / "o").exists()


def test_rebuild_in_same_folder_leaves_no_stale_figures(built, tmp_path):
    store_path = built[0]
    out = tmp_path / "again"
    out.mkdir()
    (out / "confusion_mine.png").write_bytes(b"user file")  # not a report folder yet: left alone
    build_report(ReportOptions(store=Path(store_path), out=out))
    assert (out / "confusion_mine.png").exists() and list(out.glob("confusion_*_test-report-a.png"))
    (out / "keep.txt").write_text("x")
    build_report(ReportOptions(store=Path(store_path), out=out, models=["test-report-b"]))
    assert not list(out.glob("confusion_*_test-report-a.png")) and list(out.glob("confusion_*_test-report-b.png"))
    assert (out / "keep.txt").exists()


def test_verdict_measured_column_is_the_cell_accuracy(built):
    store_path, _, _, parser = built
    with Store(store_path) as st:
        cells = {c.cell_key: c for c in st.cells()}
    rows = [(a, dict((cls, t) for cls, t in tds if cls)) for a, tds in parser.rows
            if a.get("class", "").startswith("verdict ")]
    assert rows
    for attrs, tds in rows:
        assert abs(float(tds["measured"]) - 100 * cells[attrs["data-key"]].accuracy) <= 0.005 + 1e-9


def test_snr_figure_caption_says_what_is_drawn(tmp_path, monkeypatch):
    """Many models at one SNR (as `kwsbench run --quick` stores): each gets Wilson error bars, so the caption must
    not say that no intervals are drawn; the clean marks sit at a tick labelled 'clean'."""
    from helpers import stored_cell

    from kwsbench.report import figures

    models = [f"m{i}" for i in range(figures.MAX_BANDS + 2)]
    cells = [stored_cell(model=m, cell_key=f"{m}{noise}".ljust(64, "k"), noise=noise,
                         snr_db=None if noise == "clean" else 0.0, accuracy=0.5 + 0.01 * i, ci_low=0.4, ci_high=0.7)
             for i, m in enumerate(models) for noise in ("clean", "factory")]
    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.setdefault("fig", fig) and path)
    figures.accuracy_vs_snr(cells, figures.model_styles(models), tmp_path / "snr.png")
    fig = drawn["fig"]
    assert "bars: Wilson 95 %" in fig._suptitle.get_text()
    ax = fig.axes[0]
    assert len(ax.containers) == len(models)  # one error bar per model
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "clean"]
    # side by side, not stacked on one x (27 models of `--quick` could not be told apart): every bar and every
    # clean mark at its own x, within the tick's half-unit
    bar_x = [float(c.lines[0].get_xdata()[0]) for c in ax.containers]
    assert len(set(bar_x)) == len(models) and max(abs(x) for x in bar_x) <= 0.45
    clean_x = [float(line.get_xdata()[0]) for line in ax.lines if line.get_marker() != "None"
               and line.get_markerfacecolor() == "none"]
    assert len(set(clean_x)) == len(models) and all(0.55 <= x <= 1.45 for x in clean_x)
    assert "side by side" in ax.get_xlabel() and ax.get_ylim() == (0.0, 100.0)
