#!/usr/bin/env python
"""CPU evaluation of the public checkpoints on real clips: clips/s per model and a roofline line (achieved GFLOP/s
against this machine's measured fp32 matrix-product rate), clean forward with the front end.

    KWSBENCH_SHARED=../shared python benchmarks/cpu_eval.py --data-dir ../shared/data/gsc_v2_test_dev

Passes alternate over the models (`--passes`, medians reported) so a shared machine's load falls on all of
them alike; the load average is printed. Rate = 2 FLOP per MAC of `kwsbench cost` (front end included). The
correct count is printed beside the authors' own code's count on the same clips (tests/test_ports_parity.py).
The authors' evaluation code itself is not in this repository or in ../shared, so no side-by-side with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

PUBLIC = ("ds-cnn-s", "bc-resnet-1-ncssm", "nc-ssm", "nc-ssm-20k")
AUTHORS_CORRECT = {"ds-cnn-s": 2251, "bc-resnet-1-ncssm": 2174, "nc-ssm": 2192, "nc-ssm-20k": 2264}


def matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n x n product with torch's threads (the machine's arithmetic roof)."""
    import torch

    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--models", default=",".join(PUBLIC))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--passes", type=int, default=3)
    args = p.parse_args(argv)
    from kwsbench.run.allocator import keep_freed_memory

    keep_freed_memory()  # the same allocator setting as the kwsbench command
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from kwsbench.checkpoints import load_model
    from kwsbench.cost import model_cost
    from kwsbench.data.speech_commands import load_clipset
    from kwsbench.models.registry import get_card

    clips = load_clipset(args.data_dir)
    audio = torch.from_numpy(np.ascontiguousarray(clips.audio, dtype=np.float32))
    names = args.models.split(",")
    models = {n: load_model(n).module for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    correct: dict[str, int] = {}
    peaks = [matmul_peak()]
    with torch.inference_mode():
        for m in models.values():
            m(audio[:8])  # warm-up: lazy initialisation is not part of the timing
        for _ in range(args.passes):
            for n, m in models.items():
                t = time.perf_counter()
                preds = torch.cat([m(audio[i:i + args.batch_size]).argmax(-1)
                                   for i in range(0, len(audio), args.batch_size)]).numpy()
                times[n].append(time.perf_counter() - t)
                correct[n] = int((preds == clips.labels).sum())
            peaks.append(matmul_peak())
    peak = max(peaks)
    print(f"{len(audio)} clips, {args.threads} threads, batch {args.batch_size}, {args.passes} passes; matmul peak "
          f"{peak:.0f} GFLOP/s (1024^3 fp32, best); load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':20} {'clips/s':>8} {'M MAC/clip':>10} {'GFLOP/s':>8} {'% of peak':>9} correct (authors' code)")
    for n in names:
        card = get_card(n)
        macs = model_cost(card, card.native_rate).total_macs
        rate = len(audio) / statistics.median(times[n])
        gflops = 2 * macs * rate / 1e9
        print(f"{n:20} {rate:8.0f} {macs / 1e6:10.2f} {gflops:8.1f} {100 * gflops / peak:8.1f}% "
              f"{correct[n]} ({AUTHORS_CORRECT.get(n, '-')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
