"""`kwsbench models list|show`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import asdict, dataclass

from kwsbench.commands.args import console


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the registered models and their cards",
                              description="The registry: one card per model (family, parameters, input, rate, "
                                          "protocol, checkpoint) and the weights the manifests have for it.")
    sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="one line per model: family, classes, parameters, which weights exist")
    ls.add_argument("--format", choices=("table", "csv", "json"), default="table",
                    help="table (fits the terminal; names are never cut), csv or json (every card field) "
                    "(default: table)")
    ls.set_defaults(func=_list)
    show = sub.add_parser("show", help="the full card of one model")
    show.add_argument("name", help="model name or alias")
    show.set_defaults(func=_show)


@dataclass
class ModelRow:
    name: str
    family: str
    params: int  # parameters counted on the model the card builds (its own head)
    published_params: int | None  # the count its source publishes, where one does
    native_rate: int
    protocol: str
    num_classes: int
    can_change_rate: bool
    can_stream: bool
    input: str
    checkpoint: str  # the card's default checkpoint ('' when none)
    weights: list[str]  # manifest:id of every checkpoint the manifests have for it
    weights_present: list[str]  # those whose file is here


def model_rows() -> list[ModelRow]:
    from kwsbench.checkpoints import weights_by_model
    from kwsbench.models.registry import all_cards

    weights = weights_by_model()
    rows = []
    for c in all_cards():
        files = weights.get(c.name, [])
        rows.append(ModelRow(
            name=c.name, family=c.family, params=c.counted_params(), published_params=c.published_params,
            native_rate=c.native_rate, protocol=c.protocol,
            num_classes=c.num_classes, can_change_rate=c.can_change_rate, can_stream=c.can_stream, input=c.input,
            checkpoint=c.checkpoint or "", weights=[f"{w.manifest}:{w.id}" for w in files],
            weights_present=[f"{w.manifest}:{w.id}" for w in files if w.present]))
    return rows


def _weights_cell(name: str) -> str:
    """Manifest names, one per checkpoint: '*' = the file is not here yet, '!' = it did not learn, '~' = trained and
    measured but not shipped (the manifest's `unshipped` record gives the command that makes it)."""
    from kwsbench.checkpoints import manifests, weights_by_model

    marks = [w.manifest + ("" if w.present else "*") + ("" if w.learned else "!")
             for w in weights_by_model().get(name, [])]
    marks += [f"{m.name}~" for m in manifests().values() for u in m.unshipped if u.model == name]
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
    from rich.table import Table

    table = Table(title="kwsbench models", title_justify="left", pad_edge=False, box=None, padding=(0, 1))
    table.add_column("name", no_wrap=True, min_width=max(len(r.name) for r in rows))
    table.add_column("family", no_wrap=True)
    table.add_column("classes", justify="right", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("weights", overflow="fold")
    for r in rows:
        table.add_row(r.name, r.family, str(r.num_classes), f"{r.params:,}", _weights_cell(r.name))
    out = console()
    out.print(table)
    out.print("weights: manifests with a checkpoint for the model (nc-ssm = public, synth = embedded "
              "synthetic set, gsc-mini = real-speech mini split); * = not imported here yet "
              "(`kwsbench checkpoints import`), ! = did not learn, ~ = trained, not shipped (the manifest's "
              "`unshipped` record has the command). `kwsbench models show NAME` for the full card, --format "
              "csv|json for every field.", highlight=False)
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
