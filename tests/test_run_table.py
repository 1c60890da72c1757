"""What `kwsbench run` prints at the end: each cell a row for a small run, accuracy by SNR for a grid."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from kwsbench.commands import run as run_cmd


def _cell(model, noise, snr, acc, seed=0, precision="fp32"):
    return SimpleNamespace(model=model, noise=noise, snr_db=snr, snr_def="rms", seed=seed, rate_hz=16000,
                           rate_mode="native", precision=precision, accuracy=acc, ci_low=acc - 0.01,
                           ci_high=acc + 0.01, protocol="v2-12-official", n=100, cell_key=f"{model}/{noise}/{snr}")


def _grid():
    cells = []
    for m, model in enumerate(("alpha", "beta")):
        cells.append(_cell(model, "clean", None, 0.90 + m / 100))
        for n, noise in enumerate(("white", "babble", "street")):
            for snr in (-10, -5, 0, 5, 10, 15, 20, 25):
                cells.append(_cell(model, noise, float(snr), (50 + snr + n + m) / 100))
    return cells


def _render(table) -> str:
    console = Console(width=250, record=True)
    console.print(table)
    return console.export_text()


def test_a_grid_prints_one_row_per_model_and_noise_with_a_column_per_snr(monkeypatch):
    cells = _grid()
    assert len(cells) > run_cmd.WIDE_TABLE_CELLS
    table = run_cmd._snr_columns(cells)
    headers = [c.header for c in table.columns]
    assert headers == ["model", "noise", "rate Hz", "clean", "-10", "-5", "+0", "+5", "+10", "+15", "+20", "+25"]
    assert table.row_count == 6  # 2 models x 3 noises; the clean accuracy sits in each of the model's rows
    text = _render(table)
    beta_street = next(line for line in text.splitlines() if "beta" in line and "street" in line)
    assert beta_street.split("│")[4].strip() == "91.00"  # beta's clean accuracy
    assert beta_street.split("│")[7].strip() == "53.00"  # (50 + 0 + 2 + 1) %  at +0 dB
    printed = []
    monkeypatch.setattr(run_cmd, "_cell_rows", lambda c: printed.append("rows"))
    monkeypatch.setattr(run_cmd, "_snr_columns", lambda c: printed.append("snr"))
    monkeypatch.setattr(run_cmd, "console", lambda: SimpleNamespace(print=lambda t: None))

    class FakeStore:
        def __init__(self, path):
            self.cells_ = cells

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def cells(self):
            return self.cells_

    monkeypatch.setattr("kwsbench.results.store.Store", FakeStore)
    run_cmd._print_results("x", [c.cell_key for c in cells])
    run_cmd._print_results("x", [c.cell_key for c in cells[:10]])
    assert printed == ["snr", "rows"]


def test_the_wide_table_shows_seeds_precisions_and_clean_only_models():
    cells = _grid() + [_cell("alpha", "white", 0.0, 0.4, seed=1), _cell("gamma", "clean", None, 0.8, precision="bf16")]
    text = _render(run_cmd._snr_columns(cells))
    header = next(line for line in text.splitlines() if "model" in line)
    assert "seed" in header and "precision" in header
    gamma = next(line for line in text.splitlines() if "gamma" in line)
    assert "80.00" in gamma and "bf16" in gamma  # a model with clean cells only gets a row of its own
    seeded = [line for line in text.splitlines() if "alpha" in line and "white" in line]
    assert len(seeded) == 2  # seed 0 and seed 1 rows


def test_a_small_run_prints_each_cell_with_its_interval():
    text = _render(run_cmd._cell_rows(_grid()[:5]))
    assert "95% CI" in text and "89.0–91.0" in text
