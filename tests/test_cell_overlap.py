"""A model's cells with one in flight (the GPU's order of work, kwsbench.run.runner._run_cells): the next cell's
forwards start before the previous cell is scored and stored. On the CPU the runner finishes each cell before
the next; here the overlapped order is forced on the CPU, where the stand-in models run, and must store the same
cells, report them in the same order, and keep the cell in flight when a run is stopped."""

from __future__ import annotations

import pytest
import torch
from helpers import RmsNoise, make_clipset, make_plan, tiny_loader

from kwsbench.models.registry import get_card
from kwsbench.results.store import Store
from kwsbench.run import runner
from kwsbench.run.runner import Condition, NoiseProvider, run_plan

pytestmark = pytest.mark.usefixtures("tiny_cards")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _stored(path) -> dict:
    with Store(path) as st:
        return {c.cell_key: (c.correct, c.n, c.boot_low, st.predictions(c.cell_key).tolist()) for c in st.cells()}


class _Lines:
    """Records the cells a run reports, in order (the progress table's rows)."""

    def __init__(self, monkeypatch):
        self.rows: list[tuple[str, str, str]] = []
        real = runner.Progress.cell

        def cell(progress, model, condition, status, speed):
            self.rows.append((model, condition, status))
            return real(progress, model, condition, status, speed)

        monkeypatch.setattr(runner.Progress, "cell", cell)


def _run(tmp_path, name: str, overlap: bool, monkeypatch, **plan):
    monkeypatch.setattr(runner, "overlaps_cells", lambda _plan: overlap)
    path = tmp_path / f"{name}.sqlite"
    summary = run_plan(make_plan(tmp_path, store=str(path), **plan), loader=tiny_loader, noise=RmsNoise(),
                       clipset=make_clipset(), show_progress=False)
    return summary, path


def test_overlapped_cells_store_and_report_what_one_at_a_time_does(tmp_path, monkeypatch):
    # two models (one that changes its rate, one that cannot: skipped cells between computed ones), two rates,
    # clean and noisy, batches smaller than the clip set
    plan = dict(models=["test-tiny", "test-tiny-fixed"], rates=[16000, 8000], batch_size=16)
    lines = _Lines(monkeypatch)
    serial, serial_path = _run(tmp_path, "serial", False, monkeypatch, **plan)
    serial_rows, lines.rows = lines.rows, []
    overlapped, overlapped_path = _run(tmp_path, "overlapped", True, monkeypatch, **plan)
    assert serial.ok and overlapped.ok and serial.computed == overlapped.computed > 6
    assert serial.skipped_cells == overlapped.skipped_cells != []
    assert _stored(serial_path) == _stored(overlapped_path)
    # per model (on the CPU two models run at once, on their own threads, so only each model's order is fixed)
    for model in plan["models"]:
        assert [r for r in lines.rows if r[0] == model] == [r for r in serial_rows if r[0] == model]


def test_overlapped_seconds_add_up_to_no_more_than_the_run(tmp_path, monkeypatch):
    summary, path = _run(tmp_path, "s", True, monkeypatch, batch_size=16)
    with Store(path) as st:
        seconds = [c.seconds for c in st.cells()]
    assert summary.computed == 3 and all(s > 0 for s in seconds) and sum(seconds) <= summary.seconds


@pytest.mark.parametrize("overlap", [False, True])
def test_a_stopped_run_keeps_every_cell_it_computed(tmp_path, monkeypatch, overlap):
    """Ctrl-C while the third cell's forwards are being handed out: the first two cells are stored, the second
    of them (in flight when overlapped) included, and the run is marked interrupted."""
    real, calls = runner._predict, []

    def predict(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_predict", predict)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "s", overlap, monkeypatch, batch_size=16)
    with Store(tmp_path / "s.sqlite") as st:
        assert sorted((c.noise, c.snr_db) for c in st.cells()) == [("clean", None), ("white", -5.0)]
        assert st.runs()[-1]["status"] == "interrupted"


@cuda
def test_a_noisy_cells_forwards_are_queued_without_waiting_for_the_device(tmp_path):
    """What makes the overlap real: handing a noisy cell's clips to the model (mixing at a declared SNR, the
    forward, the predictions) never synchronises the host with the device, so the host can score the previous
    cell meanwhile. torch's sync debug mode turns any synchronising call into an error. (The stand-in model runs
    eagerly: its index_add_ sums in no fixed order, so a captured graph would not be bit-identical to it.)"""
    plan, card = make_plan(tmp_path, device="cuda", batch_size=32), get_card("test-tiny")
    model = card.build().to("cuda").eval()
    clips = make_clipset(per_class=4)
    clean = torch.from_numpy(clips.audio).cuda()
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)).cuda()
    cond = Condition("white", -5.0, 16000, 0)
    runner._predict(model, clean, noise, cond, card, plan, NoiseProvider())  # first use: cuFFT's plans
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        preds = runner._predict(model, clean, noise, cond, card, plan, NoiseProvider())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert preds.is_cuda and preds.shape == (48,)
