"""Helpers shared by several test files."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from kwsbench.checkpoints import LoadedModel
from kwsbench.cost import Cost
from kwsbench.data.clipset import LABELS_12, ClipSet
from kwsbench.data.speech_commands import CANONICAL_FOLDERS
from kwsbench.errors import BadInputError, CheckpointError
from kwsbench.models.registry import ModelCard
from kwsbench.paths import shared_dir
from kwsbench.results.store import StoredCell
from kwsbench.run.plan import Plan

_CELL_DEFAULTS: dict[str, Any] = dict(
    cell_key="k" * 64, run_id=1, model="m", checkpoint_sha256="c" * 64, fingerprint="f" * 64,
    protocol="v2-12-official", label_names=tuple(str(i) for i in range(12)), noise="clean", noise_version="",
    snr_db=None, snr_def="", rate_hz=16000, rate_mode="native", decimation="sinc", seed=0, status="ok",
    accuracy=0.5, n=10, correct=5, ci_low=0.2, ci_high=0.8, boot_low=None, boot_high=None, per_class=(),
    macro_f1=None, error="", seconds=0.0, created="2026-01-01T00:00:00",
)


def stored_cell(**fields: Any) -> StoredCell:
    """A StoredCell with plausible defaults for the fields a test does not care about."""
    return StoredCell(**{**_CELL_DEFAULTS, **fields})


# -- the runner's stand-ins: a tiny model, its cards and loader, a seeded noise provider, a clip set ----------

class TinyKws(torch.nn.Module):
    """Band energies of the spectrum -> linear layer; rate-changeable (bands scale with the rate)."""

    def __init__(self, seed: int = 0, delay: float = 0.0, fail: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.nn.Linear(16, 12)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(12, 16, generator=g))
            self.proj.bias.zero_()
        self.rate = 16000
        self.delay = delay
        self.fail = fail

    def set_sample_rate(self, rate: int) -> None:
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise RuntimeError("forward exploded")
        if self.delay:
            time.sleep(self.delay)
        spec = torch.fft.rfft(x, dim=-1).abs()
        # 16 bands of 500 Hz each at 16 kHz; a lower rate sees only its own bands (upper ones empty).
        hz_per_bin = self.rate / x.shape[-1]
        bins = (torch.arange(spec.shape[-1], device=x.device) * hz_per_bin / 500).long().clamp(max=15)
        feats = torch.zeros(x.shape[0], 16, device=x.device).index_add_(1, bins, spec)
        return self.proj(torch.log1p(feats))


def build_tiny(**kw) -> TinyKws:
    return TinyKws(**kw)


# the stand-in cards of the runner tests; a test registers them for its own duration (conftest `tiny_cards`,
# or `with registered(*TINY_CARDS)`)
TINY_CARDS = tuple(
    ModelCard(name=name, family="test", builder=build_tiny, kwargs=kw, can_change_rate=rate)
    for name, kw, rate in (("test-tiny", {}, True), ("test-tiny-slow", {"delay": 0.04}, True),
                           ("test-tiny-fixed", {}, False), ("test-broken", {"fail": True}, False)))


def tiny_loader(card, checkpoint, device):
    if card.name == "test-missing":
        raise CheckpointError("no weights for test-missing")
    return LoadedModel(card.build().to(device).eval(), hashlib.sha256(card.name.encode()).hexdigest())


class RmsNoise:
    """Seeded white noise per utterance (contract 1 shape), mixed at clip RMS."""

    def resolve(self, name: str) -> str:
        if name not in ("white", "hum"):
            raise BadInputError(f"unknown noise source {name!r}")
        return name

    def prepare(self, clipset, names, seed, on_render=None, meanwhile=None):
        if meanwhile is not None:  # renders on demand in bank(): nothing to overlap
            meanwhile()

    def bank(self, clipset, name, seed):
        rows = []
        for uid in clipset.utterance_ids:
            h = int.from_bytes(hashlib.sha256(f"{name}/{uid}".encode()).digest()[:8], "little")
            rows.append(np.random.default_rng([seed, h]).standard_normal(16000).astype(np.float32))
        return np.stack(rows), "1"

    def mix(self, clean, noise, snr_db, definition):
        rc = clean.pow(2).mean(dim=-1, keepdim=True).sqrt()
        rn = noise.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-12)
        return clean + noise * (rc / (rn * 10 ** (snr_db / 20)))


def make_clipset(per_class: int = 5, seed: int = 0) -> ClipSet:
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    audio, labels, uids, spk = [], [], [], []
    for k in range(12):
        for j in range(per_class):
            f = 200 + 550 * k + rng.uniform(-50, 50)
            audio.append((0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(16000)).astype(np.float32))
            labels.append(k)
            uids.append(f"{LABELS_12[k]}/s{j % 3}_nohash_{j}.flac")
            spk.append("" if LABELS_12[k] == "silence" else f"s{j % 3}")
    audio = np.clip(np.round(np.stack(audio) * 32768), -32768, 32767) / 32768
    return ClipSet(audio=audio.astype(np.float32), labels=np.array(labels, dtype=np.int64), label_names=LABELS_12,
                   utterance_ids=tuple(uids), speaker_ids=tuple(spk), protocol="test-12")


def make_plan(tmp_path, **kw) -> Plan:
    """A validated plan over the stand-in card, white noise at -5 / +5 dB, a store in `tmp_path`."""
    base = dict(models=["test-tiny"], noise=["white"], snr=[-5.0, 5.0], store=str(tmp_path / "s.sqlite"))
    base.update(kw)
    return Plan(**base).validate()



# -- the report tests' cards: two stand-ins with a cost function and one without -------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACS = {"test-report-a": 2_000, "test-report-b": 50_000}


def report_cost(card: ModelCard, rate: int) -> Cost:
    body = MACS[card.name] * rate // 16000
    return Cost(model=card.name, rate=rate, trainable_params=204, inference_params=204, folded="",
                frontend_macs=rate, body_macs=body)


REPORT_CARDS = (
    *(ModelCard(name=name, family="test", builder=build_tiny, kwargs={"seed": seed}, can_change_rate=True,
                cost=report_cost) for name, seed in (("test-report-a", 1), ("test-report-b", 2))),
    next(c for c in TINY_CARDS if c.name == "test-tiny-fixed"),
)
REPORT_MODELS = [c.name for c in REPORT_CARDS]

# -- a local HTTP server and a small archive in the canonical test-set layout ---------------------------------

class Server:
    """Serves `files` by path; honours `Range: bytes=N-`; can cut the first response short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_first: set[str] = set()
        self.ranges: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                body = outer.files.get(self.path.lstrip("/"))
                outer.ranges.append(self.headers.get("Range"))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if self.path.lstrip("/") in outer.cut_first:
                    outer.cut_first.discard(self.path.lstrip("/"))
                    payload = payload[: len(payload) // 2]  # then close: a dropped connection
                self.wfile.write(payload)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def canonical_tarball(extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A small archive in the canonical test-set layout, entries starting with ./ like the real one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for c, folder in enumerate(CANONICAL_FOLDERS):
            wav = io.BytesIO()
            x = np.random.default_rng(c).uniform(-0.3, 0.3, 16000).astype(np.float32)
            sf.write(wav, x, 16000, subtype="PCM_16", format="WAV")
            name = "0.wav" if folder == "_silence_" else f"{c:08x}_nohash_0.wav"
            info = tarfile.TarInfo(f"./{folder}/{name}")
            info.size = len(wav.getvalue())
            tar.addfile(info, io.BytesIO(wav.getvalue()))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def require_shared(*parts: str):
    """Path under the shared folder; skip with the reason when absent, fail under CI."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        msg = (
            f"{path} not found: set KWSBENCH_SHARED to the team's shared folder "
            "(default ../shared beside the checkout)"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path
