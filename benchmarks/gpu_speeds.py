#!/usr/bin/env python
"""Write the GPU speed table the run's time estimate reads (kwsbench/run/gpu_speeds.json).

Each model's clips/s is the median over its cells of a CUDA run, leaving out each model's first cell of the run
(warm-up, kernel choice, graph capture), from a results store or from the run's printed progress lines
("[i/N] model | condition | ok 12,345 clips/s").

    python benchmarks/gpu_speeds.py --store runs/registry.sqlite --measured "2026-12-04, one H200, ..."
    python benchmarks/gpu_speeds.py --log registry.txt --measured "..."
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "kwsbench" / "run" / "gpu_speeds.json"
LINE = re.compile(r"^\[\d+/\d+\] (\S+) \| .* \| ok ([\d,.]+) clips/s")


def from_log(path: Path) -> dict[str, list[float]]:
    speeds: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if m:
            speeds.setdefault(m.group(1), []).append(float(m.group(2).replace(",", "")))
    return {model: cells[1:] or cells for model, cells in speeds.items()}


def from_store(path: Path) -> dict[str, list[float]]:
    from kwsbench.results.store import Store
    from kwsbench.run.estimate import history

    with Store(path, read_only=True) as store:
        return history(store, "cuda")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", type=Path, help="results store of a CUDA run")
    src.add_argument("--log", type=Path, help="printed output of a CUDA `kwsbench run`")
    p.add_argument("--measured", required=True, help="where and when (GPU, clips, batch, code)")
    p.add_argument("--machine", default="one NVIDIA H200", help="the GPU in a few words, for the run's announcement")
    p.add_argument("--out", type=Path, default=TABLE)
    args = p.parse_args(argv)
    speeds = from_store(args.store) if args.store else from_log(args.log)
    if not speeds:
        print(f"no ok cells in {args.store or args.log}", file=sys.stderr)
        return 1
    table = {"measured": args.measured, "machine": args.machine, "matmul_gflops": None,
             "clips_per_s": {m: round(statistics.median(v), 1) for m, v in sorted(speeds.items())}}
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(speeds)} models -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
