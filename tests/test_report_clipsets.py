"""The report per clip set, and the report as a reader sees it (headless Chromium screenshot).

Two clip sets (named by their plans' data folders) measured by the real grid runner with the costed test models
of tests/helpers.py; clip set A under two noise seeds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from helpers import PNG_MAGIC, REPORT_CARDS, REPORT_MODELS, RmsNoise, make_clipset, make_plan, tiny_loader

from kwsbench.cli import main
from kwsbench.models.registry import registered
from kwsbench.results.clipsets import group
from kwsbench.results.leaderboard import store_labels_of
from kwsbench.results.store import Store
from kwsbench.run.runner import run_plan

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


@pytest.fixture(scope="module", autouse=True)
def report_cards():
    """The costed stand-in cards, registered while this module's tests run."""
    with registered(*REPORT_CARDS) as cards:
        yield cards


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sets")
    plan = make_plan(tmp, models=REPORT_MODELS, noise=["white"], snr=[-5.0, 0.0, 5.0], data_dir="/data/set-a",
                     seeds=[0, 1])
    run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=6), show_progress=False)
    plan = make_plan(tmp, models=REPORT_MODELS, noise=["white", "hum"], snr=[0.0], data_dir="/data/set-b")
    run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=4, seed=1),
             show_progress=False)
    with Store(plan.store) as st:
        cells = st.cells()
        slugs = {key.data: key.slug() for key in group(cells, store_labels_of(st, cells))}
    return plan.store, slugs


def _figures_of(out: Path, slug: str) -> set[str]:
    return {p.name for p in out.glob("*.png") if f"_{slug}" in p.name}


def test_report_has_a_section_and_figures_for_each_clip_set(two_sets, tmp_path):
    store, slugs = two_sets
    assert set(slugs) == {"set-a", "set-b"}
    out = tmp_path / "all"
    assert main(["report", "--store", store, "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    sections = re.findall(r'<h2 class="clipset" id="clipset-\d+">Clip set \d+: ([^,<]+),', html)
    assert sorted(sections) == ["set-a", "set-b"]
    shown = set(re.findall(r'<img src="([^"]+)"', html))
    for data, slug in slugs.items():
        names = _figures_of(out, slug)
        for prefix in ("accuracy_vs_snr_", "accuracy_vs_macs_", "per_class_accuracy_"):
            assert f"{prefix}{slug}.png" in names, (data, prefix)
        assert {f"confusion_{slug}_{m}.png" for m in REPORT_MODELS} <= names
        assert names <= shown  # every figure written is in the page
        for name in names:
            path = out / name
            assert path.read_bytes().startswith(PNG_MAGIC)
            assert float(np.std(mpimg.imread(path)[..., :3])) > 0.01, name
    assert (out / "leaderboard_seeds.csv").is_file()
    # the per-class rows of each section come from that clip set only
    rows = re.findall(r'<tr class="perclass" data-model="([^"]+)" data-clipset="([^"]+)"', html)
    assert sorted(rows) == sorted((m, s) for s in slugs.values() for m in REPORT_MODELS)


def test_report_filters_pick_one_clip_set(two_sets, tmp_path, capsys):
    store, slugs = two_sets
    out = tmp_path / "b"
    assert main(["report", "--store", store, "--out", str(out), "--data", "set-b"]) == 0
    html = (out / "index.html").read_text()
    assert html.count('<h2 class="clipset"') == 1 and "Clip set 1: set-b" in html
    assert _figures_of(out, slugs["set-b"]) and not _figures_of(out, slugs["set-a"])
    assert "set-a" not in (out / "leaderboard.csv").read_text()
    assert main(["report", "--store", store, "--out", str(tmp_path / "x"), "--data", "set-c"]) == 5
    assert "set-a" in capsys.readouterr().err


def test_compare_keeps_clip_sets_apart(two_sets, capsys):
    store, _ = two_sets
    capsys.readouterr()
    assert main(["compare", "test-report-a", "test-report-b", "--store", store]) == 0
    text = capsys.readouterr().out
    assert "set-a" in text and "set-b" in text  # one table per clip set
    assert main(["compare", "test-report-a", "test-report-b", "--store", store, "--data", "set-b"]) == 0
    text = capsys.readouterr().out
    assert "set-b" in text and "set-a" not in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(two_sets, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    store, _ = two_sets
    out = tmp_path / "page"
    assert main(["report", "--store", store, "--out", str(out)]) == 0
    shot = tmp_path / "screenshot.png"
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1280,4000", (out / "index.html").resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot; chromium said: {done.stderr[-2000:]}"
    keep = os.environ.get("KWSBENCH_KEEP_SCREENSHOT")  # to look at it: a path to copy the screenshot to
    if keep:
        shutil.copyfile(shot, keep)
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (4000, 1280)
    # the page drew something: text and figures darken a real share of the rows, with many distinct colours
    inked_rows = float(np.mean((img < 0.85).any(axis=(1, 2))))
    assert inked_rows > 0.5, f"only {inked_rows:.0%} of the screenshot's rows hold anything"
    colours = len(np.unique((img[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert colours > 500, f"{colours} colours: the figures did not render"
