"""Leaderboard rows from a store: tidy and wide views, plain CSV numbers."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest
from helpers import stored_cell
from test_run import RmsNoise, _plan, make_clipset, tiny_loader

from kwsbench.cli import main
from kwsbench.errors import EXIT_NO_STORE
from kwsbench.results.leaderboard import TIDY_COLUMNS, leaderboard, tidy_rows, wide_rows
from kwsbench.results.store import Store
from kwsbench.run.runner import run_plan


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    plan = _plan(tmp_path_factory.mktemp("board"), models=["test-tiny", "test-tiny-fixed"], noise=["white", "hum"],
                 snr=[-5.0, 5.0])
    run_plan(plan, loader=tiny_loader, noise=RmsNoise(), clipset=make_clipset(per_class=10), show_progress=False)
    return plan.store


def test_tidy_csv_has_columns_and_plain_numbers(store_path, capsys):
    path = store_path
    assert main(["leaderboard", "--format", "csv", "--store", path]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == TIDY_COLUMNS and len(rows) == 2 * 5
    for r in rows:
        assert r["n"] == "120" and "," not in r["accuracy"] and "e" not in r["accuracy"]
        assert float(r["ci_low"]) <= float(r["accuracy"]) <= float(r["ci_high"])
    with Store(path) as st:
        by_key = {(c.model, c.noise, c.snr_db): c.accuracy for c in st.cells()}
    for r in rows:
        snr = float(r["snr_db"]) if r["snr_db"] else None
        assert abs(float(r["accuracy"]) - by_key[(r["model"], r["noise"], snr)]) < 1e-6


def test_wide_view_means_and_rank(store_path):
    with Store(store_path) as st:
        cells = st.cells()
    tidy = tidy_rows(cells, with_cost=False)
    wide = wide_rows(tidy)
    assert len(wide) == 2
    for w in wide:
        mine = [t for t in tidy if t.model == w["model"]]
        white = [t.accuracy for t in mine if t.noise == "white"]
        noisy = [t.accuracy for t in mine if t.noise != "clean"]
        assert abs(w["white"] - sum(white) / len(white)) < 1e-12
        assert abs(w["mean_noisy"] - sum(noisy) / len(noisy)) < 1e-12
    best = max(wide, key=lambda w: w["mean_noisy"])
    assert best["rank"] == 1 and sorted(w["rank"] for w in wide) == [1, 2]


def test_md_and_json_and_out_file(store_path, tmp_path):
    path = store_path
    with Store(path) as st:
        cells = st.cells()
    md = leaderboard(cells, fmt="md", wide=True, with_cost=False)
    assert md.startswith("| model |") and md.count("\n") == 4
    data = json.loads(leaderboard(cells, fmt="json", with_cost=False))
    assert len(data) == 10 and {"params", "macs"} <= set(data[0])
    out = tmp_path / "board.md"
    assert main(["leaderboard", "--store", path, "--wide", "--out", str(out)]) == 0
    assert out.read_text().startswith("| model |")


def test_missing_store_is_its_own_exit_code_and_names_the_path(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    for command in (["leaderboard"], ["compare", "nc-ssm", "bc-resnet-1"], ["report", "--out", str(tmp_path / "r")]):
        assert main([*command, "--store", str(missing)]) == EXIT_NO_STORE
        assert str(missing) in capsys.readouterr().err
        assert not missing.exists()  # reading never creates an empty store


def test_cost_columns_come_from_model_cost():
    from kwsbench.cost import Cost
    from kwsbench.models.registry import ModelCard, register

    def cost(card, rate):
        return Cost(model=card.name, rate=rate, trainable_params=1234, inference_params=1200, folded="",
                    frontend_macs=rate * 10, body_macs=1000)

    register(ModelCard(name="test-costed", family="test", builder=lambda: None, cost=cost))
    cell = stored_cell(model="test-costed", protocol="p", rate_hz=8000, n=10, accuracy=0.5, ci_low=0.2, ci_high=0.8)
    [row] = tidy_rows([cell])
    assert (row.params, row.macs) == (1234, 8000 * 10 + 1000)
    [row] = tidy_rows([dataclasses.replace(cell, model="test-tiny")])  # no cost function: empty, not an error
    assert (row.params, row.macs) == (None, None)
