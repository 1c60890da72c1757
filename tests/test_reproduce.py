"""reproduce: exit codes 0/1/3/4, verdicts on real clips, the thin top-level entry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from test_run import TinyKws

from kwsbench.cli import main
from kwsbench.models.registry import ModelCard, register
from kwsbench.paths import PROJECT_ROOT
from kwsbench.results.store import Store


def _build():
    return TinyKws()


@pytest.fixture
def file_card(tmp_path):
    """A card whose default checkpoint is a plain weights file (the loader accepts a path)."""
    path = tmp_path / "tiny.pt"
    torch.save(TinyKws(seed=5).state_dict(), path)
    register(ModelCard(name="test-repro", family="test", builder=_build, checkpoint=str(path)))
    return "test-repro"


def _baselines(tmp_path, rows: str):
    d = tmp_path / "bl"
    d.mkdir(exist_ok=True)
    (d / "t.yaml").write_text("paper: test paper\ndefaults: {classes: 12, split: test, source: t, verification: P}\n"
                              "rows:\n" + rows)
    return str(d)


def test_missing_dataset_is_exit_4(tmp_path):
    assert main(["reproduce", "--quick", "--models", "test-tiny", "--data-dir", str(tmp_path / "nope")]) == 4


@pytest.mark.data
def test_missing_checkpoint_is_exit_3(gsc_dev_dir, tmp_path):
    # test-tiny (registered in test_run) has no checkpoint at all
    import test_run  # noqa: F401

    assert main(["reproduce", "--quick", "--models", "test-tiny", "--data-dir", str(gsc_dev_dir),
                 "--store", str(tmp_path / "s.sqlite")]) == 3


@pytest.mark.data
@pytest.mark.slow
def test_quick_reproduce_verdicts_and_exit_codes(gsc_dev_dir, tmp_path, file_card, capsys):
    store = str(tmp_path / "s.sqlite")
    common = ["reproduce", "--quick", "--models", file_card, "--data-dir", str(gsc_dev_dir), "--store", store]
    other = "  - {model: test-repro, protocol: v2-12-all-unknown, condition: clean, value: 95.0}\n"
    assert main([*common, "--baselines", _baselines(tmp_path, other)]) == 0
    out = capsys.readouterr().out
    assert "NOT_COMPARABLE" in out and "v2-12-all-unknown" in out
    with Store(store) as st:
        cells = {c.noise: c for c in st.cells(model=file_card)}
    assert set(cells) == {"clean", "factory-ncssm"}
    clean = cells["clean"]
    assert clean.n == 12 * 20 and clean.protocol == "v2-12-official"  # class-stratified 20 per class
    measured = 100 * clean.accuracy
    far = f"  - {{model: test-repro, protocol: v2-12-official, condition: clean, value: {min(100.0, measured + 40)}}}\n"
    assert main([*common, "--baselines", _baselines(tmp_path, far)]) == 1
    assert "DEVIATES" in capsys.readouterr().out
    near = f"  - {{model: test-repro, protocol: v2-12-official, condition: clean, value: {measured + 1.0:.3f}}}\n"
    assert main([*common, "--baselines", _baselines(tmp_path, near)]) == 0
    assert "MATCH" in capsys.readouterr().out


def test_thin_entry_passes_exit_codes(tmp_path):
    res = subprocess.run([sys.executable, str(PROJECT_ROOT / "reproduce.py"), "--quick", "--data-dir",
                          str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert res.returncode in (3, 4), res.stderr  # no published card registered yet -> 3, else no dataset -> 4
    assert "error" in res.stderr
