"""Parallel noise-bank rendering changes no sample: banks match checksums recorded before the change."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from kwsbench.noise import bank as bank_mod
from kwsbench.noise import get_source
from kwsbench.noise.generators import RenderContext
from kwsbench.noise.sources import render

# sha256 (first 16 hex) of render(source, IDS, seed=3, ...) computed with the serial renderer BEFORE the
# parallel path existed (commit 0619b6b); a change to any generator or to the splitting shows up here.
# babble-keywords (the former `babble`, renamed: its generator seed follows the name) recorded at the rename.
BEFORE = {
    "babble-keywords": "d94498a0b63f8cc9",
    "babble-synthetic-ncssm": "e359ca95dac81965",
    "brown": "ebc922fecce03fc2",
    "factory": "631e4416eaf9ba38",
    "factory-ncssm": "794d3b23ef67ced5",
    "pink": "4f471d6eea1387dd",
    "pink-ncssm": "65dbd64212c90af1",
    "street": "eb68ca45dbca82cd",
    "street-ncssm": "d1f5d32954996917",
    "white": "75bfcf883c084a49",
    "white-ncssm": "a1ead1f00778b3e1",
}
IDS = [f"{w}/spk{i % 7:02d}_nohash_{i}.wav" for i, w in enumerate(["yes", "no", "_unknown_/cat", "up"] * 10)]
SPEAKERS = [f"spk{i % 7:02d}" for i in range(len(IDS))]


def _context(name: str) -> RenderContext:
    ctx = RenderContext()
    if get_source(name).needs_clipset:
        pool = (np.random.default_rng(5).standard_normal((len(IDS), 16000)) * 0.1).astype(np.float32)
        order = np.argsort(np.asarray(IDS, dtype=object), kind="stable")
        ctx.pool_audio = pool[order]
        ctx.pool_ids = tuple(IDS[i] for i in order)
        ctx.pool_speakers = tuple(SPEAKERS[i] for i in order)
    return ctx


def _digest(x: np.ndarray) -> str:
    return hashlib.sha256(x.tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_parallel_render_matches_the_bank_rendered_before(name, monkeypatch):
    monkeypatch.setattr(bank_mod, "_CHUNK", 7)  # several uneven spans over 2 workers
    monkeypatch.setattr(bank_mod, "_MIN_POOL_ROWS", 0)  # a small set still goes through the pool
    ctx = _context(name)
    job = bank_mod.RenderJob(get_source(name), IDS, 3, ctx, SPEAKERS)
    parallel = bank_mod.render_jobs([job], workers=2)[0]
    assert _digest(parallel) == BEFORE[name]
    assert np.array_equal(parallel, render(get_source(name), IDS, 3, ctx, SPEAKERS))


def test_several_banks_share_one_pool_and_one_failure_stays_its_own(monkeypatch):
    monkeypatch.setattr(bank_mod, "_CHUNK", 5)
    monkeypatch.setattr(bank_mod, "_MIN_POOL_ROWS", 0)
    # babble on a pool of 4 talkers with 5 or more needed: that job fails, the two around it are still rendered
    tiny = _context("babble-keywords")
    tiny.pool_audio, tiny.pool_ids, tiny.pool_speakers = tiny.pool_audio[:4], tiny.pool_ids[:4], tiny.pool_speakers[:4]
    jobs = [bank_mod.RenderJob(get_source(n), IDS, 3, ctx, SPEAKERS)
            for n, ctx in (("street", RenderContext()), ("babble-keywords", tiny), ("white", RenderContext()))]
    street, babble, white = bank_mod.render_jobs(jobs, workers=2)
    assert _digest(street) == BEFORE["street"] and _digest(white) == BEFORE["white"]
    assert isinstance(babble, ValueError) and "talkers" in str(babble)


def test_worker_count_follows_the_environment(monkeypatch):
    monkeypatch.setenv(bank_mod.WORKERS_ENV, "3")
    assert bank_mod.noise_workers() == 3
    monkeypatch.delenv(bank_mod.WORKERS_ENV)
    assert 1 <= bank_mod.noise_workers() <= 16


def test_a_stuck_worker_pool_falls_back_to_rendering_here(monkeypatch):
    # a forked child that never answers (e.g. blocked on a lock held at the fork) must not hang the run
    import os
    import time

    parent, real = os.getpid(), bank_mod._render_rows

    def rows_stuck_in_children(job, start, stop):
        if os.getpid() != parent:
            time.sleep(60)
        return real(job, start, stop)

    monkeypatch.setattr(bank_mod, "_render_rows", rows_stuck_in_children)
    monkeypatch.setattr(bank_mod, "TASK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(bank_mod, "_CHUNK", 7)
    monkeypatch.setattr(bank_mod, "_MIN_POOL_ROWS", 0)
    job = bank_mod.RenderJob(get_source("white"), IDS, 3, RenderContext(), SPEAKERS)
    t = time.perf_counter()
    with pytest.warns(UserWarning, match="no answer within 1 s"):
        (rows,) = bank_mod.render_jobs([job], workers=2)
    assert time.perf_counter() - t < 30  # the stuck workers were not waited for
    assert _digest(rows) == BEFORE["white"]


def test_a_small_bank_renders_without_a_pool(monkeypatch):
    # fewer rows than _MIN_POOL_ROWS: the pool's start would cost more than it saves, and no fork is risked
    def no_pool(*_args, **_kwargs):
        raise AssertionError("a small bank started a worker pool")

    monkeypatch.setattr(bank_mod.multiprocessing, "get_context", no_pool)
    job = bank_mod.RenderJob(get_source("white"), IDS, 3, RenderContext(), SPEAKERS)
    assert len(IDS) < bank_mod._MIN_POOL_ROWS
    (rows,) = bank_mod.render_jobs([job], workers=2)
    assert _digest(rows) == BEFORE["white"]
