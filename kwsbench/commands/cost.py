"""`kwsbench cost [--models ...] [--rates 16000,8000,4000] [--format table|csv|json]`."""

from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kwsbench.commands.args import add_models, console, ints

if TYPE_CHECKING:
    from kwsbench.cost import Cost

DEFAULT_RATES = "16000,8000,4000"  # = kwsbench.api.DEFAULT_RATES
_COLUMNS = ("model", "rate", "runs_at_hz", "band_limited", "trainable_params", "inference_params", "frontend_macs",
            "body_macs", "total_macs", "streaming_macs_per_s", "state_size")


def register(subparsers) -> None:
    p = subparsers.add_parser("cost", help="parameters and MACs per model and input rate",
                              description="Parameters and MACs per one-second clip, counted analytically per layer.")
    add_models(p, "all")
    p.add_argument("--rates", type=ints("--rates", " in Hz"), default=DEFAULT_RATES, metavar="LIST",
                   help="comma list of input rates in Hz (default: %(default)s)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output format (default: %(default)s)")
    p.set_defaults(func=_run)


@dataclass
class CostRow:
    """A model at an input rate: its cost where it runs. A model that cannot change rate runs band-limited
    at its native rate (the audio comes down to the rate and back up), so it costs what its native row does."""

    cost: Cost
    rate: int  # the input rate asked for
    runs_at_hz: int

    @property
    def band_limited(self) -> bool:
        return self.runs_at_hz != self.rate

    def as_dict(self) -> dict:
        return {**self.cost.as_dict(), "rate": self.rate, "runs_at_hz": self.runs_at_hz,
                "band_limited": self.band_limited}


def cost_rows(records: list[Cost]) -> list[CostRow]:
    from kwsbench.models.registry import get_card

    rows = []
    for r in records:
        card = get_card(r.model)
        rows.append(CostRow(r, r.rate, r.rate if card.can_change_rate else card.native_rate))
    return rows


def render(records: list[CostRow], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([r.as_dict() for r in records], indent=2)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*_COLUMNS, "published", "folded"])
    for r in records:
        row = r.as_dict()
        writer.writerow([*(row[c] for c in _COLUMNS), json.dumps(r.cost.published), r.cost.folded])
    return buf.getvalue()


# headers wider than their numbers take two lines ("total MACs" and "body MACs" fit over theirs)
_HEADERS = ("model", "rate", "params", "inf.\nparams", "front-end\nMACs", "body MACs", "total MACs",
            "stream\nMACs/s", "state")
NOTE_MIN = 30  # the note column is kept beside the numbers only where it gets this many characters


def _cells(row: CostRow) -> tuple[list[str], str]:
    """A row's numbers and its note (the published figures, or why a band-limited row repeats nothing)."""
    r = row.cost
    if row.band_limited:  # the same model at the same rate as its native row: say so, do not repeat it
        return [r.model, str(row.rate), *["·"] * 7], f"band-limited: runs at {row.runs_at_hz} Hz, costs its " \
                                                      f"{row.runs_at_hz} row"
    return [r.model, str(row.rate), f"{r.trainable_params:,}", f"{r.inference_params:,}", f"{r.frontend_macs:,}",
            f"{r.body_macs:,}", f"{r.total_macs:,}",
            "-" if r.streaming_macs_per_s is None else f"{r.streaming_macs_per_s:,}",
            "-" if r.state_size is None else str(r.state_size)], ", ".join(f"{k}={v:,}" for k, v in r.published.items())


def print_table(records: list[CostRow]) -> None:
    """Names and numbers are never cut: the notes stand in a last column where the terminal has room for it, else
    as lines under the table; a terminal too narrow even for the numbers gets the table whole (its lines wrap) and
    a hint to use --format csv."""
    from rich.console import Console
    from rich.table import Table

    out = console()
    rows = [_cells(r) for r in records]

    def table(with_notes: bool) -> Table:
        t = Table(title="kwsbench cost (MACs per 1-s clip; 1 MAC = multiply + accumulate)")
        for col in _HEADERS:
            t.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
        if with_notes:
            t.add_column("published / note", ratio=1, min_width=NOTE_MIN)
        for cells, note in rows:
            t.add_row(*cells, *([note] if with_notes else []))
        return t

    numbers = Console(width=10_000, file=io.StringIO()).measure(table(False)).maximum  # unconstrained width
    if out.width >= numbers + NOTE_MIN + 3:
        out.print(table(True))
        return
    if out.width < numbers:  # rich would cut the numbers to fit: print the table whole instead
        console(stderr=True).print(f"(the cost table needs {numbers} columns, the terminal has {out.width}: widen "
                                   "it or use --format csv)", highlight=False, soft_wrap=True)
        out = Console(width=numbers)
    out.print(table(False))
    for cells, note in rows:
        if note:
            out.print(f"  {cells[0]} @ {cells[1]} Hz: {note}", highlight=False, soft_wrap=True)


def _run(args: argparse.Namespace) -> int:
    from kwsbench import api

    records = cost_rows(api.cost(args.models or "all", args.rates))  # argparse converts the string default too
    skipped = api.models_without_cost(args.models or "all")
    if args.format != "table":
        print(render(records, args.format), end="" if args.format == "csv" else "\n")
    else:
        print_table(records)
    if skipped:
        console(stderr=True).print(f"no cost function yet: {', '.join(skipped)}", highlight=False)
    return 0
