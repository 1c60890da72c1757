#!/usr/bin/env python
"""S-Edge inference rate: clips/s of one eval forward per size, and the share of the arithmetic rate it reaches.

For each size: the time of one forward on a batch of 1-s clips (median of --reps after two warm-ups),
clips/s, and the model's own arithmetic (body MACs of `kwsbench cost`, 2 FLOP per MAC) as TFLOP/s, as a
fraction of a measured fp32 matrix-product rate (an N³ product, TF32 off) and of --peak-tflops (the data
sheet's fp32 rate: 67 TFLOP/s for an H200 SXM). BatchNorm running statistics are drawn at random (seeded),
so the folding the forward does is exercised; weights are the seeded initialisation (the rate does not
depend on them).

    python benchmarks/sedge_gpu.py --batch 1024 --out sedge.json            # on a GPU
    python benchmarks/sedge_gpu.py --device cpu --sizes tiny --batch 4 --gemm 512
"""

from __future__ import annotations

import argparse
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
    return p.parse_args(argv)


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


def _model(size: str, device: str):
    import torch

    from kwsbench.models.sedge import build_sedge

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
    model = _model(size, args.device)
    with torch.no_grad():
        t = _time(lambda: model(x), args.reps, args.device)
    tflops = 2 * macs * x.shape[0] / t / 1e12
    row = {"size": size, "gmac_per_clip": round(macs / 1e9, 4), "batch": x.shape[0], "s": round(t, 5),
           "clips_per_s": round(x.shape[0] / t, 1), "tflops": round(tflops, 3),
           "pct_of_gemm": round(100 * tflops / gemm, 1), "pct_of_peak": round(100 * tflops / args.peak_tflops, 1)}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    args = _args(argv)
    import torch

    gemm = _gemm_tflops(args.gemm, args.device)
    print(f"fp32 matrix product {args.gemm}^3 (TF32 off): {gemm:.2f} TFLOP/s", flush=True)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(args.batch, 16000, generator=g) * 0.1).to(args.device)
    rows = [one_size(s, x, args, gemm) for s in args.sizes.split(",")]
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": args.device,
           "gemm_tflops": round(gemm, 2), "peak_tflops": args.peak_tflops, "sizes": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
