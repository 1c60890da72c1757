"""Grid runner: cells, determinism across batch sizes, resume after a kill, failures, rate modes.

Uses tiny stand-ins (a registered test card, a hand-built ClipSet, a seeded RMS noise provider) so the
tests are fast and independent of the other areas; test_run_real.py covers the real pieces.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import RmsNoise, TinyKws, build_tiny, make_clipset, make_plan, tiny_loader

from kwsbench.checkpoints import LoadedModel
from kwsbench.data.subsets import stratified_subset
from kwsbench.errors import BadInputError
from kwsbench.models.registry import ModelCard
from kwsbench.results.store import Store
from kwsbench.run.plan import Plan
from kwsbench.run.runner import model_input, run_plan

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.usefixtures("tiny_cards")  # the stand-in cards, registered for each test only


def _preds(store_path) -> dict:
    with Store(store_path) as st:
        out = {}
        for c in st.cells():
            key = (c.model, c.noise, c.snr_db, c.rate_hz, c.rate_mode, c.decimation)
            out[key] = (c.correct, c.n, c.accuracy, st.predictions(c.cell_key).tolist())
        return out


def test_cells_written_with_clean_and_intervals(tmp_path):
    summary = run_plan(make_plan(tmp_path), loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(),
                       show_progress=False)
    assert summary.ok and summary.computed == 3
    with Store(tmp_path / "s.sqlite") as st:
        cells = st.cells()
        assert {(c.noise, c.snr_db) for c in cells} == {("clean", None), ("white", -5.0), ("white", 5.0)}
        for c in cells:
            preds = st.predictions(c.cell_key)
            _, _, labels = st.clips(c.fingerprint)
            assert c.correct == int(np.sum(preds == labels)) and c.n == 60
            assert c.ci_low <= c.accuracy <= c.ci_high
            assert c.boot_low is not None and len(c.per_class) == 12
        run = st.runs()[-1]
        assert run["status"] == "completed" and '"seed": 0' in run["plan"]
        assert run["fingerprint"] == cells[0].fingerprint


def test_bit_identical_across_batch_sizes(tmp_path):
    results = []
    for bs in (1, 7, 256):
        plan = make_plan(tmp_path, batch_size=bs, store=str(tmp_path / f"b{bs}.sqlite"), rates=[16000, 8000])
        run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)
        results.append(_preds(plan.store))
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 6


def test_resume_skips_and_force_recomputes(tmp_path):
    kw = dict(loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)
    first = run_plan(make_plan(tmp_path), **kw)
    again = run_plan(make_plan(tmp_path), **kw)
    forced = run_plan(make_plan(tmp_path, force=True), **kw)
    assert (first.computed, again.computed, again.reused, forced.computed) == (3, 0, 3, 3)


def test_failing_model_becomes_failed_cells_and_run_goes_on(tmp_path):
    plan = make_plan(tmp_path, models=["test-broken", "test-tiny"])
    summary = run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)
    assert not summary.ok and summary.computed == 3 and len(summary.failed) == 3
    assert all("forward exploded" in err for _, _, err in summary.failed)
    with Store(plan.store) as st:
        failed = st.cells(status="failed")
        assert len(failed) == 3 and all(c.model == "test-broken" for c in failed)
        assert st.runs()[-1]["status"] == "failed"


class _FitsFourClips(torch.nn.Module):
    """TinyKws that runs out of memory on batches of more than 4 clips."""

    def __init__(self):
        super().__init__()
        self.inner = TinyKws()

    def forward(self, x):
        if x.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")
        return self.inner(x)


def test_a_batch_that_does_not_fit_says_what_to_do_and_a_smaller_one_completes(tmp_path):
    def loader(card, checkpoint, device):
        return LoadedModel(_FitsFourClips().eval(), hashlib.sha256(b"fits-four").hexdigest())

    kw = dict(loader=loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)
    big = run_plan(make_plan(tmp_path, models=["test-tiny"], batch_size=8), **kw)
    assert len(big.failed) == 3 and all("smaller --batch-size" in err and "OutOfMemoryError" in err
                                        for _, _, err in big.failed)
    small = run_plan(make_plan(tmp_path, models=["test-tiny"], batch_size=4), **kw)
    assert small.ok and small.computed == 3


def test_unknown_model_and_noise_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="unknown model"):
        run_plan(make_plan(tmp_path, models=["no-such-model"]), loader=tiny_loader, noise=RmsNoise(),
                 clipset=make_clipset(), show_progress=False)
    with pytest.raises(BadInputError, match="unknown noise"):
        run_plan(make_plan(tmp_path, noise=["nope"]), loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(),
                 show_progress=False)


def test_rate_modes(tmp_path):
    cs = make_clipset()
    kw = dict(loader=tiny_loader, noise=RmsNoise(), clipset=cs, show_progress=False)
    native = make_plan(tmp_path, models=["test-tiny", "test-tiny-fixed"], noise=[], rates=[16000, 8000],
                   store=str(tmp_path / "n.sqlite"))
    summary = run_plan(native, **kw)
    # the fixed-rate model has no native 8 kHz cell; it is reported as skipped, not failed
    assert summary.ok and summary.computed == 3 and len(summary.skipped_cells) == 1
    band = make_plan(tmp_path, models=["test-tiny-fixed"], noise=[], rates=[16000, 8000], rate_mode="bandlimit",
                 decimation="drop", store=str(tmp_path / "n.sqlite"))
    summary = run_plan(band, **kw)
    # 16 kHz clean is the same cell in both modes (bandlimit at the native rate is the plain run) -> reused
    assert summary.computed == 1 and summary.reused == 1
    with Store(native.store) as st:
        modes = {(c.model, c.rate_hz): (c.rate_mode, c.decimation) for c in st.cells()}
    assert modes[("test-tiny", 8000)] == ("native", "sinc")
    assert modes[("test-tiny-fixed", 8000)] == ("bandlimit", "drop")


def test_model_input_per_mode():
    x = torch.from_numpy(make_clipset(1).audio[:3])
    card = ModelCard(name="x", family="t", builder=build_tiny, can_change_rate=True)
    p = Plan(rate_mode="bandlimit", decimation="sinc")
    assert torch.equal(model_input(x, card, 16000, p), x)
    band = model_input(x, card, 8000, p)
    assert band.shape == x.shape and not torch.equal(band, x)
    spec = torch.fft.rfft(band, dim=-1).abs()
    assert spec[:, 4100:].max() < 1e-2 * spec.max()  # nothing left above the 4 kHz Nyquist (bins are 1 Hz)
    nat = model_input(x, card, 4000, Plan(rate_mode="native", decimation="drop"))
    assert torch.equal(nat, x[:, ::4])


def test_stratified_subset_is_per_class_and_seeded():
    cs = make_clipset(per_class=5)
    a, b, c = (stratified_subset(cs, 2, s) for s in (1, 1, 2))
    assert a.utterance_ids == b.utterance_ids and a.utterance_ids != c.utterance_ids
    assert set(a.class_counts().values()) == {2}


_CHILD = """
import sys
sys.path.insert(0, {here!r})
from helpers import TINY_CARDS, make_plan, make_clipset, RmsNoise, tiny_loader
from pathlib import Path
from kwsbench.models.registry import registered
from kwsbench.run.runner import run_plan
with registered(*TINY_CARDS):
    run_plan(make_plan(Path({tmp!r}), models=["test-tiny-slow"], snr=[-10.0, -5.0, 0.0, 5.0, 10.0], batch_size=6,
                       store={store!r}), loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(),
             show_progress=False)
"""


@pytest.mark.slow
def test_killed_run_resumes_to_identical_results(tmp_path):
    store = str(tmp_path / "killed.sqlite")
    code = _CHILD.format(here=str(HERE), tmp=str(tmp_path), store=store)
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until at least one cell is committed, then kill mid-cell
        time.sleep(0.2)
        if Path(store).exists():
            try:
                with sqlite3.connect(store) as con:
                    if con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] >= 2:
                        break
            except sqlite3.Error:
                pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(store) as con:
        stored = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    assert 1 <= stored < 6, "the kill must land mid-run"
    resumed = subprocess.run([sys.executable, "-c", code], env=dict(os.environ))
    assert resumed.returncode == 0
    full = str(tmp_path / "full.sqlite")
    run_plan(make_plan(tmp_path, models=["test-tiny-slow"], snr=[-10.0, -5.0, 0.0, 5.0, 10.0], batch_size=60,
                       store=full), loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)
    assert _preds(store) == _preds(full) and len(_preds(full)) == 6


def test_compare_cli_mcnemar_over_shared_conditions(tmp_path, capsys):
    from kwsbench.cli import main
    from kwsbench.results.paired import paired_tests

    plan = make_plan(tmp_path, models=["test-tiny", "test-tiny-fixed"], store=str(tmp_path / "c.sqlite"))
    run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)
    with Store(plan.store) as st:
        tests = paired_tests(st, "test-tiny", "test-tiny-fixed")
    assert len(tests) == 3 and all(0 <= t.p_value <= t.q_value <= 1 for t in tests)
    # same weights (seed 0) and same clips: identical predictions, no discordant pairs
    assert all(t.only_a == t.only_b == 0 and t.p_value == 1.0 for t in tests)
    assert main(["compare", "test-tiny", "test-tiny-fixed", "--store", plan.store]) == 0
    assert "McNemar" in capsys.readouterr().out
    assert main(["compare", "test-tiny", "test-broken", "--store", plan.store]) == 5


class _RecordsTf32(torch.nn.Module):
    """Wraps the tiny model and notes the TF32 switches in force at each forward."""

    def __init__(self, inner, seen: list):
        super().__init__()
        self.inner, self.seen = inner, seen

    def forward(self, x):
        self.seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return self.inner(x)


def test_cells_are_computed_in_fp32_and_the_callers_tf32_settings_come_back(tmp_path):
    # torch's default runs cuDNN convolutions in TF32; a cell must be fp32 on every device
    seen: list = []

    def loader(card, checkpoint, device):
        inner = tiny_loader(card, checkpoint, device)
        return LoadedModel(_RecordsTf32(inner.module, seen).eval(), inner.sha256, inner.labels)

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # a caller that chose TF32
    try:
        summary = run_plan(make_plan(tmp_path), loader=loader, noise=RmsNoise(), clipset=make_clipset(),
                           show_progress=False)
        assert summary.ok and seen and set(seen) == {(False, False)}
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
