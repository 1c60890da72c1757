"""`kwsbench reproduce` (= `python reproduce.py`): published checkpoints vs published tables.

Exit codes: 0 rows were judged and none DEVIATES, 1 some row deviates or a cell failed, 2 missing dependency,
3 no checkpoint, 4 no dataset, 5 bad input (e.g. --out not .csv/.md/.json), 9 INCONCLUSIVE (no published row could be
judged on this data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kwsbench.commands.args import add_device, add_models, add_store, console, ints

FULL_SEEDS = (0, 1, 2)  # = kwsbench.run.reproduce.FULL_SEEDS (tests/test_cli.py), kept here so --help stays light
QUICK_HELP = ("the 4 models the NC-SSM authors measured on the test split, clean, on every unknown clip and a "
              "keyword sample (README: Reproduction)")


def register(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="evaluate published checkpoints and compare with published tables",
                              description="Run the published checkpoints and judge each measured cell against the "
                                          "papers' rows: MATCH, WITHIN_CI, DEVIATES, CONSISTENT* / DEVIATES* "
                                          "(bridged to the reported protocol) or NOT_COMPARABLE.")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=QUICK_HELP)
    seeds = ",".join(map(str, FULL_SEEDS))
    mode.add_argument("--full", action="store_true",
                      help=f"clean + 5 NC-SSM noise types x 7 SNRs, each under noise seeds {seeds} (the seed spread "
                           "beside each row)")
    add_models(p, "every model with a published checkpoint")
    p.add_argument("--noise-type", help="noise source when not --full (default: factory-ncssm; none under --quick)")
    p.add_argument("--snr", nargs="+", type=float, default=[0.0], metavar="DB",
                   help="SNRs in dB when not --full (default: 0)")
    p.add_argument("--tol", type=float, default=2.0,
                   help="tolerance in percentage points (default: %(default)s; a row's protocol spread raises it)")
    p.add_argument("--data-dir", help="Speech Commands folder (default: the set `kwsbench data download` fetched)")
    p.add_argument("--noise-dir", help="the Speech Commands _background_noise_ recordings (silence items of a "
                                       "bridged v2-12-all-unknown estimate; default: the downloaded full archive's)")
    p.add_argument("--weights", help="a project checkpoint manifest: judge its weights against the papers' rows")
    p.add_argument("--protocol", help="test protocol (default: detected from the layout)")
    p.add_argument("--seed", type=int, default=0, help="global noise seed (default: %(default)s)")
    p.add_argument("--seeds", type=ints("--seeds", example="0,1,2"), metavar="LIST",
                   help="comma list of noise seeds, e.g. 0,1,2: every noisy condition once per seed; the verdict "
                        f"uses their mean and spread (default: {seeds} under --full, else --seed)")
    p.add_argument("--batch-size", type=int, default=256, help="clips per forward (default: %(default)s)")
    add_device(p)
    add_store(p)
    p.add_argument("--force", action="store_true", help="recompute cells already stored")
    p.add_argument("--baselines", help="folder of baseline YAML files to use instead (default: the packaged "
                                       "baselines/ plus $KWSBENCH_BASELINES)")
    p.add_argument("--all-rows", action="store_true", help="also list NOT_COMPARABLE rows one by one")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="also write the verdict table, seed spread included, to FILE (.csv, .md or .json)")


def run(args: argparse.Namespace) -> int:
    from kwsbench import api
    from kwsbench.commands.args import store_path

    fmt = out_format(args.out) if args.out else None  # a bad --out is refused before any work
    report = api.reproduce(
        models=args.models, data_dir=args.data_dir, protocol=args.protocol, noise_type=args.noise_type,
        snr=args.snr, full=args.full, quick=args.quick, tol=args.tol, seed=args.seed, seeds=args.seeds,
        batch_size=args.batch_size,
        device=args.device, store=str(store_path(args.store)), force=args.force, baselines=args.baselines,
        noise_dir=args.noise_dir, weights=args.weights, show_progress=True,
    )
    print_report(report, args.all_rows)
    if fmt:
        write_verdicts(report, args.out, fmt)
    return report.exit_code()


def out_format(path: Path) -> str:
    from kwsbench.errors import BadInputError

    fmt = {".csv": "csv", ".md": "md", ".json": "json"}.get(path.suffix.lower())
    if fmt is None:
        raise BadInputError(f"reproduce --out {path}: name a .csv, .md or .json file, e.g. {path.with_suffix('.csv')}")
    if not path.parent.is_dir() or path.is_dir():
        raise BadInputError(f"reproduce --out {path}: {path.parent} is not a folder or {path} is one; pass a file "
                            "path in an existing folder")
    return fmt


def write_verdicts(report, path: Path, fmt: str) -> None:
    from kwsbench.errors import BadInputError
    from kwsbench.results.judge import verdict_rows
    from kwsbench.results.leaderboard import render

    try:
        path.write_text(render(verdict_rows(report.comparisons), fmt), encoding="utf-8")
    except OSError as err:
        raise BadInputError(f"reproduce --out {path}: cannot write ({err.strerror}); pass a path you can write "
                            "to") from err
    console().print(f"wrote {len(report.comparisons)} verdict rows to {path}", highlight=False)


def seed_spread_text(v) -> str:
    """'2.10 (SD 0.90, 3 seeds)': the range of the per-seed values; blank with one seed."""
    return "" if v.seeds is None else f"{v.seeds.range:.2f} (SD {v.seeds.sd:.2f}, {v.seeds.n} seeds)"


def tol_text(v) -> str:
    """The tolerance used and, when not --tol, what it came from: (spread) the row's protocol, (seeds) measured."""
    from kwsbench.results.verdicts import NOT_COMPARABLE

    if v.verdict == NOT_COMPARABLE:
        return ""
    basis = "" if v.tol_basis == "--tol" else " (seeds)" if v.tol_basis.startswith("measured") else " (spread)"
    return f"{v.tol:.2f}{basis}"


def print_report(report, all_rows: bool = False) -> None:
    from rich.table import Table

    from kwsbench.errors import EXIT_INCONCLUSIVE, EXIT_OK
    from kwsbench.results.verdicts import NOT_COMPARABLE

    out = console()
    table = Table(title=f"measured ({report.protocol}, {report.clips} clips, {report.data_dir}) vs reported; "
                        "* = bridged estimate of the reported protocol")
    seeded = any(v.seeds for _, v in report.comparisons)
    cols = ("model", "condition", "measured", "95% CI", *(("seed spread",) if seeded else ()), "reported", "Δ", "tol",
            "verdict", "reported protocol / source")
    for col in cols:
        table.add_column(col, justify="right" if col in ("measured", "reported", "Δ", "tol") else "left")
    shown = [(c, v) for c, v in report.comparisons if all_rows or v.verdict != NOT_COMPARABLE
             or v.reported.verification != "U"]
    for _cell, v in shown:  # DEVIATES first (the report is sorted so)
        r = v.reported
        ci = f"{v.ci[0]:.1f}–{v.ci[1]:.1f}" if v.ci else ""
        note = f"{r.protocol} ({r.split}); {r.source}" + (f" — {'; '.join(v.reasons)}" if v.reasons else "")
        if v.estimate is not None and v.estimate.missing:
            note += f" — {', '.join(v.estimate.missing)} term not measured, bounded"
        spread = ((seed_spread_text(v),) if seeded else ())
        table.add_row(r.model, r.condition_label(), f"{v.measured:.2f}", ci, *spread, f"{r.value:.2f}",
                      f"{v.delta:+.2f}", tol_text(v), v.verdict, note)
    out.print(table)
    for protocol, how in report.silence.items():
        out.print(f"silence term of {protocol}: {how}", highlight=False)
    bases = [v.tol_basis for _, v in report.comparisons if v.verdict != NOT_COMPARABLE]
    for line in sorted({f"{v.tol:g} pp: {v.tol_basis}" for _, v in report.comparisons
                        if v.tol_basis.startswith("spread") and v.verdict != NOT_COMPARABLE}):
        out.print(f"tolerance {line}", highlight=False)
    if any(b.startswith("measured") for b in bases):
        out.print("tolerance (seeds): the row's measured seed spread (range of its values over the seeds), larger "
                  "than --tol and the row's own spread", highlight=False)
    if seeded:
        out.print("with a seed spread, 'measured' is the mean over the seeds and its 95% CI the mean of the seeds' "
                  "bounds", highlight=False)
    for model, cond, err in report.failed:
        out.print(f"[red]FAILED[/] {model} | {cond}: {err}", highlight=False)
    out.print(f"{len(report.unmatched)} measured cells have no reported value; {report.seconds:.1f} s", highlight=False)
    for line in report.advice:
        out.print(f"to compare more rows: {line}", highlight=False, soft_wrap=True)
    code = report.exit_code()
    word = {EXIT_OK: "PASS", EXIT_INCONCLUSIVE: "INCONCLUSIVE"}.get(code, "FAIL")
    out.print(f"result: {word} — {report.summary()}", highlight=False, soft_wrap=True)
