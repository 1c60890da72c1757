"""CPU runs: several models at once, one thread each, instead of one model at a time on every thread.

The quick run's models are small: a batch of one is a few hundred small kernels, and split over two threads
each kernel waits on the other thread (OpenMP's join) more than it computes. Measured on the 2-core machine,
27 models x 480 clips, same clips and weights: one model at a time on 2 threads took 94-101 CPU-s (110-122 s
wall under a load of 4 from other jobs), two models at a time on 1 thread each 35 CPU-s (18.5-37 s wall).
A kernel on one thread computes each clip as it does on two (the logits of 25 of the 27 models were
bit-identical, the other two within 1e-6, no prediction changed), so only the time changes.

`KWSBENCH_CPU_WORKERS` sets the number of models run at once (default: torch's thread count, i.e. the cores
or OMP_NUM_THREADS); 1 restores one model at a time on all threads (in lanes of clips for the cards that measured
faster that way, kwsbench/run/lanes.py).

The results store's SQLite connection belongs to the thread that opened it: workers hand their store calls
to that thread (`MainThreadCalls`), which serves them while it waits for the workers.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from kwsbench.errors import BadInputError

WORKERS_ENV = "KWSBENCH_CPU_WORKERS"


class RunStopped(BaseException):
    """Raised inside a worker when the run is being stopped (Ctrl-C, or another worker's error). A
    BaseException, so a cell's `except Exception` does not store it as a failed cell."""


def cpu_workers(models: int) -> int:
    """How many models a CPU run evaluates at once (KWSBENCH_CPU_WORKERS, default torch's thread count)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        try:
            wanted = int(raw)
        except ValueError:
            wanted = 0
        if wanted < 1:
            raise BadInputError(f"{WORKERS_ENV}={raw!r} is not a whole number >= 1; set it to how many models a CPU "
                                f"run evaluates at once (1: one at a time on all threads), or unset it")
    else:
        wanted = torch.get_num_threads()
    return max(1, min(wanted, models))


class MainThreadCalls:
    """Calls made from worker threads, run on the thread that created this object (the store's owner)."""

    def __init__(self) -> None:
        self._owner = threading.get_ident()
        self._queue: queue.Queue = queue.Queue()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if threading.get_ident() == self._owner:
            return fn(*args)
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((fn, args, done))
        return done.result()

    def serve(self, futures: Sequence[concurrent.futures.Future]) -> None:
        """Run the workers' calls until every future is done."""
        while not all(f.done() for f in futures):
            try:
                fn, args, done = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                done.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to the worker that asked
                done.set_exception(err)


def run_in_workers(jobs: Sequence[Callable[[], Any]], workers: int, calls: MainThreadCalls,
                   stop: threading.Event) -> list[Any]:
    """Run `jobs` (in this order, `workers` at a time, torch on one thread each) while this thread serves
    `calls`. On Ctrl-C or a job's error, `stop` is set, jobs not started are dropped, the running ones are
    waited for (they raise RunStopped at their next batch), and the error is raised here."""
    threads = torch.get_num_threads()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads,
                                                 initargs=(1,), thread_name_prefix="kwsbench-model")
    futures = [pool.submit(job) for job in jobs]
    for f in futures:
        f.add_done_callback(lambda f: stop.set() if not f.cancelled() and f.exception() is not None else None)
    try:
        try:
            calls.serve(futures)
        except BaseException:
            stop.set()
            raise
        finally:
            if stop.is_set():
                for f in futures:
                    f.cancel()
                calls.serve(futures)
            pool.shutdown(wait=True)
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        first = next((e for e in errors if not isinstance(e, RunStopped)), None)
        if first is not None:
            raise first
        return [f.result() for f in futures]
    finally:
        torch.set_num_threads(threads)  # the pool's threads set the process-wide count to 1
