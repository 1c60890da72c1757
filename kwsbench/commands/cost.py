"""`kwsbench cost [--models ...] [--rates 16000,8000,4000] [--format table|csv|json]`."""

from __future__ import annotations

import argparse
import csv
import io
import json

from rich.console import Console
from rich.table import Table

from kwsbench.cost import Cost, model_cost
from kwsbench.errors import BadInputError
from kwsbench.models.registry import resolve

_COLUMNS = ("model", "rate", "trainable_params", "inference_params", "frontend_macs", "body_macs", "total_macs",
            "streaming_macs_per_s", "state_size")


def register(subparsers) -> None:
    p = subparsers.add_parser("cost", help="parameters and MACs per model and input rate")
    p.add_argument("--models", default="all", help="comma list or globs of model names (default: all)")
    p.add_argument("--rates", default="16000,8000,4000", help="comma list of input rates in Hz")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=_run)


def parse_rates(text: str) -> list[int]:
    try:
        rates = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise BadInputError(f"--rates must be comma-separated integers in Hz, got {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise BadInputError(f"--rates needs positive rates in Hz, got {text!r}")
    return rates


def collect(models: str, rates: list[int]) -> tuple[list[Cost], list[str]]:
    """Cost records for every model with a cost function; the names of those without one."""
    records, skipped = [], []
    for card in resolve(models):
        if card.cost is None:
            skipped.append(card.name)
            continue
        records.extend(model_cost(card, rate) for rate in rates)
    return records, skipped


def render(records: list[Cost], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([r.as_dict() for r in records], indent=2)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*_COLUMNS, "published", "folded"])
    for r in records:
        row = r.as_dict()
        writer.writerow([*(row[c] for c in _COLUMNS), json.dumps(r.published), r.folded])
    return buf.getvalue()


def _run(args: argparse.Namespace) -> int:
    records, skipped = collect(args.models, parse_rates(args.rates))
    console = Console(width=max(Console().width, 180))  # the table is wide; do not squeeze it to 80 columns
    if args.format != "table":
        print(render(records, args.format), end="" if args.format == "csv" else "\n")
    else:
        table = Table(title="kwsbench cost (MACs per 1-s clip; 1 MAC = multiply + accumulate)")
        for col in ("model", "rate", "params", "inf. params", "front-end MACs", "body MACs", "stream MACs/s",
                    "state", "published"):
            left = col in ("model", "published")
            table.add_column(col, justify="left" if left else "right", no_wrap=col != "published")
        for r in records:
            pub = ", ".join(f"{k}={v:,}" for k, v in r.published.items())
            table.add_row(r.model, str(r.rate), f"{r.trainable_params:,}", f"{r.inference_params:,}",
                          f"{r.frontend_macs:,}", f"{r.body_macs:,}",
                          "-" if r.streaming_macs_per_s is None else f"{r.streaming_macs_per_s:,}",
                          "-" if r.state_size is None else str(r.state_size), pub)
        console.print(table)
    if skipped:
        Console(stderr=True).print(f"no cost function yet: {', '.join(skipped)}", highlight=False)
    return 0
