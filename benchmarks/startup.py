#!/usr/bin/env python
"""Start-up time of the commands people type most: `kwsbench --help`, `kwsbench leaderboard` on an existing store,
`kwsbench noise list`, and `import kwsbench`.

Each command runs as a fresh process (`python -m kwsbench ...` with PYTHONPATH at the checkout measured), once
untimed to warm the OS file cache and kwsbench's cost cache, then `--repeat` times; wall time and CPU time
(user + system of the child) are reported as medians. With `--baseline DIR` a second checkout (e.g. an older
commit: `git worktree add /tmp/before <commit>`) is measured alternately in the same run, so the ratio is taken
under the same machine load. On a shared machine wall times are noisy; CPU time is the steadier figure.

    python benchmarks/startup.py --store runs/kwsbench.sqlite [--baseline /tmp/before] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from kwsbench.paths import DEFAULT_STORE, default_store

ROOT = Path(__file__).resolve().parent.parent


def commands(store: Path) -> dict[str, list[str]]:
    return {
        "kwsbench --help": ["-m", "kwsbench", "--help"],
        "kwsbench leaderboard": ["-m", "kwsbench", "leaderboard", "--store", str(store)],
        "kwsbench noise list": ["-m", "kwsbench", "noise", "list"],
        "import kwsbench": ["-c", "import kwsbench"],
    }


def timed(args: list[str], checkout: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh interpreter running `args` against `checkout`."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "COLUMNS": "120"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, *args], env=env, cwd=checkout, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {checkout} (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=default_store(),
                        help=f"an existing results store (default: $KWSBENCH_STORE, else {DEFAULT_STORE})")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure alternately (default: none)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per command and checkout (default: 7)")
    args = parser.parse_args()
    store = args.store.resolve()
    if not store.is_file():
        raise SystemExit(f"no results store at {store}: run `kwsbench run --quick` first or pass --store")
    checkouts = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; medians of {args.repeat} runs")
    print(f"{'command':24s} " + " ".join(f"{name + ' wall':>14s} {name + ' cpu':>14s}" for name in checkouts)
          + ("   wall ratio" if args.baseline else ""))
    for label, cmd in commands(store).items():
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in checkouts}
        for path in checkouts.values():
            timed(cmd, path)  # warm-up: file cache, cost cache
        for _ in range(args.repeat):
            for name, path in checkouts.items():  # alternate, so both see the same load
                samples[name].append(timed(cmd, path))
        med = {n: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s)) for n, s in samples.items()}
        row = " ".join(f"{med[n][0]:12.3f} s {med[n][1]:12.3f} s" for n in checkouts)
        ratio = f"   {med['baseline'][0] / med['this'][0]:8.1f}x" if args.baseline else ""
        print(f"{label:24s} {row}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
