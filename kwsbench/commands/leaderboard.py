"""`kwsbench leaderboard`: the stored cells as tidy rows or a wide per-model view."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kwsbench.results.leaderboard import FORMATS, leaderboard
from kwsbench.results.store import DEFAULT_STORE, Store


def register(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="results from the store as CSV / Markdown / JSON")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--wide", action="store_true", help="one row per model: clean, mean per noise, mean noisy, rank")
    p.add_argument("--store", default=str(DEFAULT_STORE), help="results store (default runs/kwsbench.sqlite)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.add_argument("--models", help="comma list of model names to keep")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kwsbench.errors import StoreError

    if not Path(args.store).is_file():
        raise StoreError(f"no results store at {args.store}: run `kwsbench run` first or pass --store")
    with Store(args.store) as store:
        cells = store.cells()
    if args.models:
        keep = {m.strip() for m in args.models.split(",")}
        cells = [c for c in cells if c["model"] in keep]
    text = leaderboard(cells, fmt=args.format, wide=args.wide)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {len(cells)} cells to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
