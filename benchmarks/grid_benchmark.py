#!/usr/bin/env python
"""Grid benchmark: every public checkpoint x (clean + 5 noise sources x 7 SNRs) on a clip set.

Measures wall time including decoding the clip set and building the noise banks (a fresh cache
directory is used unless --warm-cache), then the per-model inference time and clips/s. Runs on CUDA
when available, else CPU (use --per-class / --models / --snr to keep a CPU run short).

    python benchmarks/grid_benchmark.py --data-dir ../shared/data/gsc_v2_test_dev --out grid.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--models", help="comma list (default: every model with a published checkpoint)")
    p.add_argument("--noise", default="factory-ncssm,white-ncssm,babble-synthetic-ncssm,street-ncssm,pink-ncssm")
    p.add_argument("--snr", default="-15,-10,-5,0,5,10,15")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, help="torch CPU threads (e.g. 2 to mimic a small laptop)")
    p.add_argument("--per-class", type=int, help="class-stratified subset (CPU runs)")
    p.add_argument("--cache-dir", help="cache for decoded clips and noise banks (default: a fresh temporary one)")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="kwsbench-bench-cache-")
    warm = Path(cache).is_dir() and any(Path(cache).iterdir())
    os.environ["KWSBENCH_CACHE"] = cache

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from kwsbench.compare import public_models
    from kwsbench.evaluate import load_clips, run_plan
    from kwsbench.plan import Plan

    models = args.models.split(",") if args.models else public_models()
    store = Path(tempfile.mkdtemp(prefix="kwsbench-bench-")) / "grid.sqlite"
    plan = Plan(models=models, noise=[n for n in args.noise.split(",") if n],
                snr=[float(s) for s in args.snr.split(",") if s],
                data_dir=args.data_dir, device=args.device, batch_size=args.batch_size, per_class=args.per_class,
                store=str(store)).validate()
    t0 = time.perf_counter()
    clips = load_clips(plan)
    t_decode = time.perf_counter() - t0
    summary = run_plan(plan, clipset=clips, show_progress=False)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0

    import sqlite3

    con = sqlite3.connect(store)
    per_model = {m: {"seconds": s, "clip_evals": n} for m, s, n in con.execute(
        "SELECT model, SUM(seconds), SUM(n) FROM cells WHERE status='ok' GROUP BY model")}
    figures = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "clips": len(clips),
        "models": len(models), "cells": summary.computed + summary.reused, "failed": len(summary.failed),
        "cache": "warm" if warm else "cold", "decode_s": round(t_decode, 2),
        **{f"{k}_s": round(v, 2) for k, v in summary.timings.items()},
        "wall_s_including_decode_and_banks": round(wall, 2),
        "inference_s": round(sum(v["seconds"] for v in per_model.values()), 2),
        "clip_evals": summary.clip_evals,
        "per_model_clips_per_s": {m: round(v["clip_evals"] / v["seconds"], 1) for m, v in per_model.items()},
    }
    print(json.dumps(figures, indent=2))
    for model, cond, err in summary.failed[:10]:
        print(f"FAILED {model} | {cond}: {err}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0 if summary.ok else 1


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
