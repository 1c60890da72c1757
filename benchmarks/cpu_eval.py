#!/usr/bin/env python
"""CPU evaluation of the public checkpoints on real clips: clips/s per model and a roofline line (achieved GFLOP/s
against this machine's measured fp32 matrix-product rate), clean forward with the front end; and, side by side in
the same process on the same clips, what each inference lever brings per model against the reference path.

    KWSBENCH_SHARED=../shared python benchmarks/cpu_eval.py --data-dir ../shared/data/gsc_v2_test_dev
    python benchmarks/cpu_eval.py --data-dir ../shared/data/gsc_v2_test_dev --models mamba-kws,centaurus-kws \\
        --weights synth --levers scan-steps,centaurus-pieces

Passes alternate over the models and, inside a model, over its paths (`--passes`, medians reported, with the
slowest and fastest pass beside each model's rate), so a shared machine's load falls on all of them alike; the
load average is printed. Rate = 2 FLOP per MAC of `kwsbench cost`
(front end included). The correct count is printed beside the authors' own code's count on the same clips
(tests/test_ports_parity.py). The authors' evaluation code itself is not in this repository or in ../shared, so no
side-by-side with it.

Levers (`--levers`; each against the path the run takes, on the same clips, predictions compared clip by clip):
- conv-fast: the convolutional cards' CPU inference path (BatchNorm folded into the convolutions, NHWC
  activations, in-place ReLU; kwsbench/models/conv_inference.py) against their reference forward;
- scan-steps / scan-chunked: mamba-kws' selective scan frame by frame (the CPU inference path) or chunked
  (the previous CPU path, still the training and GPU path), kwsbench/models/mamba.py;
- centaurus-pieces: Centaurus' full-layer spectral product a few clips at a time, one-channel layers without the
  sum, pooling by reshape (the CPU inference path) against the previous code, kwsbench/models/centaurus.py;
- ncssm-frames: the NC-SSM / NanoMamba CPU inference path (selective scan frame by frame in cache-sized buffers,
  noise tracker without `where`, EMA smoother with its products hoisted) against the previous path (materialised
  scan, `where` tracker, previous smoother), kwsbench/models/ncssm.py;
- snr-time-major: NC-SSM's running SNR estimator at CPU inference on its tracker's time-major output, in place
  (kwsbench/models/ncssm.py, `RunningSNREstimator._cpu_inference`) against the previous (B, bins, T) view;
- lanes: the clips in --threads lanes, one thread each (how `kwsbench run` evaluates one model of the cards with
  cpu_lanes on a CPU, kwsbench/run/lanes.py) against one forward at a time on all --threads threads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

PUBLIC = ("ds-cnn-s", "bc-resnet-1-ncssm", "nc-ssm", "nc-ssm-12k", "nc-ssm-15k", "nc-ssm-20k", "nc-ssm-large",
          "nc-ssm-matched", "nanomamba-tiny", "nanomamba-tiny-final", "nanomamba-small", "kwt-1")
AUTHORS_CORRECT = {"ds-cnn-s": 2251, "bc-resnet-1-ncssm": 2174, "nc-ssm": 2192, "nc-ssm-20k": 2264}


def matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n x n product with torch's threads (the machine's arithmetic roof)."""
    import torch

    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


# -- levers: (name, applies to this module?, context that puts the module on the lever's path) ------------------

@contextlib.contextmanager
def _conv_reference(model) -> Iterator[Callable]:
    from kwsbench.models.conv_inference import reference_path

    with reference_path():
        yield model


@contextlib.contextmanager
def _scan(model, method: str) -> Iterator[Callable]:
    import kwsbench.models.mamba as mamba

    plain = mamba.selective_scan
    mamba.selective_scan = lambda *a, **kw: plain(*a, **{**kw, "method": method})
    try:
        yield model
    finally:
        mamba.selective_scan = plain


def _previous_full_conv(u, k=None, kf=None):
    """CentaurusSSM._full_conv before this change (one broadcast product over the whole batch)."""
    import torch

    length = u.shape[-1]
    uf = torch.fft.rfft(u, n=2 * length)
    kf = torch.fft.rfft(k, n=2 * length) if kf is None else kf
    return torch.fft.irfft((uf.unsqueeze(1) * kf.unsqueeze(0)).sum(dim=2), n=2 * length)[..., :length]


def _previous_post(self, y):
    import torch.nn.functional as F

    y = F.relu(self.norm(y))
    return F.avg_pool1d(y, self.pool) if self.pool > 1 else y


@contextlib.contextmanager
def _centaurus_previous(model) -> Iterator[Callable]:
    from kwsbench.models import centaurus

    saved = centaurus.CentaurusSSM._full_conv, centaurus.CentaurusBlock._post
    centaurus.CentaurusSSM._full_conv = staticmethod(_previous_full_conv)
    centaurus.CentaurusBlock._post = _previous_post
    try:
        yield model
    finally:
        centaurus.CentaurusSSM._full_conv = staticmethod(saved[0])
        centaurus.CentaurusBlock._post = saved[1]


def _previous_ema_smoother(x, s):
    """features.ema_smoother before this change (five calls a frame; the same bits as the current one)."""
    import torch

    s = torch.as_tensor(s, dtype=x.dtype, device=x.device).expand_as(x)
    xs, ss = x.movedim(-1, 0).contiguous(), s.movedim(-1, 0).contiguous()
    out = torch.empty_like(xs)
    m = xs[0]
    out[0] = m
    for t in range(1, xs.shape[0]):
        m = (1 - ss[t]) * m + ss[t] * xs[t]
        out[t] = m
    return out.movedim(0, -1)


@contextlib.contextmanager
def _ncssm_previous(model) -> Iterator[Callable]:
    """The NC-SSM / NanoMamba CPU inference path before the frame-by-frame one: the materialised scan (still
    the training and GPU path), the `where` noise tracker (likewise) and the previous EMA smoother."""
    from kwsbench.models import nanomamba, ncssm

    saved = ncssm.selective_scan, ncssm.track_noise, ncssm.ema_smoother
    scan, track = saved[0], saved[1]
    ncssm.selective_scan = nanomamba.selective_scan = lambda *a, **kw: scan(*a, **{**kw, "method": "materialised"})
    ncssm.track_noise = lambda *a, **kw: track(*a, **{**kw, "method": "select"})
    ncssm.ema_smoother = _previous_ema_smoother
    try:
        yield model
    finally:
        ncssm.selective_scan, ncssm.track_noise, ncssm.ema_smoother = saved
        nanomamba.selective_scan = saved[0]


def _previous_snr(self, mag, mel_fb, n0, gamma, beta, rising):
    """RunningSNREstimator's CPU inference before it went time-major: the tracker's output as a (B, bins, T) view."""
    import torch

    from kwsbench.models.ncssm import track_noise

    track = track_noise(mag.movedim(-1, 0).contiguous(), n0, gamma, beta, rising=rising).movedim(0, -1)
    snr = mag / (self.noise_scale.abs() * torch.maximum(track, 0.5 * n0[..., None]) + 1e-8)
    return torch.nan_to_num(torch.tanh(torch.matmul(mel_fb, snr) / 10.0), nan=0.0, posinf=1.0, neginf=0.0)


@contextlib.contextmanager
def _snr_previous(model) -> Iterator[Callable]:
    from kwsbench.models.ncssm import RunningSNREstimator

    saved, RunningSNREstimator._cpu_inference = RunningSNREstimator._cpu_inference, _previous_snr
    try:
        yield model
    finally:
        RunningSNREstimator._cpu_inference = saved


def _has(kind: str) -> Callable:
    def check(model) -> bool:
        return any(type(m).__name__ == kind for m in model.modules())
    return check


def _conv_card(model) -> bool:
    """The cards with a conv_inference path (kwsbench/models/ncssm_cnn.py, bcresnet.py, dscnn.py)."""
    return type(model).__name__ in {"DSCNNS", "BCResNet1NCSSM", "DSCNN", "BCResNet"}


# lever -> (applies?, reference path, lever path, compares lanes: 1 lane against --threads lanes, instead of the
# model's own lanes on both paths)
LEVERS: dict[str, tuple[Callable, Callable, Callable, bool]] = {
    "conv-fast": (_conv_card, _conv_reference, contextlib.nullcontext, False),
    "scan-steps": (_has("MambaMixer"), lambda m: _scan(m, "chunked"), lambda m: _scan(m, "steps"), False),
    "centaurus-pieces": (_has("CentaurusSSM"), _centaurus_previous, contextlib.nullcontext, False),
    "ncssm-frames": (lambda m: _has("NCSpectralSSM")(m) or _has("SpectralAwareSSMv1")(m), _ncssm_previous,
                     contextlib.nullcontext, False),
    "snr-time-major": (_has("RunningSNREstimator"), _snr_previous, contextlib.nullcontext, False),
    "lanes": (lambda m: True, contextlib.nullcontext, contextlib.nullcontext, True),
}


def _logits(model, audio, batch: int, lanes: int):
    """Logits of every clip, in batches, in `lanes` lanes of clips as `kwsbench run` evaluates one model
    (kwsbench/run/lanes.py; 1: one forward at a time on all threads)."""
    import torch

    from kwsbench.run.lanes import run_lanes

    def lane(_index, part, _failed):
        return [model(audio[i:min(i + batch, part.stop)]) for i in range(part.start, part.stop, batch)]

    return torch.cat([x for parts in run_lanes(lane, len(audio), lanes) for x in parts])


def _timed(model, audio, batch: int, lanes: int):
    t = time.perf_counter()
    logits = _logits(model, audio, batch, lanes)
    return time.perf_counter() - t, logits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--models", default=",".join(PUBLIC))
    p.add_argument("--weights", default=None, help="'synth': the project's synth weights (synth:<model>.pt) "
                   "instead of each model's default checkpoint")
    p.add_argument("--levers", default="", help=f"comma list of {', '.join(LEVERS)} (default: none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lanes", type=int, default=None, help="lanes of clips, one thread each (default: as "
                   "`kwsbench run` evaluates one model: --threads for the cards with cpu_lanes, else 1 = one forward "
                   "at a time on all threads)")
    p.add_argument("--batch-size", type=int, default=64, help="clips per forward (per lane)")
    p.add_argument("--passes", type=int, default=3)
    args = p.parse_args(argv)
    from kwsbench.run.allocator import keep_freed_memory

    keep_freed_memory()  # the same allocator setting as the kwsbench command
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from kwsbench.checkpoints import load_model
    from kwsbench.cost import model_cost
    from kwsbench.data.speech_commands import load_clipset
    from kwsbench.models.registry import get_card

    clips = load_clipset(args.data_dir)
    audio = torch.from_numpy(np.ascontiguousarray(clips.audio, dtype=np.float32))
    names = args.models.split(",")
    levers = [x for x in args.levers.split(",") if x]
    unknown = [x for x in levers if x not in LEVERS]
    if unknown:
        p.error(f"unknown lever(s) {', '.join(unknown)}; choose from {', '.join(LEVERS)}")
    models = {n: load_model(n, checkpoint=f"synth:{n}.pt" if args.weights == "synth" else None).module
              for n in names}
    lanes_of = {n: args.lanes or (args.threads if get_card(n).cpu_lanes else 1) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    side: dict[tuple[str, str], dict[str, list[float]]] = {}
    logits_of: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    correct: dict[str, int] = {}
    peaks = [matmul_peak()]
    with torch.inference_mode():
        for m in models.values():
            m(audio[:8])  # warm-up: lazy initialisation is not part of the timing
        for i in range(args.passes):
            for n, m in models.items():
                seconds, logits = _timed(m, audio, args.batch_size, lanes_of[n])
                times[n].append(seconds)
                correct[n] = int((logits.argmax(-1).numpy() == clips.labels).sum())
                for lever in levers:
                    applies, reference, new, compares_lanes = LEVERS[lever]
                    if not applies(m):
                        continue
                    ref_lanes, new_lanes = (1, args.threads) if compares_lanes else (lanes_of[n], lanes_of[n])
                    paths = [("reference", reference, ref_lanes), ("lever", new, new_lanes)]
                    for which, ctx, k in paths if i % 2 == 0 else paths[::-1]:  # alternate which goes first
                        with ctx(m) as model:
                            seconds, logits = _timed(model, audio, args.batch_size, k)
                        side.setdefault((n, lever), {}).setdefault(which, []).append(seconds)
                        logits_of.setdefault((n, lever), {})[which] = logits
            peaks.append(matmul_peak())
    peak = max(peaks)
    print(f"{len(audio)} clips, {args.threads} threads, batch {args.batch_size}, {args.passes} passes; matmul peak "
          f"{peak:.0f} GFLOP/s (1024^3 fp32, best); load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':22} {'lanes':>5} {'clips/s':>8} {'passes':>13} {'M MAC/clip':>10} {'GFLOP/s':>8} "
          f"{'% of peak':>9} correct (authors' code)")
    for n in names:
        card = get_card(n)
        macs = model_cost(card, card.native_rate).total_macs
        rate = len(audio) / statistics.median(times[n])
        spread = f"{len(audio) / max(times[n]):.0f}-{len(audio) / min(times[n]):.0f}"  # slowest-fastest pass
        gflops = 2 * macs * rate / 1e9
        print(f"{n:22} {lanes_of[n]:5} {rate:8.0f} {spread:>13} {macs / 1e6:10.2f} {gflops:8.1f} "
              f"{100 * gflops / peak:8.1f}% {correct[n]} ({AUTHORS_CORRECT.get(n, '-')})")
    if side:
        print(f"\n{'model':22} {'lever':17} {'reference clips/s':>17} {'lever clips/s':>13} {'speed-up':>8}  "
              "predictions; max |logit difference| / max |logit|")
        for (n, lever), t in side.items():
            ref, new = (len(audio) / statistics.median(t[w]) for w in ("reference", "lever"))
            old, lev = logits_of[(n, lever)]["reference"], logits_of[(n, lever)]["lever"]
            flips = int((old.argmax(-1) != lev.argmax(-1)).sum())
            moved = float((lev - old).abs().max() / old.abs().max())
            print(f"{n:22} {lever:17} {ref:17.0f} {new:13.0f} {new / ref:7.2f}x  "
                  f"{'identical' if flips == 0 else f'{flips} of {len(audio)} differ'}; {moved:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
