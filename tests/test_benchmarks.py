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


def _bench_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiled_clip_set_repeats_every_clip_under_its_own_id():
    import numpy as np

    from kwsbench.data.clipset import CLIP_SAMPLES, ClipSet

    rng = np.random.default_rng(0)
    clips = ClipSet(rng.standard_normal((3, CLIP_SAMPLES)).astype(np.float32), np.array([0, 1, 0]), ("a", "b"),
                    ("a/1.wav", "b/2.wav", "a/3.wav"), ("s1", "s2", "s3"), "test")
    tiled = _bench_module("grid_throughput")._tiled(clips, 7)
    assert len(tiled) == 7 and len(set(tiled.utterance_ids)) == 7
    assert tiled.utterance_ids[3] == "a/1.wav#1" and tiled.speaker_ids[6] == "s1"
    assert np.array_equal(tiled.audio[6], clips.audio[0]) and list(tiled.labels) == [0, 1, 0, 0, 1, 0, 0]
    assert tiled.fingerprint != clips.fingerprint


def test_grid_throughput_clip_count_and_peaks(gsc_dev_dir, tmp_path):
    out = tmp_path / "grid.json"
    cmd = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "grid_throughput.py"), "--data-dir", str(gsc_dev_dir),
           "--models", "nc-ssm", "--untrained", "--per-class", "1", "--clips", "30", "--noise", "white-ncssm",
           "--snr", "0", "--passes", "cold", "--device", "cpu", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    (cold,) = json.loads(out.read_text())["passes"]
    assert (cold["clips"], cold["cells"], cold["failed"]) == (30, 2, 0)
    assert cold["peak_rss_gib"] > 0.1 and "peak_gpu_gib" not in cold


def test_sedge_rate_benchmark_on_cpu(tmp_path):
    from kwsbench.models.registry import get_card

    out = tmp_path / "sedge.json"
    cmd = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "sedge_gpu.py"), "--device", "cpu", "--sizes", "tiny",
           "--batch", "2", "--reps", "1", "--gemm", "128", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    (row,) = json.loads(out.read_text())["sizes"]
    card = get_card("s-edge-tiny")
    assert row["gmac_per_clip"] == round(card.cost(card, 16000).body_macs / 1e9, 4)
    assert row["clips_per_s"] > 0 and row["tflops"] > 0


def test_sedge_rate_benchmark_times_named_variants_and_module_settings(tmp_path):
    """--variants takes the named ones and NAME=INT settings of sedge_eval (a sweep without editing code); on the
    CPU both paths are the chunked one, so this checks the plumbing, not the kernels."""
    out = tmp_path / "sedge.json"
    script = str(PROJECT_ROOT / "benchmarks" / "sedge_gpu.py")
    cmd = [sys.executable, script, "--device", "cpu", "--sizes", "tiny", "--batch", "2", "--reps", "1", "--gemm", "64",
           "--compare", "--variants", "whole_k_,_READOUT_K=64", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    (row,) = json.loads(out.read_text())["sizes"]
    assert row["whole_k_flips"] == 0 and row["_READOUT_K_64_flips"] == 0 and row["_READOUT_K_64_clips_per_s"] > 0
    res = subprocess.run(cmd[:-4] + ["--variants", "_NO_SUCH=1"], capture_output=True, text=True, timeout=300,
                         cwd=PROJECT_ROOT)
    assert res.returncode == 2 and "unknown _NO_SUCH=1" in res.stderr, res.stderr


def test_results_digest_has_a_help_and_says_what_a_missing_store_is(tmp_path):
    script = str(PROJECT_ROOT / "benchmarks" / "results_digest.py")
    res = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "STORE" in res.stdout, res.stdout + res.stderr  # was: '--help' read as a store
    res = subprocess.run([sys.executable, script, str(tmp_path / "none.sqlite")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 8 and "no results store" in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")
def test_sedge_rate_benchmark_without_cuda_says_so():
    """Its default device is cuda: without one it was torch's 'Found no NVIDIA driver' traceback."""
    res = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "sedge_gpu.py"), "--sizes", "tiny"],
                         capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert res.returncode == 5 and "no CUDA device" in res.stderr and "--device cpu" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.skipif(__import__("kwsbench.models.sedge_eval", fromlist=["triton"]).triton is None,
                    reason="needs Triton (ships with torch's CUDA wheels)")
def test_sedge_kernels_compile_without_a_gpu_and_report_registers(tmp_path):
    out = tmp_path / "kernels.json"
    script = str(PROJECT_ROOT / "benchmarks" / "sedge_kernels.py")
    res = subprocess.run([sys.executable, script, "--sizes", "tiny", "--out", str(out)], capture_output=True,
                         text=True, timeout=300, cwd=PROJECT_ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(out.read_text())["kernels"]
    # tiny's three layers: a scan each, and a fused read-out for the two that do not pool
    assert [(r["layer"], r["kernel"]) for r in rows] == [(0, "scan"), (0, "readout"), (1, "scan"), (1, "readout"),
                                                         (2, "scan")]
    assert all(0 < r["registers"] <= 255 and r["ffma"] > 0 and r["instructions"] > r["ffma"] for r in rows)
    res = subprocess.run([sys.executable, script, "--sizes", "tiny", "--set", "_NO_SUCH=1"], capture_output=True,
                         text=True, timeout=300, cwd=PROJECT_ROOT)
    assert res.returncode == 2 and "NAME=INT" in res.stderr, res.stderr
