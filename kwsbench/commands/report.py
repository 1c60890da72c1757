"""`kwsbench report`: plots and a self-contained HTML report from the results store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kwsbench.commands.args import add_models, add_selection, add_store, selection, store_path


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write an offline HTML report (figures, tables, provenance)",
                              description="A self-contained HTML report from the results store: one section per clip "
                                          "set and weights manifest (or the one --data/--protocol/--weights/--run "
                                          "picks), each with its own figures.")
    add_store(p)
    p.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: %(default)s/)")
    add_models(p, "every stored model; with a list, ranks and rank groups are among the listed models")
    add_selection(p)
    p.add_argument("--condition", help="NOISE:SNR (or clean) for the per-class, confusion and noisy Pareto "
                                       "figures (default: the noisy condition most models have, nearest 0 dB)")
    p.add_argument("--rate", type=int, help="rate of the SNR, Pareto and per-class figures (default: 16000 if "
                                            "stored, else the highest)")
    p.add_argument("--baselines", type=Path, help="folder of baseline YAML for the verdict table (default: the "
                                                  "packaged baselines/ plus $KWSBENCH_BASELINES)")
    p.add_argument("--tol", type=float, default=2.0,
                   help="MATCH tolerance in percentage points (default: %(default)s)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kwsbench.report.html import ReportOptions, build_report
    from kwsbench.results.clipsets import Selection

    opts = ReportOptions(store=store_path(args.store), out=args.out, models=args.models, condition=args.condition,
                         rate=args.rate, baselines=args.baselines, tol=args.tol, selection=Selection(**selection(args)))
    result = build_report(opts)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {result.index} ({len(result.files)} files, {result.cells} cells in the figures)")
    return 0
