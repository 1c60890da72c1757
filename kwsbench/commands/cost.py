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


def _run(args: argparse.Namespace) -> int:
    from kwsbench import api

    records = cost_rows(api.cost(args.models or "all", args.rates))  # argparse converts the string default too
    skipped = api.models_without_cost(args.models or "all")
    if args.format != "table":
        print(render(records, args.format), end="" if args.format == "csv" else "\n")
    else:
        from rich.table import Table

        table = Table(title="kwsbench cost (MACs per 1-s clip; 1 MAC = multiply + accumulate)")
        for col in ("model", "rate", "params", "inf. params", "front-end MACs", "body MACs", "total MACs",
                    "stream MACs/s", "state", "published / note"):
            left = col in ("model", "published / note")
            # names and numbers are never cut; the last column wraps into what is left
            width = max(len(r.cost.model) for r in records) if col == "model" and records else None
            table.add_column(col, justify="left" if left else "right", no_wrap=col != "published / note",
                             min_width=width, ratio=1 if col == "published / note" else None)
        for row in records:
            r = row.cost
            if row.band_limited:  # the same model at the same rate as its native row: say so, do not repeat it
                table.add_row(r.model, str(row.rate), *["·"] * 7,
                              f"band-limited: runs at {row.runs_at_hz} Hz, costs its {row.runs_at_hz} row")
                continue
            pub = ", ".join(f"{k}={v:,}" for k, v in r.published.items())
            table.add_row(r.model, str(row.rate), f"{r.trainable_params:,}", f"{r.inference_params:,}",
                          f"{r.frontend_macs:,}", f"{r.body_macs:,}", f"{r.total_macs:,}",
                          "-" if r.streaming_macs_per_s is None else f"{r.streaming_macs_per_s:,}",
                          "-" if r.state_size is None else str(r.state_size), pub)
        console().print(table)
    if skipped:
        console(stderr=True).print(f"no cost function yet: {', '.join(skipped)}", highlight=False)
    return 0
