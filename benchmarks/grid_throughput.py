#!/usr/bin/env python
"""Grid throughput: decode + clip-set cache, noise banks, and the full grid per model, cold then warm.

Stages timed (each on CPU or CUDA):
  decode      the clip set decoded into one array (cold: empty cache; warm: from the decode cache)
  banks       every noise bank rendered (cold, in worker processes; --bank-workers) and loaded (warm)
  grid        every model x (clean + sources x SNRs) through the runner: clips/s and conditions/s per model
  reference   (--reference) one model one clip at a time vs the batched runner, on the clean condition
Prints a table and writes the figures as JSON (--out). Models without weights can run with random
weights (--untrained): fine for throughput, meaningless for accuracy.

    python benchmarks/grid_throughput.py --data-dir ../shared/data/gsc_v2_test_dev --out grid.json
    python benchmarks/grid_throughput.py --data-dir ... --models all --untrained --per-class 10 --reference
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

NCSSM_SOURCES = "factory-ncssm,white-ncssm,babble-synthetic-ncssm,street-ncssm,pink-ncssm"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--models", help="comma list or 'all' (default: every model with a published checkpoint)")
    p.add_argument("--untrained", action="store_true", help="random weights for models without a checkpoint")
    p.add_argument("--noise", default=NCSSM_SOURCES)
    p.add_argument("--snr", default="-15,-10,-5,0,5,10,15")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--bank-workers", type=int, help="noise-bank worker processes (default: CPUs, max 16)")
    p.add_argument("--per-class", type=int, help="class-stratified subset (short CPU runs)")
    p.add_argument("--clips", type=int, help="tile the clip set (copies keyed apart) and keep the first N clips: "
                   "cost per clip against clip count")
    p.add_argument("--passes", default="cold,warm", help="cold (fresh cache), warm (same cache again), or both")
    p.add_argument("--no-cuda-graphs", action="store_true", help="eager forwards (default: CUDA-graph replay)")
    p.add_argument("--reference", action="store_true", help="also time a one-clip-at-a-time loop (first model)")
    p.add_argument("--out", help="write the figures as JSON here")
    p.add_argument("--profile", metavar="FILE", help="after the passes, run the grid once more at --profile-snr "
                   "under torch.profiler and write its operator tables here")
    p.add_argument("--profile-snr", default="0", help="SNRs of the profiled pass (default 0: clean + one per source)")
    p.add_argument("--trace", metavar="FILE", help="with --profile: also the profiled pass's timeline as a Chrome "
                   "trace (gzipped JSON; chrome://tracing or ui.perfetto.dev), to see where the device waits")
    return p.parse_args(argv)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _loader(untrained: bool, label_names: tuple[str, ...]):
    from kwsbench.checkpoints import LoadedModel
    from kwsbench.errors import CheckpointError
    from kwsbench.run.runner import default_loader

    def load(card, checkpoint, device):
        try:
            return default_loader(card, checkpoint, device)
        except CheckpointError:
            if not untrained:
                raise
            # random weights with a head for the clip set's classes where the card allows one; a build's weights
            # follow from its seed alone (on any worker thread), so every pass gets the same weights and cold
            # and warm results compare
            sized = card.head_is_sizable
            model = card.build(num_classes=len(label_names) if sized else None, init_seed=0).to(device).eval()
            # labels as a checkpoint trained on these classes records them
            return LoadedModel(model, "untrained", label_names if sized else ())

    return load


def one_pass(args: argparse.Namespace, models: list[str], device: str, label: str) -> dict:
    """Decode, banks and grid once with the cache KWSBENCH_CACHE currently points at."""
    from kwsbench.run.plan import Plan
    from kwsbench.run.runner import NoiseProvider, load_clips, run_plan

    store = Path(tempfile.mkdtemp(prefix="kwsbench-tp-")) / "grid.sqlite"
    plan = Plan(models=models, noise=[n for n in args.noise.split(",") if n],
                snr=[float(s) for s in args.snr.split(",") if s], data_dir=args.data_dir, device=device,
                batch_size=args.batch_size, per_class=args.per_class, store=str(store),
                cuda_graphs=not args.no_cuda_graphs).validate()
    t0 = time.perf_counter()
    clips = load_clips(plan)
    if args.clips:
        clips = _tiled(clips, args.clips)
    t_decode = time.perf_counter() - t0
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
    provider = NoiseProvider(plan.noise_dir)
    t = time.perf_counter()
    provider.prepare(clips, [provider.resolve(name) for name in plan.noise], plan.seed)  # one pool for all
    t_banks = time.perf_counter() - t
    del provider  # the runner loads the banks again, now from the cache: its own bank time is the warm load
    t1 = time.perf_counter()
    summary = run_plan(plan, loader=_loader(args.untrained, tuple(clips.label_names)), clipset=clips,
                       show_progress=False)
    _sync(device)
    t_grid = time.perf_counter() - t1
    digest = _results_digest(store)
    con = sqlite3.connect(store)
    per_model = {m: {"cells": c, "inference_s": round(s, 3), "clips_per_s": round(n / s, 1) if s else None,
                     "conditions_per_s": round(c / s, 2) if s else None}
                 for m, c, s, n in con.execute("SELECT model, COUNT(*), SUM(seconds), SUM(n) FROM cells "
                                               "WHERE status='ok' GROUP BY model")}
    con.close()
    return {
        "pass": label, "clips": len(clips), "decode_s": round(t_decode, 2),
        "banks_total_s": round(t_banks, 2), "runner_banks_s": round(summary.timings["noise_banks"], 2),
        "grid_s": round(t_grid, 2), "load_s": round(summary.timings["load"], 2),
        "store_s": round(summary.timings["store"], 2), "cells": summary.computed, "failed": len(summary.failed),
        "failed_examples": [f"{m} | {c}: {e[:160]}" for m, c, e in summary.failed[:5]],
        "wall_s": round(t_decode + t_banks + t_grid, 2), "per_model": per_model,
        "results_sha256": digest, **_peaks(device),
    }


def _tiled(clips, n: int):
    """The clip set repeated until it holds n clips (copy k of a clip gets the id `<id>#k`), cut to n."""
    import numpy as np

    from kwsbench.data.clipset import ClipSet

    reps = -(-n // len(clips))
    ids = tuple(f"{u}#{k}" for k in range(reps) for u in clips.utterance_ids)[:n]
    return ClipSet(np.tile(clips.audio, (reps, 1))[:n], np.tile(clips.labels, reps)[:n], clips.label_names, ids,
                   (clips.speaker_ids * reps)[:n], clips.protocol)


def _peaks(device: str) -> dict:
    """Peak host RSS of this process so far and peak GPU memory allocated by torch in this pass."""
    import resource

    out = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    if device.startswith("cuda"):
        import torch

        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def _results_digest(store: Path) -> str:
    """sha256 over every cell's key, counts and predictions: equal digests = identical results."""
    import hashlib

    from kwsbench.results.store import Store

    h = hashlib.sha256()
    with Store(store) as st:
        for c in sorted(st.cells(), key=lambda c: c.cell_key):
            h.update(f"{c.cell_key} {c.correct} {c.n}".encode())
            h.update(st.predictions(c.cell_key).tobytes())
    return h.hexdigest()


def profile_pass(args: argparse.Namespace, models: list[str], device: str, path: str, trace: str | None) -> None:
    """The warm grid at --profile-snr under torch.profiler: the operators by self device time and by CPU time,
    and the runner's own spans (kwsbench.predict / score / store) so time outside the models shows too."""
    from torch._C._profiler import _ExperimentalConfig
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    narrowed = argparse.Namespace(**{**vars(args), "snr": args.profile_snr})
    # the runner evaluates models on worker threads: without profile_all_threads only this thread's ops show
    every_thread = _ExperimentalConfig(profile_all_threads=True)
    with profile(activities=activities, experimental_config=every_thread) as prof:
        one_pass(narrowed, models, device, "profile")
        _sync(device)
    events = prof.key_averages()
    device_key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    tables = [f"# torch.profiler, {device}, models {','.join(models)}, SNRs {args.profile_snr}",
              "## by self device time", events.table(sort_by=device_key, row_limit=40),
              "## by CPU time (including children)", events.table(sort_by="cpu_time_total", row_limit=40)]
    Path(path).write_text("\n\n".join(tables))
    if trace:
        _write_trace(prof, trace)


def _write_trace(prof, path: str) -> None:
    """The profiler's Chrome trace, gzipped (a grid's trace is tens of MB as plain JSON)."""
    import gzip
    import shutil

    plain = Path(tempfile.mkdtemp(prefix="kwsbench-trace-")) / "trace.json"
    prof.export_chrome_trace(str(plain))
    with open(plain, "rb") as src, gzip.open(path, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst)
    plain.unlink()


def reference_loop(args: argparse.Namespace, model_name: str, device: str) -> dict:
    """One clip at a time (the simple reference) against the batched runner, same model, clean condition."""
    import numpy as np
    import torch

    from kwsbench.models.registry import get_card
    from kwsbench.run.plan import Plan
    from kwsbench.run.runner import load_clips

    plan = Plan(models=[model_name], data_dir=args.data_dir, per_class=args.per_class).validate()
    clips = load_clips(plan)
    card = get_card(model_name)
    model = _loader(args.untrained, tuple(clips.label_names))(card, None, device).module
    audio = torch.from_numpy(np.ascontiguousarray(clips.audio, dtype=np.float32)).to(device)
    with torch.inference_mode():
        model(audio[:2])  # warm-up: lazy initialisation is not part of either timing
        t = time.perf_counter()
        single = [int(model(audio[i:i + 1]).argmax(-1)) for i in range(len(audio))]
        _sync(device)
        t_single = time.perf_counter() - t
        t = time.perf_counter()
        batched = torch.cat([model(audio[i:i + args.batch_size]).argmax(-1)
                             for i in range(0, len(audio), args.batch_size)]).tolist()
        _sync(device)
        t_batch = time.perf_counter() - t
    return {"model": model_name, "clips": len(audio), "one_clip_s": round(t_single, 3),
            "batched_s": round(t_batch, 3), "speedup": round(t_single / t_batch, 2),
            "same_predictions": float(np.mean(np.array(single) == np.array(batched)))}


def _table(passes: list[dict], ref: dict | None) -> str:
    lines = [f"{'pass':5} {'clips':>6} {'decode s':>9} {'banks s':>8} {'grid s':>8} {'wall s':>8} cells failed"]
    for p in passes:
        lines.append(f"{p['pass']:5} {p['clips']:6d} {p['decode_s']:9.2f} {p['banks_total_s']:8.2f} "
                     f"{p['grid_s']:8.2f} {p['wall_s']:8.2f} {p['cells']:5d} {p['failed']:6d}")
    last = passes[-1]["per_model"]
    lines.append(f"\n{'model':28} {'cells':>5} {'infer s':>8} {'clips/s':>10} {'cond/s':>7}")
    for m, v in sorted(last.items()):
        lines.append(f"{m:28} {v['cells']:5d} {v['inference_s']:8.2f} {v['clips_per_s'] or 0:10.0f} "
                     f"{v['conditions_per_s'] or 0:7.2f}")
    if ref:
        lines.append(f"\nreference loop ({ref['model']}, {ref['clips']} clips): one clip at a time "
                     f"{ref['one_clip_s']} s, batched {ref['batched_s']} s, speed-up x{ref['speedup']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from kwsbench.run.allocator import keep_freed_memory

    keep_freed_memory()  # as the kwsbench command does (KWSBENCH_MALLOC=system: glibc's defaults)
    if args.bank_workers:
        os.environ["KWSBENCH_NOISE_WORKERS"] = str(args.bank_workers)
    os.environ["KWSBENCH_CACHE"] = tempfile.mkdtemp(prefix="kwsbench-tp-cache-")  # cold first
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from kwsbench.models.registry import all_cards
    from kwsbench.run.reproduce import public_models

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.models == "all":
        models = [c.name for c in all_cards()]
    else:
        models = args.models.split(",") if args.models else public_models()
    passes = [one_pass(args, models, device, label) for label in args.passes.split(",") if label]
    if args.profile:
        profile_pass(args, models, device, args.profile, args.trace)
    ran = sorted(passes[-1]["per_model"]) if passes else []
    ref = reference_loop(args, ran[0], device) if args.reference and ran else None
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "models": models,
        "untrained": args.untrained, "batch_size": args.batch_size, "passes": passes, "reference": ref,
    }
    print(_table(passes, ref))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0 if all(p["failed"] == 0 for p in passes) else 1


if __name__ == "__main__":
    sys.exit(main())
