"""One judge for `reproduce` and the HTML report: a bridged row on clips with known per-class recalls gives the
hand-computed estimate and interval; report and reproduce give the same verdicts for one store; several noise
seeds give the mean, the seed spread and the tolerance it sets; noisy all-unknown rows are bridged."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import statistics
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import TinyKws

from kwsbench.api import reproduce
from kwsbench.cli import main
from kwsbench.data.clipset import KEYWORDS_10, LABELS_12
from kwsbench.models.registry import ModelCard, registered
from kwsbench.report.html import ReportOptions, build_report
from kwsbench.results.baselines import Reported, baselines_dir
from kwsbench.results.stats import Z95, wilson_interval
from kwsbench.results.verdicts import CONSISTENT_BRIDGED, DEVIATES, MATCH, verdict_over_seeds

SILENCE = LABELS_12.index("silence")


class MarkerKws(torch.nn.Module):
    """Predicts the class a clip's constant level encodes: level = ((k - silence) mod 12) / 100, so all-zero audio
    is silence. A test then knows every clip's prediction before the run."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = torch.round(x.mean(dim=-1) * 100).long().clamp(0, 11)
        return torch.nn.functional.one_hot((code + SILENCE) % 12, 12).float() * 10 * self.scale


def _level(k: int) -> float:
    return ((k - SILENCE) % 12) / 100


def _clip(path: Path, predicted: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(16000, _level(predicted), dtype=np.float32), 16000, subtype="PCM_16")


def _baselines(tmp_path: Path, rows: str) -> str:
    d = tmp_path / "bl"
    d.mkdir(exist_ok=True)
    if not (d / "protocols").exists():
        shutil.copytree(baselines_dir() / "protocols", d / "protocols")
    (d / "t.yaml").write_text("paper: test paper\ndefaults: {classes: 12, split: test, source: t, verification: P}\n"
                              "rows:\n" + rows)
    return str(d)


@pytest.fixture
def marker_card(tmp_path):
    path = tmp_path / "marker.pt"
    torch.save(MarkerKws().state_dict(), path)
    with registered(ModelCard(name="test-marker", family="test", builder=MarkerKws, checkpoint=str(path))):
        yield "test-marker"


@pytest.mark.slow
def test_bridged_row_on_known_recalls_gives_the_hand_computed_estimate_and_interval(tmp_path, marker_card):
    """Canonical layout, 10 keywords x 4 clips (speakers s0..s3, clip i of word k wrong when i + k = 3 mod 4:
    recall 30/40),
    8 unknown clips (speakers s0..s7, 5 right), recorded silence; bridged to v2-12-tf-pipeline, whose silence
    items are all-zero audio (predicted silence: recall 1, exact)."""
    root = tmp_path / "canon"
    speakers = [f"{i:08x}" for i in range(8)]
    for k, word in enumerate(KEYWORDS_10):
        for i in range(4):
            _clip(root / word / f"{speakers[i]}_nohash_{k}.wav", k if (i + k) % 4 else LABELS_12.index("unknown"))
    for i in range(8):
        _clip(root / "_unknown_" / f"bird_{speakers[i]}_nohash_0.wav", LABELS_12.index("unknown") if i < 5 else 0)
    for i in range(4):
        _clip(root / "_silence_" / f"{i}.wav", SILENCE)
    row = "  - {model: test-marker, protocol: v2-12-tf-pipeline, condition: clean, value: 80.0}\n"
    report = reproduce(models=[marker_card], data_dir=str(root), snr=[], store=str(tmp_path / "s.sqlite"),
                       baselines=_baselines(tmp_path, row))
    (_, c), = report.comparisons
    w = {"keyword": 4074 / 4890, "unknown": 408 / 4890, "silence": 408 / 4890}
    estimate = w["keyword"] * 0.75 + w["unknown"] * 5 / 8 + w["silence"] * 1.0
    # linearised cluster variance: per speaker, the sum of w_s * (y - recall_s) / n_s over its clips
    per_speaker = dict.fromkeys(speakers, 0.0)
    for i in range(4):  # each of these speakers says all 10 keywords
        for k in range(10):
            per_speaker[speakers[i]] += w["keyword"] * ((1.0 if (i + k) % 4 else 0.0) - 0.75) / 40
    for i in range(8):
        per_speaker[speakers[i]] += w["unknown"] * ((1.0 if i < 5 else 0.0) - 5 / 8) / 8
    u = list(per_speaker.values())
    cluster_var = len(u) / (len(u) - 1) * sum(x * x for x in u)
    wilson_var = sum((wt * (hi - lo) / (2 * Z95)) ** 2 for wt, (lo, hi) in
                     ((w["keyword"], wilson_interval(30, 40)), (w["unknown"], wilson_interval(5, 8))))
    sd = math.sqrt(max(cluster_var, wilson_var))
    assert c.bridged and c.verdict == CONSISTENT_BRIDGED
    assert c.estimate.recalls == {"keyword": 0.75, "unknown": 0.625, "silence": 1.0}
    assert c.measured == pytest.approx(100 * estimate)
    assert c.ci[0] == pytest.approx(100 * (estimate - Z95 * sd))
    assert c.ci[1] == pytest.approx(100 * min(1.0, estimate + Z95 * sd)) and c.ci[1] < 100


def _canonical_set(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for folder in (*KEYWORDS_10, "_silence_", "_unknown_"):
        prefix = "bird_" if folder == "_unknown_" else ""
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            name = f"{i}.wav" if folder == "_silence_" else f"{prefix}{i:08x}_nohash_0.wav"
            sf.write(root / folder / name, rng.uniform(-0.3, 0.3, 16000).astype(np.float32), 16000, subtype="PCM_16")
    return root


def _noise_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    for i, name in enumerate(("white_noise", "pink_noise")):
        x = np.random.default_rng(900 + i).uniform(-0.3, 0.3, 48000).astype(np.float32)
        sf.write(root / f"{name}.wav", x, 16000, subtype="PCM_16")
    return root


@pytest.fixture
def tiny_card(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(TinyKws(seed=5).state_dict(), path)
    with registered(ModelCard(name="test-judge", family="test", builder=TinyKws, checkpoint=str(path))):
        yield "test-judge"


def _report_verdicts(index: Path) -> list[tuple[str, str, float, str, str]]:
    """(model, condition, measured, seed spread, verdict) of every row of the HTML verdict table."""
    out = []
    for row in re.findall(r'<tr class="verdict [^"]*"[^>]*>(.*?)</tr>', index.read_text(), flags=re.S):
        cells = [re.sub(r"<[^>]+>", " ", td).strip() for td in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        out.append((cells[0], cells[1].replace("&#x27;", "'"), float(cells[3]), cells[5], cells[9]))
    return sorted(out)


@pytest.mark.slow
def test_report_and_reproduce_give_the_same_verdicts_with_seeds_and_noisy_bridges(tmp_path, tiny_card, capsys):
    """Noisy all-unknown rows are bridged like clean ones (the crops mixed with the same noise at the same SNR);
    two seeds: the measured value is their mean, the spread sits beside it; the HTML report judges the same store
    with the same function and shows the same verdicts."""
    data, noise = _canonical_set(tmp_path / "canon"), _noise_dir(tmp_path / "bg")
    rows = ("  - {model: test-judge, protocol: v2-12-all-unknown, condition: clean, value: 100.0}\n"
            "  - {model: test-judge, protocol: v2-12-all-unknown, condition: {noise: white, snr_db: 0}, value: 40.0,"
            " spread: 2.33, spread_source: planted}\n"
            "  - {model: test-judge, protocol: v2-12-all-unknown, condition: clean, value: 50.0, split: validation}\n")
    bl, store = _baselines(tmp_path, rows), str(tmp_path / "s.sqlite")
    args = ["reproduce", "--models", tiny_card, "--data-dir", str(data), "--noise-dir", str(noise), "--noise-type",
            "white", "--snr", "0", "--seeds", "0,1", "--store", store, "--baselines", bl]
    assert main([*args, "--out", str(tmp_path / "v.txt")]) == 5  # refused before any work
    assert main([*args, "--out", str(tmp_path / "v.csv")]) == 1  # the planted clean row is far from the estimate
    out = capsys.readouterr().out
    assert "seed spread" in out and "2 seeds" in out and "DEVIATES*" in out
    exported = {(r["noise"], r["split"]): r for r in csv.DictReader((tmp_path / "v.csv").open())}
    rep = reproduce(models=[tiny_card], data_dir=str(data), noise_dir=str(noise), noise_type="white", snr=[0.0],
                    seeds=[0, 1], store=store, baselines=bl)
    by_cond = {(v.reported.condition_label(), v.reported.split): v for _, v in rep.comparisons}
    noisy = by_cond[("white +0 dB", "test")]
    assert noisy.bridged and noisy.seeds is not None and noisy.seeds.seeds == (0, 1)
    assert noisy.estimate.counts["silence"] == 500  # every crop of the test split, mixed with the same noise
    # the mean of the two single-seed bridged estimates (each judged alone by a one-seed run on the same store)
    singles = [reproduce(models=[tiny_card], data_dir=str(data), noise_dir=str(noise), noise_type="white",
                         snr=[0.0], seed=s, store=store, baselines=bl) for s in (0, 1)]
    values = [next(v.measured for _, v in r.comparisons if v.reported.noise == "white") for r in singles]
    assert noisy.measured == pytest.approx(statistics.fmean(values))
    assert noisy.seeds.range == pytest.approx(abs(values[0] - values[1]))
    assert noisy.tol == pytest.approx(max(2.0, 2.33, noisy.seeds.range))
    row = exported[("white", "test")]
    assert (row["n_seeds"], row["seeds"], row["bridged"], row["verdict"]) == ("2", "0,1", "True", noisy.verdict)
    assert float(row["seed_range_pp"]) == pytest.approx(noisy.seeds.range)
    assert float(row["measured_pct"]) == pytest.approx(noisy.measured)
    result = build_report(ReportOptions(store=Path(store), out=tmp_path / "report", baselines=Path(bl)))
    html_rows = _report_verdicts(result.index)
    want = sorted((v.reported.model, v.reported.condition_label(), round(v.measured, 2),
                   "" if v.seeds is None else f"{v.seeds.range:.2f} (SD {v.seeds.sd:.2f}, {v.seeds.n} seeds)",
                   v.verdict) for _, v in rep.comparisons)
    assert [(m, c, pytest.approx(x, abs=0.005), s, v) for m, c, x, s, v in html_rows] == want
    assert {v for *_, v in html_rows} >= {"DEVIATES*", "NOT_COMPARABLE"}


def _cell(seed: int, acc: float) -> SimpleNamespace:
    return SimpleNamespace(protocol="v2-12-official", label_names=tuple(range(12)), snr_def="rms", rate_hz=16000,
                           accuracy=acc, ci_low=acc - 0.01, ci_high=acc + 0.01, boot_low=None, boot_high=None,
                           seed=seed)


def _row(value: float, spread: float | None = None) -> Reported:
    return Reported("p", "m", "v2-12-official", 12, "test", "white", 0.0, "rms", 16000, "accuracy", value, "s", "P",
                    spread=spread, spread_source="t" if spread is not None else "")


def test_seed_spread_sets_the_tolerance_when_largest():
    cells = [_cell(0, 0.80), _cell(1, 0.83), _cell(2, 0.86)]  # mean 83, range 6 pp
    v = verdict_over_seeds(_row(88.5), cells, 2.0, [None] * 3)
    assert v.measured == pytest.approx(83.0) and v.seeds.range == pytest.approx(6.0)
    assert v.seeds.sd == pytest.approx(3.0) and v.ci == (pytest.approx(82.0), pytest.approx(84.0))
    assert v.tol == pytest.approx(6.0) and v.tol_basis.startswith("measured seed spread") and v.verdict == MATCH
    wider = verdict_over_seeds(_row(88.5, spread=7.0), cells, 2.0, [None] * 3)
    assert wider.tol == 7.0 and wider.tol_basis.startswith("spread")
    # one seed: no spread, and a row 5.5 pp off with a 2 pp tolerance and a +-1 pp interval deviates
    single = verdict_over_seeds(_row(88.5), cells[1:2], 2.0, [None])
    assert single.seeds is None and single.verdict == DEVIATES


@pytest.mark.slow
def test_full_measures_noisy_rows_over_three_seeds(tmp_path, tiny_card, capsys):
    """`reproduce --full`: every noisy condition of a model a noisy row judges runs under the default seeds, and
    the printed row carries the spread over them."""
    data, noise = _canonical_set(tmp_path / "canon"), _noise_dir(tmp_path / "bg")
    row = ("  - {model: test-judge, protocol: v2-12-all-unknown, condition: {noise: street-ncssm, snr_db: 5},"
           " value: 40.0}\n")
    args = ["reproduce", "--full", "--models", tiny_card, "--data-dir", str(data), "--noise-dir", str(noise),
            "--store", str(tmp_path / "s.sqlite"), "--baselines", _baselines(tmp_path, row),
            "--out", str(tmp_path / "v.json")]
    code = main(args)
    out = capsys.readouterr().out
    assert code in (0, 1) and "(SD " in out and "3 seeds)" in out, out
    (exported,) = json.loads((tmp_path / "v.json").read_text())
    assert exported["seeds"] == "0,1,2" and exported["n_seeds"] == 3 and exported["bridged"] is True
