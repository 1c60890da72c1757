"""CPU model workers (kwsbench/run/workers.py): several models at once give the same cells as one at a time."""

from __future__ import annotations

import threading

import pytest
import torch
from helpers import RmsNoise, make_clipset, make_plan, tiny_loader

from kwsbench.errors import BadInputError
from kwsbench.results.store import Store
from kwsbench.run.runner import run_plan
from kwsbench.run.workers import WORKERS_ENV, cpu_workers

pytestmark = pytest.mark.usefixtures("tiny_cards")
MODELS = ["test-tiny", "test-tiny-slow", "test-broken", "test-tiny-fixed"]


def _cells(path) -> dict:
    with Store(path) as st:
        return {c.cell_key: (c.status, c.correct, c.n, c.error,
                             st.predictions(c.cell_key).tolist() if c.status == "ok" else None)
                for c in st.cells()}


def _run(tmp_path, monkeypatch, workers: int, name: str, loader=tiny_loader):
    monkeypatch.setenv(WORKERS_ENV, str(workers))
    plan = make_plan(tmp_path, models=MODELS, rates=[16000, 8000], store=str(tmp_path / f"{name}.sqlite"))
    return plan, run_plan(plan, loader=loader, noise=RmsNoise(), clipset=make_clipset(), show_progress=False)


def test_workers_give_the_same_cells_in_the_same_order_and_give_the_threads_back(tmp_path, monkeypatch):
    threads_before = torch.get_num_threads()
    seen: set[str] = set()

    def loader(card, checkpoint, device):
        seen.add(threading.current_thread().name)
        return tiny_loader(card, checkpoint, device)

    one_plan, one = _run(tmp_path, monkeypatch, 1, "one", loader)
    assert seen == {threading.current_thread().name}  # one worker: the models run on the calling thread
    seen.clear()
    three_plan, three = _run(tmp_path, monkeypatch, 3, "three", loader)
    assert len(seen) > 1 and all(name.startswith("kwsbench-model") for name in seen)
    assert torch.get_num_threads() == threads_before
    assert _cells(one_plan.store) == _cells(three_plan.store) and len(_cells(one_plan.store)) == 15
    assert three.cell_keys == one.cell_keys  # the results table lists the cells in the plan's order
    assert (three.computed, sorted(three.failed), sorted(three.skipped_cells)) == \
        (one.computed, sorted(one.failed), sorted(one.skipped_cells))
    # 4 models x 6 conditions: the two fixed-rate models skip their 3 at 8 kHz each, the broken one fails its 3
    assert (three.computed, len(three.failed), len(three.skipped_cells)) == (15, 3, 6)


def test_a_worker_interrupted_stops_the_run_and_marks_it_interrupted(tmp_path, monkeypatch):
    def loader(card, checkpoint, device):
        if card.name == "test-tiny-fixed":
            raise KeyboardInterrupt
        return tiny_loader(card, checkpoint, device)

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, monkeypatch, 2, "stopped", loader)
    with Store(tmp_path / "stopped.sqlite") as st:
        assert st.runs()[-1]["status"] == "interrupted"
        assert not any(c.model == "test-tiny-fixed" for c in st.cells())
    assert torch.get_num_threads() >= 1


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_worker_count_is_bad_input(monkeypatch, raw):
    monkeypatch.setenv(WORKERS_ENV, raw)
    with pytest.raises(BadInputError, match=WORKERS_ENV):
        cpu_workers(4)


def test_worker_count_defaults_to_the_thread_count_and_never_exceeds_the_models(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert cpu_workers(100) == torch.get_num_threads()
    monkeypatch.setenv(WORKERS_ENV, "8")
    assert cpu_workers(3) == 3 and cpu_workers(0) == 1
