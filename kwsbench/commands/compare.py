"""`kwsbench compare A B`: exact McNemar per shared condition, Benjamini-Hochberg over the grid."""

from __future__ import annotations

import argparse

from kwsbench.commands.args import add_selection, add_store, console, selection, store_path


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="paired exact McNemar tests between two models",
                              description="Exact McNemar test per condition both models were run under, "
                                          "Benjamini-Hochberg over the grid of each clip set; one table per clip "
                                          "set and weights (or the one --data/--protocol/--weights/--run picks).")
    p.add_argument("model_a", help="first model (a stored model name)")
    p.add_argument("model_b", help="second model")
    add_store(p)
    p.add_argument("--alpha", type=float, default=0.05,
                   help="false-discovery rate for Benjamini-Hochberg (default: %(default)s)")
    add_selection(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from kwsbench.models.registry import get_card
    from kwsbench.results.clipsets import Selection
    from kwsbench.results.paired import paired_tests
    from kwsbench.results.store import open_existing

    a, b = get_card(args.model_a).name, get_card(args.model_b).name
    with open_existing(store_path(args.store)) as store:
        tests = paired_tests(store, a, b, args.alpha, Selection(**selection(args)))
    out = console()
    for clip_set in sorted({t.clip_set for t in tests}):
        table = Table(title=f"{a} vs {b} on {clip_set.title()}: exact McNemar, BH q at FDR {args.alpha} (accuracy %)")
        for col in ("noise", "snr_db", "rate", "seed", "n", f"acc {a}", f"acc {b}", "only A", "only B", "p", "q",
                    "sig"):
            table.add_column(col, justify="left" if col == "noise" else "right")
        for t in (t for t in tests if t.clip_set == clip_set):
            c = t.condition
            table.add_row(c["noise"], "" if c["snr_db"] is None else f"{c['snr_db']:g}", str(c["rate_hz"]),
                          str(c["seed"]), str(t.n), f"{100 * t.acc_a:.2f}", f"{100 * t.acc_b:.2f}", str(t.only_a),
                          str(t.only_b), f"{t.p_value:.3g}", f"{t.q_value:.3g}", "*" if t.significant else "")
        out.print(table)
    return 0
