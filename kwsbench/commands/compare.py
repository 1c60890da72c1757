"""`kwsbench compare A B`: exact McNemar per shared condition, Benjamini-Hochberg over the grid."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from kwsbench.results.store import DEFAULT_STORE, Store


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="paired exact McNemar tests between two models")
    p.add_argument("model_a")
    p.add_argument("model_b")
    p.add_argument("--store", default=str(DEFAULT_STORE))
    p.add_argument("--alpha", type=float, default=0.05, help="false-discovery rate for Benjamini-Hochberg")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kwsbench.models.registry import get_card
    from kwsbench.results.paired import paired_tests

    a, b = get_card(args.model_a).name, get_card(args.model_b).name
    with Store(args.store, read_only=True) as store:
        tests = paired_tests(store, a, b, args.alpha)
    table = Table(title=f"{a} vs {b}: exact McNemar, BH q at FDR {args.alpha}")
    for col in ("noise", "snr_db", "rate", "n", f"acc {a}", f"acc {b}", "only A", "only B", "p", "q", "sig"):
        table.add_column(col, justify="left" if col == "noise" else "right")
    for t in tests:
        c = t.condition
        table.add_row(c["noise"], "" if c["snr_db"] is None else f"{c['snr_db']:g}", str(c["rate_hz"]), str(t.n),
                      f"{t.acc_a:.4f}", f"{t.acc_b:.4f}", str(t.only_a), str(t.only_b), f"{t.p_value:.3g}",
                      f"{t.q_value:.3g}", "*" if t.significant else "")
    Console(width=None if sys.stdout.isatty() else 220).print(table)  # no wrapping when piped
    return 0
