#!/usr/bin/env python
"""Where a GPU run's time goes, from a torch.profiler Chrome trace (`grid_throughput.py --profile P --trace T`):
how much of the wall the device was busy, the device time by kernel, and per cell (from one
`kwsbench.predict` span's start to the next cell's on the same thread) the wall, the device's busy time inside
it and its idle time: what scoring, storing and the next cell's set-up cost the device.

    python benchmarks/trace_gaps.py trace.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import statistics
from pathlib import Path

DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}


def load(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)["traceEvents"]


def union_length(spans: list[tuple[float, float]]) -> float:
    """Total length covered by (start, end) intervals."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def busy_within(spans: list[tuple[float, float]], lo: float, hi: float) -> float:
    return union_length([(max(a, lo), min(b, hi)) for a, b in spans if b > lo and a < hi])


def report(events: list[dict]) -> str:
    on_device = [e for e in events if e.get("cat") in DEVICE_CATS and "dur" in e]
    device = [(e["ts"], e["ts"] + e["dur"]) for e in on_device]
    by_name: dict[str, float] = {}
    for e in on_device:
        by_name[e["name"][:70]] = by_name.get(e["name"][:70], 0.0) + e["dur"]
    cells = [e for e in events if e.get("name") == "kwsbench.predict" and e.get("cat") in {"user_annotation", "cpu_op"}]
    starts: dict[int, list[float]] = {}  # per thread (a model's worker), its cells' starts
    for e in cells:
        starts.setdefault(e["tid"], []).append(e["ts"])
    lines = []
    if device:
        lo, hi = min(a for a, _ in device), max(b for _, b in device)
        busy = union_length(device)
        lines.append(f"device: first to last activity {(hi - lo) / 1e3:.1f} ms, busy {busy / 1e3:.1f} ms "
                     f"({100 * busy / (hi - lo):.0f} %)")
        lines.append("device time by kernel / copy (top 15):")
        for name, t in sorted(by_name.items(), key=lambda kv: -kv[1])[:15]:
            lines.append(f"  {t / 1e3:9.2f} ms  {name}")
    if cells:
        # a cell's period: from its forwards' start to the next cell's on the same thread (the model's worker);
        # the device's busy time inside it, whether the host waited for the device or went on (one cell in flight)
        periods = [pair for th in starts.values() for pair in itertools.pairwise(sorted(th))]
        busy = [busy_within(device, a, b) for a, b in periods]
        idle = [(b - a) - d for (a, b), d in zip(periods, busy, strict=True)]
        lines.append(f"cells (kwsbench.predict spans): {len(cells)}; {len(periods)} periods from one cell's start to "
                     f"the next's: {sum(b - a for a, b in periods) / 1e3:.1f} ms, device busy in them "
                     f"{sum(busy) / 1e3:.1f} ms")
        if periods:
            lines.append(f"  per cell: period median {statistics.median(b - a for a, b in periods) / 1e3:.2f} ms, "
                         f"device busy median {statistics.median(busy) / 1e3:.2f} ms, device idle median "
                         f"{statistics.median(idle) / 1e3:.2f} ms (total {sum(idle) / 1e3:.1f} ms)")
            slow = sorted(((b - a, d) for (a, b), d in zip(periods, busy, strict=True)), reverse=True)[:12]
            lines.append("  longest periods (wall / device ms): " + ", ".join(f"{w / 1e3:.1f}/{d / 1e3:.1f}"
                                                                             for w, d in slow))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace", help="Chrome trace from torch.profiler (.json or .json.gz)")
    args = p.parse_args(argv)
    if not Path(args.trace).is_file():
        p.error(f"no trace at {args.trace}")
    print(report(load(args.trace)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
