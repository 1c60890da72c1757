"""Lanes of clips (kwsbench/run/lanes.py): one model on several CPU threads gives the same cells as on one."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import TINY_CARDS, RmsNoise, make_clipset, make_plan, require_shared, tiny_loader

from kwsbench.models.registry import registered
from kwsbench.results.store import Store
from kwsbench.run.lanes import LaneAborted, lane_ranges, lanes_per_model, run_lanes
from kwsbench.run.runner import run_plan
from kwsbench.run.workers import WORKERS_ENV


@pytest.mark.parametrize(("n", "lanes"), [(0, 2), (1, 2), (2, 2), (7, 2), (7, 3), (240, 2), (2495, 16), (3, 8)])
def test_lanes_cover_the_clips_once_in_order_and_nearly_equally(n, lanes):
    parts = lane_ranges(n, lanes)
    assert [i for part in parts for i in part] == list(range(n))
    assert len(parts) == max(1, min(lanes, n))
    if n:
        assert all(len(part) > 0 for part in parts)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_lanes_per_model_shares_the_threads_among_the_models_at_once():
    assert lanes_per_model(2, 1) == 2 and lanes_per_model(2, 2) == 1 and lanes_per_model(16, 3) == 5
    assert lanes_per_model(1, 4) == 1 and lanes_per_model(4, 0) == 4


def test_each_lane_runs_on_its_own_thread_in_inference_mode_with_one_intra_op_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = run_lanes(lambda i, part, failed: (i, part, threading.current_thread().name,
                                                  torch.is_inference_mode_enabled(), torch.get_num_threads()),
                         10, 2)
        assert [s[:2] for s in seen] == [(0, range(0, 5)), (1, range(5, 10))]
        assert all(name.startswith("kwsbench-lane") for _, _, name, _, _ in seen)
        assert all(inference and threads == 1 for *_, inference, threads in seen)
        assert torch.get_num_threads() == 2  # given back after the lanes
        # one lane: on the calling thread, as it is
        [(_, _, name, inference, _)] = run_lanes(
            lambda i, part, failed: (i, part, threading.current_thread().name, torch.is_inference_mode_enabled(),
                                     None), 10, 1)
        assert name == threading.current_thread().name and not inference
    finally:
        torch.set_num_threads(before)


def test_a_failing_lane_stops_the_others_and_its_error_is_raised():
    stopped = threading.Event()

    def work(i, part, failed):
        if i == 0:
            raise ValueError("lane 0 broke")
        if not failed.wait(timeout=10):  # the other lane waits for the news, then stops as a lane should
            raise AssertionError("the failure was not signalled")
        stopped.set()
        raise LaneAborted

    with pytest.raises(ValueError, match="lane 0 broke"):
        run_lanes(work, 4, 2)
    assert stopped.is_set()


def _cells(path) -> dict:
    with Store(path) as st:
        return {c.cell_key: (c.status, c.correct, c.n, st.predictions(c.cell_key).tolist()) for c in st.cells()}


@pytest.mark.parametrize("lanes_card", [True, False])
def test_a_one_model_run_on_two_threads_evaluates_in_two_lanes_with_the_same_cells(tmp_path, monkeypatch,
                                                                                     lanes_card):
    """In lanes where the card says so (cpu_lanes), else one forward on both threads; the same cells."""
    threads: set[str] = set()

    def loader(card, checkpoint, device):
        loaded = tiny_loader(card, checkpoint, device)
        forward = loaded.module.forward
        loaded.module.forward = lambda x: threads.add(threading.current_thread().name) or forward(x)
        return loaded

    def run(name: str, num_threads: int):
        before = torch.get_num_threads()
        torch.set_num_threads(num_threads)
        try:
            plan = make_plan(tmp_path, models=["test-lanes"], store=str(tmp_path / f"{name}.sqlite"), batch_size=7)
            with registered(replace(TINY_CARDS[0], name="test-lanes", cpu_lanes=lanes_card)):
                run_plan(plan, loader=loader, noise=RmsNoise(), clipset=make_clipset(per_class=20),
                         show_progress=False)
            assert torch.get_num_threads() == num_threads
        finally:
            torch.set_num_threads(before)
        return _cells(plan.store)

    monkeypatch.delenv(WORKERS_ENV, raising=False)
    one = run("one", 1)
    assert not any(name.startswith("kwsbench-lane") for name in threads)
    threads.clear()
    two = run("two", 2)
    laned = {name for name in threads if name.startswith("kwsbench-lane")}
    assert laned == ({"kwsbench-lane_0", "kwsbench-lane_1"} if lanes_card else set())
    assert one == two and len(one) == 3 and all(cell[0] == "ok" and cell[2] == 240 for cell in one.values())


@pytest.mark.usefixtures("tiny_cards")
def test_lanes_count_progress_without_going_back_and_stop_when_asked(tmp_path):
    from kwsbench.models.registry import get_card
    from kwsbench.run.runner import Condition, RunStopped, _predict

    plan, card = make_plan(tmp_path, batch_size=16), get_card("test-tiny")
    model = card.build().eval()
    clean = torch.from_numpy(make_clipset(per_class=10).audio)
    counts: list[int] = []
    lock = threading.Lock()

    def on_batch(done: int) -> None:
        with lock:
            counts.append(done)

    cond = Condition("clean", None, 16000, 0)
    preds = _predict(model, clean, None, cond, card, plan, RmsNoise(), on_batch, lanes=2)
    assert preds.shape == (120,) and counts == sorted(counts) and counts[-1] == 120 and len(counts) == 8
    np.testing.assert_array_equal(preds, _predict(model, clean, None, cond, card, plan, RmsNoise(), lanes=1))

    def stop(done: int) -> None:
        raise RunStopped

    with pytest.raises(RunStopped):
        _predict(model, clean, None, cond, card, plan, RmsNoise(), stop, lanes=2)


def test_an_ncssm_checkpoint_gives_the_same_predictions_in_lanes_on_real_clips(ncssm_checkpoints):
    """NC-SSM-20K on 125 real test clips: two lanes of one intra-op thread each against one forward on two."""
    from kwsbench.checkpoints import load_model
    from kwsbench.data.speech_commands import load_clipset

    clips = load_clipset(str(require_shared("data", "gsc_v2_test_dev")))
    audio = torch.from_numpy(np.ascontiguousarray(clips.audio[::20], dtype=np.float32))
    model = load_model("nc-ssm-20k", checkpoint=ncssm_checkpoints / "NanoMamba-NC-20K" / "best.pt").module
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            whole = torch.cat([model(audio[i:i + 32]) for i in range(0, len(audio), 32)])
        lanes = run_lanes(lambda i, part, failed: torch.cat(
            [model(audio[j:min(j + 32, part.stop)]) for j in range(part.start, part.stop, 32)]), len(audio), 2)
    finally:
        torch.set_num_threads(before)
    laned = torch.cat(lanes)
    assert torch.equal(laned.argmax(-1), whole.argmax(-1))
    torch.testing.assert_close(laned, whole, rtol=1e-5, atol=1e-5)
