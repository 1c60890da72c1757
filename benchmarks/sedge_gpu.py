#!/usr/bin/env python
"""S-Edge inference rate: clips/s of one eval forward per size, and the share of the arithmetic rate it reaches.

For each size: the time of one forward on a batch of 1-s clips (median of --reps after two warm-ups),
clips/s, and the model's own arithmetic (body MACs of `kwsbench cost`, 2 FLOP per MAC) as TFLOP/s, as a
fraction of a measured fp32 matrix-product rate (an N³ product, TF32 off) and of --peak-tflops (the data
sheet's fp32 rate: 67 TFLOP/s for an H200 SXM). BatchNorm running statistics are drawn at random (seeded),
so the folding the forward does is exercised; weights are the seeded initialisation (the rate does not
depend on them), or a manifest's trained weights (--weights gsc-mini); clips random, or real clips
(--data-dir, the first --batch clips of a Speech Commands folder).

--compare times the GPU eval path (two GEMMs around a Triton scan, `kwsbench/models/sedge_eval.py`) against
the chunked training path side by side (alternating, same inputs) and gives their logits' largest difference
relative to the largest logit, each path's distance to a float64 forward, and the clips whose predicted class
differs. It also times the scan path with every input projection as a cuBLAS GEMM (`projection_gemm_`), with
every read-out as a cuBLAS GEMM followed by LeakyReLU and the residual (`readout_gemm_`), and with both
(`both_gemm_`: the path before either moved into a Triton kernel), and with dot products over 33-48 inputs in
one power-of-two chunk (`whole_k_`, the default before chunks of 16: 64 products a row for a 40-wide input,
not 48), with their logits' difference and prediction flips against the default (--variants picks some; a
variant can also be a module setting of `sedge_eval.py` written NAME=INT, e.g. `_READOUT_K=64`, for a sweep
without editing code). --profile writes torch.profiler's per-kernel CUDA time of one forward per size: the
chunked path, the scan path, and the scan path with `whole_k_`.

    python benchmarks/sedge_gpu.py --batch 1024 --out sedge.json            # on a GPU
    python benchmarks/sedge_gpu.py --compare --data-dir DEV --weights gsc-mini --sizes full,naive-extra-large
    python benchmarks/sedge_gpu.py --device cpu --sizes tiny --batch 4 --gemm 512
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

SIZES = "full,naive-extra-large,naive-large,naive-medium,naive-small,large,medium,small,tiny"


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=SIZES)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--gemm", type=int, default=8192, help="side of the fp32 matrix product that sets the rate")
    p.add_argument("--peak-tflops", type=float, default=67.0)
    p.add_argument("--out")
    p.add_argument("--compare", action="store_true", help="time and compare the scan path and the chunked path")
    p.add_argument("--profile", help="write per-kernel CUDA times of both paths to this text file")
    p.add_argument("--profile-sizes", default="full,naive-extra-large")
    p.add_argument("--variants", default=",".join(_VARIANTS),
                   help=f"with --compare, the scan path's variants to time: {', '.join(_VARIANTS)}, or a tunable "
                   "setting of kwsbench.models.sedge_eval as NAME=INT (e.g. _READOUT_K=64)")
    p.add_argument("--data-dir", help="real clips: a Speech Commands folder (the first --batch clips)")
    p.add_argument("--weights", help="a manifest whose s-edge-<size>.pt to load (default: seeded initialisation)")
    args = p.parse_args(argv)
    unknown = [v for v in filter(None, args.variants.split(",")) if _variant(v) is None]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(_VARIANTS)}, or NAME=INT with NAME a "
                "tunable setting of kwsbench.models.sedge_eval")
    return args


def _time(fn, reps: int, device: str) -> float:
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _gemm_tflops(n: int, device: str) -> float:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device)
    return 2 * n**3 / _time(lambda: a @ a, 5, device) / 1e12


def _model(size: str, device: str, weights: str | None = None):
    import torch

    from kwsbench.models.sedge import build_sedge

    if weights:
        from kwsbench.checkpoints import load_model

        return load_model(f"s-edge-{size}", f"{weights}:s-edge-{size}.pt", device=device).module
    m = build_sedge(size, seed=0)
    g = torch.Generator().manual_seed(1)
    for layer in m.layers:
        if layer.norm is not None:
            layer.norm.running_mean.copy_(torch.randn(layer.h_in, generator=g) * 0.3)
            layer.norm.running_var.copy_(torch.rand(layer.h_in, generator=g) * 1.5 + 0.5)
    return m.to(device).eval()


def one_size(size: str, x, args, gemm: float) -> dict:
    import torch

    from kwsbench.models.registry import get_card

    card = get_card(f"s-edge-{size}")
    macs = card.cost(card, 16000).body_macs
    model = _model(size, args.device, args.weights)
    with torch.no_grad():
        t = _time(lambda: model(x), args.reps, args.device)
    row = {"size": size, "gmac_per_clip": round(macs / 1e9, 4), "batch": x.shape[0]} | _rate(t, macs, x, args, gemm)
    if args.compare:
        row |= _compare(model, x, args, macs, gemm)
    print(json.dumps(row), flush=True)
    return row


def _sig(x: float, digits: int = 4) -> float:
    """x to `digits` significant digits: a slow CPU's rate (~4e-4 TFLOP/s) must not round to 0."""
    return float(f"{x:.{digits}g}")


def _rate(t: float, macs: int, x, args, gemm: float, tag: str = "") -> dict:
    tflops = 2 * macs * x.shape[0] / t / 1e12
    return {f"{tag}s": _sig(t), f"{tag}clips_per_s": _sig(x.shape[0] / t), f"{tag}tflops": _sig(tflops),
            f"{tag}pct_of_gemm": round(100 * tflops / gemm, 1),
            f"{tag}pct_of_peak": round(100 * tflops / args.peak_tflops, 1)}


def _compare(model, x, args, macs: int, gemm: float) -> dict:
    """The chunked path timed again after the scan path (alternation), memory of each, logits against float64."""
    import torch

    from kwsbench.models.sedge_eval import scan_eval

    with torch.no_grad():
        with scan_eval(False):
            t_old = _time(lambda: model(x), args.reps, args.device)
        t_new = _time(lambda: model(x), args.reps, args.device)
        mem = {}
        for name, on in (("new", True), ("old", False)):
            torch.cuda.reset_peak_memory_stats() if args.device.startswith("cuda") else None
            with scan_eval(on):
                out = model(x)
            mem[name] = out
            if args.device.startswith("cuda"):
                mem[f"{name}_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        new, old = mem["new"], mem["old"]
        exact = _float64_logits(model, x)
    scale = exact.abs().max()
    return {"speedup": round(t_old / t_new, 2), **_rate(t_old, macs, x, args, gemm, "old_"),
            "new_s_again": round(t_new, 5), "peak_gib_new": mem.get("new_gib"), "peak_gib_old": mem.get("old_gib"),
            "rel_diff": float((new - old).abs().max() / old.abs().max()),
            "new_vs_f64": float((new.double() - exact).abs().max() / scale),
            "old_vs_f64": float((old.double() - exact).abs().max() / scale),
            "flips": int((new.argmax(1) != old.argmax(1)).sum()), "clips": int(x.shape[0])} | _gemm_variants(
                model, x, args, macs, gemm, new)


_VARIANTS = {  # module settings of kwsbench.models.sedge_eval per variant (see the module's constants)
    "projection_gemm_": {"_PROJECT_MAX_IN": 0}, "readout_gemm_": {"_READOUT_MAX_OUT": 0},
    "both_gemm_": {"_PROJECT_MAX_IN": 0, "_READOUT_MAX_OUT": 0},
    "whole_k_": {"_K_STEP": 0},
}


def _variant(name: str) -> dict | None:
    """The module settings of a named variant or of NAME=INT; None when it is neither."""
    if name in _VARIANTS:
        return _VARIANTS[name]
    from kwsbench.models import sedge_eval

    setting = sedge_eval.parse_setting(name)
    return dict([setting]) if setting else None


@contextlib.contextmanager
def _settings(settings: dict):
    """kwsbench.models.sedge_eval's module settings changed within the block (a variant of the scan path)."""
    from kwsbench.models import sedge_eval

    kept = {name: getattr(sedge_eval, name) for name in settings}
    for name, value in settings.items():
        setattr(sedge_eval, name, value)
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(sedge_eval, name, value)


def _gemm_variants(model, x, args, macs: int, gemm: float, default) -> dict:
    """The scan path in each variant of --variants, timed right after the default, and how far its logits are
    from the default's: input projections, read-outs or both as cuBLAS GEMMs (their thresholds set to 0), dot
    products over 33-48 inputs in one power-of-two chunk, or any tunable module setting given as NAME=INT."""
    import torch

    from kwsbench.models import sedge_eval

    row = {"project_max_in": sedge_eval._PROJECT_MAX_IN, "readout_max_out": sedge_eval._READOUT_MAX_OUT}
    for name in filter(None, args.variants.split(",")):
        tag = name if name in _VARIANTS else name.replace("=", "_") + "_"
        with _settings(_variant(name)), torch.no_grad():
            t = _time(lambda: model(x), args.reps, args.device)
            out = model(x)
        row |= _rate(t, macs, x, args, gemm, tag) | {
            f"{tag}rel_diff": float((out - default).abs().max() / default.abs().max()),
            f"{tag}flips": int((out.argmax(1) != default.argmax(1)).sum())}
    return row


def _float64_logits(model, x):
    """The chunked path in float64, in slices of 128 clips (the reference both fp32 paths are measured against)."""
    import copy

    import torch

    m64 = copy.deepcopy(model).double()
    return torch.cat([m64(x[i:i + 128].double()) for i in range(0, x.shape[0], 128)])


def _profile(sizes: list[str], x, args, path: str) -> None:
    """torch.profiler over one forward of each path per size: the CUDA kernels by total time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from kwsbench.models.sedge_eval import scan_eval

    lines = []
    for size in sizes:
        model = _model(size, args.device, args.weights)
        for name, on, settings in (("chunked", False, {}), ("scan", True, {}),
                                   ("scan, whole_k_", True, _VARIANTS["whole_k_"])):
            with torch.no_grad(), scan_eval(on), _settings(settings):
                model(x)
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    model(x)
                    torch.cuda.synchronize()
            table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=70)
            lines += [f"== s-edge-{size}, {name} path, batch {x.shape[0]}", table]
    Path(path).write_text("\n".join(lines))
    print(f"profile written to {path}", flush=True)


def _clips(args):
    import numpy as np
    import torch

    if args.data_dir:
        from kwsbench.data.speech_commands import load_clipset

        audio = load_clipset(args.data_dir).audio
        reps = -(-args.batch // len(audio))  # tile a small folder up to the batch
        return torch.from_numpy(np.concatenate([audio] * reps)[: args.batch]).to(args.device)
    g = torch.Generator().manual_seed(0)
    return (torch.randn(args.batch, 16000, generator=g) * 0.1).to(args.device)


def main(argv=None) -> int:
    args = _args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():  # the default device is cuda
        print(f"error: --device {args.device} (the default is cuda), but torch sees no CUDA device; pass "
              "--device cpu to measure on the CPU", file=sys.stderr)
        return 5  # kwsbench's exit code for a device this machine lacks (`kwsbench run --device cuda`)
    gemm = _gemm_tflops(args.gemm, args.device)
    print(f"fp32 matrix product {args.gemm}^3 (TF32 off): {gemm:.2f} TFLOP/s", flush=True)
    x = _clips(args)
    if args.profile:
        _profile(args.profile_sizes.split(","), x, args, args.profile)
    rows = [one_size(s, x, args, gemm) for s in args.sizes.split(",")]
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": args.device,
           "gemm_tflops": round(gemm, 2), "peak_tflops": args.peak_tflops, "sizes": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
