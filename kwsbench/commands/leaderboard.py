"""`kwsbench leaderboard`: the stored cells as tidy rows or a wide per-model view."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kwsbench.commands.args import add_models, add_selection, add_store, selection, store_path

FORMATS = ("csv", "md", "json")  # = kwsbench.results.leaderboard.FORMATS (checked by tests/test_cli.py)


def register(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="results from the store as CSV / Markdown / JSON",
                              description="The stored cells, one row each (the columns of kwsbench.results()), "
                                          "or one row per model with --wide.")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default: %(default)s)")
    p.add_argument("--wide", action="store_true",
                   help="one row per model and clip set: clean, mean over SNRs per noise, mean over every noisy "
                        "condition (empty unless the model has all the conditions of its clip set)")
    p.add_argument("--per-seed", action="store_true",
                   help="one row per stored cell (default: cells differing only in the noise seed are one row: "
                        "mean, seed SD, 95%% t interval over seeds)")
    add_store(p)
    p.add_argument("--out", type=Path, help="write to this file (default: standard output)")
    add_models(p, "every stored model; with a list, ranks and rank groups are among the listed models")
    add_selection(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kwsbench import api

    text, count = api.leaderboard(store=store_path(args.store), fmt=args.format, wide=args.wide, models=args.models,
                                  per_seed=args.per_seed, **selection(args))
    if args.out:
        _write(args.out, text)
        print(f"wrote {count} cells to {args.out}", file=sys.stderr)
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
