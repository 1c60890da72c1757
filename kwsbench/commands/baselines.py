"""`kwsbench baselines validate|list`: the published tables in baselines/*.yaml."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from kwsbench.errors import EXIT_OK

DIR_HELP = ("folder of baseline YAML files to use instead (default: the packaged baselines/ plus "
            "$KWSBENCH_BASELINES)")


def register(subparsers) -> None:
    p = subparsers.add_parser("baselines", help="published results (baselines/*.yaml)",
                              description="The published results kwsbench compares with, one YAML file per paper.")
    sub = p.add_subparsers(dest="baselines_command", required=True, metavar="ACTION")
    v = sub.add_parser("validate", help="check every baseline file; list rows whose model is not registered")
    v.add_argument("--dir", type=Path, help=DIR_HELP)
    v.set_defaults(func=_validate)
    ls = sub.add_parser("list", help="one line per reported row")
    ls.add_argument("--dir", type=Path, help=DIR_HELP)
    ls.add_argument("--model", help="only rows of this model (default: every model)")
    ls.set_defaults(func=_list)


def _validate(args: argparse.Namespace) -> int:
    from kwsbench.errors import BadInputError
    from kwsbench.models.registry import all_cards
    from kwsbench.results.baselines import baseline_files, baselines_dir, load_baseline_file

    files = baseline_files(args.dir)
    if not files:
        raise BadInputError(f"no baseline files (*.yaml) in {args.dir or baselines_dir()}")
    known = {n for c in all_cards() for n in (c.name, *c.aliases)}
    for f in files:
        rows = load_baseline_file(f)  # raises BadInputError (exit 5) naming the file and row
        unregistered = sorted({r.model for r in rows} - known)
        tags = Counter(r.verification for r in rows)
        print(f"ok  {f.name}: {len(rows)} rows ({', '.join(f'{k} {v}' for k, v in sorted(tags.items()))})")
        if unregistered:
            print(f"    models without a card (compared only once registered): {', '.join(unregistered)}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from kwsbench.results.baselines import load_baselines

    for r in load_baselines(args.dir):
        if args.model and r.model != args.model:
            continue
        print(f"{r.model:28s} {r.protocol:18s} {r.split:10s} {r.condition_label():32s} {r.value:6.2f}  "
              f"[{r.verification}] {r.source}")
    return EXIT_OK
