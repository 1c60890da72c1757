"""What every subcommand parses the same way: one helper each for comma lists, `--models`, `--store` and
`--device`, one help style and one console width policy.

Light on purpose: `kwsbench --help` imports this and every command module, so nothing here (nor at the
top of a command module) may import torch, numpy, the model zoo or the library's heavy modules.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kwsbench.errors import BadInputError
from kwsbench.paths import DEFAULT_STORE, STORE_ENV, default_store

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_DEVICE = "cpu"  # the one --device default: every machine has a CPU; a GPU is asked for by name
PIPE_WIDTH = 200  # piped output (files, CI logs) gets room for a whole table instead of rich's 80 columns
STORE_HELP = f"results store, an SQLite file (default: ${STORE_ENV}, else {DEFAULT_STORE})"


def HelpFormatter(prog: str) -> argparse.HelpFormatter:  # noqa: N802 - argparse's formatter_class slot
    """The help style of every parser (set on all of them by `apply_help_style`): rich-argparse, descriptions and
    epilogs keeping their line breaks. A factory, so rich is imported only when help or usage is printed."""
    from rich_argparse import RawDescriptionRichHelpFormatter

    return RawDescriptionRichHelpFormatter(prog)


def apply_help_style(parser: argparse.ArgumentParser) -> None:
    """One help style for the whole tree: the top-level parser and every (nested) subcommand."""
    parser.formatter_class = HelpFormatter
    for sub in subparsers_of(parser):
        apply_help_style(sub)


def subparsers_of(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The direct subcommand parsers of `parser` (aliases counted once)."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:  # argparse has no public walk over subparsers
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if all(sub is not f for f in found):
                    found.append(sub)
    return found


# --- comma lists ---------------------------------------------------------------------------------
# Converters raise BadInputError (exit 5, as every other bad value), which the CLI catches around parsing too.


def comma_list(text: str, option: str = "the list", hint: str = "") -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']; an empty list is bad input."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BadInputError(f"{option} is empty (got {text!r}): give a comma-separated list{hint}")
    return items


def names(option: str, hint: str = "") -> Callable[[str], list[str]]:
    """argparse `type=` for a comma list of names, errors naming `option` (and `hint`, e.g. where to find names)."""
    return lambda text: comma_list(text, option, hint)


def ints(option: str, unit: str = "", example: str = "16000,8000") -> Callable[[str], list[int]]:
    """argparse `type=` for a comma list of integers, e.g. rates in Hz (their range is the library's to check);
    `example` is what the error suggests instead, so it must be a value of this option."""
    def convert(text: str) -> list[int]:
        items = comma_list(text, option)
        try:
            values = [int(item) for item in items]
        except ValueError:
            raise BadInputError(f"{option} must be comma-separated integers{unit}, got {text!r}; give e.g. "
                                f"{example}") from None
        return values

    return convert


# --- --models ------------------------------------------------------------------------------------


def add_models(parser: argparse.ArgumentParser, default: str) -> None:
    """`--models`: a comma list of names, aliases or shell globs (`'s-edge-*'`); `default` says what none means."""
    parser.add_argument("--models", type=names("--models", "; see `kwsbench models list`"), metavar="LIST",
                        help=f"comma list of model names or globs, e.g. 'nc-ssm,bc-resnet-*' (default: {default})")


# --- --store -------------------------------------------------------------------------------------


def add_store(parser: argparse.ArgumentParser) -> None:
    """`--store PATH`; None means `store_path(None)`, i.e. $KWSBENCH_STORE or runs/kwsbench.sqlite."""
    parser.add_argument("--store", metavar="PATH", help=STORE_HELP)


def store_path(value: str | None) -> Path:
    return Path(value).expanduser() if value else default_store()


# --- --device ------------------------------------------------------------------------------------


def add_selection(parser: argparse.ArgumentParser) -> None:
    """--data / --protocol / --weights / --run: one clip set (leaderboard, compare and report)."""
    parser.add_argument("--data", metavar="NAME", help="data-set name (the data folder's name, or 'embedded "
                        "synthetic') or a clip-set fingerprint prefix (default: every clip set, each on its own)")
    parser.add_argument("--protocol", metavar="P", help="test protocol, e.g. v2-12-official (default: every one)")
    parser.add_argument("--weights", metavar="MANIFEST", help="weights manifest, e.g. nc-ssm, synth, gsc-mini "
                        "(default: every manifest, each on its own)")
    parser.add_argument("--run", type=int, metavar="ID", help="only the cells stored by this run (default: all)")


def selection(args: argparse.Namespace) -> dict:
    """The --data/--protocol/--weights/--run values as keyword arguments of the API."""
    return {k: getattr(args, k) for k in ("data", "protocol", "weights", "run")}


def add_device(parser: argparse.ArgumentParser, from_plan: bool = False) -> None:
    """`--device`; with `from_plan` the default is left to the plan file (whose own default is the same)."""
    if from_plan:
        parser.add_argument("--device", metavar="DEV",
                            help=f"cpu, cuda or cuda:N (default: the plan's device, else {DEFAULT_DEVICE})")
    else:
        parser.add_argument("--device", metavar="DEV", default=DEFAULT_DEVICE,
                            help="cpu, cuda or cuda:N (default: %(default)s)")


# --- console -------------------------------------------------------------------------------------


def console(stderr: bool = False) -> Console:
    """The one width policy: the terminal's width on a terminal, $COLUMNS when set, else PIPE_WIDTH."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if tty or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=stderr, width=width)
