"""One model on several CPU threads: its clips cut into contiguous lanes, each lane evaluated by its own thread
with one intra-op thread, instead of every operation of one forward split over all threads.

Why: the NC-SSM family's forward is ~1,500 small per-frame operations; split over two threads, each of them
waits on OpenMP's join more than it computes. Two lanes keep both cores busy without any join inside a
forward. Each clip's logits do not depend on the batch it is in nor on the thread count that computes it
(see kwsbench.run.workers), so lanes change time only; tests/test_lanes.py checks the predictions.

A CPU run uses lanes when it has more threads than models at once (`lanes_per_model`), for the cards that
measured faster in lanes (`ModelCard.cpu_lanes`: the NC-SSM and NanoMamba families, median 1.25x, 0.97-1.53x
on two threads over three runs; `benchmarks/cpu_eval.py --levers lanes`). The others run one forward on all
threads: DS-CNN-S and KWT-1, whose time is in large matrix products, measured 0.81-1.04x in lanes, the other cards
0.98-1.18x. A run of one model on two threads gets two lanes; the quick run's 27 models, two at a time, get one
lane each.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def lanes_per_model(threads: int, workers: int) -> int:
    """Lanes per model when `workers` models run at once on `threads` threads."""
    return max(1, threads // max(1, workers))


def lane_ranges(n: int, lanes: int) -> list[range]:
    """[0, n) cut into at most `lanes` contiguous, non-empty ranges of nearly equal length, in order."""
    lanes = max(1, min(lanes, n))
    bounds = [n * i // lanes for i in range(lanes + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a] or [range(0, 0)]


class LaneAborted(Exception):
    """Raised inside a lane when another lane failed: its work would be thrown away."""


def run_lanes(work: Callable[[int, range, threading.Event], T], n: int, lanes: int) -> list[T]:
    """`work(lane, part, failed)` for every lane of [0, n), in lane order. With one lane it runs on this thread as
    is. Otherwise each lane runs on its own thread under `torch.inference_mode` with one intra-op thread;
    `failed` is set when a lane raises, so the others can stop at their next batch (by raising LaneAborted);
    the first lane's error that is not LaneAborted is raised here, after every lane has stopped."""
    parts = lane_ranges(n, lanes)
    failed = threading.Event()
    if len(parts) == 1:
        return [work(0, parts[0], failed)]
    threads = torch.get_num_threads()

    def lane(index: int) -> T:
        try:
            with torch.inference_mode():  # grad mode is per thread: a new thread starts with autograd on
                return work(index, parts[index], failed)
        except BaseException:
            failed.set()
            raise

    pool = concurrent.futures.ThreadPoolExecutor(len(parts), initializer=torch.set_num_threads, initargs=(1,),
                                                 thread_name_prefix="kwsbench-lane")
    try:
        futures = [pool.submit(lane, i) for i in range(len(parts))]
        try:
            concurrent.futures.wait(futures)
        except BaseException:  # Ctrl-C here: the lanes stop at their next batch
            failed.set()
            raise
        errors = [f.exception() for f in futures if f.exception() is not None]
        first = next((e for e in errors if not isinstance(e, LaneAborted)), errors[0] if errors else None)
        if first is not None:
            raise first
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True)
        torch.set_num_threads(threads)  # the lanes' threads set the process-wide count to 1
