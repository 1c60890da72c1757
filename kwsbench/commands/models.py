"""`kwsbench models list|show`."""

from __future__ import annotations

import argparse

from kwsbench.commands.args import console


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the registered models and their cards",
                              description="The registry: one card per model (family, input, rate, protocol, "
                                          "checkpoint).")
    sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="one line per model").set_defaults(func=_list)
    show = sub.add_parser("show", help="the full card of one model")
    show.add_argument("name", help="model name or alias")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from kwsbench.models.registry import all_cards

    table = Table(title="kwsbench models")
    for col in ("name", "family", "params", "published", "input", "rate", "protocol", "checkpoint"):
        table.add_column(col, justify="right" if col in ("params", "published", "rate") else "left")
    for c in all_cards():
        table.add_row(
            c.name, c.family, str(c.counted_params()), "" if c.published_params is None else str(c.published_params),
            c.input, str(c.native_rate), c.protocol, c.checkpoint or "-",
        )
    console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    from kwsbench.models.registry import get_card

    c = get_card(args.name)
    out = console()
    for key in ("name", "family", "aliases", "published_params", "input", "native_rate", "protocol", "num_classes",
                "can_change_rate", "can_stream", "checkpoint", "recipe", "kwargs", "source", "description"):
        out.print(f"[bold]{key}[/]: {getattr(c, key)}", highlight=False)
    out.print(f"[bold]counted_params[/]: {c.counted_params()}", highlight=False)
    return 0
