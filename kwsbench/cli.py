"""The `kwsbench` command line: finds the subcommand modules, parses, delegates, maps errors to
exit codes (see kwsbench.errors)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from rich.console import Console
from rich_argparse import RichHelpFormatter

from kwsbench import __version__
from kwsbench.errors import EXIT_USAGE, KwsbenchError
from kwsbench.run.allocator import keep_freed_memory


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kwsbench",
        description="Noise-robust keyword-spotting benchmark.",
        formatter_class=RichHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kwsbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import kwsbench.commands as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"kwsbench.commands.{mod.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    keep_freed_memory()  # large per-batch tensors: reuse them instead of page-faulting them in every batch
    warnings.formatwarning = _one_line  # a user reads "warning: ...", not the source line that raised it
    try:
        return int(args.func(args) or 0)
    except KwsbenchError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; results already stored are kept", file=sys.stderr)
        return 130


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


if __name__ == "__main__":
    raise SystemExit(main())
