#!/usr/bin/env python
"""The main job as a new user runs it: `kwsbench run --quick` (or any `run` arguments) with fresh data and cache
homes (synthesis included) and no shared folder. Wall time, peak RSS and the digest of every stored cell.

    python benchmarks/main_job.py                              # the CLI, 3 cold runs
    python benchmarks/main_job.py --baseline /tmp/old-checkout # alternate with another checkout, same machine
    python benchmarks/main_job.py --profile                    # one cold run in-process: where the time goes
    python benchmarks/main_job.py --args "--noise babble --snr -5" --runs 1

`--profile` times, in one process: import (torch and kwsbench), synthesis of the embedded set, decoding, the
run's announcement (cell count and estimate), noise banks, the models (build + weights, inference, scoring,
store: on a CPU several models at once, one thread each, kwsbench/run/workers.py) with each model's own build
and inference seconds, and the results table. The CLI runs measure what the user waits for (process start to
exit); peak RSS is the child's maximum resident size (getrusage).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _homes(root: Path) -> dict[str, str]:
    """Fresh homes for one run; KWSBENCH_SHARED points nowhere (a new user has no shared folder)."""
    env = {k: str(root / k.lower()) for k in ("KWSBENCH_DATA", "KWSBENCH_CACHE", "KWSBENCH_CHECKPOINTS")}
    env["KWSBENCH_SHARED"] = str(root / "no-shared-folder")
    env["KWSBENCH_STORE"] = str(root / "store.sqlite")
    return env


def cli_run(checkout: Path, run_args: list[str]) -> dict:
    """One cold `kwsbench run` in a child process: wall s, CPU s, peak RSS GB, the store's digest."""
    root = Path(tempfile.mkdtemp(prefix="kwsbench-mainjob-"))
    env = {**os.environ, **_homes(root), "PYTHONPATH": str(checkout)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kwsbench", "run", *run_args], env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    estimate = next((ln.split("roughly ", 1)[1].split(" (", 1)[0] for ln in err.splitlines() if "roughly " in ln), "")
    sys.path.insert(0, str(HERE))
    from results_digest import digest

    sha, cells = digest(root / "store.sqlite") if proc.returncode == 0 else ("(failed)", 0)
    return {"checkout": str(checkout), "rc": proc.returncode, "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "sys_s": usage.ru_stime, "rss_gb": usage.ru_maxrss / 2**20,
            "cells": cells, "digest": sha, "estimate": estimate, "load": os.getloadavg()[0],
            "stderr_tail": err[-400:] if proc.returncode else ""}


def cli_main(args: argparse.Namespace) -> int:
    checkouts = [HERE.parent] + ([Path(args.baseline).resolve()] if args.baseline else [])
    run_args = shlex.split(args.args)
    rows = []
    for i in range(args.runs):
        for checkout in checkouts if i % 2 == 0 else checkouts[::-1]:  # alternate which goes first
            r = cli_run(checkout, run_args)
            rows.append(r)
            print(f"{'this' if checkout == HERE.parent else 'baseline':8} wall {r['wall_s']:6.1f} s  CPU "
                  f"{r['cpu_s']:6.1f} s (sys {r['sys_s']:4.1f})  peak RSS {r['rss_gb']:4.2f} GB  {r['cells']} cells "
                  f"{r['digest'][:16]}  estimate '{r['estimate']}'  load {r['load']:.2f}  rc {r['rc']}", flush=True)
            if r["rc"]:
                print(r["stderr_tail"], file=sys.stderr)
    for checkout in checkouts:
        mine = [r for r in rows if r["checkout"] == str(checkout)]
        digests = sorted({r["digest"][:16] for r in mine})
        print(f"median {checkout}: wall {statistics.median(r['wall_s'] for r in mine):.1f} s, peak RSS "
              f"{statistics.median(r['rss_gb'] for r in mine):.2f} GB, digests {digests}")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


class Clock:
    """Named spans of one run, printed as a breakdown."""

    def __init__(self) -> None:
        self.spans: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        self.spans[name] = self.spans.get(name, 0.0) + seconds

    def span(self, name: str):
        clock = self

        class _Span:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                clock.add(name, time.perf_counter() - self.t)

        return _Span()


def profile_main(args: argparse.Namespace) -> int:
    """One cold run in this process, phase by phase (see the module docstring)."""
    clock = Clock()
    root = Path(tempfile.mkdtemp(prefix="kwsbench-mainjob-"))
    os.environ.update(_homes(root))
    with clock.span("import"):
        import torch  # noqa: F401

        from kwsbench.commands.run import _print_results, plan_from_args, register
        from kwsbench.run.allocator import keep_freed_memory
        from kwsbench.run.runner import default_loader, load_clips, run_plan
    keep_freed_memory()  # as the kwsbench command does
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    cli = parser.parse_args(["run", *shlex.split(args.args)])
    plan, _ = plan_from_args(cli)
    with clock.span("synthesis"):
        if plan.data_dir is None:
            from kwsbench.data.synth import ensure_default_dataset

            ensure_default_dataset(seed=0)
    with clock.span("decode"):
        clips = load_clips(plan)
    builds: dict[str, float] = {}

    def loader(card, checkpoint, device):
        t = time.perf_counter()
        try:
            return default_loader(card, checkpoint, device)
        finally:
            builds[card.name] = time.perf_counter() - t

    loader.sha256 = default_loader.sha256
    import kwsbench.run.estimate as estimate_mod

    estimates, estimate = [], estimate_mod.estimate

    def spy(*a, **kw):  # the run's own estimate, kept to compare with what the run then took
        with clock.span("announce (cell count + estimate)"):
            estimates.append(estimate(*a, **kw))
        return estimates[-1]

    estimate_mod.estimate = spy
    matmul = [estimate_mod.matmul_gflops()]
    t = time.perf_counter()
    summary = run_plan(plan, loader=loader, clipset=clips, show_progress=True)
    run_s = time.perf_counter() - t
    matmul.append(estimate_mod.matmul_gflops())
    with clock.span("results table"):
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            _print_results(plan.store, summary.cell_keys)
    from kwsbench.results.store import Store

    with Store(plan.store) as st:
        cells = [(c.model, c.seconds) for c in st.cells() if c.status == "ok"]
    infer = {}
    for model, seconds in cells:
        infer[model] = infer.get(model, 0.0) + seconds
    from kwsbench.run.workers import cpu_workers

    workers = cpu_workers(len(infer)) if plan.device == "cpu" else 1
    clock.add("noise banks", summary.timings["noise_banks"])
    models_s = run_s - summary.timings["noise_banks"] - clock.spans.get("announce (cell count + estimate)", 0.0)
    clock.add(f"models: build, inference, scoring, store ({workers} at once)", models_s)
    total = time.perf_counter() - clock.t0
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    sys.path.insert(0, str(HERE))
    from results_digest import digest

    sha, n = digest(plan.store)
    print(f"\n{'phase':56} {'s':>6}")
    for name, s in clock.spans.items():
        print(f"{name:56} {s:6.2f}")
    print(f"{'total (in-process, interpreter start excluded)':56} {total:6.2f}")
    print(f"inside the models' span, summed over the workers: build {sum(builds.values()):.2f} s, cells (inference "
          f"+ scoring) {sum(infer.values()):.2f} s, store {summary.timings['store']:.2f} s")
    print(f"peak RSS {rss:.2f} GB; {n} cells, digest {sha}; load average {os.getloadavg()[0]:.2f}")
    if estimates:
        print(f"the run's estimate {estimates[0].seconds:.1f} s, its cells took {run_s:.1f} s (ratio "
              f"{estimates[0].seconds / run_s:.2f}); matmul {matmul[0]:.0f} / {matmul[1]:.0f} GFLOP/s before / after")
    print(f"\nper model, each on its worker's {'one thread' if workers > 1 else 'threads'}:")
    print(f"{'model':26} {'build s':>8} {'infer s':>8} {'clips/s':>8}")
    for model in sorted(infer, key=infer.get, reverse=True):
        cells_n = sum(1 for m, _ in cells if m == model)
        print(f"{model:26} {builds.get(model, 0):8.2f} {infer[model]:8.2f} {cells_n * len(clips) / infer[model]:8.0f}")
    if args.write_speeds:
        write_speeds(Path(args.write_speeds), cells, infer, len(clips), statistics.median(matmul), workers)
    return 0


def write_speeds(path: Path, cells: list[tuple[str, float]], infer: dict[str, float], clips: int,
                 matmul: float, workers: int) -> None:
    """The CPU speed table the run's estimate reads (kwsbench/run/estimate.py): clips/s per model including its
    first forward (each on its model worker: the estimate divides the total by the workers), the matmul rate
    measured beside it, and MACs per clip."""
    import json
    import platform

    from kwsbench.models.registry import get_card
    from kwsbench.run.estimate import _macs

    speeds = {m: round(sum(1 for c, _ in cells if c == m) * clips / s, 1) for m, s in sorted(infer.items())}
    macs = {m: _macs(get_card(m)) for m in speeds}
    import torch

    table = {"measured": f"{time.strftime('%Y-%m-%d')}, benchmarks/main_job.py --profile, {os.cpu_count()} CPUs "
                         f"({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads, "
                         f"{workers} model worker(s) of {1 if workers > 1 else torch.get_num_threads()} thread(s), "
                         f"load average {os.getloadavg()[0]:.1f}",
             "matmul_gflops": round(matmul, 1), "clips_per_s": speeds, "macs": {m: v for m, v in macs.items() if v}}
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--args", default="--quick", help="arguments of `kwsbench run` (default: --quick)")
    p.add_argument("--runs", type=int, default=3, help="cold CLI runs per checkout (default: 3)")
    p.add_argument("--baseline", help="another checkout to run alternately (its PYTHONPATH)")
    p.add_argument("--profile", action="store_true", help="one cold run in-process with a breakdown by phase")
    p.add_argument("--write-speeds", metavar="JSON", help="with --profile: write the per-model CPU speed table the "
                   "run's estimate reads (kwsbench/run/cpu_speeds.json)")
    args = p.parse_args(argv)
    return profile_main(args) if args.profile else cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
