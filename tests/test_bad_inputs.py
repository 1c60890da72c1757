"""The catalogue of bad inputs and faults a user meets (issue 19).

Each case runs the CLI as a user would (in-process through `kwsbench.cli.main`, a few as subprocesses of
`python -m kwsbench`) and checks: the documented exit code, a message naming what was wrong and where and
saying what to do, no traceback, and the results store and the caches byte-identical afterwards (or, for a
damaged store or cache entry, verifiably repaired: reported, recomputed, and equal to a healthy run).

The world is tiny so the catalogue stays fast: a 12-class canonical-layout folder with one synthetic clip
per class, and a registered test model (band energies -> linear) whose weights are a real checkpoint file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from kwsbench.cli import main
from kwsbench.data.speech_commands import CANONICAL_FOLDERS
from kwsbench.models import registry
from kwsbench.models.registry import ModelCard
from kwsbench.paths import shared_dir

ROOT = Path(__file__).resolve().parent.parent
MODEL = "test-reliability-tiny"
# what-to-do words: every message must tell the user something to do, not only what went wrong
ACTION_WORDS = ("pass ", "give ", "use ", "set ", "run ", "fix ", "pick ", "create ", "replace ", "delete ",
                "add ", "restore", "download", "name ", "save ", "check ", "move ", "unset", "train ", "import ",
                "try ", "e.g.", "write ", "leave ", "remove ", "wait", "free ", "close ", "see `",
                "choose ", "bump ")


class TinyBands(torch.nn.Module):
    """Band energies of the spectrum -> linear layer: a real model with a real checkpoint, built in milliseconds."""

    def __init__(self, num_classes: int = 12):
        super().__init__()
        self.proj = torch.nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(x, dim=-1).abs()
        bins = (torch.arange(spec.shape[-1]) * 16 // spec.shape[-1]).clamp(max=15)
        return self.proj(torch.log1p(torch.zeros(x.shape[0], 16).index_add_(1, bins, spec)))


def tiny_card(checkpoint: Path) -> ModelCard:
    return ModelCard(name=MODEL, family="test", builder=TinyBands, checkpoint=str(checkpoint))


def register_tiny(checkpoint: Path) -> None:
    """For a child process (its whole life is the test's)."""
    registry.register(tiny_card(checkpoint))


def _tone(i: int, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t)).astype(np.float32)


def write_dataset(root: Path) -> Path:
    for c, folder in enumerate(CANONICAL_FOLDERS):
        (root / folder).mkdir(parents=True, exist_ok=True)
        name = "0.wav" if folder == "_silence_" else f"{c:08x}_nohash_0.wav"
        sf.write(root / folder / name, _tone(c), 16000, subtype="PCM_16")
    return root


@dataclass
class World:
    """Paths of one case: its own copy of the healthy store and caches; the dataset and weights are shared."""

    tmp: Path
    data: Path
    store: Path
    cache: Path
    ckpt: Path

    def fmt(self, text: str) -> str:
        return text.format(tmp=self.tmp, data=self.data, store=self.store, cache=self.cache, ckpt=self.ckpt)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A dataset, the tiny model's checkpoint, and a healthy store + warm caches from one real run."""
    root = tmp_path_factory.mktemp("bad-inputs-base")
    data = write_dataset(root / "data")
    torch.manual_seed(0)
    ckpt = root / "tiny.pt"
    torch.save(TinyBands().state_dict(), ckpt)
    world = World(tmp=root, data=data, store=root / "store.sqlite", cache=root / "cache", ckpt=ckpt)
    with registry.registered(tiny_card(ckpt)):  # for this module's tests only
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KWSBENCH_CACHE", str(world.cache))
            assert main(healthy_run(world)) == 0
        yield world


def healthy_run(w: World, *extra: str) -> list[str]:
    return ["run", "--data-dir", str(w.data), "--models", MODEL, "--noise", "white", "--snr", "0",
            "--store", str(w.store), *extra]


@pytest.fixture
def world(base, tmp_path, monkeypatch):
    w = World(tmp=tmp_path, data=base.data, store=tmp_path / "store.sqlite", cache=tmp_path / "cache", ckpt=base.ckpt)
    shutil.copy(base.store, w.store)
    shutil.copytree(base.cache, w.cache)
    monkeypatch.setenv("KWSBENCH_CACHE", str(w.cache))
    return w


def snapshot(w: World) -> dict[str, str]:
    """sha256 of every file of the case (its store, caches, the files it set up): what a failed command must leave
    as it was, creating nothing."""
    # SQLite's -wal / -shm companions (a reader of a WAL store makes them) are not the store's content
    files = sorted(p for p in w.tmp.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and not p.name.endswith(("-wal", "-shm")))
    return {str(p.relative_to(w.tmp)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@dataclass
class Case:
    id: str
    argv: Callable[[World], list[str]]
    code: int
    says: tuple[str, ...]  # substrings of the output (formatted with the World's paths): what and where
    setup: Callable[[World], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    subprocess: str = ""  # "module": `python -m kwsbench`; "entry": a child that registers the test model first
    unchanged: bool = True  # store and caches byte-identical afterwards
    check: Callable[[World, str], None] | None = None  # extra verification (a repair, a created file)
    skip: str = ""
    file_size_limit: int = 0  # bytes; with subprocess="entry": no file may grow past it (a full disk)


def run_case(case: Case, w: World, monkeypatch, capsys) -> tuple[int, str]:
    for key, value in case.env.items():
        monkeypatch.setenv(key, w.fmt(value))
    argv = [w.fmt(a) for a in case.argv(w)]
    if case.subprocess:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
        if case.subprocess == "module":
            cmd = [sys.executable, "-m", "kwsbench", *argv]
        else:
            code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_bad_inputs as t; "
                    f"from pathlib import Path; t.register_tiny(Path({str(w.ckpt)!r})); sys.exit(t.main(sys.argv[1:]))")
            if case.file_size_limit:  # a full disk: every file write past this size fails (EFBIG)
                code = (f"import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({case.file_size_limit}, "
                        f"{case.file_size_limit})); " + code)
            cmd = [sys.executable, "-c", code, *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=w.tmp, timeout=120)
        return proc.returncode, proc.stdout + proc.stderr
    monkeypatch.chdir(w.tmp)
    with warnings.catch_warnings(record=True) as caught:  # pytest would keep them from stderr; the CLI prints them
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors
            code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err + "".join(f"warning: {w.message}\n" for w in caught)


# -- helpers for setups -----------------------------------------------------------------------------------

def _copy_data(w: World) -> Path:
    dst = w.tmp / "data"
    if not dst.exists():
        shutil.copytree(w.data, dst)
    return dst


def _data_with(kind: str) -> Callable[[World], None]:
    """A copy of the dataset with one clip of `kind` in the 'yes' folder."""
    def setup(w: World) -> None:
        yes = _copy_data(w) / "yes"
        clip = next(yes.glob("*.wav"))
        if kind in ("nan", "inf"):
            x = _tone(0)
            x[100:110] = np.nan if kind == "nan" else np.inf
            sf.write(clip, x, 16000, subtype="FLOAT")
        elif kind == "garbage":
            clip.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
        elif kind == "empty":
            sf.write(clip, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
        elif kind == "long":
            sf.write(clip, np.tile(_tone(0), 30), 16000, subtype="PCM_16")
        elif kind == "no-class":
            for p in yes.iterdir():
                p.unlink()
    return setup


def _write(rel: str, content: str | bytes) -> Callable[[World], None]:
    def setup(w: World) -> None:
        path = w.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def _plan(yaml_text: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        (w.tmp / "plan.yaml").write_text(w.fmt(yaml_text))
    return setup


def _sqlite(rel: str, sql: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        conn = sqlite3.connect(w.tmp / rel)
        conn.executescript(sql)
        conn.commit()
        conn.close()
    return setup


def _store_schema(version: int) -> Callable[[World], None]:
    def setup(w: World) -> None:
        conn = sqlite3.connect(w.store)
        conn.execute("UPDATE schema_version SET version = ?", (version,))
        conn.commit()
        conn.close()
    return setup


def _run(*args: str) -> Callable[[World], list[str]]:
    """`kwsbench run` on the tiny world with `args` added (later flags win)."""
    return lambda w: [*healthy_run(w), *args]


def _args(*args: str) -> Callable[[World], list[str]]:
    return lambda w: list(args)


GOOD_BASELINE = ("paper: p\nrows:\n  - {model: m, protocol: v2-12-official, classes: 12, split: test, "
                 "condition: clean, value: 90, source: s, verification: P}\n")
GOOD_NOISE = "name: mine\nversion: 1\nkind: colored\ndescription: x\nparams: {exponent: 1.0}\n"
GOOD_MANIFEST = ("name: mine\nlocation: home\nfiles:\n  - {id: a.pt, model: " + MODEL + ", sha256: " + "0" * 64
                 + "}\n")
LATIN1 = "name: caf\xe9\n".encode("latin-1")


def _noise_defs(text: str | bytes) -> Callable[[World], None]:
    """A definitions folder holding the project's `white` plus one file `mine.yaml`."""
    def setup(w: World) -> None:
        folder = w.tmp / "noise-defs"
        folder.mkdir()
        shutil.copy(ROOT / "noise" / "white.yaml", folder)
        (folder / "mine.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    return setup


def _manifests(text: str | bytes) -> Callable[[World], None]:
    def setup(w: World) -> None:
        folder = w.tmp / "manifests"
        folder.mkdir()
        (folder / "mine.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    return setup


def _not_created(rel: str) -> Callable[[World, str], None]:
    def check(w: World, out: str) -> None:
        assert not (w.tmp / rel).exists(), f"{rel} was created by a command that only reads"
    return check


def _missing_store(w: World) -> None:
    w.store.unlink()


# -- damage to the store and the caches -------------------------------------------------------------------

def _flip_in_file(path: Path, needle: bytes, offset: int = 0) -> None:
    """Change one byte of `needle` where it lies in the file: damage on disk that SQLite itself does not see."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0, "the bytes to damage were not found in the file"
    data[at + offset] ^= 0x01
    path.write_bytes(bytes(data))


def _one_blob(w: World) -> bytes:
    with sqlite3.connect(w.store) as conn:
        return conn.execute("SELECT preds FROM predictions ORDER BY cell_key LIMIT 1").fetchone()[0]


def _damage_blob(w: World) -> None:
    _flip_in_file(w.store, _one_blob(w), offset=1)


def _damage_row(w: World) -> None:
    """One bit of a stored accuracy (its last mantissa byte): a number off by one ulp, valid to SQLite."""
    with sqlite3.connect(w.store) as conn:
        accuracy = conn.execute("SELECT accuracy FROM cells ORDER BY cell_key LIMIT 1").fetchone()[0]
    _flip_in_file(w.store, struct.pack(">d", accuracy), offset=7)


def _damage_page(w: World) -> None:
    """Garbage over the second page (a b-tree page): SQLite's own structure is broken."""
    data = bytearray(w.store.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:page + 64] = b"\xee" * 64
    w.store.write_bytes(bytes(data))


def _repaired(base_store: Callable[[World], Path]) -> Callable[[World, str], None]:
    """After the run: every stored cell passes its checksums and equals the healthy store's cell."""
    def check(w: World, out: str) -> None:
        from kwsbench.results.store import Store

        with Store(base_store(w), read_only=True) as good, Store(w.store, read_only=True) as now:
            want = {c.cell_key: (c.accuracy, good.predictions(c.cell_key).tolist()) for c in good.cells()}
            got = {c.cell_key: (c.accuracy, now.predictions(c.cell_key).tolist()) for c in now.cells()}
        assert got == want
    return check


def _cache_files(w: World, sub: str, suffix: str) -> list[Path]:
    files = sorted((w.cache / sub).glob(f"*{suffix}"))
    assert files, f"no {suffix} files under {w.cache / sub}"
    return files


def _truncate(sub: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        for f in _cache_files(w, sub, ".npy"):
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return setup


def _flip_cache(sub: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        for f in _cache_files(w, sub, ".npy"):
            data = bytearray(f.read_bytes())
            data[-5] ^= 0x40
            f.write_bytes(bytes(data))
    return setup


def _same_cache_as_base(sub: str) -> Callable[[World, str], None]:
    """The repaired cache files equal those of the healthy world (rendering and decoding are deterministic)."""
    def check(w: World, out: str) -> None:
        base_dir = w.ckpt.parent / "cache" / sub
        for f in _cache_files(w, sub, ".npy"):
            assert f.read_bytes() == (base_dir / f.name).read_bytes(), f"{f.name} not repaired"
    return check


def _immutable(rel: str, *, empty_first: str = "") -> Callable[[World], None]:
    """Make a file or folder unwritable even for root (chattr +i); skip where that is not possible."""
    def setup(w: World) -> None:
        target = w.tmp / rel
        if empty_first:
            for f in (w.tmp / empty_first).iterdir():
                f.unlink()
        if os.geteuid() != 0:
            target.chmod(0o555 if target.is_dir() else 0o444)
            return
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(target)]).returncode:
            pytest.skip("cannot make a file unwritable for root here (chattr +i refused)")
        _IMMUTABLE.append(target)
    return setup


_IMMUTABLE: list[Path] = []


@pytest.fixture(autouse=True)
def _release_immutable():
    yield
    while _IMMUTABLE:
        subprocess.run(["chattr", "-i", str(_IMMUTABLE.pop())])


_PATCHES: list[tuple] = []


def _hold_lock(seconds: float, mode: str = "EXCLUSIVE") -> Callable[[World], None]:
    """Another process-like writer holding the store's lock for `seconds` (released from a thread)."""
    def setup(w: World) -> None:
        conn = sqlite3.connect(w.store, check_same_thread=False, isolation_level=None)
        conn.execute(f"BEGIN {mode}")

        def release():
            time.sleep(seconds)
            conn.execute("COMMIT")
            conn.close()
        threading.Thread(target=release, daemon=True).start()
    return setup


def _short_busy_timeout(w: World) -> None:
    from kwsbench.results import store as store_mod

    _PATCHES.append((store_mod, "BUSY_TIMEOUT_S", 0.5))


def _legacy_inf_snr(w: World) -> None:
    """A schema-2 store (no checksums) holding an infinite SNR, as older kwsbench versions accepted."""
    _as_schema_2(w.store)
    with sqlite3.connect(w.store) as conn:
        conn.execute("UPDATE cells SET snr_db = 9e999 WHERE noise != 'clean'")


def _strict_json(w: World, out: str) -> None:
    def refuse(name: str):
        raise AssertionError(f"{name} in the JSON export")
    rows = json.loads(out[out.index("["):], parse_constant=refuse)
    assert [r["snr_db"] for r in rows if r["noise"] != "clean"] == [None]


def _valid_csv(w: World, out: str) -> None:
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2 and all(r["model"] == MODEL for r in rows)
    assert [r["snr_db"] for r in rows if r["noise"] != "clean"] == [""]


def _no_bank_cache(w: World) -> None:
    for f in (w.cache / "noise").iterdir():
        f.unlink()


def _base_store(w: World) -> Path:
    return w.ckpt.parent / "store.sqlite"


# -- the catalogue ------------------------------------------------------------------------------------------

def _a_file(w: World) -> None:
    (w.tmp / "a-file").write_text("not a folder")


_SHARED_NCSSM = shared_dir() / "checkpoints" / "nc-ssm"

CASES: list[Case] = [
    # command-line values of `run` (checked by the plan record, the same check a plan YAML gets)
    Case("rates-not-a-number", _run("--rates", "8k"), 5, ("--rates", "'8k'", "integer")),
    Case("rates-not-a-divisor", _run("--rates", "3000"), 5, ("--rates", "3000", "divide 16000")),
    Case("rates-zero", _run("--rates", "0"), 5, ("--rates", "divide 16000")),
    Case("rates-negative", _run("--rates=-8000"), 5, ("--rates", "-8000")),
    Case("rates-empty", _run("--rates", ","), 5, ("--rates", "empty")),
    Case("device-nonsense", _run("--device", "nonsense"), 5, ("--device", "nonsense", "cpu, cuda")),
    Case("device-no-cuda", _run("--device", "cuda"), 5, ("cuda", "no CUDA device", "--device cpu"),
         skip="a CUDA device is present" if torch.cuda.is_available() else ""),
    # `train` refuses a device the way `run` does, before any data is loaded (it was a torch traceback, exit 1)
    Case("train-device-no-cuda", _args("train", MODEL, "--device", "cuda", "--out", "{tmp}/train"), 5,
         ("cuda", "no CUDA device", "--device cpu"),
         skip="a CUDA device is present" if torch.cuda.is_available() else ""),
    Case("train-device-nonsense", _args("train", MODEL, "--device", "gpu", "--out", "{tmp}/train"), 5,
         ("--device 'gpu'", "cpu, cuda")),
    # `cost` takes the rates `run` takes (0 Hz was a traceback, 12345 Hz a table of numbers for no real run)
    Case("cost-rate-not-a-divisor", _args("cost", "--models", "nc-ssm", "--rates", "16000,12345"), 5,
         ("--rates", "12345", "divide 16000")),
    Case("cost-rate-zero", _args("cost", "--models", "bc-resnet-1", "--rates", "0"), 5, ("--rates", "divide 16000")),
    # --models that picks no stored model: an error listing the stored ones, never an empty table with exit 0
    Case("leaderboard-models-unknown", _args("leaderboard", "--store", "{store}", "--models", "nope"), 5,
         ("'nope'", "stored models: " + MODEL)),
    Case("leaderboard-models-glob-matches-none", _args("leaderboard", "--store", "{store}", "--models", "zz*"), 5,
         ("'zz*'", MODEL)),
    Case("leaderboard-models-registered-not-stored", _args("leaderboard", "--store", "{store}", "--models", "nc-ssm"),
         5, ("'nc-ssm'", "no cell in the store", MODEL)),
    Case("report-models-unknown", _args("report", "--store", "{store}", "--models", "nope", "--out", "{tmp}/rep"), 5,
         ("'nope'", MODEL)),
    Case("seeds-not-integers", _run("--seeds", "0,x"), 5, ("--seeds", "'0,x'", "e.g. 0,1,2"),
         check=lambda w, out: _absent("16000", out)),  # the example once was a list of rates
    Case("seed-negative", _run("--seed", "-1"), 5, ("--seed", "-1", ">= 0")),
    # the embedded set cannot be written (here KWSBENCH_DATA lies under a file): was a FileNotFoundError traceback
    # output folders that cannot be made (under a file): each was a traceback (exit 1), train's only after training
    Case("noise-render-out-under-a-file", _args("noise", "render", "white", "--out", "{tmp}/a-file/x.wav"), 5,
         ("{tmp}/a-file", "cannot create the folder"), setup=_a_file),
    Case("noise-show-png-under-a-file", _args("noise", "show", "white", "--png", "{tmp}/a-file/x.png"), 5,
         ("{tmp}/a-file", "cannot create the folder"), setup=_a_file),
    Case("train-out-under-a-file", _args("train", MODEL, "--out", "{tmp}/a-file/t"), 5,
         ("train --out {tmp}/a-file/t", "cannot create the folder"), setup=_a_file),
    Case("synth-out-under-a-file", _args("data", "synth", "--out", "{tmp}/a-file/s", "--per-class", "1"), 5,
         ("{tmp}/a-file/s", "cannot create the folder"), setup=_a_file),
    Case("checkpoints-folder-under-a-file", _args("checkpoints", "import", str(_SHARED_NCSSM)), 5,
         ("{tmp}/a-file/ck", "KWSBENCH_CHECKPOINTS"), setup=_a_file, env={"KWSBENCH_CHECKPOINTS": "{tmp}/a-file/ck"},
         skip="" if _SHARED_NCSSM.is_dir() else "no shared NC-SSM checkpoints"),
    Case("data-home-unwritable", _args("run", "--models", MODEL, "--store", "{store}"), 5,
         ("{tmp}/a-file", "KWSBENCH_DATA"), env={"KWSBENCH_DATA": "{tmp}/a-file/data"}, setup=_a_file),
    Case("seed-not-a-number", _run("--seed", "abc"), 5, ("--seed", "'abc'", "integer")),
    Case("batch-size-zero", _run("--batch-size", "0"), 5, ("--batch-size", ">= 1")),
    Case("per-class-zero", _run("--per-class", "0"), 5, ("--per-class", ">= 1")),
    Case("per-class-text", _run("--per-class", "ten"), 5, ("--per-class", "'ten'")),
    Case("snr-nan", _run("--snr", "nan"), 5, ("--snr", "finite")),
    Case("snr-inf", _run("--snr", "inf"), 5, ("--snr", "finite")),
    Case("snr-plus-500", _run("--snr", "500"), 5, ("--snr", "-60..60")),
    Case("snr-minus-1000", _run("--snr", "-1000"), 5, ("--snr", "-60..60")),
    Case("snr-text", _run("--snr", "loud"), 5, ("--snr", "'loud'", "number")),
    Case("models-empty", _run("--models", ""), 5, ("--models", "empty", "kwsbench models list")),
    Case("models-only-commas", _run("--models", ",,"), 5, ("--models", "empty")),
    Case("models-unknown", _run("--models", "no-such-model"), 5, ("no-such-model", "kwsbench models list")),
    Case("models-pattern-matches-none", _run("--models", "zz*"), 5, ("zz*", "matches no model")),
    Case("noise-unknown", _run("--noise", "tractor"), 5, ("tractor", "Known sources")),
    Case("protocol-unknown", _run("--protocol", "v9"), 5, ("v9", "choose one of")),
    Case("snr-def-unknown", _run("--snr-def", "peak"), 2, ("--snr-def", "peak")),
    Case("on-bad-file-unknown", _run("--on-bad-file", "ignore"), 2, ("--on-bad-file", "ignore")),
    Case("precision-unknown", _run("--precision", "fp16"), 2, ("--precision", "fp16")),
    Case("precision-bf16-on-cpu", _run("--precision", "bf16"), 5, ("precision bf16", "CUDA device", "--device cuda")),
    Case("precision-tf32-on-cpu", _run("--precision", "tf32"), 5, ("precision tf32", "CUDA device", "fp32")),
    Case("weights-unknown-manifest", _run("--weights", "nope"), 3, ("nope", "known")),
    Case("noise-workers-text", _run(), 5, ("KWSBENCH_NOISE_WORKERS", "'two'", "whole number"),
         env={"KWSBENCH_NOISE_WORKERS": "two"}),
    Case("noise-workers-zero", _run(), 5, ("KWSBENCH_NOISE_WORKERS", "'0'"), env={"KWSBENCH_NOISE_WORKERS": "0"}),
    Case("shard-deal-unknown", _run(), 5, ("KWSBENCH_SHARD_DEAL", "'random'", "round-robin"),
         env={"KWSBENCH_SHARD_DEAL": "random"}),
    Case("seed-negative-subprocess", _run("--seed", "-1"), 5, ("--seed", ">= 0"), subprocess="module"),
    # data folders and audio files
    Case("data-dir-missing", _run("--data-dir", "{tmp}/nowhere"), 4, ("{tmp}/nowhere",)),
    Case("data-dir-is-a-file", _run("--data-dir", "{tmp}/file.txt"), 4, ("{tmp}/file.txt",),
         setup=_write("file.txt", "x")),
    Case("data-dir-no-layout", _run("--data-dir", "{tmp}/empty"), 4, ("{tmp}/empty",),
         setup=lambda w: (w.tmp / "empty").mkdir()),
    Case("audio-nan-samples", _run("--data-dir", "{tmp}/data"), 5, ("{tmp}/data/yes", "NaN", "--on-bad-file skip"),
         setup=_data_with("nan")),
    Case("audio-inf-samples", _run("--data-dir", "{tmp}/data"), 5, ("{tmp}/data/yes", "infinite"),
         setup=_data_with("inf")),
    Case("audio-nan-skipped", _run("--data-dir", "{tmp}/data", "--on-bad-file", "skip"), 0,
         ("1 clips could not be read and were left out",), setup=_data_with("nan"), unchanged=False),
    Case("audio-not-decodable", _run("--data-dir", "{tmp}/data"), 5, ("{tmp}/data/yes", "cannot decode"),
         setup=_data_with("garbage")),
    Case("audio-no-samples", _run("--data-dir", "{tmp}/data"), 5, ("{tmp}/data/yes", "no samples"),
         setup=_data_with("empty")),
    Case("audio-long-clip-cut-warned", _run("--data-dir", "{tmp}/data"), 0, ("longer than one second", "cut"),
         setup=_data_with("long"), subprocess="entry", unchanged=False),
    Case("empty-class-folder", _run("--data-dir", "{tmp}/data"), 4, ("{tmp}/data/yes", "no audio files"),
         setup=_data_with("no-class")),
    # plan YAML: wrong types, wrong values, wrong files
    Case("plan-missing", _run("--config", "{tmp}/nope.yaml"), 5, ("plan file", "{tmp}/nope.yaml", "not found")),
    Case("plan-not-utf8", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "not UTF-8"),
         setup=_write("plan.yaml", b"seed: 1\n# \xff\xfe\n")),
    Case("plan-not-yaml", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "not valid YAML"),
         setup=_write("plan.yaml", "models: [a\n")),
    Case("plan-a-list", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "mapping"),
         setup=_write("plan.yaml", "- models\n")),
    Case("plan-models-wrong-type", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "models[0]", "string"),
         setup=_plan("models: 3\n")),
    Case("plan-device-wrong-type", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "device", "string"),
         setup=_plan("device: [cpu]\n")),
    Case("plan-per-class-wrong-type", _run("--config", "{tmp}/plan.yaml"), 5,
         ("{tmp}/plan.yaml", "per_class", "integer"), setup=_plan("per_class: ten\n")),
    Case("plan-seed-wrong-type", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "seed", "integer"),
         setup=_plan("seed: 1.5\n")),
    Case("plan-snr-nan", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "snr", "finite"),
         setup=_plan("snr: [.nan]\n")),
    Case("plan-unknown-key", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "colour", "Known keys"),
         setup=_plan("colour: red\n")),
    Case("plan-checkpoints-wrong-type", _run("--config", "{tmp}/plan.yaml"), 5,
         ("{tmp}/plan.yaml", "checkpoints", "mapping"), setup=_plan("checkpoints: [a, b]\n")),
    Case("plan-models-empty-list", _run("--config", "{tmp}/plan.yaml"), 5, ("{tmp}/plan.yaml", "models", "empty"),
         setup=_plan("models: []\n")),
    # the results store as `run` meets it
    Case("store-is-a-folder", _run("--store", "{tmp}/folder"), 6, ("{tmp}/folder", "folder", "--store"),
         setup=lambda w: (w.tmp / "folder").mkdir()),
    Case("store-not-sqlite", _run("--store", "{tmp}/text.sqlite"), 6, ("{tmp}/text.sqlite", "untouched"),
         setup=_write("text.sqlite", "just text, not a database\n" * 40)),
    Case("store-foreign-sqlite", _run("--store", "{tmp}/other.sqlite"), 6, ("{tmp}/other.sqlite", "not a kwsbench"),
         setup=_sqlite("other.sqlite", "CREATE TABLE t (x);")),
    Case("store-schema-1", _run(), 6, ("{store}", "schema version 1", "--store"), setup=_store_schema(1)),
    Case("store-schema-99", _run(), 6, ("{store}", "schema version 99", "--store"), setup=_store_schema(99)),
    # read-only commands
    Case("leaderboard-store-missing", _args("leaderboard", "--store", "{tmp}/none.sqlite"), 8,
         ("{tmp}/none.sqlite", "kwsbench run"), check=_not_created("none.sqlite")),
    Case("compare-store-missing", _args("compare", MODEL, MODEL, "--store", "{tmp}/none.sqlite"), 8,
         ("{tmp}/none.sqlite", "kwsbench run"), check=_not_created("none.sqlite")),
    Case("report-store-missing", _args("report", "--store", "{tmp}/none.sqlite", "--out", "{tmp}/r"), 8,
         ("{tmp}/none.sqlite", "kwsbench run"), check=_not_created("none.sqlite")),
    Case("leaderboard-out-missing-folder", _args("leaderboard", "--store", "{store}", "--out", "{tmp}/no/board.csv"),
         5, ("{tmp}/no", "does not exist", "create")),
    Case("leaderboard-out-is-a-folder", _args("leaderboard", "--store", "{store}", "--out", "{tmp}"), 5,
         ("{tmp}", "is a folder")),
    Case("leaderboard-format-unknown", _args("leaderboard", "--store", "{store}", "--format", "xml"), 2,
         ("--format", "xml")),
    Case("leaderboard-store-not-sqlite", _args("leaderboard", "--store", "{tmp}/text.sqlite"), 6,
         ("{tmp}/text.sqlite",), setup=_write("text.sqlite", "not a database\n" * 100)),
    Case("report-out-is-a-file", _args("report", "--store", "{store}", "--out", "{tmp}/report.html"), 5,
         ("{tmp}/report.html", "is a file", "folder"), setup=_write("report.html", "<html/>")),
    Case("report-condition-malformed", _args("report", "--store", "{store}", "--out", "{tmp}/r", "--condition",
                                             "white"), 5, ("--condition", "'white'", "NOISE:SNR")),
    Case("report-rate-not-stored", _args("report", "--store", "{store}", "--out", "{tmp}/r", "--rate", "8000"), 5,
         ("--rate 8000", "stored rates")),
    Case("compare-model-with-itself", _args("compare", MODEL, MODEL, "--store", "{store}"), 5,
         ("two different models", MODEL)),  # was a table of p = 1 rows, exit 0
    Case("compare-alpha-out-of-range", _args("compare", MODEL, "nc-ssm", "--store", "{store}", "--alpha", "2"), 5,
         ("--alpha", "between 0 and 1", "2.0")),
    Case("reproduce-tolerance-negative", _args("reproduce", "--quick", "--tol=-3", "--data-dir", "{data}",
                                               "--store", "{store}"), 5, ("--tol", "-3", ">= 0")),
    Case("report-tolerance-not-a-number", _args("report", "--store", "{store}", "--out", "{tmp}/r", "--tol", "nan"),
         5, ("--tol", "nan", "finite")),
    Case("compare-unknown-model", _args("compare", MODEL, "no-such-model", "--store", "{store}"), 5,
         ("no-such-model", "kwsbench models list")),
    # files of definitions: baselines, noise, manifests
    Case("baseline-not-utf8", _args("baselines", "validate", "--dir", "{tmp}/b"), 5, ("{tmp}/b/x.yaml", "UTF-8"),
         setup=_write("b/x.yaml", LATIN1)),
    Case("baseline-value-not-a-number", _args("baselines", "validate", "--dir", "{tmp}/b"), 5,
         ("x.yaml row 1", "value", "number"), setup=_write("b/x.yaml", GOOD_BASELINE.replace("90", "ninety"))),
    Case("baseline-value-inf", _args("baselines", "validate", "--dir", "{tmp}/b"), 5,
         ("x.yaml row 1", "value", "finite"), setup=_write("b/x.yaml", GOOD_BASELINE.replace("90", ".inf"))),
    Case("baseline-snr-absurd", _args("baselines", "validate", "--dir", "{tmp}/b"), 5,
         ("x.yaml row 1", "snr_db", "-60..60"),
         setup=_write("b/x.yaml", GOOD_BASELINE.replace("condition: clean", "condition: {noise: w, snr_db: 500}"))),
    Case("noise-definition-not-utf8", _args("noise", "list"), 5, ("{tmp}/noise-defs/mine.yaml", "UTF-8"),
         setup=_noise_defs(LATIN1), env={"KWSBENCH_NOISE_DEFS": "{tmp}/noise-defs"}),
    Case("noise-definition-param-not-a-number", _args("noise", "list"), 5,
         ("{tmp}/noise-defs/mine.yaml", "params.exponent", "number"),
         setup=_noise_defs(GOOD_NOISE.replace("1.0}", "steep}")), env={"KWSBENCH_NOISE_DEFS": "{tmp}/noise-defs"}),
    Case("noise-definition-version-text", _args("noise", "list"), 5,
         ("{tmp}/noise-defs/mine.yaml", "version", "integer"),
         setup=_noise_defs(GOOD_NOISE.replace("version: 1", "version: one")),
         env={"KWSBENCH_NOISE_DEFS": "{tmp}/noise-defs"}),
    Case("manifest-sha-not-hex", _args("checkpoints", "list"), 5, ("{tmp}/manifests/mine.yaml", "sha256", "64 hex"),
         setup=_manifests(GOOD_MANIFEST.replace("0" * 64, "zz")), env={"KWSBENCH_MANIFESTS": "{tmp}/manifests"}),
    Case("manifest-not-utf8", _args("checkpoints", "list"), 5, ("{tmp}/manifests/mine.yaml", "UTF-8"),
         setup=_manifests(LATIN1), env={"KWSBENCH_MANIFESTS": "{tmp}/manifests"}),
    Case("manifest-files-not-a-list", _args("checkpoints", "list"), 5, ("{tmp}/manifests/mine.yaml", "files", "list"),
         setup=_manifests("name: mine\nfiles: a.pt\n"), env={"KWSBENCH_MANIFESTS": "{tmp}/manifests"}),
    Case("recipe-lr-not-a-number", _args("train", MODEL, "--recipe", "{tmp}/r.yaml", "--quiet"), 5,
         ("{tmp}/r.yaml", "lr", "number"),
         setup=_write("r.yaml", "name: r\nsource: s\noptimizer: adam\nlr: fast\nepochs: 1\nbatch_size: 4\n")),
    Case("recipe-not-utf8", _args("train", MODEL, "--recipe", "{tmp}/r.yaml", "--quiet"), 5, ("{tmp}/r.yaml", "UTF-8"),
         setup=_write("r.yaml", LATIN1)),
    # checkpoints a user points at
    Case("checkpoint-tampered", _run("--config", "{tmp}/plan.yaml"), 1, ("FAILED", "{tmp}/bad.pt"),
         setup=lambda w: (_write("bad.pt", b"not a torch file")(w), _plan(
             f"checkpoints:\n  {MODEL}: '{{tmp}}/bad.pt'\n")(w)), unchanged=False),
    Case("checkpoint-missing", _run("--config", "{tmp}/plan.yaml"), 1, ("FAILED", "{tmp}/gone.pt"),
         setup=_plan(f"checkpoints:\n  {MODEL}: '{{tmp}}/gone.pt'\n"), unchanged=False),
    # damage to the store and the caches: reported, recomputed / rebuilt, never reused
    Case("store-prediction-blob-damaged", _run(), 0, ("damaged cell recomputed", MODEL, "predictions fail"),
         setup=_damage_blob, unchanged=False, check=_repaired(_base_store)),
    Case("store-cell-row-damaged-run", _run(), 0, ("damaged cell recomputed", "row fails its checksum"),
         setup=_damage_row, unchanged=False, check=_repaired(_base_store)),
    Case("store-cell-row-damaged-leaderboard", _args("leaderboard", "--store", "{store}"), 6,
         ("{store}", "fail their checksum", "kwsbench run"), setup=_damage_row),
    Case("store-page-damaged", _run(), 6, ("{store}", "damaged", "move it aside"), setup=_damage_page),
    Case("store-read-only-run", _run("--force"), 6, ("{store}", "read-only", "--store"),
         setup=_immutable("store.sqlite")),
    Case("store-read-only-leaderboard", _args("leaderboard", "--store", "{store}", "--format", "csv"), 0,
         (MODEL,), setup=_immutable("store.sqlite")),
    Case("store-folder-read-only-new-store", _run("--store", "{tmp}/ro/new.sqlite"), 6, ("{tmp}/ro/new.sqlite",),
         setup=lambda w: ((w.tmp / "ro").mkdir(), _immutable("ro")(w))),
    Case("store-locked-briefly", _run("--force"), 0, (MODEL,), setup=_hold_lock(1.5), unchanged=False),
    Case("store-being-written-leaderboard", _args("leaderboard", "--store", "{store}", "--format", "json"), 0,
         (MODEL,), setup=_hold_lock(3.0, "IMMEDIATE")),
    Case("store-locked-too-long", _run("--force"), 6, ("{store}", "locked by another process", "wait"),
         setup=lambda w: (_hold_lock(4.0)(w), _short_busy_timeout(w))),
    Case("store-disk-full", _run("--force"), 6, ("{store}", "disk full", "free disk space"), subprocess="entry",
         file_size_limit=2048),
    Case("noise-bank-cache-truncated", _run("--force"), 0, ("noise-bank cache file", "truncated", "rendered again"),
         setup=_truncate("noise"), unchanged=False, check=_same_cache_as_base("noise")),
    Case("noise-bank-cache-damaged", _run("--force"), 0, ("noise-bank cache file", "fails its checksum"),
         setup=_flip_cache("noise"), unchanged=False, check=_same_cache_as_base("noise")),
    Case("clip-set-cache-damaged", _run("--force"), 0, ("clip-set cache entry", "fails its checksum", "decoded again"),
         setup=_flip_cache("clipsets"), unchanged=False, check=_same_cache_as_base("clipsets")),
    Case("clip-set-cache-truncated", _run("--force"), 0, ("clip-set cache entry", "truncated"),
         setup=_truncate("clipsets"), unchanged=False, check=_same_cache_as_base("clipsets")),
    Case("cache-disk-full", _run("--force"), 0, ("could not write the noise-bank cache", "KWSBENCH_CACHE"),
         setup=_no_bank_cache, subprocess="entry", file_size_limit=300_000, unchanged=False),
    Case("export-json-with-infinite-snr", _args("leaderboard", "--store", "{store}", "--format", "json"), 0,
         (MODEL,), setup=_legacy_inf_snr, check=_strict_json),
    Case("export-csv-with-infinite-snr", _args("leaderboard", "--store", "{store}", "--format", "csv"), 0,
         (MODEL,), setup=_legacy_inf_snr, check=_valid_csv),
    Case("cache-folder-unwritable", _run("--force"), 0, ("could not write the noise-bank cache", "KWSBENCH_CACHE"),
         setup=_immutable("cache/noise", empty_first="cache/noise"), unchanged=False),
]


def _absent(text: str, out: str) -> None:
    assert text not in out, out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: World, monkeypatch, capsys):
    if case.skip:
        pytest.skip(case.skip)
    if case.setup:
        case.setup(world)
    while _PATCHES:
        monkeypatch.setattr(*_PATCHES.pop())
    before = snapshot(world)
    code, out = run_case(case, world, monkeypatch, capsys)
    assert "Traceback" not in out, out
    assert code == case.code, f"exit {code}, expected {case.code}:\n{out}"
    for text in case.says:
        assert world.fmt(text) in out, f"{world.fmt(text)!r} not in:\n{out}"
    if code not in (0, 1):
        message = out.lower()
        assert any(word in message for word in ACTION_WORDS) or "usage:" in message, f"no advice in:\n{out}"
    if case.unchanged:
        assert snapshot(world) == before, "the store or a cache file changed"
    if case.check:
        case.check(world, out)


def test_catalogue_is_large_and_documented():
    """Every exit code the catalogue expects, and every EXIT_* code of kwsbench.errors, is in the README's table."""
    from kwsbench import errors

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Exit codes"):]
    table = table[:table.index("\n## ", 1)]
    codes = {c.code for c in CASES} | {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    for code in sorted(codes):
        assert f"| {code} |" in table, f"exit code {code} not documented"
    assert len(CASES) >= 60


# -- faults that take more than one command -----------------------------------------------------------------

def _entry(w: World, argv: list[str]) -> subprocess.Popen:
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_bad_inputs as t; "
            f"from pathlib import Path; t.register_tiny(Path({str(w.ckpt)!r})); sys.exit(t.main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KWSBENCH_CACHE": str(w.cache)}
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=w.tmp)


def test_two_runs_starting_at_once_on_a_new_store_both_succeed(world):
    """The schema is created under an immediate lock: the second process waits, then finds it made."""
    fresh = world.tmp / "fresh.sqlite"
    procs = [_entry(world, [*healthy_run(world)[:-1], str(fresh), "--seed", str(seed)]) for seed in (1, 2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in out, out
    with sqlite3.connect(fresh) as conn:
        # one clean cell (clean audio has no noise seed, so both runs share it) and a noisy one per seed
        assert conn.execute("SELECT COUNT(*) FROM cells WHERE status = 'ok'").fetchone()[0] == 3
        assert sorted(r[0] for r in conn.execute("SELECT status FROM runs")) == ["completed", "completed"]


def test_interrupted_run_is_marked_interrupted(world, monkeypatch, capsys):
    from kwsbench.run import runner

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "_start_cell", interrupt)
    assert main([*healthy_run(world), "--force"]) == 130
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and "interrupted" in out.err
    with sqlite3.connect(world.store) as conn:
        assert conn.execute("SELECT status FROM runs ORDER BY run_id DESC").fetchone()[0] == "interrupted"


def _as_schema_2(store: Path) -> None:
    """The store as kwsbench wrote it before checksums: no checksum (nor precision) columns, version 2, rollback
    journal."""
    conn = sqlite3.connect(store)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("ALTER TABLE cells DROP COLUMN precision")
    conn.execute("ALTER TABLE cells DROP COLUMN checksum")
    conn.execute("ALTER TABLE predictions DROP COLUMN sha256")
    conn.execute("UPDATE schema_version SET version = 2")
    conn.commit()
    conn.close()


def test_schema_2_store_is_read_as_is_and_migrated_in_place_by_a_run(world, capsys):
    _as_schema_2(world.store)
    before = world.store.read_bytes()
    assert main(["leaderboard", "--store", str(world.store), "--format", "csv"]) == 0
    assert MODEL in capsys.readouterr().out and world.store.read_bytes() == before  # read-only: untouched
    assert main(healthy_run(world)) == 0
    assert "0 cells computed, 2 reused" in capsys.readouterr().out  # migrated, and its cells still serve
    from kwsbench.results.store import SCHEMA_VERSION, Store

    with Store(world.store) as st:
        assert st._schema == SCHEMA_VERSION and all(st.has_ok(c.key) for c in st.cells())
        assert not st.damaged


def test_many_openers_of_a_new_store_at_the_same_instant(tmp_path):
    """Threads released together by a barrier all open (and so try to create) the same new store. Repeated on
    fresh files: SQLite's immediate SQLITE_BUSY on the switch to WAL hit about 1 round in 20."""
    from kwsbench.results.store import SCHEMA_VERSION, Store

    n = 8
    for attempt in range(40):
        path = tmp_path / f"new-{attempt}.sqlite"
        barrier, errors = threading.Barrier(n), []

        def open_it(path=path, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                Store(path).close()
            except Exception as err:  # noqa: BLE001 - collected and shown below
                errors.append(err)
        threads = [threading.Thread(target=open_it) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, (attempt, errors)
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
