"""The CUDA start-up overlaps the noise banks: the bank renderer runs the given work once, in the parent, while
its forked workers render, or on a thread of its own while cached banks load, and changes no sample; on a GPU the
start-up (Triton's included) changes no bit of a forward."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from helpers import make_clipset, make_plan, tiny_loader
from test_noise_speed import BEFORE, IDS, SPEAKERS, _digest

from kwsbench.noise import NoiseBank, get_source
from kwsbench.noise import bank as bank_mod
from kwsbench.noise.generators import RenderContext

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Recorder:
    """The work handed to the renderer: notes where and when it ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (pid, live worker processes) per call
        self.threads: list[int] = []

    def __call__(self) -> None:
        self.calls.append((os.getpid(), len(multiprocessing.active_children())))
        self.threads.append(threading.get_ident())


def test_the_work_runs_once_in_the_parent_while_the_workers_render(monkeypatch):
    monkeypatch.setattr(bank_mod, "_CHUNK", 7)
    monkeypatch.setattr(bank_mod, "_MIN_POOL_ROWS", 0)
    work = Recorder()
    jobs = [bank_mod.RenderJob(get_source(n), IDS, 3, RenderContext(), SPEAKERS) for n in ("white", "street")]
    white, street = bank_mod.render_jobs(jobs, workers=2, meanwhile=work)
    assert len(work.calls) == 1
    pid, workers = work.calls[0]
    assert pid == os.getpid() and workers == 2
    assert _digest(white) == BEFORE["white"] and _digest(street) == BEFORE["street"]


def test_the_work_runs_once_without_a_pool_too():
    work = Recorder()
    job = bank_mod.RenderJob(get_source("white"), IDS, 3, RenderContext(), SPEAKERS)
    (rows,) = bank_mod.render_jobs([job], workers=1, meanwhile=work)
    assert [pid for pid, _ in work.calls] == [os.getpid()]
    assert _digest(rows) == BEFORE["white"]


def test_the_work_runs_once_on_a_thread_of_its_own_when_every_bank_is_cached():
    cs = make_clipset(per_class=2)
    first = Recorder()
    rendered = NoiseBank.many(cs, ["white", "pink"], seed=4, meanwhile=first)  # renders and caches both
    again = Recorder()
    banks = NoiseBank.many(cs, ["white", "pink"], seed=4, meanwhile=again)
    assert len(first.calls) == 1 and len(again.calls) == 1
    assert again.threads[0] != threading.get_ident()  # it ran beside the loads, not before them
    assert all(b.loaded_from_cache for b in banks)
    assert all(np.array_equal(b.noise, r.noise) for b, r in zip(banks, rendered, strict=True))


def test_a_damaged_cached_bank_renders_unforked_after_the_work_ran_on_its_thread(monkeypatch):
    """The work (a CUDA start) has run by the time a bank fails its checksum: no forked worker may inherit it."""
    monkeypatch.setattr(bank_mod, "_MIN_POOL_ROWS", 0)
    cs = make_clipset(per_class=2)
    healthy = NoiseBank.many(cs, ["white", "pink"], seed=5)
    data = bytearray(healthy[1].path.read_bytes())
    data[-5] ^= 0x40
    healthy[1].path.write_bytes(bytes(data))
    pools: list[int] = []
    real_render = bank_mod.render_jobs

    def render(jobs, workers=None, meanwhile=None):
        pools.append(workers)
        return real_render(jobs, workers=workers, meanwhile=meanwhile)

    monkeypatch.setattr(bank_mod, "render_jobs", render)
    work = Recorder()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        banks = NoiseBank.many(cs, ["white", "pink"], seed=5, meanwhile=work)
    assert any("fails its checksum" in str(w.message) for w in seen)
    assert len(work.calls) == 1 and pools == [1]
    assert [b.loaded_from_cache for b in banks] == [True, False]
    assert np.array_equal(banks[1].noise, healthy[1].noise)


def test_an_error_of_the_work_reaches_the_caller():
    cs = make_clipset(per_class=2)
    NoiseBank.many(cs, ["white"], seed=6)

    def broken() -> None:
        raise RuntimeError("no CUDA here")

    with pytest.raises(RuntimeError, match="no CUDA here"):
        NoiseBank.many(cs, ["white"], seed=6, meanwhile=broken)


_FRESH_FORWARD = """
import hashlib, json, sys, torch
from kwsbench.models.registry import get_card
if sys.argv[1] == "warm":
    from kwsbench.run.warmup import start_cuda
    start_cuda("cuda")
torch.manual_seed(0)
model = get_card(sys.argv[2]).build().eval().cuda()
x = (0.1 * torch.randn(64, 16000, generator=torch.Generator().manual_seed(1))).cuda()
with torch.inference_mode():
    out = model(x).cpu().numpy()
print(json.dumps(hashlib.sha256(out.tobytes()).hexdigest()))
"""


@cuda
@pytest.mark.parametrize("name", ["ds-cnn-s", "nanomamba-tiny"])  # cuDNN's convolutions; Triton's scan kernels
def test_the_cuda_start_changes_no_bit_of_a_first_forward(name):
    def digest(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", _FRESH_FORWARD, mode, name], capture_output=True, text=True,
                              check=True, env=os.environ.copy())
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert digest("warm") == digest("cold")


@cuda
def test_a_cuda_run_starts_cuda_while_the_banks_render(tmp_path, tiny_cards, monkeypatch):
    from kwsbench.run import runner

    order: list[str] = []
    real_start, real_many = runner.start_cuda, NoiseBank.many

    def start(device, triton=True):
        order.append("cuda")
        real_start(device, triton)

    def many(*args, **kwargs):
        order.append("banks")
        return real_many(*args, **kwargs)

    monkeypatch.setattr(runner, "start_cuda", start)
    monkeypatch.setattr(NoiseBank, "many", many)
    plan = make_plan(tmp_path, device="cuda", noise=["white", "pink"])
    summary = runner.run_plan(plan, loader=tiny_loader, clipset=make_clipset(per_class=2), show_progress=False)
    assert order == ["banks", "cuda"]  # the start-up was handed to the bank renderer
    assert summary.timings["cuda_start"] > 0 and not summary.failed


@pytest.mark.parametrize("models, triton", [(["test-tiny"], False), (["test-tiny", "nanomamba-tiny"], True)])
def test_triton_starts_only_for_a_plan_with_a_model_that_runs_it(tmp_path, tiny_cards, monkeypatch, models, triton):
    """Triton's start costs about half a second on an H100: a plan without an NC-SSM, NanoMamba or S-Edge model
    does not wait for it."""
    from kwsbench.run import runner

    asked: list[bool] = []
    real = runner._to_device
    monkeypatch.setattr(runner, "_to_device", lambda ctx, triton: (asked.append(triton), real(ctx, triton)))
    plan = make_plan(tmp_path, models=models, noise=["white"], snr=[0.0])
    summary = runner.run_plan(plan, loader=tiny_loader, clipset=make_clipset(per_class=1), show_progress=False)
    assert not summary.failed and asked == [triton]
