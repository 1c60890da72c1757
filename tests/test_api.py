"""The Python API: the same numbers as the CLI's exports, the CLI's errors with their exit codes, a fast import."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from helpers import TINY_CARDS, RmsNoise, make_clipset, make_plan, tiny_loader

import kwsbench
from kwsbench.cli import main
from kwsbench.errors import EXIT_BAD_INPUT, EXIT_NO_STORE, KwsbenchError, StoreMissingError
from kwsbench.models.registry import registered
from kwsbench.results.leaderboard import TIDY_COLUMNS
from kwsbench.run.runner import run_plan


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    plan = make_plan(tmp_path_factory.mktemp("api"), models=["test-tiny", "test-tiny-fixed"], noise=["white", "hum"],
                     snr=[-5.0, 5.0])
    with registered(*TINY_CARDS):
        run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=10), show_progress=False)
    return plan.store


def _cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_results_frame_equals_the_csv_export(store, capsys):
    frame = kwsbench.results(store=store)
    rows = list(csv.DictReader(io.StringIO(_cli(capsys, "leaderboard", "--format", "csv", "--store", store))))
    assert list(frame.columns) == list(rows[0]) == list(TIDY_COLUMNS)
    assert len(frame) == len(rows) == 2 * 5
    for (_, got), want in zip(frame.iterrows(), rows, strict=True):
        for col in TIDY_COLUMNS:
            value = got[col]
            if want[col] == "":
                assert value is None or value == "" or value != value, col  # empty CSV cell: None, "" or NaN
            elif isinstance(value, float):
                assert float(value) == pytest.approx(float(want[col]), abs=1e-6), col
            else:
                assert str(value) == want[col], col


def test_results_frame_equals_the_json_export(store, capsys):
    frame = kwsbench.results(store=store)
    exported = json.loads(_cli(capsys, "leaderboard", "--format", "json", "--store", store))
    keys = ("data", "fingerprint", "weights", "model", "noise", "rate_hz", "seed", "n", "accuracy_pct",
            "wilson_low_pct", "wilson_high_pct", "rank_group")
    assert [{k: r[k] for k in keys} for r in frame.to_dict("records")] == [{k: r[k] for k in keys} for r in exported]


def test_filters_and_model_globs(store):
    frame = kwsbench.results(store=store, noise="white", snr_db=-5.0)
    assert set(frame["noise"]) == {"white"} and set(frame["snr_db"]) == {-5.0} and len(frame) == 2
    assert set(kwsbench.results(store=store, models="*-fixed")["model"]) == {"test-tiny-fixed"}
    with pytest.raises(KwsbenchError) as err:
        kwsbench.results(store=store, colour="red")
    assert err.value.exit_code == EXIT_BAD_INPUT and "colour" in str(err.value)


def test_models_that_pick_no_stored_model_raise_instead_of_an_empty_frame(store):
    """`models=` once filtered stored names by glob alone: a typo gave an empty frame (and `leaderboard --models`
    an empty table with exit 0), while the report refused it. All three now share one rule."""
    for models in ("nope", "zz*", ["test-tiny", "test-tyni"]):
        with pytest.raises(kwsbench.BadInputError) as err:
            kwsbench.results(store=store, models=models)
        assert err.value.exit_code == EXIT_BAD_INPUT and "test-tiny, test-tiny-fixed" in str(err.value)
    assert set(kwsbench.results(store=store, models=["test-tiny"])["model"]) == {"test-tiny"}  # exact, not a prefix


def test_a_registry_alias_picks_its_stored_model(tmp_path):
    plan = make_plan(tmp_path, models=["ds-cnn-s"], noise=[], snr=[])  # a packaged card with aliases
    run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=2), show_progress=False)
    assert set(kwsbench.results(store=plan.store, models="ds-cnn-s-ncssm")["model"]) == {"ds-cnn-s"}


def test_the_errors_the_api_raises_are_importable_from_the_package():
    """The README tells a notebook to catch KwsbenchError / StoreMissingError: `kwsbench.X` must name them."""
    from kwsbench import errors

    for name in ("KwsbenchError", "StoreMissingError", "BadInputError", "CheckpointError", "StoreError"):
        assert getattr(kwsbench, name) is getattr(errors, name) and name in dir(kwsbench)
    assert issubclass(kwsbench.StoreMissingError, kwsbench.KwsbenchError)


def test_cost_refuses_rates_a_run_refuses(capsys):
    for rates in ([12345], [0], [16000, -8000]):
        with pytest.raises(kwsbench.BadInputError, match="divide 16000"):
            kwsbench.cost("bc-resnet-1", rates=rates)


def test_missing_store_raises_with_the_cli_exit_code(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSBENCH_STORE", str(tmp_path / "absent.sqlite"))
    with pytest.raises(StoreMissingError) as err:
        kwsbench.results()
    assert err.value.exit_code == EXIT_NO_STORE and "absent.sqlite" in str(err.value)
    assert not (tmp_path / "absent.sqlite").exists()


def test_store_from_the_environment(store, monkeypatch):
    monkeypatch.setenv("KWSBENCH_STORE", store)
    assert len(kwsbench.results()) == 10


def test_cost_is_the_cli_cost(capsys):
    records = kwsbench.cost("s-edge-tiny", rates=[16000, 8000])
    exported = json.loads(_cli(capsys, "cost", "--models", "s-edge-tiny", "--rates", "16000,8000", "--format",
                               "json"))
    # the CLI adds where each row runs (a model that cannot change rate runs band-limited at its own rate)
    assert [r.as_dict() for r in records] == [{k: v for k, v in e.items() if k not in ("runs_at_hz", "band_limited")}
                                              for e in exported]
    assert [e["runs_at_hz"] for e in exported] == [16000, 8000]  # S-Edge changes rate
    from kwsbench import cost as cost_module  # the module of the same name stays importable

    assert callable(cost_module.conv_macs) and kwsbench.cost is cost_module


def test_plan_has_the_cli_defaults():
    quick = kwsbench.plan(quick=True)
    assert quick.weights == "synth" and quick.noise == ["factory"] and quick.snr == [0.0] and quick.per_class == 20


def test_plan_refuses_what_the_run_would():
    """kwsbench.plan() 'shows the plan it would run': it returned a plan of an unknown model and noise."""
    for fields, says in ((dict(models=["nope"]), "unknown model 'nope'"),
                         (dict(models=["nc-ssm"], noise=["factroy"]), "unknown noise source 'factroy'")):
        with pytest.raises(kwsbench.BadInputError, match=says):
            kwsbench.plan(**fields)


def test_import_is_light():
    code = ("import sys, kwsbench; kwsbench.__version__; "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_leaderboard_takes_cost_from_the_cache_without_torch(tmp_path):
    """Packaged models' params / MACs come from the on-disk cost cache: the second leaderboard imports neither
    torch, scipy nor pandas (numpy it needs for the rank groups), and prints the same table as the first."""
    plan = make_plan(tmp_path, models=["bc-resnet-1", "ds-cnn-s"], noise=["white"], snr=[0.0])  # packaged cards
    run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=2), show_progress=False)
    copy = plan.store
    argv = ["leaderboard", "--format", "csv", "--store", str(copy)]
    code = ("import contextlib, io, sys; from kwsbench.cli import main; out = io.StringIO()\n"
            f"with contextlib.redirect_stdout(out): rc = main({argv!r})\n"
            "print(rc, sorted(m for m in ('torch', 'scipy', 'pandas') if m in sys.modules)); print(out.getvalue())")
    env = {**__import__("os").environ, "KWSBENCH_CACHE": str(tmp_path / "cache")}
    first, second = (subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                    check=True).stdout.split("\n", 1) for _ in range(2))
    assert first[0].startswith("0 ") and "torch" in first[0]  # counted: the model zoo was loaded
    assert second[0] == "0 []" and second[1] == first[1]
    rows = list(csv.DictReader(io.StringIO(second[1])))
    fresh = kwsbench.cost("bc-resnet-1", rates=[16000])[0]
    assert {(r["params"], r["macs"]) for r in rows if r["model"] == "bc-resnet-1"} == {
        (str(fresh.trainable_params), str(fresh.total_macs))}


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    """The README's notebook example (also run from the installed wheel by tests/wheel_smoke.py) on a store that
    holds an nc-ssm model, as the main job's does (a pattern that picks no stored model is an error)."""
    from wheel_smoke import readme_api_example

    plan = make_plan(tmp_path, models=["nc-ssm", "test-tiny"], noise=["white"], snr=[0.0])
    with registered(*TINY_CARDS):
        run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=2), show_progress=False)
    monkeypatch.setenv("KWSBENCH_STORE", plan.store)
    exec(compile(readme_api_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "test-tiny" in out and "nc-ssm" in out
