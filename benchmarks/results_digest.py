#!/usr/bin/env python
"""sha256 over every stored cell of a results store: key, counts and prediction blob. Equal digests =
identical results (used to show a speed change left the numbers alone). --diff A B: where two stores' results
differ, per model: cells in both, cells whose predictions differ, predictions that differ, correct counts, the
largest accuracy difference of a cell in percentage points. With --across-precision a cell of A is paired with
the cell of B that differs from it in precision alone (fp32 against `run --precision tf32`, say).

    python benchmarks/results_digest.py runs/kwsbench.sqlite [other.sqlite ...]
    python benchmarks/results_digest.py --diff before.sqlite after.sqlite
    python benchmarks/results_digest.py --diff --across-precision fp32.sqlite tf32.sqlite
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def digest(store: str | Path) -> tuple[str, int]:
    """(sha256 hex, number of cells) over the store's cells sorted by key."""
    from kwsbench.results.store import Store

    h = hashlib.sha256()
    with Store(store, read_only=True) as st:  # a digest never migrates (or creates) the store it reads
        cells = sorted(st.cells(), key=lambda c: c.cell_key)
        for c in cells:
            h.update(f"{c.cell_key} {c.correct} {c.n}".encode())
            h.update(st.predictions(c.cell_key).tobytes())
    return h.hexdigest(), len(cells)


def _precision_free(cell) -> str:
    """The digest of a stored cell's key with its precision set to fp32: equal for cells differing in precision only."""
    from dataclasses import fields, replace

    from kwsbench.results.store import FP32, CellKey

    key = CellKey(**{f.name: getattr(cell, f.name) for f in fields(CellKey)})
    return replace(key, precision=FP32).digest()


def diff(a: str | Path, b: str | Path, across_precision: bool = False) -> dict[str, dict[str, float]]:
    """Per model, over the cells both stores hold (same key, or same key but its precision): cells, cells whose
    predictions differ, predictions that differ, the correct counts of each store and the largest accuracy
    difference of a cell (percentage points)."""
    import numpy as np

    from kwsbench.results.store import Store

    match = _precision_free if across_precision else (lambda c: c.cell_key)
    rows: dict[str, dict[str, float]] = {}
    with Store(a, read_only=True) as sa, Store(b, read_only=True) as sb:
        theirs = {match(c): c for c in sb.cells()}
        for c in sorted(sa.cells(), key=lambda c: c.cell_key):
            other = theirs.get(match(c))
            if other is None or c.status != "ok" or other.status != "ok":
                continue
            flips = int(np.count_nonzero(sa.predictions(c.cell_key) != sb.predictions(other.cell_key)))
            row = rows.setdefault(c.model, {"cells": 0, "cells_differ": 0, "flips": 0, "correct_a": 0, "correct_b": 0,
                                            "max_dpp": 0.0})
            row["cells"] += 1
            row["cells_differ"] += flips > 0
            row["flips"] += flips
            row["correct_a"] += c.correct or 0
            row["correct_b"] += other.correct or 0
            row["max_dpp"] = max(row["max_dpp"], 100 * abs((c.accuracy or 0) - (other.accuracy or 0)))
    return rows


def main(argv: list[str]) -> int:
    import argparse

    from kwsbench.errors import KwsbenchError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", metavar="STORE", help="results store (SQLite file) to digest")
    parser.add_argument("--diff", action="store_true", help="compare two stores cell by cell instead")
    parser.add_argument("--across-precision", action="store_true",
                        help="with --diff, pair cells that differ in precision alone")
    args = parser.parse_args(argv)
    if args.diff:
        if len(args.stores) != 2:
            parser.error("--diff takes two stores")
        try:
            rows = diff(*args.stores, across_precision=args.across_precision)
        except KwsbenchError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
        print(f"{'model':<24} {'cells':>5} {'differ':>6} {'flips':>6} {'correct A':>10} {'correct B':>10} "
              f"{'max |d| pp':>10}")
        for model, r in sorted(rows.items()):
            print(f"{model:<24} {r['cells']:>5} {r['cells_differ']:>6} {r['flips']:>6} "
                  f"{r['correct_a']:>10} {r['correct_b']:>10} {r['max_dpp']:>10.2f}")
        return 0
    for path in args.stores:
        try:
            sha, n = digest(path)
        except KwsbenchError as err:  # a missing or foreign store: kwsbench's message and exit code, no traceback
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
        print(f"{sha} {n} cells {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
