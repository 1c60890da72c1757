"""The benchmark scripts run end to end on real clips: every cell computed, cold and warm passes agree."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kwsbench.paths import PROJECT_ROOT

pytestmark = pytest.mark.data


def test_grid_throughput_with_random_weights_for_cards_of_other_protocols(gsc_dev_dir, tmp_path):
    # s4d-kws (10 classes) and liquid-s4-kws (35) get 12-class heads for the 12-class clip set
    out = tmp_path / "grid.json"
    cmd = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "grid_throughput.py"), "--data-dir", str(gsc_dev_dir),
           "--models", "s4d-kws,liquid-s4-kws,nc-ssm", "--untrained", "--per-class", "1",
           "--noise", "white-ncssm,babble-synthetic-ncssm", "--snr", "0", "--device", "cpu", "--reference",
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    figures = json.loads(out.read_text())
    cold, warm = figures["passes"]
    assert (cold["cells"], cold["failed"], warm["failed"]) == (9, 0, 0), cold["failed_examples"]
    assert cold["results_sha256"] == warm["results_sha256"]  # rendered or cached banks: the same results
    assert sorted(warm["per_model"]) == ["liquid-s4-kws", "nc-ssm", "s4d-kws"]
    assert figures["reference"]["clips"] == 12 and figures["reference"]["same_predictions"] == 1.0
    assert "reference loop (liquid-s4-kws, 12 clips)" in res.stdout
