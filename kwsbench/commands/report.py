"""`kwsbench report`: plots and a self-contained HTML report from the results store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kwsbench.results.store import DEFAULT_STORE


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write an offline HTML report (figures, tables, provenance)")
    p.add_argument("--store", default=str(DEFAULT_STORE), help="results store (default runs/kwsbench.sqlite)")
    p.add_argument("--out", default="report", help="output folder (default report/)")
    p.add_argument("--models", help="comma list of model names to include (default: all stored)")
    p.add_argument("--condition", help="NOISE:SNR (or clean) for the per-class, confusion and noisy Pareto "
                                       "figures (default: the noisy condition most models have, nearest 0 dB)")
    p.add_argument("--rate", type=int, help="rate of the SNR, Pareto and per-class figures (default 16000)")
    p.add_argument("--baselines", help="folder of baseline YAML for the verdict table (default baselines/)")
    p.add_argument("--tol", type=float, default=2.0, help="MATCH tolerance in percentage points (default 2.0)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kwsbench.report.html import ReportOptions, build_report

    opts = ReportOptions(
        store=Path(args.store), out=Path(args.out),
        models=[m.strip() for m in args.models.split(",") if m.strip()] if args.models else None,
        condition=args.condition, rate=args.rate, baselines=Path(args.baselines) if args.baselines else None,
        tol=args.tol,
    )
    result = build_report(opts)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {result.index} ({len(result.files)} files, {result.cells} cells in the figures)")
    return 0
