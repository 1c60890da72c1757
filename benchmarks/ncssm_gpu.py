#!/usr/bin/env python
"""NC-SSM / NanoMamba on a GPU: the Triton selective scan against the materialised path, side by side.

For each card (default: the nine with public weights): one eval forward on a batch of real clips (the first
--batch clips of a Speech Commands folder, clean, and the same clips with white noise at 0 dB drawn from a
seeded generator), timed eagerly and as a replayed CUDA graph (median of --reps after two warm-ups), each path
(`kwsbench/models/ncssm_gpu.py`: kernel; `ncssm.selective_scan(method="materialised")`: the previous GPU path)
alternated on the same inputs; then the logits' largest difference relative to the largest logit, each path's
distance to a float64 forward (materialised), and the clips whose predicted class differs.

    python benchmarks/ncssm_gpu.py --data-dir DEV --out ncssm_gpu.json
    python benchmarks/ncssm_gpu.py --data-dir DEV --models nc-ssm-20k --batch 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

PUBLIC = ("nc-ssm,nc-ssm-12k,nc-ssm-15k,nc-ssm-20k,nc-ssm-large,nc-ssm-matched,"
          "nanomamba-small,nanomamba-tiny,nanomamba-tiny-final")


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="a Speech Commands folder (the first --batch clips)")
    p.add_argument("--models", default=PUBLIC)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out")
    return p.parse_args(argv)


def _sync():
    import torch

    torch.cuda.synchronize()


def _median_time(fn, reps: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _graph(model, x):
    """A CUDA graph of one forward (after warm-ups on a side stream, as torch asks) and its output buffer."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(x)
    return graph, out


def _clips(args):
    import numpy as np
    import torch

    from kwsbench.data.speech_commands import load_clipset

    audio = load_clipset(args.data_dir).audio
    reps = -(-args.batch // len(audio))
    clean = torch.from_numpy(np.concatenate([audio] * reps)[: args.batch]).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    noise = torch.randn(clean.shape, generator=g, device="cuda")
    gain = clean.pow(2).mean(1, keepdim=True).sqrt() / noise.pow(2).mean(1, keepdim=True).sqrt()
    return {"clean": clean, "white_0db": clean + gain * noise}


def one_model(name: str, inputs: dict, reps: int) -> dict:
    import copy

    import torch

    from kwsbench.checkpoints import load_model
    from kwsbench.models.ncssm_gpu import kernel_scan

    model = load_model(name, device="cuda").module.eval()
    row: dict = {"model": name}
    with torch.inference_mode():
        x = inputs["clean"]
        for tag, on in (("materialised", False), ("kernel", True), ("materialised_again", False)):
            with kernel_scan(on):
                row[f"{tag}_eager_ms"] = round(1e3 * _median_time(lambda: model(x), reps), 3)
        for tag, on in (("materialised", False), ("kernel", True)):
            with kernel_scan(on):
                graph, _ = _graph(model, x)
                row[f"{tag}_graph_ms"] = round(1e3 * _median_time(graph.replay, reps), 3)
                del graph
        row["speedup_graph"] = round(row["materialised_graph_ms"] / row["kernel_graph_ms"], 2)
        row["clips_per_s_graph"] = {k: round(x.shape[0] / row[f"{k}_graph_ms"] * 1e3)
                                    for k in ("materialised", "kernel")}
        m64 = copy.deepcopy(model).double()
        for cond, audio in inputs.items():
            with kernel_scan(False):
                old = model(audio)
            with kernel_scan(True):
                new = model(audio)
            exact = torch.cat([m64(audio[i:i + 256].double()) for i in range(0, audio.shape[0], 256)])
            scale = exact.abs().max()
            row[cond] = {"rel_diff": float((new - old).abs().max() / old.abs().max()),
                         "kernel_vs_f64": float((new.double() - exact).abs().max() / scale),
                         "materialised_vs_f64": float((old.double() - exact).abs().max() / scale),
                         "flips": int((new.argmax(1) != old.argmax(1)).sum()), "clips": int(audio.shape[0])}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    args = _args(argv)
    import torch

    if not torch.cuda.is_available():
        print("error: this benchmark compares two GPU paths and torch sees no CUDA device", file=sys.stderr)
        return 5
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    inputs = _clips(args)
    rows = [one_model(name, inputs, args.reps) for name in args.models.split(",")]
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gpu": torch.cuda.get_device_name(),
           "batch": args.batch, "models": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
