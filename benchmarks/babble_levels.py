"""Level statistics of the babble sources (the figures in noise/README.md), measured on a clip set.

    python benchmarks/babble_levels.py [--data-dir DIR] [--per-class 40] [--seed 0]

Per source, over every rendered row (unit RMS): talkers per clip (streams, or overlaid clips), the spread of
20 ms frame levels (dB re the clip's RMS: standard deviation and 10th / 50th / 90th percentiles) and the share
of frames more than 20 dB below the clip's RMS (gaps). Continuous babble has a narrow level spread and almost
no gaps; clips of single words laid over each other have both.
"""

from __future__ import annotations

import argparse

import numpy as np

from kwsbench.data.speech_commands import load_clipset
from kwsbench.data.subsets import stratified_subset
from kwsbench.noise import get_source, render
from kwsbench.noise.bank import build_context

SOURCES = ("babble", "babble-tts", "babble-keywords", "babble-synthetic-ncssm")
FRAME = 320  # 20 ms at 16 kHz


def frame_levels(rows: np.ndarray) -> np.ndarray:
    x = rows.astype(np.float64)
    n = x.shape[1] // FRAME
    frames = x[:, : n * FRAME].reshape(len(x), n, FRAME)
    clip_rms2 = np.mean(x**2, axis=1, keepdims=True)
    return 10 * np.log10(np.mean(frames**2, axis=-1) / clip_rms2 + 1e-12)


def stats(name: str, clipset, seed: int) -> dict:
    source = get_source(name)
    ctx, _ = build_context(source, clipset)
    rows, infos = render(source, list(clipset.utterance_ids), seed, ctx, list(clipset.speaker_ids), with_info=True)
    levels = frame_levels(rows)
    talkers = [i.streams or len(i.talkers) for i in infos]
    p10, p50, p90 = np.percentile(levels, [10, 50, 90])
    return {"source": name, "talkers": float(np.mean(talkers)) if any(talkers) else float("nan"),
            "sd_db": float(levels.std()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
            "gaps": float(np.mean(levels < -20.0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", help="Speech Commands folder (default: the embedded synthetic set)")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.data_dir is None:
        from kwsbench.data.synth import ensure_default_dataset

        args.data_dir = ensure_default_dataset()
    clipset = stratified_subset(load_clipset(args.data_dir), args.per_class, args.seed)
    print(f"{len(clipset)} clips of {args.data_dir}, seed {args.seed}")
    print("| source | talkers per clip (mean) | frame level SD (dB) | 10th / 50th / 90th pct (dB re RMS) "
          "| frames < -20 dB |")
    print("|---|---|---|---|---|")
    for name in SOURCES:
        s = stats(name, clipset, args.seed)
        print(f"| `{s['source']}` | {s['talkers']:.1f} | {s['sd_db']:.1f} | "
              f"{s['p10']:.1f} / {s['p50']:.1f} / {s['p90']:.1f} | {100 * s['gaps']:.1f} % |")


if __name__ == "__main__":
    main()
