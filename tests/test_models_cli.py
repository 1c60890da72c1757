"""`kwsbench models list` readable at 80 columns in every format; `kwsbench cost` totals and band-limited rows."""

from __future__ import annotations

import csv
import io
import json

import pytest

from kwsbench.checkpoints import manifests
from kwsbench.cli import main
from kwsbench.models.registry import all_cards


def test_models_list_fits_80_columns_and_never_cuts_a_name(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    first_words = {line.split()[0] for line in lines if line.strip()}
    for card in all_cards():
        assert card.name in first_words, f"{card.name} is cut or missing"


def test_models_list_csv_and_json_have_parameters_and_weights_for_every_card(capsys):
    assert main(["models", "list", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {c.name for c in all_cards()}
    assert all(isinstance(r["params"], int) and r["params"] > 0 for r in rows.values())
    have = {m: {e.model for e in man.entries} for m, man in manifests().items()}
    for name, r in rows.items():
        listed = {w.split(":")[0] for w in r["weights"]}
        assert listed == {m for m, models in have.items() if name in models}, name
        assert set(r["weights_present"]) <= set(r["weights"])
    assert any(w.startswith("synth:") for w in rows["nc-ssm"]["weights"])
    assert any(w.startswith("nc-ssm:") for w in rows["nc-ssm"]["weights"])
    assert any(w.startswith("gsc-mini:") for w in rows["s4d-kws"]["weights"])
    assert main(["models", "list", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["name"] for r in table] == list(rows) and all(int(r["params"]) > 0 for r in table)


def test_cost_has_total_macs_and_says_when_a_model_runs_band_limited(capsys):
    assert main(["cost", "--models", "nc-ssm,bc-resnet-1", "--rates", "16000,8000", "--format", "json"]) == 0
    rows = {(r["model"], r["rate"]): r for r in json.loads(capsys.readouterr().out)}
    nc16, nc8 = rows[("nc-ssm", 16000)], rows[("nc-ssm", 8000)]
    assert not nc16["band_limited"] and nc8["band_limited"] and nc8["runs_at_hz"] == 16000
    assert nc8["total_macs"] == nc16["total_macs"] == nc16["frontend_macs"] + nc16["body_macs"]
    bc8 = rows[("bc-resnet-1", 8000)]  # changes rate: costed at 8 kHz, fewer front-end MACs
    assert not bc8["band_limited"] and bc8["total_macs"] < rows[("bc-resnet-1", 16000)]["total_macs"]
    assert main(["cost", "--models", "nc-ssm", "--rates", "16000,8000"]) == 0
    out = capsys.readouterr().out
    assert "total MACs" in out and "3,678,862" in out
    assert "band-limited: runs at 16000 Hz" in out and out.count("3,678,862") == 1


@pytest.mark.parametrize("width", [80, 120, 200])
def test_cost_table_never_cuts_a_name_or_a_number(width, monkeypatch, capsys):
    """At 80-120 columns rich cut the numbers ('160…', '25,276,9…') and wrapped the notes one word a line; now the
    notes go under the table where they do not fit beside it, and a table wider than the terminal is printed whole
    with a hint on stderr."""
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["cost", "--models", "nc-ssm,kwt-1,s-edge-naive-extra-large", "--rates", "16000,8000"]) == 0
    said = capsys.readouterr()
    assert "…" not in said.out, said.out
    for number in ("101,802,152", "25,276,944", "1,475,586,240", "s-edge-naive-extra-large", "16000"):
        assert number in said.out
    assert said.out.count("band-limited: runs at 16000 Hz") == 2  # nc-ssm and kwt-1 at 8 kHz
    if width == 200:
        assert "published / note" in said.out and not said.err
    else:
        assert "nc-ssm @ 8000 Hz: band-limited" in said.out and "--format csv" in said.err
