"""`kwsbench leaderboard`: the stored cells as tidy rows or a wide per-model view."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kwsbench.commands.args import add_models, add_store, store_path

FORMATS = ("csv", "md", "json")  # = kwsbench.results.leaderboard.FORMATS (checked by tests/test_cli.py)


def register(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="results from the store as CSV / Markdown / JSON",
                              description="The stored cells, one row each (the columns of kwsbench.results()), "
                                          "or one row per model with --wide.")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default: %(default)s)")
    p.add_argument("--wide", action="store_true", help="one row per model: clean, mean per noise, mean noisy, rank")
    add_store(p)
    p.add_argument("--out", type=Path, help="write to this file (default: standard output)")
    add_models(p, "every stored model")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kwsbench import api

    text, count = api.leaderboard(store=store_path(args.store), fmt=args.format, wide=args.wide, models=args.models)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {count} cells to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
