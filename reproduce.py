#!/usr/bin/env python
"""Published checkpoints vs published tables: a thin entry to `kwsbench reproduce` (same flags and exit codes:
0 no comparable row deviates, 1 some row deviates, 2 missing dependency, 3 no checkpoint, 4 no dataset)."""

import sys


def main() -> int:
    try:
        from kwsbench.cli import main as cli_main
    except ImportError as err:  # numpy / torch / kwsbench itself missing
        print(f"error: missing dependency: {err}. Install with `pip install -e .`", file=sys.stderr)
        return 2
    return cli_main(["reproduce", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
