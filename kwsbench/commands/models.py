"""`kwsbench models list|show`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from kwsbench.models.registry import ModelCard, all_cards, get_card


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the registered models and their cards")
    sub = p.add_subparsers(dest="models_command", required=True)
    ls = sub.add_parser("list", help="one line per model: family, classes, parameters, which weights exist")
    ls.add_argument("--format", choices=("table", "csv", "json"), default="table",
                    help="table (fits the terminal; names are never cut), csv or json (every card field) "
                    "(default: table)")
    ls.set_defaults(func=_list)
    show = sub.add_parser("show", help="the full card of one model")
    show.add_argument("name")
    show.set_defaults(func=_show)


@dataclass
class ModelRow:
    name: str
    family: str
    params: int  # trainable parameters as the card builds it (its own head)
    native_rate: int
    protocol: str
    num_classes: int
    can_change_rate: bool
    can_stream: bool
    input: str
    checkpoint: str  # the card's default checkpoint ('' when none)
    weights: list[str]  # manifest:id of every checkpoint the manifests have for it
    weights_present: list[str]  # those whose file is here


def _params(card: ModelCard) -> int:
    """The card's stated count, else counted on the built model (the cards of the SSM ports state none)."""
    if card.params is not None:
        return int(card.params)
    return sum(p.numel() for p in card.build().parameters() if p.requires_grad)


def model_rows() -> list[ModelRow]:
    from kwsbench.checkpoints import weights_by_model

    weights = weights_by_model()
    rows = []
    for c in all_cards():
        files = weights.get(c.name, [])
        rows.append(ModelRow(
            name=c.name, family=c.family, params=_params(c), native_rate=c.native_rate, protocol=c.protocol,
            num_classes=c.num_classes, can_change_rate=c.can_change_rate, can_stream=c.can_stream, input=c.input,
            checkpoint=c.checkpoint or "", weights=[f"{w.manifest}:{w.id}" for w in files],
            weights_present=[f"{w.manifest}:{w.id}" for w in files if w.present]))
    return rows


def _weights_cell(row: ModelRow) -> str:
    """Manifest names, one per checkpoint: '*' = the file is not here yet, '!' = it did not learn."""
    from kwsbench.checkpoints import weights_by_model

    marks = []
    for w in weights_by_model().get(row.name, []):
        marks.append(w.manifest + ("" if w.present else "*") + ("" if w.learned else "!"))
    return " ".join(dict.fromkeys(marks)) or "-"


def _list(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.format == "json":
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    if args.format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        fields = list(asdict(rows[0]))
        writer.writerow(fields)
        for r in rows:
            d = asdict(r)
            writer.writerow([" ".join(v) if isinstance(v, list) else v for v in (d[f] for f in fields)])
        sys.stdout.write(buf.getvalue())
        return 0
    console = Console()
    table = Table(title="kwsbench models", title_justify="left", pad_edge=False, box=None, padding=(0, 1))
    table.add_column("name", no_wrap=True, min_width=max(len(r.name) for r in rows))
    table.add_column("family", no_wrap=True)
    table.add_column("classes", justify="right", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("weights", overflow="fold")
    for r in rows:
        table.add_row(r.name, r.family, str(r.num_classes), f"{r.params:,}", _weights_cell(r))
    console.print(table)
    console.print("weights: manifests with a checkpoint for the model (nc-ssm = public, synth = embedded "
                  "synthetic set, gsc-mini = real-speech mini split); * = not imported here yet "
                  "(`kwsbench checkpoints import`), ! = did not learn. `kwsbench models show NAME` for the "
                  "full card, --format csv|json for every field.", highlight=False)
    return 0


def _show(args: argparse.Namespace) -> int:
    c = get_card(args.name)
    console = Console()
    for key in ("name", "family", "aliases", "params", "input", "native_rate", "protocol", "num_classes",
                "can_change_rate", "can_stream", "checkpoint", "kwargs", "source", "description"):
        console.print(f"[bold]{key}[/]: {getattr(c, key)}", highlight=False)
    return 0
