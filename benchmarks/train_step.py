#!/usr/bin/env python
"""Training-step time per model: forward + backward + optimiser step on one batch of 1-s clips.

For each card (train mode, the card's native rate, random weights): one warm-up step, then `--repeat`
timed steps; prints best and median seconds per step and writes JSON (--out). The figures size training
runs (epochs x steps) and check the SSM family's CPU goal (batch 32 in < 2 s on 2 threads).

    python benchmarks/train_step.py --models 's-edge-*' --batch 32 --threads 2
    python benchmarks/train_step.py --models all --batch 64 --device cuda --out steps.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all", help="comma list, globs or 'all'")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classes", type=int, default=12, help="head size (the 12-class protocol by default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", help="write the figures as JSON here")
    return p.parse_args(argv)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(card, batch: int, classes: int, device: str, repeat: int) -> list[float]:
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    model = card.build(num_classes=classes if card.head_is_sizable else None).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    audio = (0.1 * torch.randn(batch, card.native_rate, generator=gen)).to(device)
    labels = torch.randint(0, classes, (batch,), generator=gen).to(device)
    times = []
    for i in range(repeat + 1):
        _sync(device)
        t = time.perf_counter()
        loss = F.cross_entropy(model(audio), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i:  # the first step pays one-off costs (allocator, kernel selection)
            times.append(time.perf_counter() - t)
    return times


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from kwsbench.run.allocator import keep_freed_memory

    keep_freed_memory()  # as the kwsbench command does (KWSBENCH_MALLOC=system: glibc's defaults)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from kwsbench.models.registry import resolve

    rows = []
    for card in resolve(args.models):
        times = time_steps(card, args.batch, args.classes, args.device, args.repeat)
        best, median = min(times), statistics.median(times)
        rows.append({"model": card.name, "best_s": round(best, 4), "median_s": round(median, 4)})
        print(f"{card.name:26} best {best:8.4f} s  median {median:8.4f} s", flush=True)
    figures = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": args.device,
               "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
               "threads": torch.get_num_threads(), "batch": args.batch, "torch": torch.__version__, "steps": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
