"""The runner with the real pieces: Speech Commands clips, noise banks, checkpoint loader, public weights."""

from __future__ import annotations

import numpy as np
import pytest

from kwsbench.cli import main
from kwsbench.data.speech_commands import load_clipset
from kwsbench.data.subsets import stratified_subset
from kwsbench.results.store import Store
from kwsbench.run.plan import Plan
from kwsbench.run.runner import run_plan

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def dev_subset(gsc_dev_dir):
    return stratified_subset(load_clipset(gsc_dev_dir), per_class=3, seed=0)


@pytest.fixture
def public_weights(ncssm_checkpoints, tmp_path, monkeypatch):
    from kwsbench.checkpoints import import_dir

    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ck"))
    import_dir(ncssm_checkpoints)


def _preds(path):
    with Store(path) as st:
        return {(c.model, c.noise, c.snr_db): st.predictions(c.cell_key).tolist() for c in st.cells()}


@pytest.mark.slow
def test_public_checkpoints_batch_size_invariant(dev_subset, public_weights, tmp_path):
    out = []
    for bs in (1, 7, 256):
        plan = Plan(models=["ds-cnn-s", "nanomamba-tiny"], noise=["white-ncssm"], snr=[0.0], batch_size=bs,
                    store=str(tmp_path / f"b{bs}.sqlite")).validate()
        summary = run_plan(plan, clipset=dev_subset, show_progress=False)
        assert summary.ok and summary.computed == 4
        out.append(_preds(plan.store))
    assert out[0] == out[1] == out[2]
    with Store(tmp_path / "b7.sqlite") as st:
        cells = st.cells()
        assert all(c.noise_version.startswith("v") for c in cells if c.noise != "clean")
        clean = {c.model: c.accuracy for c in cells if c.noise == "clean"}
    # trained keyword models are far above chance (1/12) even on 36 clips
    assert min(clean.values()) > 0.5


def test_run_cli_with_real_data_and_failed_model_summary(gsc_dev_dir, tmp_path, capsys):
    # bc-resnet-1 has no public weights: asked for explicitly it becomes failed cells and exit 1
    rc = main(["run", "--models", "bc-resnet-1", "--data-dir", str(gsc_dev_dir), "--per-class", "2",
               "--noise", "white-ncssm", "--snr", "0", "--store", str(tmp_path / "s.sqlite")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED bc-resnet-1" in err and "checkpoint" in err.lower()
    assert "rendering noise banks white-ncssm for 24 clips" in err  # a cold cache: the wait is announced
    with Store(tmp_path / "s.sqlite") as st:
        assert len(st.cells(status="failed")) == 2
    assert main(["run", "--models", "bc-resnet-1", "--data-dir", str(gsc_dev_dir), "--per-class", "2",
                 "--noise", "white-ncssm", "--snr", "0", "--store", str(tmp_path / "s.sqlite")]) == 1
    assert "rendering noise banks" not in capsys.readouterr().err  # now from the cache


def test_gsc_mini_weights_on_the_set_they_were_trained_on_warn(gsc_dev_dir, tmp_path, capsys):
    rc = main(["run", "--weights", "gsc-mini", "--models", "s4d-kws", "--data-dir", str(gsc_dev_dir),
               "--per-class", "1", "--store", str(tmp_path / "s.sqlite")])
    assert rc == 0
    assert "WARNING s4d-kws: gsc-mini:s4d-kws.pt was trained on a split of this test set" in capsys.readouterr().err


def test_plan_yaml_and_overrides(gsc_dev_dir, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"data_dir: {gsc_dev_dir}\nsnr: [-5, 5]\nnoise: white-ncssm\nper_class: 1\ncolour: red\n")
    assert main(["run", "--config", str(plan), "--store", str(tmp_path / "s.sqlite")]) == 5
    from kwsbench.run.plan import resolve_plan

    plan.write_text(f"data_dir: {gsc_dev_dir}\nsnr: [-5, 5]\nnoise: white-ncssm\nper_class: 1\n")
    resolved = resolve_plan(plan, {"snr": [0.0], "seed": 3, "models": None})
    assert resolved.snr == [0.0] and resolved.seed == 3 and resolved.noise == ["white-ncssm"]
    assert np.isclose(resolved.per_class, 1)


def test_models_a_pattern_sweeps_in_without_weights_are_skipped_with_one_line(gsc_dev_dir, tmp_path, capsys):
    # `--models 'kwt-*'` with the synth weights: kwt-1 has them, kwt-2 and kwt-3 do not (their files are not
    # shipped). A pattern (or 'all') skips those two with one line; naming one of them fails its cells.
    store = str(tmp_path / "s.sqlite")
    common = ["--weights", "synth", "--data-dir", str(gsc_dev_dir), "--per-class", "1", "--store", store]
    assert main(["run", "--models", "kwt-*", *common]) == 0
    out, err = capsys.readouterr()
    # left out before the run, so the cells announced are the ones that run
    assert "left out 2 models:\n  kwt-2, kwt-3: no weights in the synth manifest" in err
    assert "1 models x 1 conditions" in err and "FAILED" not in err
    with Store(store) as st:
        assert {c.model for c in st.cells()} == {"kwt-1"}
    assert main(["run", "--models", "kwt-*,kwt-3", *common]) == 1  # named directly: its cell fails
    assert "FAILED kwt-3" in capsys.readouterr().err
    # a pattern that sweeps in only models without weights runs nothing else (it once ran every registered model)
    # and stops before announcing cells it will not compute
    assert main(["run", "--models", "kwt-[23]", *common]) == 1
    out, err = capsys.readouterr()
    assert "kwt-2, kwt-3: no weights in the synth manifest" in err and "nothing to run" in err, err
    assert "cells to compute" not in err
    with Store(store) as st:
        assert {c.model for c in st.cells(status=None)} == {"kwt-1", "kwt-3"}
