"""`kwsbench run`: evaluate a grid of models x conditions into the results store."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from kwsbench.commands.args import add_device, add_models, add_store, console, ints, names
from kwsbench.errors import EXIT_FAILED, EXIT_OK

# Kept here, not imported from kwsbench.run.plan (its typed loader and YAML), so every command's --help starts fast;
# tests/test_cli.py checks they equal the plan's.
RATE_MODES = ("native", "bandlimit")
DECIMATIONS = ("sinc", "drop")
ON_BAD_FILE = ("error", "skip")
PRECISIONS = ("fp32", "tf32", "bf16")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="evaluate models under clean and noisy conditions into the store",
        description="Evaluate a grid of models x noise x SNR x rate into the results store; flags override the "
        "keys of --config. Without --data-dir and --models: the embedded synthetic set with the project's synth "
        "weights, every model whose weights learned (on a CPU also not the ones too slow for it); the run names "
        "what it left out and why, and says how many cells it will compute and roughly how long that takes.")
    add_models(p, "without --data-dir: see above; with it: every model with weights available")
    p.add_argument("--weights", help="a project manifest whose checkpoints to use, e.g. synth or gsc-mini "
                   "(default: the models' own checkpoints; without --data-dir and --models: synth)")
    p.add_argument("--noise", type=names("--noise"), metavar="LIST",
                   help="comma list of noise sources, see `kwsbench noise list` (default: none, clean only; "
                   "with --quick: factory)")
    p.add_argument("--snr", nargs="+", metavar="DB",
                   help="SNRs in dB, e.g. --snr -15 -10 -5 0 5 10 15 (default with --noise: those seven; "
                   "with --quick: 0); needs --noise")
    p.add_argument("--snr-def", choices=("rms", "active"), help="SNR definition (default: rms)")
    p.add_argument("--rates", type=ints("--rates", " in Hz"), metavar="LIST",
                   help="comma list of sample rates in Hz, e.g. 16000,8000,4000 (default: 16000)")
    p.add_argument("--rate-mode", choices=RATE_MODES, help="native (model at the rate) or bandlimit (default: native)")
    p.add_argument("--decimation", choices=DECIMATIONS, help="sinc (anti-aliased) or drop (no filter) (default: sinc)")
    p.add_argument("--data-dir", help="Speech Commands folder (default: the embedded synthetic set)")
    p.add_argument("--protocol", help="test protocol (default: detected from the layout)")
    p.add_argument("--on-bad-file", choices=ON_BAD_FILE, help="a clip that cannot be decoded or holds NaN / inf "
                   "samples: error (stop, naming the file) or skip (leave it out and say how many) (default: error)")
    p.add_argument("--noise-dir", help="your folder of noise recordings and extra noise definitions (*.yaml), "
                   "beside the packaged ones (default: $KWSBENCH_NOISE_DIR)")
    # numbers are checked by the plan's typed loader (exit 5 naming the key), as in a plan file
    p.add_argument("--seed", metavar="INT", help="global noise seed (default: 0)")
    p.add_argument("--seeds", type=ints("--seeds", example="0,1,2"), metavar="LIST",
                   help="comma list of noise seeds, e.g. 0,1,2,3,4: every noisy condition once per seed, each a cell "
                   "of its own; clean runs once (default: --seed alone); a --per-class subset is drawn with the first")
    p.add_argument("--batch-size", metavar="INT", help="clips per forward (default: 256; on a CPU at most 64, "
                   "and fewer for a slow model, so a batch takes about 2 s)")
    add_device(p, from_plan=True)
    p.add_argument("--no-cuda-graphs", action="store_true", help="run each forward eagerly on CUDA (default: "
                   "replay a captured CUDA graph per batch shape, same results, fewer kernel launches)")
    p.add_argument("--precision", choices=PRECISIONS, help="arithmetic of the models' forward: fp32 (the reference, "
                   "same results as a CPU), tf32 (cuDNN/cuBLAS TF32) or bf16 (autocast; front end included, logits "
                   "and scoring in fp32); tf32 and bf16 need --device cuda; recorded in every cell's key, so cells "
                   "of different precisions never mix (default: fp32)")
    p.add_argument("--per-class", metavar="INT", help="class-stratified subset of this many clips per class "
                   "(default: every clip; with --quick: 20)")
    p.add_argument("--config", help="plan YAML; flags override its keys (default: none)")
    p.add_argument("--quick", action="store_true", help="fill in what was not given: factory noise at 0 dB on 20 clips "
                   "per class; a flag or plan key you give is always kept (default: off)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="skip cells already stored (the default)")
    group.add_argument("--force", action="store_true", help="recompute cells even if stored (default: off)")
    add_store(p)
    p.set_defaults(func=_run)


def plan_from_args(args: argparse.Namespace):
    """The plan the flags ask for, and the default models it leaves out (each with why)."""
    from kwsbench import api

    return api.plan_and_left_out(
        args.config, quick=args.quick, models=args.models, noise=args.noise, snr=args.snr, snr_def=args.snr_def,
        rates=args.rates, rate_mode=args.rate_mode, decimation=args.decimation, data_dir=args.data_dir,
        protocol=args.protocol, noise_dir=args.noise_dir, seed=args.seed, seeds=args.seeds, weights=args.weights,
        batch_size=args.batch_size, device=args.device, per_class=args.per_class, store=args.store,
        on_bad_file=args.on_bad_file, force=True if args.force else None,
        cuda_graphs=False if args.no_cuda_graphs else None, precision=args.precision,
    )


def _run(args: argparse.Namespace) -> int:
    from kwsbench import api
    from kwsbench.run import distributed

    plan, left_out = plan_from_args(args)
    # under torchrun (WORLD_SIZE > 1) each rank computes its share of the cells; rank 0 reports
    shard, plan.device = distributed.init_from_env(plan.device)
    if left_out and shard.rank == 0:
        print(f"left out {len(left_out)} models:", file=sys.stderr)
        by_reason: dict[str, list[str]] = {}
        for item in left_out:
            by_reason.setdefault(item.reason, []).append(item.model)
        for reason, models in by_reason.items():  # one line per reason: 29 models without weights are one line
            print(f"  {', '.join(sorted(models))}: {reason}", file=sys.stderr)  # sorted: not the manifest's order
    if left_out and _nothing_left(plan.models, left_out):
        # Every model was left out: the runner would announce them (40 models, 80 cells and "roughly 26 min" for a
        # data folder with no weights here) and then skip them all. Stop here instead.
        distributed.shutdown()
        if shard.rank == 0:
            other = "" if plan.weights else ", or run the project's own with --weights synth or --weights gsc-mini"
            print(f"nothing to run: every model was left out (see the lines above{other})", file=sys.stderr)
        return EXIT_FAILED if shard.rank == 0 else EXIT_OK
    try:
        with interrupt_on_sigterm():
            summary = api.run(plan, shard=shard, show_progress=shard.rank == 0 or not shard.sharded)
    finally:
        distributed.shutdown()
    if shard.rank != 0:
        return EXIT_OK
    _print_results(plan.store, summary.cell_keys)
    print(f"run {summary.run_id}: {summary.computed} cells computed, {summary.reused} reused from the store, "
          f"{len(summary.failed)} failed, {summary.clips} clips, {summary.seconds:.1f} s")
    if summary.ranks:  # a sharded run: how evenly the ranks shared it (each rank's cells and time to its last)
        print("ranks: " + ", ".join(f"{r}: {cells} cells in {seconds:.1f} s"
                                    for r, (cells, seconds) in enumerate(summary.ranks)))
    for warning in summary.warnings:
        print(f"WARNING {warning}", file=sys.stderr)
    if summary.skipped_models:
        names = ", ".join(name for name, _ in summary.skipped_models)
        print(f"skipped {len(summary.skipped_models)} models without weights (train them or import checkpoints; "
              f"`kwsbench checkpoints list`): {names}")
    if summary.skipped_cells:
        print(f"{len(summary.skipped_cells)} cells skipped (model cannot change rate; try --rate-mode bandlimit)")
    for model, cond, err in summary.failed:
        print(f"FAILED {model} | {cond}: {err}", file=sys.stderr)
    if summary.computed + summary.reused == 0 and not summary.failed:
        print("no model had weights available: nothing was evaluated", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if summary.ok else EXIT_FAILED


def _nothing_left(models: list[str] | None, left_out) -> bool:
    """Whether every model the plan would run was left out (no models kept, or a pattern all of whose models are)."""
    if not models:
        return True
    from kwsbench.models.registry import resolve

    gone = {item.model for item in left_out}
    return all(card.name in gone for card in resolve(models))


@contextlib.contextmanager
def interrupt_on_sigterm():
    """SIGTERM (a killed job, a CI time-out) ends the run the way Ctrl-C does: the run is recorded as
    interrupted and the cells stored so far are kept (exit 130)."""
    owner = os.getpid()

    def _raise(signum, frame):
        if os.getpid() != owner:  # a forked worker (noise rendering) ends as it would have without us
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


WIDE_TABLE_CELLS = 48  # above this many cells the run prints accuracy by SNR (one row per model and noise)


def _print_results(store_path: str, cell_keys: list[str]) -> None:
    """The accuracies this run covered (computed or reused): up to WIDE_TABLE_CELLS cells one row each with its
    Wilson 95% interval; a larger grid as one row per model and noise with a column per SNR, as papers
    tabulate it (a 432-cell grid took ~1 s to print as rows and filled ten screens)."""
    from kwsbench.results.store import Store

    wanted = set(cell_keys)
    with Store(store_path) as store:
        cells = [c for c in store.cells() if c.cell_key in wanted]
    if not cells:
        return
    table = _cell_rows(cells) if len(cells) <= WIDE_TABLE_CELLS else _snr_columns(cells)
    console().print(table)


def _varying(cells: list) -> tuple[bool, bool]:
    """Whether the table needs a seed column (several noise seeds) and a precision column (any cell not fp32)."""
    seeds = len({c.seed for c in cells if c.noise != "clean"}) > 1
    return seeds, {c.precision for c in cells} != {"fp32"}


def _cell_rows(cells: list):
    from rich.table import Table

    table = Table(title=f"accuracy (%), {cells[0].protocol}, n = {cells[0].n} clips, Wilson 95% interval")
    seeds, precisions = _varying(cells)
    columns = ("model", "noise", "SNR dB", *(("seed",) if seeds else ()), "rate Hz",
               *(("precision",) if precisions else ()), "accuracy", "95% CI")
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "noise") else "right", no_wrap=True)
    for c in cells:
        snr = "" if c.snr_db is None else f"{c.snr_db:+g} ({c.snr_def})"
        seed = (("" if c.noise == "clean" else str(c.seed)),) if seeds else ()
        table.add_row(c.model, c.noise, snr, *seed, f"{c.rate_hz} {c.rate_mode}",
                      *((c.precision,) if precisions else ()), f"{100 * c.accuracy:.2f}",
                      f"{100 * c.ci_low:.1f}–{100 * c.ci_high:.1f}")
    return table


def _snr_columns(cells: list):
    """One row per (model, noise, seed, rate, precision), in the run's order, a column per SNR, and the model's
    clean accuracy (same rate and precision) in a first column of each of its rows."""
    from rich.table import Table

    seeds, precisions = _varying(cells)
    snrs = sorted({(c.snr_db, c.snr_def) for c in cells if c.snr_db is not None})
    several_defs = len({d for _, d in snrs}) > 1
    snr_label = {s: f"{s[0]:+g}" + (f" {s[1]}" if several_defs else "") for s in snrs}
    has_clean = any(c.snr_db is None for c in cells)
    table = Table(title=f"accuracy (%) by SNR in dB ({', '.join(sorted({d for _, d in snrs})) or '-'}), "
                        f"{cells[0].protocol}, n = {cells[0].n} clips; intervals: `kwsbench leaderboard`")
    lead = ("model", "noise", *(("seed",) if seeds else ()), "rate Hz", *(("precision",) if precisions else ()))
    for col in lead:
        table.add_column(col, justify="left" if col in ("model", "noise") else "right", no_wrap=True)
    value_columns = [*(["clean"] if has_clean else []), *(snr_label[s] for s in snrs)]
    for col in value_columns:
        table.add_column(col, justify="right", no_wrap=True)
    clean: dict[tuple, str] = {}
    rows: dict[tuple, dict] = {}
    for c in cells:
        model_key = (c.model, f"{c.rate_hz} {c.rate_mode}", c.precision)
        if c.snr_db is None:
            clean[model_key] = f"{100 * c.accuracy:.2f}"
            rows.setdefault(model_key, {})  # keeps the model's place; dropped below if it has noisy rows
            continue
        key = (c.model, c.noise, *((str(c.seed),) if seeds else ()), f"{c.rate_hz} {c.rate_mode}",
               *((c.precision,) if precisions else ()))
        rows.setdefault(key, {"model": model_key})[snr_label[(c.snr_db, c.snr_def)]] = f"{100 * c.accuracy:.2f}"
    noisy_models = {v["model"] for v in rows.values() if "model" in v}
    for key, values in rows.items():
        if "model" not in values:  # a clean-only entry: a row of its own unless the model has noisy rows
            if key in noisy_models:
                continue
            model, rate, precision = key
            key = (model, "-", *(("",) if seeds else ()), rate, *((precision,) if precisions else ()))
            values = {"model": (model, rate, precision)}
        values = {**values, "clean": clean.get(values["model"], "")}
        table.add_row(*key, *(values.get(col, "") for col in value_columns))
    return table
