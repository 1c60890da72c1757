"""`kwsbench data info|download|synth`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

# Kept here (not imported from kwsbench.data, which loads numpy and soundfile) so `--help` starts fast;
# tests/test_cli.py checks they equal the library's.
PROTOCOLS = ("v2-12-official", "v2-12-all-unknown", "v2-35", "v2-10")
SPLITS = ("train", "validation", "test")
ARCHIVES = ("gsc-v2", "gsc-v2-test")
DEFAULT_PER_CLASS = 40


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="inspect, download or synthesise keyword data sets",
                              description="Keyword data sets: describe one, fetch the official archives, or "
                                          "synthesise the embedded set.")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    info = sub.add_parser("info", help="protocol, per-class counts, speakers and fingerprint of a data folder")
    info.add_argument("dir", type=Path, help="Speech Commands-style folder (one sub-folder per class)")
    info.add_argument("--protocol", choices=PROTOCOLS, help="label protocol (default: detected from the layout)")
    info.add_argument("--split", choices=SPLITS, default="test", help="split to load (default: %(default)s)")
    info.add_argument("--on-bad-file", choices=("error", "skip"), default="error",
                      help="an undecodable file stops the load, or is skipped and counted (default: %(default)s)")
    info.add_argument("--no-cache", action="store_true", help="decode again instead of using the clip-set cache")
    info.set_defaults(func=_info)

    dl = sub.add_parser("download", help="fetch an official Speech Commands archive (resumable, sha256-checked)")
    dl.add_argument("name", choices=ARCHIVES, help="archive to fetch")
    dl.add_argument("--dest", type=Path, help="folder to extract into (default: under the kwsbench data home)")
    dl.add_argument("--url-base", help="mirror serving the same file names (default: the TensorFlow bucket)")
    dl.add_argument("--keep-archive", action="store_true", help="keep the .tar.gz after extraction")
    dl.set_defaults(func=_download)

    syn = sub.add_parser("synth", help="generate the offline synthetic keyword set (espeak-ng)")
    syn.add_argument("--out", type=Path, help="output folder (default: the embedded set under the data home; with "
                                              "another --per-class or --format, which would not be that set: "
                                              "./synth-seed<SEED> in the working directory)")
    syn.add_argument("--seed", type=int, default=0, help="seed of voices and prosody (default: %(default)s)")
    syn.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS,
                     help="clips per class (default: %(default)s)")
    syn.add_argument("--format", choices=("flac", "wav"), default="flac", help="audio format (default: %(default)s)")
    syn.set_defaults(func=_synth)


def _info(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from kwsbench.commands.args import console
    from kwsbench.data.speech_commands import load_clipset

    t0 = time.perf_counter()
    cs = load_clipset(args.dir, protocol=args.protocol, split=args.split, on_bad_file=args.on_bad_file,
                      use_cache=not args.no_cache)
    elapsed = time.perf_counter() - t0
    speakers = {s for s in cs.speaker_ids if s}
    table = Table()  # no title: rich wraps a title to the table's width, which cut long paths in two
    table.add_column("class")
    table.add_column("clips", justify="right")
    table.add_column("speakers", justify="right")
    for k, (name, count) in enumerate(cs.class_counts().items()):
        spk = {s for s, lab in zip(cs.speaker_ids, cs.labels, strict=True) if lab == k and s}
        table.add_row(name, str(count), str(len(spk)))
    table.add_row("[bold]total", f"[bold]{len(cs)}", f"[bold]{len(speakers)}")
    out = console()
    out.print(f"[bold]data set[/]: {escape(str(args.dir))}", highlight=False, soft_wrap=True)
    out.print(table)
    for key, value in (("protocol", cs.protocol), ("fingerprint", cs.fingerprint), ("skipped", cs.skipped),
                       ("speakers", len(speakers)), ("loaded in", f"{elapsed:.2f} s")):
        out.print(f"[bold]{key}[/]: {value}", highlight=False)
    return 0


def _download(args: argparse.Namespace) -> int:
    from kwsbench.commands.args import console
    from kwsbench.data.download import download_dataset

    dest = download_dataset(args.name, dest=args.dest, url_base=args.url_base, keep_archive=args.keep_archive)
    console().print(f"{args.name} ready in {dest}", highlight=False)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from kwsbench.commands.args import console
    from kwsbench.data.synth import ensure_default_dataset, generate

    t0 = time.perf_counter()
    if args.out is None and args.per_class == DEFAULT_PER_CLASS and args.format == "flac":
        out = ensure_default_dataset(seed=args.seed)
    else:
        out = generate(args.out or Path(f"synth-seed{args.seed}"), seed=args.seed, per_class=args.per_class,
                       fmt=args.format)
    console().print(f"synthetic keyword set in {Path(out).resolve()} ({time.perf_counter() - t0:.1f} s)",
                    highlight=False, soft_wrap=True)
    return 0
