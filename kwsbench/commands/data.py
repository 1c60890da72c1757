"""`kwsbench data info|download|synth`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kwsbench.data.download import ARCHIVES, download_dataset
from kwsbench.data.speech_commands import PROTOCOLS, SPLITS, load_clipset
from kwsbench.data.synth import DEFAULT_PER_CLASS, generate


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="inspect, download or synthesise keyword data sets")
    sub = p.add_subparsers(dest="data_command", required=True)

    info = sub.add_parser("info", help="protocol, per-class counts, speakers and fingerprint of a data folder")
    info.add_argument("dir", type=Path)
    info.add_argument("--protocol", choices=PROTOCOLS, help="default: detected from the layout")
    info.add_argument("--split", choices=SPLITS, default="test")
    info.add_argument("--on-bad-file", choices=("error", "skip"), default="error")
    info.add_argument("--no-cache", action="store_true", help="decode again instead of using the clip-set cache")
    info.set_defaults(func=_info)

    dl = sub.add_parser("download", help="fetch an official Speech Commands archive (resumable, sha256-checked)")
    dl.add_argument("name", choices=sorted(ARCHIVES))
    dl.add_argument("--dest", type=Path, help="folder to extract into (default: under the kwsbench data home)")
    dl.add_argument("--url-base", help="mirror serving the same file names (default: the TensorFlow bucket)")
    dl.add_argument("--keep-archive", action="store_true", help="keep the .tar.gz after extraction")
    dl.set_defaults(func=_download)

    syn = sub.add_parser("synth", help="generate the offline synthetic keyword set (espeak-ng)")
    syn.add_argument("--out", type=Path, help="output folder (default: the default set under the data home)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS)
    syn.add_argument("--format", choices=("flac", "wav"), default="flac")
    syn.set_defaults(func=_synth)


def _info(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    cs = load_clipset(args.dir, protocol=args.protocol, split=args.split, on_bad_file=args.on_bad_file,
                      use_cache=not args.no_cache)
    elapsed = time.perf_counter() - t0
    speakers = {s for s in cs.speaker_ids if s}
    table = Table(title=f"{args.dir}")
    table.add_column("class")
    table.add_column("clips", justify="right")
    table.add_column("speakers", justify="right")
    for k, (name, count) in enumerate(cs.class_counts().items()):
        spk = {s for s, lab in zip(cs.speaker_ids, cs.labels, strict=True) if lab == k and s}
        table.add_row(name, str(count), str(len(spk)))
    table.add_row("[bold]total", f"[bold]{len(cs)}", f"[bold]{len(speakers)}")
    console = Console()
    console.print(table)
    for key, value in (("protocol", cs.protocol), ("fingerprint", cs.fingerprint), ("skipped", cs.skipped),
                       ("speakers", len(speakers)), ("loaded in", f"{elapsed:.2f} s")):
        console.print(f"[bold]{key}[/]: {value}", highlight=False)
    return 0


def _download(args: argparse.Namespace) -> int:
    dest = download_dataset(args.name, dest=args.dest, url_base=args.url_base, keep_archive=args.keep_archive)
    Console().print(f"{args.name} ready in {dest}", highlight=False)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from kwsbench.data.synth import ensure_default_dataset

    t0 = time.perf_counter()
    if args.out is None and args.per_class == DEFAULT_PER_CLASS and args.format == "flac":
        out = ensure_default_dataset(seed=args.seed)
    else:
        out = generate(args.out or Path(f"synth-seed{args.seed}"), seed=args.seed, per_class=args.per_class,
                       fmt=args.format)
    Console().print(f"synthetic keyword set in {out} ({time.perf_counter() - t0:.1f} s)", highlight=False)
    return 0
