"""Your folders beside the packaged data: noise definitions (--noise-dir / KWSBENCH_NOISE_DIR), baseline files
(KWSBENCH_BASELINES) and checkpoint manifests (KWSBENCH_MANIFESTS, see test_checkpoints) are added to the packaged
ones; a file of the same name replaces the packaged one."""

from __future__ import annotations

import pytest
import yaml

from kwsbench.cli import main
from kwsbench.errors import EXIT_BAD_INPUT, BadInputError
from kwsbench.noise.definitions import load_all
from kwsbench.noise.sources import get_source, list_sources
from kwsbench.paths import packaged

MY_NOISE = """name: {name}
version: 1
kind: colored
description: my own colored noise
params:
  exponent: {exponent}
"""


@pytest.fixture()
def my_noise(tmp_path):
    (tmp_path / "my-hiss.yaml").write_text(MY_NOISE.format(name="my-hiss", exponent=0.5))
    (tmp_path / "pink.yaml").write_text(MY_NOISE.format(name="pink", exponent=1.5))  # replaces the packaged pink
    return tmp_path


def test_noise_dir_adds_definitions(my_noise, monkeypatch, capsys):
    monkeypatch.delenv("KWSBENCH_NOISE_DIR", raising=False)
    packaged_names = set(list_sources())
    assert "my-hiss" not in packaged_names and "factory" in packaged_names
    assert set(list_sources(my_noise)) == packaged_names | {"my-hiss"}
    assert get_source("my-hiss", my_noise).params["exponent"] == 0.5
    assert get_source("pink", my_noise).params["exponent"] == 1.5 and get_source("pink").params["exponent"] == 1.0
    assert main(["noise", "list", "--noise-dir", str(my_noise)]) == 0
    assert "my-hiss" in capsys.readouterr().out
    monkeypatch.setenv("KWSBENCH_NOISE_DIR", str(my_noise))
    assert "my-hiss" in list_sources() and get_source("my-hiss").path == my_noise / "my-hiss.yaml"


def test_missing_noise_dir_is_bad_input(tmp_path, capsys):
    assert main(["noise", "list", "--noise-dir", str(tmp_path / "nowhere")]) == EXIT_BAD_INPUT
    assert "nowhere" in capsys.readouterr().err


def test_noise_dir_with_recordings_only_adds_nothing(tmp_path):
    assert load_all(noise_dir=tmp_path) == load_all()


def test_baselines_folder_adds_files(tmp_path, monkeypatch):
    from kwsbench.results.baselines import baseline_files, load_baseline_file, load_baselines

    monkeypatch.delenv("KWSBENCH_BASELINES", raising=False)
    before = load_baselines()
    raw = yaml.safe_load((packaged("baselines") / "kwt.yaml").read_text())
    raw["rows"][0]["value"] = 12.345  # a value no packaged row has
    mine = yaml.safe_dump(raw, sort_keys=False)
    (tmp_path / "my-paper.yaml").write_text(mine)
    monkeypatch.setenv("KWSBENCH_BASELINES", str(tmp_path))
    after = load_baselines()
    assert len(after) == len(before) + len(load_baseline_file(tmp_path / "my-paper.yaml"))
    assert any(r.value == 12.345 for r in after) and not any(r.value == 12.345 for r in before)
    (tmp_path / "kwt.yaml").write_text(mine)  # the same name: replaces the packaged kwt.yaml
    assert tmp_path / "kwt.yaml" in baseline_files() and packaged("baselines") / "kwt.yaml" not in baseline_files()
    monkeypatch.setenv("KWSBENCH_BASELINES", str(tmp_path / "nowhere"))
    with pytest.raises(BadInputError, match="KWSBENCH_BASELINES"):
        load_baselines()
