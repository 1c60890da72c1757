"""`kwsbench models list|show`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from kwsbench.models.registry import all_cards, get_card


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the registered models and their cards")
    sub = p.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="one line per model").set_defaults(func=_list)
    show = sub.add_parser("show", help="the full card of one model")
    show.add_argument("name")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    table = Table(title="kwsbench models")
    for col in ("name", "family", "params", "input", "rate", "protocol", "checkpoint"):
        table.add_column(col, justify="right" if col in ("params", "rate") else "left")
    for c in all_cards():
        table.add_row(
            c.name, c.family, "" if c.params is None else str(c.params), c.input,
            str(c.native_rate), c.protocol, c.checkpoint or "-",
        )
    Console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    c = get_card(args.name)
    console = Console()
    for key in ("name", "family", "aliases", "params", "input", "native_rate", "protocol", "num_classes",
                "can_change_rate", "can_stream", "checkpoint", "kwargs", "source", "description"):
        console.print(f"[bold]{key}[/]: {getattr(c, key)}", highlight=False)
    return 0
