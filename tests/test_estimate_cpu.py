"""The CPU estimate from the shipped speed table, scaled by a matmul rate measured at start-up."""

from __future__ import annotations

import json

import pytest

from kwsbench import api
from kwsbench.models.registry import get_card
from kwsbench.results.store import Store
from kwsbench.run import estimate as est_mod
from kwsbench.run.runner import select_models


def test_the_speed_table_lists_every_model_of_the_quick_run_so_no_model_is_built():
    plan, _ = api.plan_and_left_out(quick=True)
    table = est_mod.SpeedTable.load()
    assert table is not None and table.matmul_gflops > 0
    missing = [c.name for c in select_models(plan)[0] if c.name not in table.clips_per_s]
    assert missing == []


def test_table_speeds_scale_with_the_measured_matmul_rate(tmp_path, monkeypatch):
    (tmp_path / "t.json").write_text(json.dumps({"matmul_gflops": 50.0, "clips_per_s": {"ds-cnn-s": 500.0}}))
    monkeypatch.setattr(est_mod, "SPEED_TABLE", tmp_path / "t.json")

    def no_macs(card):
        raise AssertionError("a model in the table must not be built for its MACs")

    monkeypatch.setattr(est_mod, "_macs", no_macs)
    card = get_card("ds-cnn-s")
    with Store(tmp_path / "s.sqlite") as store:
        for here, clips_per_s in ((50.0, 500.0), (25.0, 250.0)):  # half the matmul rate: half the speed
            monkeypatch.setattr(est_mod, "matmul_gflops", lambda here=here: here)
            est = est_mod.estimate([card], lambda c: [None] * 2, 240, store, "cpu")
            assert est.from_table == ["ds-cnn-s"] and not est.from_macs
            assert est.seconds == pytest.approx(2 * (240 / clips_per_s + est_mod.CELL_OVERHEAD_S))
            assert f"{here:.0f} GFLOP/s here, 50 there" in est.describe()


def test_a_model_missing_from_the_table_gets_the_tables_mac_rate(tmp_path, monkeypatch):
    (tmp_path / "t.json").write_text(json.dumps({"matmul_gflops": 40.0, "clips_per_s": {"a": 100.0, "b": 300.0},
                                                 "macs": {"a": 2_000_000, "b": 1_000_000}}))
    monkeypatch.setattr(est_mod, "SPEED_TABLE", tmp_path / "t.json")
    monkeypatch.setattr(est_mod, "matmul_gflops", lambda: 20.0)
    card = get_card("ds-cnn-s")
    macs = est_mod._macs(card)
    with Store(tmp_path / "s.sqlite") as store:
        est = est_mod.estimate([card], lambda c: [None], 100, store, "cpu")
    rate = (2e8 + 3e8) / 2 * 0.5  # median MAC/s of the table's models, at half its matmul rate
    assert est.from_macs == ["ds-cnn-s"] and est.mac_rate == pytest.approx(rate)
    assert est.seconds == pytest.approx(100 * macs / rate + est_mod.CELL_OVERHEAD_S)


def test_matmul_rate_is_measured():
    assert 0.1 < est_mod.matmul_gflops(repeats=3) < 1e5
