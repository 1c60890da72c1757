"""The `kwsbench` command line: finds the subcommand modules, parses, delegates to kwsbench.api, maps errors
to exit codes (see kwsbench.errors). Starts fast: only argparse, rich-argparse and the command modules'
parsers are imported before a command runs (the commands import the library when they run)."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings

from kwsbench import __version__
from kwsbench.commands.args import apply_help_style
from kwsbench.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECKPOINT,
    EXIT_DATASET,
    EXIT_DOWNLOAD,
    EXIT_FAILED,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EXIT_NO_STORE,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    KwsbenchError,
)
from kwsbench.paths import DEFAULT_STORE

EXAMPLES = """\
  kwsbench run --quick                                   the main job on the embedded synthetic set
  kwsbench run --models nc-ssm,ds-cnn-s --noise babble --snr -5 0 --data-dir ~/gsc
  kwsbench leaderboard --format csv --out board.csv      the stored results as a table
  kwsbench reproduce --quick                             published checkpoints vs published tables
  kwsbench cost --rates 16000,8000,4000                  parameters and MACs per model and rate
  python -c "import kwsbench; print(kwsbench.results().head())"   the results as a DataFrame"""

ENVIRONMENT = f"""\
  KWSBENCH_STORE        results store (default {DEFAULT_STORE} in the working directory)
  KWSBENCH_DATA         data sets (default ~/.local/share/kwsbench/data)
  KWSBENCH_CACHE        decoded clip sets, noise banks (default ~/.cache/kwsbench)
  KWSBENCH_CHECKPOINTS  imported / fetched public checkpoints (default ~/.local/share/kwsbench/checkpoints)
  KWSBENCH_NOISE_DIR    your noise recordings and extra noise definitions (*.yaml), beside the packaged ones
  KWSBENCH_BASELINES    your extra published-result files (*.yaml), beside the packaged ones
  KWSBENCH_MANIFESTS    your extra checkpoint manifests (*.yaml), beside the packaged ones
  KWSBENCH_NOISE_DEFS   a folder that replaces the packaged noise definitions
  KWSBENCH_CPU_WORKERS  models a CPU run evaluates at once, one thread each (default: torch's thread count)
  KWSBENCH_NOISE_WORKERS  processes that render noise banks (default: the usable CPUs, at most 16)
  KWSBENCH_SHARD_DEAL   how torchrun ranks share the cells: cost or round-robin (default cost)
  KWSBENCH_MALLOC       system: keep glibc's allocator defaults (default: freed memory kept in the process)
  KWSBENCH_GIT_COMMIT   the commit recorded with a run when the code is not a git checkout
  KWSBENCH_SHARED       the team's shared data folder (tests; default ../shared)"""

EXIT_CODES = f"""\
  {EXIT_OK}    success
  {EXIT_FAILED}    the job ran but something failed: a failed cell, a DEVIATES verdict
  {EXIT_USAGE}    bad command line, or a missing optional dependency
  {EXIT_CHECKPOINT}    checkpoint missing, wrong sha256, wrong keys, unsafe file
  {EXIT_DATASET}    dataset directory missing or of no known layout
  {EXIT_BAD_INPUT}    bad input: audio file, YAML / plan / recipe, unknown model or noise name
  {EXIT_STORE}    results store damaged, locked, unwritable or of another schema version (left untouched)
  {EXIT_DOWNLOAD}    a download failed or did not verify
  {EXIT_NO_STORE}    no results store at the path looked at
  {EXIT_INCONCLUSIVE}    reproduce: INCONCLUSIVE, no published row could be judged on this data
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); cells already stored are kept"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kwsbench",
        description="Noise-robust keyword-spotting benchmark: accuracy, cost and sample-rate robustness of KWS "
                    "models.",
        epilog=f"examples:\n{EXAMPLES}\n\nenvironment variables:\n{ENVIRONMENT}\n\nexit codes:\n{EXIT_CODES}",
    )
    parser.add_argument("--version", action="version", version=f"kwsbench {__version__}",
                        help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import kwsbench.commands as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_") and mod.name != "args":
            importlib.import_module(f"kwsbench.commands.{mod.name}").register(subparsers)
    apply_help_style(parser)  # after every add_argument: argparse builds a formatter for each, rich is not needed
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # list converters raise KwsbenchError (exit 5) like the library
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        from kwsbench.run.allocator import keep_freed_memory

        keep_freed_memory()  # large per-batch tensors: reuse them instead of page-faulting them in every batch
        warnings.formatwarning = _one_line  # a user reads "warning: ...", not the source line that raised it
        return int(args.func(args) or 0)
    except KwsbenchError as err:
        from kwsbench.commands.args import console

        console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; results already stored are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader stopped early (`kwsbench leaderboard | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_OK


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


if __name__ == "__main__":
    raise SystemExit(main())
