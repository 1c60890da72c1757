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
    with Store(args.store, read_only=True) as store:
        cells = store.cells()
    if args.models:
        keep = {m.strip() for m in args.models.split(",")}
        cells = [c for c in cells if c.model in keep]
    text = leaderboard(cells, fmt=args.format, wide=args.wide)
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
