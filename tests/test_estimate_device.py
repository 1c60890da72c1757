"""The run's time estimate uses rates of the run's kind of device when the store has no history."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kwsbench.cost import model_cost
from kwsbench.models.registry import get_card
from kwsbench.results.store import Store
from kwsbench.run import estimate as est_mod


@pytest.mark.parametrize("device, rate, overhead", [
    ("cuda", est_mod.GPU_MAC_RATE, est_mod.GPU_CELL_OVERHEAD_S),
    ("cuda:1", est_mod.GPU_MAC_RATE, est_mod.GPU_CELL_OVERHEAD_S),
    ("cpu", est_mod.DEFAULT_MAC_RATE, est_mod.CELL_OVERHEAD_S),
])
def test_estimate_without_history_uses_the_device_kinds_rates(tmp_path, monkeypatch, device, rate, overhead):
    monkeypatch.setattr(est_mod, "SPEED_TABLE", tmp_path / "none.json")  # no speed tables: MACs alone
    monkeypatch.setattr(est_mod, "GPU_SPEED_TABLE", tmp_path / "none.json")
    card = get_card("ds-cnn-s")
    macs = int(model_cost(card, card.native_rate).total_macs)
    with Store(tmp_path / "s.sqlite") as store:
        est = est_mod.estimate([card], lambda c: [None] * 36, 1245, store, device)
    assert est.from_macs == ["ds-cnn-s"] and not est.mac_rate_measured
    assert est.seconds == pytest.approx(36 * (1245 * macs / rate + overhead))


def test_gpu_estimate_of_the_measured_public_grid_is_within_a_factor_two():
    # 12 public models x 36 conditions x 1,245 clips took 9.6 s of grid time on one H200 (README)
    names = ["bc-resnet-1-ncssm", "ds-cnn-s", "kwt-1", "nanomamba-small", "nanomamba-tiny", "nanomamba-tiny-final",
             "nc-ssm", "nc-ssm-12k", "nc-ssm-15k", "nc-ssm-20k", "nc-ssm-large", "nc-ssm-matched"]
    macs = sum(int(model_cost(c, c.native_rate).total_macs) for c in map(get_card, names))
    seconds = 36 * (1245 * macs / est_mod.GPU_MAC_RATE) + 432 * est_mod.GPU_CELL_OVERHEAD_S
    assert 9.6 / 2 < seconds < 9.6 * 2


def test_the_shipped_tables_mac_counts_equal_the_models(monkeypatch):
    # the GPU estimate reads MACs from the CPU speed table instead of building the model: they must be current
    table = est_mod.SpeedTable.load()
    assert table is not None and table.macs
    counted = {m: est_mod._macs(get_card(m)) for m in table.macs}
    assert counted == table.macs


def test_gpu_estimate_builds_no_model_the_table_counts(tmp_path, monkeypatch):
    def no_build(card):
        raise AssertionError(f"{card.name} was built for its MACs although the table lists them")

    monkeypatch.setattr(est_mod, "_macs", no_build)
    monkeypatch.setattr(est_mod, "GPU_SPEED_TABLE", tmp_path / "none.json")  # MACs, not the GPU table's speeds
    table = est_mod.SpeedTable.load()
    card = get_card("ds-cnn-s")
    with Store(tmp_path / "s.sqlite") as store:
        est = est_mod.estimate([card], lambda c: [None] * 36, 1245, store, "cuda")
    assert est.from_macs == ["ds-cnn-s"]
    assert est.seconds == pytest.approx(36 * (1245 * table.macs["ds-cnn-s"] / est_mod.GPU_MAC_RATE
                                              + est_mod.GPU_CELL_OVERHEAD_S))


def test_history_leaves_out_a_models_first_cell_of_a_run(tmp_path):
    # the first cell of a model in a run also pays its warm-up: 100 clips in 2 s, then 100 in 0.1 s
    from kwsbench.results.store import CellKey, CellResult

    def cell(snr: float, seconds: float, model: str = "m") -> CellResult:
        key = CellKey(model=model, checkpoint_sha256="a" * 64, fingerprint="f" * 64, noise="white",
                      noise_version="v1", snr_db=snr, snr_def="rms", rate_hz=16000, rate_mode="native",
                      decimation="", seed=0)
        return CellResult(key=key, protocol="p", label_names=("a", "b"), status="ok", accuracy=0.5, n=100,
                          correct=50, seconds=seconds, predictions=np.zeros(100, dtype=np.int64))

    with Store(tmp_path / "s.sqlite") as store:
        run = store.begin_run({"device": "cuda (H200)"})
        store.put_cell(run, cell(0.0, 2.0))
        store.put_cell(run, cell(5.0, 0.1))
        store.put_cell(run, cell(10.0, 0.1))
        store.put_cell(run, cell(0.0, 0.5, model="alone"))  # a model with one cell keeps it
        speeds = est_mod.history(store, "cuda")
        assert speeds == {"m": [pytest.approx(1000.0)] * 2, "alone": [pytest.approx(200.0)]}
        assert est_mod.history(store, "cpu") == {}


def test_gpu_speed_table_names_registered_cards_and_is_used_as_measured(tmp_path, monkeypatch):
    from kwsbench.models.registry import all_cards

    table = est_mod.SpeedTable.load(est_mod.GPU_SPEED_TABLE)
    assert table is not None and table.matmul_gflops is None and table.machine
    assert set(table.clips_per_s) <= {c.name for c in all_cards()}

    def no_probe():
        raise AssertionError("a GPU estimate measured the CPU's matmul rate")

    monkeypatch.setattr(est_mod, "matmul_gflops", no_probe)
    card = get_card("s-edge-full")
    with Store(tmp_path / "s.sqlite") as store:
        est = est_mod.estimate([card], lambda c: [None] * 36, 1250, store, "cuda:0")
    assert est.from_table == ["s-edge-full"] and not est.from_macs
    assert est.seconds == pytest.approx(36 * (1250 / table.clips_per_s["s-edge-full"] + est_mod.GPU_CELL_OVERHEAD_S))
    assert table.machine in est.describe() and "not scaled" in est.describe()


def test_gpu_estimate_of_the_measured_registry_run_is_within_a_factor_two(tmp_path):
    # `run --weights synth --models all` on one H200, 1,250 clips, 36 conditions: the 38 models with weights took
    # 70.0 s of run time (README, Performance and scale); announced from MACs at one rate it said "roughly 4 min"
    table = est_mod.SpeedTable.load(est_mod.GPU_SPEED_TABLE)
    cards = [get_card(m) for m in table.clips_per_s]
    with Store(tmp_path / "s.sqlite") as store:
        est = est_mod.estimate(cards, lambda c: [None] * 36, 1250, store, "cuda")
    assert len(est.from_table) == len(cards) == 38
    assert 70.0 / 2 < est.seconds < 70.0 * 2


@pytest.mark.parametrize("device, table", [
    # a GPU table's rate rounded to 0 (benchmarks/gpu_speeds.py keeps one decimal), and a CPU table's matmul rate
    ("cuda", {"machine": "one GPU", "matmul_gflops": None, "clips_per_s": {"ds-cnn-s": 0.0}}),
    ("cpu", {"matmul_gflops": 0, "clips_per_s": {"ds-cnn-s": 200.0}}),
])
def test_a_speed_table_that_would_divide_by_zero_is_not_used_for_it(tmp_path, monkeypatch, device, table):
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    monkeypatch.setattr(est_mod, "SPEED_TABLE" if device == "cpu" else "GPU_SPEED_TABLE", path)
    monkeypatch.setattr(est_mod, "matmul_gflops", lambda: 100.0)
    card = get_card("ds-cnn-s")
    with Store(tmp_path / "s.sqlite") as store:
        est = est_mod.estimate([card], lambda c: [None] * 2, 100, store, device)
    assert est.from_macs == ["ds-cnn-s"] and not est.from_table and est.seconds > 0


def test_gpu_speeds_benchmark_reads_the_runs_progress_lines_into_a_table_the_estimate_loads(tmp_path, capsys):
    # benchmarks/gpu_speeds.py --log parses the lines kwsbench.progress prints: the two must keep one format
    import importlib.util

    from kwsbench.paths import PROJECT_ROOT
    from kwsbench.progress import Progress

    progress = Progress(total=4, enabled=True)  # not a terminal under pytest: plain lines on stderr
    for model, speed in (("ds-cnn-s", 500.0), ("ds-cnn-s", 20_000.0), ("ds-cnn-s", 30_000.0), ("kwt-1", 7_000.0)):
        progress.cell(model, "white -5 dB", "ok", speed)
    log = tmp_path / "run.txt"
    log.write_text(capsys.readouterr().err)
    spec = importlib.util.spec_from_file_location("gpu_speeds", PROJECT_ROOT / "benchmarks" / "gpu_speeds.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    assert bench.main(["--log", str(log), "--measured", "test", "--out", str(out)]) == 0
    table = est_mod.SpeedTable.load(out)
    # each model's first cell (warm-up) left out where it has others; the median of the rest
    assert table.clips_per_s == {"ds-cnn-s": 25_000.0, "kwt-1": 7_000.0} and table.matmul_gflops is None
