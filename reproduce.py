#!/usr/bin/env python
"""Published checkpoints vs published tables: a thin entry to `kwsbench reproduce` (same flags and exit codes:
0 rows were judged and none deviates, 1 some row deviates, 2 missing dependency, 3 no checkpoint, 4 no dataset,
9 INCONCLUSIVE: no published row could be judged on this data)."""

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
