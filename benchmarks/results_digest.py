#!/usr/bin/env python
"""sha256 over every stored cell of a results store: key, counts and prediction blob. Equal digests =
identical results (used to show a speed change left the numbers alone).

    python benchmarks/results_digest.py runs/kwsbench.sqlite [other.sqlite ...]
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


def main(argv: list[str]) -> int:
    import argparse

    from kwsbench.errors import KwsbenchError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", metavar="STORE", help="results store (SQLite file) to digest")
    args = parser.parse_args(argv)
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
