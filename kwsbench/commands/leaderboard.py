"""`kwsbench leaderboard`: the stored cells as tidy rows or a wide per-model view."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from kwsbench.results.clipsets import Selection, select
from kwsbench.results.leaderboard import FORMATS, render, store_labels_of, store_rows, wide_rows
from kwsbench.results.store import DEFAULT_STORE, Store


def add_selection_args(p: argparse.ArgumentParser) -> None:
    """--data / --protocol / --weights / --run: pick one clip set (leaderboard, compare and report share them)."""
    p.add_argument("--data", help="data-set name (the data folder's name, or 'embedded synthetic') or a clip-set "
                                  "fingerprint prefix (default: every clip set, each on its own)")
    p.add_argument("--protocol", help="test protocol, e.g. v2-12-official (default: every protocol)")
    p.add_argument("--weights", help="weights manifest, e.g. nc-ssm, synth, gsc-mini (default: every manifest)")
    p.add_argument("--run", type=int, help="only the cells stored by this run id (default: every run)")


def selection_from(args: argparse.Namespace) -> Selection:
    return Selection(data=args.data, protocol=args.protocol, weights=args.weights, run=args.run)


def register(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="results from the store as CSV / Markdown / JSON")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--wide", action="store_true",
                   help="one row per model and clip set: clean, mean over SNRs per noise, mean over every noisy "
                        "condition (empty unless the model has all the conditions of its clip set)")
    p.add_argument("--per-seed", action="store_true",
                   help="one row per stored cell (default: cells differing only in the noise seed are averaged: "
                        "mean, seed SD, 95%% t interval over seeds)")
    p.add_argument("--store", default=str(DEFAULT_STORE), help="results store (default runs/kwsbench.sqlite)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.add_argument("--models", help="comma list of model names to keep")
    add_selection_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kwsbench.errors import StoreError

    if not Path(args.store).is_file():
        raise StoreError(f"no results store at {args.store}: run `kwsbench run` first or pass --store")
    with Store(args.store, read_only=True) as store:
        cells = store.cells()
        if args.models:
            keep = {m.strip() for m in args.models.split(",")}
            cells = [c for c in cells if c.model in keep]
        cells = select(cells, store_labels_of(store, cells), selection_from(args))
        rows = store_rows(store, cells, per_seed=args.per_seed)
    text = render(wide_rows(rows) if args.wide else [asdict(r) for r in rows], args.format)
    if args.out:
        _write(Path(args.out), text)
        print(f"wrote {len(cells)} cells to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _write(path: Path, text: str) -> None:
    from kwsbench.errors import BadInputError

    if not path.parent.is_dir():
        raise BadInputError(f"leaderboard --out {path}: folder {path.parent} does not exist; create it first "
                            "or pass another path")
    if path.is_dir():
        raise BadInputError(f"leaderboard --out {path} is a folder; pass a file path, e.g. {path / 'board.csv'}")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise BadInputError(f"leaderboard --out {path}: cannot write ({err.strerror}); pass a path you can write "
                            "to") from err
