"""`kwsbench reproduce` (= `python reproduce.py`): published checkpoints vs published tables.

Exit codes: 0 no comparable row DEVIATES, 1 some row deviates or a cell failed, 2 missing dependency,
3 no checkpoint, 4 no dataset.
"""

from __future__ import annotations

import argparse

from kwsbench.commands.args import add_device, add_models, add_store, console

QUICK_HELP = "clean + factory-ncssm 0 dB on a class-stratified subset"


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="evaluate published checkpoints and compare with published tables",
                              description="Run the published checkpoints and judge each measured cell against the "
                                          "papers' rows: MATCH, WITHIN_CI, DEVIATES or NOT_COMPARABLE.")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=QUICK_HELP)
    mode.add_argument("--full", action="store_true", help="clean + 5 NC-SSM noise types x 7 SNRs")
    add_models(p, "every model with a published checkpoint")
    p.add_argument("--noise-type", default="factory-ncssm",
                   help="noise source when not --full (default: %(default)s)")
    p.add_argument("--snr", nargs="+", type=float, default=[0.0], metavar="DB",
                   help="SNRs in dB when not --full (default: 0)")
    p.add_argument("--tol", type=float, default=2.0, help="MATCH tolerance in percentage points (default: %(default)s)")
    p.add_argument("--data-dir", help="Speech Commands folder (default: $KWSBENCH_SHARED/data/gsc_v2_test_dev)")
    p.add_argument("--protocol", help="test protocol (default: detected from the layout)")
    p.add_argument("--seed", type=int, default=0, help="global noise seed (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="clips per forward (default: %(default)s)")
    add_device(p)
    add_store(p)
    p.add_argument("--force", action="store_true", help="recompute cells already stored")
    p.add_argument("--baselines", help="folder of baseline YAML files to use instead (default: the packaged "
                                       "baselines/ plus $KWSBENCH_BASELINES)")
    p.add_argument("--all-rows", action="store_true", help="also list NOT_COMPARABLE rows one by one")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from kwsbench import api
    from kwsbench.commands.args import store_path
    from kwsbench.results.verdicts import NOT_COMPARABLE

    report = api.reproduce(
        models=args.models, data_dir=args.data_dir, protocol=args.protocol, noise_type=args.noise_type,
        snr=args.snr, full=args.full, quick=args.quick, tol=args.tol, seed=args.seed, batch_size=args.batch_size,
        device=args.device, store=str(store_path(args.store)), force=args.force, baselines=args.baselines,
        show_progress=True,
    )
    out = console()
    table = Table(title=f"measured ({report.protocol}, {report.clips} clips) vs reported, tol {args.tol} pp")
    for col in ("model", "condition", "measured", "95% CI", "reported", "Δ", "verdict", "reported protocol / source"):
        table.add_column(col, justify="right" if col in ("measured", "reported", "Δ") else "left")
    shown = [(c, v) for c, v in report.comparisons if args.all_rows or v.verdict != NOT_COMPARABLE
             or v.reported.verification != "U"]
    for _cell, v in shown:
        r = v.reported
        ci = f"{v.ci[0]:.1f}–{v.ci[1]:.1f}" if v.ci else ""
        note = f"{r.protocol} ({r.split}); {r.source}" + (f" — {'; '.join(v.reasons)}" if v.reasons else "")
        table.add_row(r.model, r.condition_label(), f"{v.measured:.2f}", ci, f"{r.value:.2f}", f"{v.delta:+.2f}",
                      v.verdict, note)
    out.print(table)
    counts: dict[str, int] = {}
    for _, v in report.comparisons:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    out.print(f"verdicts: {counts or 'no reported row matches the measured cells'}; "
                  f"{len(report.unmatched)} measured cells have no reported value; {report.seconds:.1f} s")
    for model, cond, err in report.failed:
        out.print(f"[red]FAILED[/] {model} | {cond}: {err}", highlight=False)
    code = report.exit_code()
    out.print("result: " + ("PASS (no comparable row deviates)" if code == 0 else "FAIL"))
    return code
