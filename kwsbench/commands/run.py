"""`kwsbench run`: evaluate a grid of models x conditions into the results store."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from kwsbench.errors import EXIT_FAILED, EXIT_OK, BadInputError
from kwsbench.run.plan import (
    DECIMATIONS,
    DEFAULT_SNRS,
    QUICK_DEFAULTS,
    RATE_MODES,
    LeftOut,
    Plan,
    check_noise_and_snr,
    embedded_defaults,
    given_keys,
    resolve_plan,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="evaluate models under clean and noisy conditions into the store",
        description="Evaluate models under clean and noisy conditions into the results store. Without --data-dir "
        "and --models: the embedded synthetic set with the project's synth weights, every model whose weights "
        "learned (on a CPU, also without the ones too slow for it); the run names what it left out and why.")
    p.add_argument("--models", help="comma list, 'all' or globs (default: see above; with --data-dir: every "
                   "model with weights available)")
    p.add_argument("--weights", help="a project manifest whose checkpoints to use, e.g. synth or gsc-mini "
                   "(default: the models' own checkpoints; without --data-dir and --models: synth)")
    p.add_argument("--noise", help="comma list of noise sources, e.g. babble (default: none, clean only; "
                   "see `kwsbench noise list`)")
    p.add_argument("--snr", nargs="+", type=float, help="SNRs in dB, e.g. --snr -15 -10 -5 0 5 10 15 "
                   f"(default with --noise: {' '.join(f'{s:g}' for s in DEFAULT_SNRS)}; needs --noise)")
    p.add_argument("--snr-def", choices=("rms", "active"), help="SNR definition (default: rms)")
    p.add_argument("--rates", help="comma list of sample rates, e.g. 16000,8000,4000 (default: 16000)")
    p.add_argument("--rate-mode", choices=RATE_MODES, help="native (model at the rate) or bandlimit "
                   "(default: native)")
    p.add_argument("--decimation", choices=DECIMATIONS, help="sinc (anti-aliased) or drop (no filter) "
                   "(default: sinc)")
    p.add_argument("--data-dir", help="Speech Commands folder (default: the embedded synthetic set)")
    p.add_argument("--protocol", help="test protocol (default: detected from the layout)")
    p.add_argument("--noise-dir", help="folder of noise recordings (default: $KWSBENCH_NOISE_DIR, then "
                   "noise/recordings/)")
    p.add_argument("--seed", type=int, help="global noise seed (default: 0)")
    p.add_argument("--seeds", help="comma list of noise seeds, e.g. 0,1,2,3,4: every noisy condition once per "
                   "seed, each a cell of its own (default: --seed); a --per-class subset is drawn with the first")
    p.add_argument("--batch-size", type=int, help="clips per forward (default: 256)")
    p.add_argument("--device", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--no-cuda-graphs", action="store_true", help="run each forward eagerly on CUDA (default: "
                   "replay a captured CUDA graph per batch shape, same results, fewer kernel launches)")
    p.add_argument("--per-class", type=int, help="class-stratified subset of this many clips per class "
                   "(default: every clip; --quick: 20)")
    p.add_argument("--config", help="plan YAML (default: none); flags override its keys")
    p.add_argument("--quick", action="store_true", help="fill in what was not given with factory noise at 0 dB "
                   "on 20 clips per class (default: off); a flag you give is always kept")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="skip cells already stored (the default)")
    group.add_argument("--force", action="store_true", help="recompute cells even if stored (default: off)")
    p.add_argument("--store", help="results store (default: runs/kwsbench.sqlite)")
    p.set_defaults(func=_run)


def plan_from_args(args: argparse.Namespace) -> tuple[Plan, list[LeftOut]]:
    """The plan the flags ask for, and the default models it leaves out (with why)."""
    def _list(value):
        return None if value is None else [v.strip() for v in value.split(",") if v.strip()]

    overrides = {
        "models": _list(args.models), "noise": _list(args.noise), "snr": args.snr, "snr_def": args.snr_def,
        "rates": _ints(_list(args.rates), "--rates"), "rate_mode": args.rate_mode, "decimation": args.decimation,
        "data_dir": args.data_dir, "protocol": args.protocol, "noise_dir": args.noise_dir, "seed": args.seed,
        "seeds": _ints(_list(args.seeds), "--seeds"),
        "weights": args.weights, "batch_size": args.batch_size, "device": args.device, "per_class": args.per_class,
        "store": args.store,
        "force": True if args.force else None, "cuda_graphs": False if args.no_cuda_graphs else None,
    }
    plan = resolve_plan(args.config, overrides, defaults=QUICK_DEFAULTS if args.quick else None)
    check_noise_and_snr(plan, given_keys(args.config, overrides))
    return embedded_defaults(plan, quick=args.quick)


def _ints(values: list[str] | None, flag: str) -> list[int] | None:
    if values is None:
        return None
    try:
        return [int(v) for v in values]
    except ValueError:
        raise BadInputError(f"{flag} takes a comma list of integers, got {','.join(values)!r}") from None


def _run(args: argparse.Namespace) -> int:
    from kwsbench.run import distributed
    from kwsbench.run.runner import run_plan

    plan, left_out = plan_from_args(args)
    # under torchrun (WORLD_SIZE > 1) each rank computes its share of the cells; rank 0 reports
    shard, plan.device = distributed.init_from_env(plan.device)
    if left_out and shard.rank == 0:
        print(f"left out {len(left_out)} of the default models (name them with --models to run them):",
              file=sys.stderr)
        for item in left_out:
            print(f"  {item.model}: {item.reason}", file=sys.stderr)
    try:
        with interrupt_on_sigterm():
            summary = run_plan(plan, shard=shard, show_progress=shard.rank == 0 or not shard.sharded)
    finally:
        distributed.shutdown()
    if shard.rank != 0:
        return EXIT_OK
    _print_results(plan.store, summary.cell_keys)
    print(f"run {summary.run_id}: {summary.computed} cells computed, {summary.reused} reused from the store, "
          f"{len(summary.failed)} failed, {summary.clips} clips, {summary.seconds:.1f} s")
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


@contextlib.contextmanager
def interrupt_on_sigterm():
    """SIGTERM (a killed job, a CI timeout) ends the run the way Ctrl-C does: the run is recorded as
    interrupted and the cells stored so far are kept."""
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread (e.g. called from a worker thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_results(store_path: str, cell_keys: list[str]) -> None:
    """The accuracies this run covered (computed or reused), with their Wilson 95% intervals."""
    from rich.console import Console
    from rich.table import Table

    from kwsbench.results.store import Store

    wanted = set(cell_keys)
    with Store(store_path) as store:
        cells = [c for c in store.cells() if c["cell_key"] in wanted]
    if not cells:
        return
    table = Table(title=f"accuracy (%), {cells[0]['protocol']}, n = {cells[0]['n']} clips, Wilson 95% interval")
    seeds = len({c["seed"] for c in cells if c["noise"] != "clean"}) > 1
    for col in ("model", "noise", "SNR dB", *(("seed",) if seeds else ()), "rate Hz", "accuracy", "95% CI"):
        table.add_column(col, justify="left" if col in ("model", "noise") else "right", no_wrap=True)
    for c in cells:
        snr = "" if c["snr_db"] is None else f"{c['snr_db']:+g} ({c['snr_def']})"
        seed = (("" if c["noise"] == "clean" else str(c["seed"]),) if seeds else ())
        table.add_row(c["model"], c["noise"], snr, *seed, f"{c['rate_hz']} {c['rate_mode']}",
                      f"{100 * c['accuracy']:.2f}", f"{100 * c['ci_low']:.1f}–{100 * c['ci_high']:.1f}")
    # piped output (CI logs, files) gets room for the whole table instead of rich's 80-column default
    Console(width=None if sys.stdout.isatty() else 120).print(table)
