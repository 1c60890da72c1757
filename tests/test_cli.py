"""One CLI voice: every parser in the help style, every option with help that states its default, the shared
argument helpers, and constants kept beside the parsers (for a fast `--help`) equal to the library's."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from kwsbench import __version__
from kwsbench.cli import build_parser, main
from kwsbench.commands import args as cargs
from kwsbench.errors import EXIT_BAD_INPUT


def _walk(parser: argparse.ArgumentParser, path: str = "kwsbench"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


PARSERS = list(_walk(build_parser()))


def test_the_walk_reaches_every_subcommand():
    names = {path for path, _ in PARSERS}
    assert {"kwsbench run", "kwsbench leaderboard", "kwsbench noise list", "kwsbench checkpoints fetch",
            "kwsbench data synth", "kwsbench reproduce", "kwsbench train"} <= names
    assert len(PARSERS) > 20


@pytest.mark.parametrize("path,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_every_option_has_help_stating_its_default(path, parser):
    assert parser.formatter_class is cargs.HelpFormatter, f"{path}: not in the one help style"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction | argparse._VersionAction):
            continue
        where = f"{path} {'/'.join(action.option_strings) or action.dest}"
        assert action.help and action.help.strip(), f"{where}: no help text"
        has_default = action.default not in (None, False, argparse.SUPPRESS) and not action.required
        if has_default and action.option_strings:
            assert "default" in action.help, f"{where}: default {action.default!r} not stated in its help"


def test_top_level_help_shows_examples_environment_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for needle in ("examples", "kwsbench run --quick", "KWSBENCH_STORE", "KWSBENCH_NOISE_DIR", "exit codes", "130"):
        assert needle in out, needle


def test_every_exit_code_is_in_the_help_and_the_readme(capsys):
    import re
    from pathlib import Path

    from kwsbench import errors

    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out.split("exit codes:")[1]
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("## Exit codes")[1].split("\n## ")[0]
    for code in codes:
        lines = re.findall(rf"^\s*{code}\s", listed, re.M)
        assert len(lines) == 1, f"exit {code} is listed {len(lines)} times in --help, not once"
        assert f"| {code} |" in table, f"exit {code} missing from the README's table"


def test_every_environment_variable_of_the_readme_is_in_the_help(capsys):
    import re
    from pathlib import Path

    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out.split("environment variables:")[1].split("exit codes:")[0]
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("## Environment variables")[1].split("\n## ")[0]
    for name in re.findall(r"^\| `(KWSBENCH_\w+)`", table, re.M):
        assert re.search(rf"^\s*{name}\s", listed, re.M), f"{name} is in the README but not in --help"


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"kwsbench {__version__}"


def test_list_helpers_and_their_errors():
    assert cargs.comma_list(" a, b,,c ") == ["a", "b", "c"]
    assert cargs.ints("--rates")("16000, 8000") == [16000, 8000]
    for bad in ("8k", "1.5", ",,"):
        with pytest.raises(Exception) as err:
            cargs.ints("--rates")(bad)
        assert getattr(err.value, "exit_code", None) == EXIT_BAD_INPUT and "--rates" in str(err.value)


def test_store_helper_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KWSBENCH_STORE", str(tmp_path / "mine.sqlite"))
    assert cargs.store_path(None) == tmp_path / "mine.sqlite"
    assert str(cargs.store_path("other.sqlite")) == "other.sqlite"
    from kwsbench.run.plan import Plan
    from kwsbench.run.reproduce import ReproduceOptions

    assert Plan().store == str(tmp_path / "mine.sqlite") == ReproduceOptions().store


def test_shared_options_come_from_the_helpers():
    """--models, --store and --device mean the same in every subcommand: built by commands/args.py."""
    for path, parser in PARSERS:
        opts = parser._option_string_actions
        if "--store" in opts:
            assert opts["--store"].help == cargs.STORE_HELP, path
        if "--models" in opts:
            assert opts["--models"].metavar == "LIST" and "globs" in opts["--models"].help, path
            assert opts["--models"].type("a, b") == ["a", "b"], path
        if "--device" in opts:
            assert opts["--device"].help.startswith("cpu, cuda or cuda:N"), path


def test_one_device_default():
    from kwsbench.run.plan import Plan
    from kwsbench.run.reproduce import ReproduceOptions

    assert cargs.DEFAULT_DEVICE == Plan().device == ReproduceOptions().device
    options = [p._option_string_actions for _, p in PARSERS]
    devices = {o["--device"].default for o in options if "--device" in o}
    assert devices <= {None, cargs.DEFAULT_DEVICE}  # None: `run` leaves it to the plan, whose default is the same


def test_constants_beside_the_parsers_equal_the_librarys():
    from kwsbench import api
    from kwsbench import checkpoints as ck
    from kwsbench.commands import checkpoints, cost, data, leaderboard, reproduce, run
    from kwsbench.data.download import ARCHIVES
    from kwsbench.data.speech_commands import PROTOCOLS, SPLITS
    from kwsbench.data.synth import DEFAULT_PER_CLASS
    from kwsbench.results.leaderboard import FORMATS
    from kwsbench.run.plan import DECIMATIONS, ON_BAD_FILE, PRECISIONS, RATE_MODES

    assert tuple(data.PROTOCOLS) == tuple(PROTOCOLS) and tuple(data.SPLITS) == tuple(SPLITS)
    assert sorted(data.ARCHIVES) == sorted(ARCHIVES) and data.DEFAULT_PER_CLASS == DEFAULT_PER_CLASS
    assert tuple(leaderboard.FORMATS) == tuple(FORMATS)
    assert (run.RATE_MODES, run.DECIMATIONS, run.ON_BAD_FILE) == (tuple(RATE_MODES), tuple(DECIMATIONS),
                                                                  tuple(ON_BAD_FILE))
    assert run.PRECISIONS == PRECISIONS
    assert checkpoints.URL_BASE == ck.DEFAULT_URL_BASE
    from kwsbench.run.reproduce import FULL_SEEDS

    assert reproduce.FULL_SEEDS == FULL_SEEDS
    assert cargs.ints("--rates")(cost.DEFAULT_RATES) == list(api.DEFAULT_RATES)


def test_parsing_for_help_imports_nothing_heavy():
    """`kwsbench --help` builds every parser: no torch, numpy, pandas or matplotlib may be imported for it."""
    code = ("import sys; from kwsbench.cli import build_parser; build_parser(); import kwsbench; "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'matplotlib', 'scipy', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_list_is_exit_5_not_a_traceback(capsys):
    assert main(["cost", "--rates", "8k"]) == EXIT_BAD_INPUT
    assert "--rates" in capsys.readouterr().err
