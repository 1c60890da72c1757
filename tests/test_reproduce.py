"""reproduce: exit codes 0/1/3/4, verdicts on real clips, the thin top-level entry."""

from __future__ import annotations

import hashlib
import io
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import Server, TinyKws, canonical_tarball, require_shared

from kwsbench.api import reproduce
from kwsbench.cli import main
from kwsbench.data import download as dl
from kwsbench.data.clipset import KEYWORDS_10
from kwsbench.data.speech_commands import CANONICAL_FOLDERS
from kwsbench.errors import EXIT_INCONCLUSIVE
from kwsbench.models.registry import ModelCard, registered
from kwsbench.paths import PROJECT_ROOT
from kwsbench.results.baselines import baselines_dir
from kwsbench.results.store import Store


def _build():
    return TinyKws()


@pytest.fixture
def file_card(tmp_path):
    """A card whose default checkpoint is a plain weights file (the loader accepts a path)."""
    path = tmp_path / "tiny.pt"
    torch.save(TinyKws(seed=5).state_dict(), path)
    with registered(ModelCard(name="test-repro", family="test", builder=_build, checkpoint=str(path))):
        yield "test-repro"


def _baselines(tmp_path, rows: str, protocols: bool = False):
    """A baselines folder with these rows; `protocols`: with the project's protocol compositions (bridges)."""
    d = tmp_path / ("blp" if protocols else "bl")
    d.mkdir(exist_ok=True)
    if protocols and not (d / "protocols").exists():
        shutil.copytree(baselines_dir() / "protocols", d / "protocols")
    (d / "t.yaml").write_text("paper: test paper\ndefaults: {classes: 12, split: test, source: t, verification: P}\n"
                              "rows:\n" + rows)
    return str(d)


@pytest.mark.usefixtures("tiny_cards")
def test_missing_dataset_is_exit_4(tmp_path):
    assert main(["reproduce", "--quick", "--models", "test-tiny", "--data-dir", str(tmp_path / "nope")]) == 4


@pytest.mark.data
@pytest.mark.usefixtures("tiny_cards")
def test_missing_checkpoint_is_exit_3(gsc_dev_dir, tmp_path):
    # test-tiny (a stand-in card of tests/helpers.py) has no checkpoint at all
    assert main(["reproduce", "--quick", "--models", "test-tiny", "--data-dir", str(gsc_dev_dir),
                 "--store", str(tmp_path / "s.sqlite")]) == 3


@pytest.mark.data
@pytest.mark.slow
def test_quick_reproduce_verdicts_and_exit_codes(gsc_dev_dir, tmp_path, file_card, capsys):
    store = str(tmp_path / "s.sqlite")
    common = ["reproduce", "--quick", "--models", file_card, "--data-dir", str(gsc_dev_dir), "--store", store]
    other = "  - {model: test-repro, protocol: v2-12-all-unknown, condition: clean, value: 95.0}\n"
    # no protocols/ folder beside these rows: nothing bridges, no row is judged
    assert main([*common, "--baselines", _baselines(tmp_path, other)]) == EXIT_INCONCLUSIVE
    out = capsys.readouterr().out
    assert "NOT_COMPARABLE" in out and "INCONCLUSIVE" in out and "kwsbench data download gsc-v2" in out
    with Store(store) as st:
        cells = {c.noise: c for c in st.cells(model=file_card)}
    assert set(cells) == {"clean"}  # --quick: clean only
    clean = cells["clean"]
    assert clean.n == 10 * 40 + 40 + 204 and clean.protocol == "v2-12-official"  # every unknown clip
    report = reproduce(models=[file_card], data_dir=str(gsc_dev_dir), store=store, quick=True,
                       baselines=_baselines(tmp_path, other.replace("all-unknown", "official"), protocols=True))
    (_, cmp_), = report.comparisons
    measured = cmp_.measured  # reweighted to the canonical set's class composition
    assert cmp_.estimate is not None and not cmp_.bridged
    far = f"  - {{model: test-repro, protocol: v2-12-official, condition: clean, value: {min(100.0, measured + 40)}}}\n"
    assert main([*common, "--baselines", _baselines(tmp_path, far, protocols=True)]) == 1
    assert "DEVIATES" in capsys.readouterr().out
    near = f"  - {{model: test-repro, protocol: v2-12-official, condition: clean, value: {measured + 1.0:.3f}}}\n"
    assert main([*common, "--baselines", _baselines(tmp_path, near, protocols=True)]) == 0
    assert "MATCH" in capsys.readouterr().out


@pytest.mark.slow
def test_bridged_row_far_from_the_estimate_deviates(tmp_path, file_card, capsys):
    """A planted all-unknown row far from the bridged estimate: DEVIATES* and exit 1; the silence term is
    measured on the crops of --noise-dir (the protocol's own rule)."""
    data, noise = _canonical_set(tmp_path / "canon"), _noise_dir(tmp_path / "bg")
    row = "  - {model: test-repro, protocol: v2-12-all-unknown, condition: clean, value: 100.0}\n"
    args = ["reproduce", "--models", file_card, "--data-dir", str(data), "--noise-dir", str(noise), "--snr", "0",
            "--noise-type", "white", "--store", str(tmp_path / "s.sqlite"),
            "--baselines", _baselines(tmp_path, row, protocols=True)]
    report = reproduce(models=[file_card], data_dir=str(data), noise_dir=str(noise), snr=[],
                       store=str(tmp_path / "s2.sqlite"), baselines=_baselines(tmp_path, row, protocols=True))
    (_, c), = report.comparisons
    assert c.bridged and c.estimate.counts["silence"] == 500 and c.ci[1] < 99.0, c
    # a near row listed first in the file: the deviating row is still printed first
    near = ("  - {model: test-repro, protocol: v2-12-all-unknown, condition: clean, "
            f"value: {c.measured:.3f}, source: n}}\n")
    args[-1] = _baselines(tmp_path, near + row, protocols=True)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "crops of the background-noise recordings" in out
    assert out.index("DEVIATES*") < out.index("CONSISTENT*")
    assert "1 of 2 comparable rows deviate beyond tolerance (2 judged through a bridge" in out


def _wav(path: Path, seed: int, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).uniform(-0.3, 0.3, int(16000 * seconds)).astype(np.float32)
    sf.write(path, x, 16000, subtype="PCM_16")


def _canonical_set(root: Path) -> Path:
    for c, folder in enumerate(CANONICAL_FOLDERS):
        for i in range(4):
            prefix = "bird_" if folder == "_unknown_" else ""
            name = f"{i}.wav" if folder == "_silence_" else f"{prefix}{i:08x}_nohash_0.wav"
            _wav(root / folder / name, 100 * c + i)
    return root


def _run_download_advice(download: str, monkeypatch) -> None:
    """Run the advised `kwsbench data download` command against a 127.0.0.1 server holding `_full_tarball()`."""
    data = _full_tarball()
    a = dl.ARCHIVES["gsc-v2"]
    monkeypatch.setitem(dl.ARCHIVES, "gsc-v2", dl.Archive(a.name, a.filename, hashlib.sha256(data).hexdigest(),
                                                          len(data), a.subdir))
    with Server() as srv:
        srv.files[a.filename] = data
        assert _run_advice(download, ["--url-base", srv.url]) == 0


def _noise_dir(root: Path) -> Path:
    for i, name in enumerate(("white_noise", "pink_noise")):
        _wav(root / f"{name}.wav", 900 + i, seconds=3.0)
    return root


def _full_tarball() -> bytes:
    """A small archive in the full v0.02 layout: keyword and two other word folders, lists, background noise."""
    files: dict[str, bytes] = {}
    tests = []
    for c, word in enumerate((*KEYWORDS_10, "bird", "cat")):
        for i in range(2):
            rel = f"{word}/{i:08x}_nohash_0.wav"
            buf = io.BytesIO()
            sf.write(buf, np.random.default_rng(10 * c + i).uniform(-0.3, 0.3, 16000).astype(np.float32), 16000,
                     subtype="PCM_16", format="WAV")
            files[rel] = buf.getvalue()
            tests.append(rel)
    buf = io.BytesIO()
    sf.write(buf, np.random.default_rng(7).uniform(-0.3, 0.3, 48000).astype(np.float32), 16000, subtype="PCM_16",
             format="WAV")
    files["_background_noise_/white_noise.wav"] = buf.getvalue()
    files["testing_list.txt"] = "\n".join(tests).encode()
    files["validation_list.txt"] = b""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _advice(text: str, first_word: str) -> list[str]:
    """The commands quoted in backticks that start with `first_word`."""
    return [c for c in re.findall(r"`([^`]+)`", text) if c.startswith(first_word)]


def _verdict_exit(out: str) -> int:
    """The exit code the printed result line calls for: some judged row deviates -> 1, none -> 0."""
    m = re.search(r"result: (PASS|FAIL) — (\d+) of (\d+) comparable rows deviate", out)
    assert m is not None and int(m[3]) >= 1, out
    assert (m[1] == "FAIL") == (int(m[2]) > 0), out
    return 1 if int(m[2]) else 0


def _run_advice(command: str, extra: list[str] | None = None) -> int:
    """Run an advised command line in this process (the test card is registered here only)."""
    words = shlex.split(command)
    if words[:2] == ["python", "reproduce.py"]:
        return main(["reproduce", *words[2:], *(extra or [])])
    assert words[0] == "kwsbench", command
    return main([*words[1:], *(extra or [])])


@pytest.mark.slow
def test_inconclusive_advice_commands_work(tmp_path, monkeypatch, file_card, capsys):
    """A protocol with no bridge gives INCONCLUSIVE (exit 9); the download command and the next command it
    advises both work as written (the download served from 127.0.0.1)."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    row = "  - {model: test-repro, protocol: v2-12-all-unknown, condition: clean, value: 50.0}\n"
    bl = _baselines(tmp_path, row)  # no protocols/ folder: no bridge
    args = ["reproduce", "--quick", "--models", file_card, "--data-dir", str(_canonical_set(tmp_path / "canon")),
            "--store", str(tmp_path / "s.sqlite"), "--baselines", bl]
    assert main(args) == EXIT_INCONCLUSIVE
    out = capsys.readouterr().out
    assert "INCONCLUSIVE" in out and "1 rows need protocol v2-12-all-unknown" in out
    download, = _advice(out, "kwsbench data download")
    nxt, = _advice(out, "python reproduce.py")
    _run_download_advice(download, monkeypatch)
    code = _run_advice(nxt)
    out = capsys.readouterr().out
    assert code == _verdict_exit(out) and ("MATCH" in out or "WITHIN_CI" in out or "DEVIATES" in out), out


@pytest.mark.slow
def test_no_data_advice_commands_work(tmp_path, monkeypatch, file_card, capsys):
    """No --data-dir and nothing downloaded: exit 4 naming the download and the next command; both work."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    monkeypatch.setenv("KWSBENCH_SHARED", str(tmp_path / "no-shared"))  # a user without the team's folder
    row = "  - {model: test-repro, protocol: v2-12-official, condition: clean, value: 50.0}\n"
    bl = _baselines(tmp_path, row, protocols=True)
    assert main(["reproduce", "--quick", "--models", file_card, "--store", str(tmp_path / "s.sqlite"),
                 "--baselines", bl]) == 4
    err = capsys.readouterr().err
    download, = _advice(err, "kwsbench data download")
    nxt, = _advice(err, "python reproduce.py")
    data = canonical_tarball()
    a = dl.ARCHIVES["gsc-v2-test"]
    monkeypatch.setitem(dl.ARCHIVES, "gsc-v2-test", dl.Archive(
        a.name, a.filename, hashlib.sha256(data).hexdigest(), len(data), a.subdir))
    with Server() as srv:
        srv.files[a.filename] = data
        assert _run_advice(download, ["--url-base", srv.url]) == 0
    code = _run_advice(nxt)
    assert code == _verdict_exit(capsys.readouterr().out)
    # and without --data-dir the downloaded set is the default
    code = main(["reproduce", "--quick", "--models", file_card, "--store", str(tmp_path / "s.sqlite"),
                 "--baselines", bl])
    assert code == _verdict_exit(capsys.readouterr().out)


def test_no_data_advice_names_the_shared_development_half_where_it_is_there(tmp_path, monkeypatch, file_card,
                                                                           capsys):
    """With the team's shared folder holding the development half, exit 4 also gives the command that runs on it,
    and that command works as written."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    shared = tmp_path / "shared"
    _canonical_set(shared / "data" / "gsc_v2_test_dev")
    monkeypatch.setenv("KWSBENCH_SHARED", str(shared))
    row = "  - {model: test-repro, protocol: v2-12-official, condition: clean, value: 50.0}\n"
    bl = _baselines(tmp_path, row, protocols=True)
    assert main(["reproduce", "--quick", "--models", file_card, "--store", str(tmp_path / "s.sqlite"),
                 "--baselines", bl]) == 4
    err = capsys.readouterr().err
    on_shared, = [c for c in _advice(err, "python reproduce.py") if str(shared) in c]
    assert on_shared.endswith(f"--data-dir {shared / 'data' / 'gsc_v2_test_dev'}")
    code = _run_advice(on_shared)
    assert code == _verdict_exit(capsys.readouterr().out)


@pytest.mark.data
@pytest.mark.slow
def test_missing_checkpoint_advice_works(gsc_dev_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    args = ["reproduce", "--quick", "--models", "ds-cnn-s", "--data-dir", str(gsc_dev_dir),
            "--store", str(tmp_path / "s.sqlite")]
    assert main(args) == 3
    # the loader's own advice names a placeholder DIR; reproduce adds the concrete command
    command, = [c for c in _advice(capsys.readouterr().err, "kwsbench checkpoints import") if "DIR" not in c]
    assert _run_advice(command) == 0
    capsys.readouterr()
    code = main(args)
    assert code == _verdict_exit(capsys.readouterr().out)


def test_thin_entry_passes_exit_codes(tmp_path):
    res = subprocess.run([sys.executable, str(PROJECT_ROOT / "reproduce.py"), "--quick", "--data-dir",
                          str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 4, res.stderr  # the data set is checked before any model work
    assert "error" in res.stderr and str(tmp_path / "missing") in res.stderr


@pytest.mark.slow
def test_weights_manifest_is_judged_against_the_architectures_rows(tmp_path):
    """--weights M: the manifest's own weights run (their sha256 in the cell) and meet the rows of that
    architecture (here a planted v2-12-official bc-resnet-1 row)."""
    from kwsbench.checkpoints import get_manifest

    entry = next(e for e in get_manifest("synth").entries if e.model == "bc-resnet-1")
    row = "  - {model: bc-resnet-1, protocol: v2-12-official, condition: clean, value: 96.9}\n"
    report = reproduce(weights="synth", models=["bc-resnet-1"], data_dir=str(_canonical_set(tmp_path / "canon")),
                       snr=[], store=str(tmp_path / "s.sqlite"), baselines=_baselines(tmp_path, row, protocols=True))
    (cell, c), = report.comparisons
    assert cell.checkpoint_sha256 == entry.sha256 and cell.model == "bc-resnet-1"
    assert c.verdict in ("MATCH", "WITHIN_CI", "DEVIATES") and c.estimate is not None


@pytest.mark.slow
def test_bounded_silence_advice_works(tmp_path, monkeypatch, file_card, capsys):
    """No background-noise recordings: the all-unknown silence term is bounded and the advice says how to measure
    it; after the advised download (served from 127.0.0.1) the advised command measures it on the archive's
    _background_noise_ crops."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    monkeypatch.setenv("KWSBENCH_SHARED", str(tmp_path / "no-shared"))  # a user without the team's folder
    row = "  - {model: test-repro, protocol: v2-12-all-unknown, condition: clean, value: 50.0}\n"
    args = ["reproduce", "--quick", "--models", file_card, "--data-dir", str(_canonical_set(tmp_path / "canon")),
            "--store", str(tmp_path / "s.sqlite"), "--baselines", _baselines(tmp_path, row, protocols=True)]
    code = main(args)
    out = capsys.readouterr().out
    assert code == _verdict_exit(out)
    assert "silence term not measured, bounded" in out and "MISSING" in out
    download, = set(_advice(out, "kwsbench data download"))  # named twice: the silence line and the advice
    nxt, = _advice(out, "python reproduce.py")
    _run_download_advice(download, monkeypatch)
    code = _run_advice(nxt)
    out = capsys.readouterr().out
    assert code == _verdict_exit(out)
    assert "crops of the background-noise recordings" in out and "not measured, bounded" not in out, out


def test_bounded_silence_advice_names_the_shared_recordings_when_they_are_there(tmp_path, monkeypatch, file_card,
                                                                              capsys):
    """With the team's shared folder holding the _background_noise_ recordings, the advice is the one command that
    uses them (no 2.3 GiB download), and that command measures the silence term as written."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    shared = tmp_path / "shared"
    for i, name in enumerate(("doing_the_dishes", "running_tap")):
        _wav(shared / "data" / "gsc_background_noise" / f"{name}.wav", 900 + i, seconds=3.0)
    monkeypatch.setenv("KWSBENCH_SHARED", str(shared))
    row = "  - {model: test-repro, protocol: v2-12-all-unknown, condition: clean, value: 50.0}\n"
    args = ["reproduce", "--quick", "--models", file_card, "--data-dir", str(_canonical_set(tmp_path / "canon")),
            "--store", str(tmp_path / "s.sqlite"), "--baselines", _baselines(tmp_path, row, protocols=True)]
    code = main(args)
    out = capsys.readouterr().out
    assert code == _verdict_exit(out) and "silence term not measured, bounded" in out
    advice = out[out.index("to compare more rows"):]
    assert "kwsbench data download" not in advice, advice
    nxt, = _advice(advice, "python reproduce.py")
    assert f"--noise-dir {shared / 'data' / 'gsc_background_noise'}" in nxt
    code = _run_advice(nxt)
    out = capsys.readouterr().out
    assert code == _verdict_exit(out)
    assert "crops of the background-noise recordings" in out and "not measured, bounded" not in out, out


@pytest.mark.data
@pytest.mark.slow
def test_default_set_leaves_out_kwt_without_weights_and_its_advice_works(tmp_path, monkeypatch):
    from kwsbench.models.registry import resolve
    from kwsbench.run.reproduce import _check_weights

    require_shared("checkpoints", "kwt")
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    cards = resolve(["kwt-1"])
    (name, why), = _check_weights(cards, "cpu", {}, optional=True)
    assert name == "kwt-1"
    command, = [c for c in _advice(why, "kwsbench checkpoints import") if "DIR" not in c]
    assert _run_advice(command) == 0
    assert _check_weights(cards, "cpu", {}, optional=True) == []


@pytest.mark.data
@pytest.mark.slow
def test_kwt_rows_are_judged_as_tf_pipeline_numbers(gsc_dev_dir, tmp_path, monkeypatch, capsys):
    """KWT's published figures (97.7 in its README, 97.505 of the TFLite file) are TF input-pipeline numbers: on the
    canonical clips they are judged through the bridge, and the converted KWT-1 weights agree with both."""
    kwt = require_shared("checkpoints", "kwt")
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    assert main(["checkpoints", "import", str(kwt)]) == 0
    code = main(["reproduce", "--quick", "--models", "kwt-1", "--data-dir", str(gsc_dev_dir),
                 "--store", str(tmp_path / "s.sqlite")])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("│ kwt-1")]
    assert code == 0 and len(rows) == 2 and all("CONSISTENT*" in r for r in rows), out
    assert "97.70" in out and "97.50" in out and "v2-12-official (test)" not in out


@pytest.mark.slow
def test_empty_noise_dir_advice_works(tmp_path, monkeypatch, file_card, capsys):
    """--noise-dir without recordings: exit 4 naming the download that holds them; after that download (served
    from 127.0.0.1) its _background_noise_ folder measures the silence term."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    (tmp_path / "empty").mkdir()
    row = "  - {model: test-repro, protocol: v2-12-all-unknown, condition: clean, value: 50.0}\n"
    args = ["reproduce", "--quick", "--models", file_card, "--data-dir", str(_canonical_set(tmp_path / "canon")),
            "--store", str(tmp_path / "s.sqlite"), "--baselines", _baselines(tmp_path, row, protocols=True)]
    assert main([*args, "--noise-dir", str(tmp_path / "empty")]) == 4
    download, = _advice(capsys.readouterr().err, "kwsbench data download")
    _run_download_advice(download, monkeypatch)
    recordings = dl.default_dest("gsc-v2") / "_background_noise_"
    code = main([*args, "--noise-dir", str(recordings)])
    out = capsys.readouterr().out
    assert code == _verdict_exit(out) and f"crops of the background-noise recordings in {recordings}" in out, out


def test_full_gives_the_extra_seeds_only_to_models_a_noisy_row_judges():
    from kwsbench.results.baselines import load_baseline_file
    from kwsbench.run.plan import Plan
    from kwsbench.run.reproduce import FULL_SEEDS, ReproduceOptions, run_seeds, seed_plans

    rows = load_baseline_file(baselines_dir() / "nc-ssm-eval-results.yaml")
    opts = ReproduceOptions(full=True)
    plan = Plan(models=["ds-cnn-s", "kwt-1"], noise=["white-ncssm"], snr=[0.0], seeds=run_seeds(opts)).validate()
    seeded, single = seed_plans(plan, opts, rows, {})
    assert (seeded.models, seeded.noise_seeds()) == (["ds-cnn-s"], list(FULL_SEEDS))
    assert (single.models, single.noise_seeds()) == (["kwt-1"], [0])
    # --seeds given: every model gets them
    opts = ReproduceOptions(full=True, seeds=[3, 4])
    (both,) = seed_plans(Plan(models=["ds-cnn-s", "kwt-1"], seeds=run_seeds(opts)).validate(), opts, rows, {})
    assert both.noise_seeds() == [3, 4] and both.models == ["ds-cnn-s", "kwt-1"]


@pytest.mark.data
def test_missing_weights_give_one_fetch_command_that_works(tmp_path, monkeypatch, capsys):
    """A fresh home without the shared folder: exit 3 names each model without weights once and gives one fetch
    command for all of them (not one paragraph per model); that command, served from 127.0.0.1, gets them."""
    from kwsbench import checkpoints as ck
    from kwsbench.models.registry import resolve
    from kwsbench.run.reproduce import _check_weights

    shared = require_shared("checkpoints", "nc-ssm")
    monkeypatch.setenv("KWSBENCH_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    data = _canonical_set(tmp_path / "gsc")
    assert main(["reproduce", "--quick", "--models", "ds-cnn-s,nc-ssm", "--data-dir", str(data),
                 "--store", str(tmp_path / "s.sqlite")]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("ds-cnn-s") == 1 and "not found at" not in err, err
    assert str(tmp_path / "ckpt" / "nc-ssm") in err  # where it looked
    command, = _advice(err, "kwsbench checkpoints fetch")
    manifest = ck.get_manifest("nc-ssm")
    with Server() as srv:
        for entry in manifest.entries:
            srv.files[manifest.source_url(entry, srv.url).removeprefix(srv.url).lstrip("/")] = (
                shared / entry.id).read_bytes()
        assert _run_advice(command, ["--url-base", srv.url]) == 0
    assert _check_weights(resolve(["ds-cnn-s", "nc-ssm"]), "cpu", {}, optional=False) == []


def test_no_data_and_no_weights_are_said_together(tmp_path, monkeypatch, capsys):
    """A fresh user (no data, no weights, no shared folder) learns both downloads from the first attempt, not the
    weights only after the 112 MB data download; exit 4 as documented."""
    monkeypatch.setenv("KWSBENCH_DATA", str(tmp_path / "home"))
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("KWSBENCH_SHARED", str(tmp_path / "no-shared"))
    assert main(["reproduce", "--quick", "--store", str(tmp_path / "s.sqlite")]) == 4
    err = capsys.readouterr().err
    assert _advice(err, "kwsbench data download") == ["kwsbench data download gsc-v2-test"]
    fetch, = _advice(err, "kwsbench checkpoints fetch")
    assert fetch.split()[3:] == ["BC-ResNet-1/best.pt", "DS-CNN-S/best.pt", "NC-SSM/best.pt",
                                 "NanoMamba-NC-20K/best.pt"], err
    assert not (tmp_path / "s.sqlite").exists()
