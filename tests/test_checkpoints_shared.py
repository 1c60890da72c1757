"""Checkpoint import / fetch / strict loading with the real NC-SSM files from ../shared."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from kwsbench import checkpoints as ck
from kwsbench.cli import main
from kwsbench.errors import EXIT_CHECKPOINT, EXIT_DOWNLOAD, DownloadError

pytestmark = pytest.mark.data

# nc-ssm.md §12.3, NanoMamba-NC-20K/best.pt on the "down" fixture clip (printed to 4 decimals).
NC20K_DOWN = [-0.0632, -0.9433, -0.3920, 4.9618, -0.4089, 0.0740, 0.6356, -0.9734, -0.0998, 0.0340, -0.5360, -1.0596]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("KWSBENCH_CHECKPOINTS", str(path))
    monkeypatch.delenv("KWSBENCH_MANIFESTS", raising=False)
    return path / "nc-ssm"


def _manifest() -> ck.Manifest:
    return ck.get_manifest("nc-ssm")


def _serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def _raw_tree(root: Path, source: Path) -> None:
    """Lay the shared files out as a raw-file server does: <repository>/<commit>/<source path>."""
    m = _manifest()
    for e in m.entries:
        dst = root / m.repository / (e.commit or m.commit) / e.source_path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / e.id, dst)


def test_import_shared_layout_then_verify(home, ncssm_checkpoints, capsys):
    assert main(["checkpoints", "import", str(ncssm_checkpoints)]) == 0
    for e in _manifest().entries:
        assert ck.sha256_file(home / e.id) == e.sha256
    assert (home / "LICENSE.txt").is_file()
    assert main(["checkpoints", "verify"]) == 0
    assert "MISMATCH" not in capsys.readouterr().out
    report = ck.import_dir(ncssm_checkpoints)  # idempotent
    assert len(report.already) == 11 and not report.imported


def test_import_repository_layout_rejects_other_version(tmp_path, home, ncssm_checkpoints):
    clone = tmp_path / "clone"
    for e in _manifest().entries:
        dst = clone / e.source_path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ncssm_checkpoints / e.id, dst)
    # A clone at HEAD holds another NanoMamba-Tiny/best.pt than the pinned historic one.
    shutil.copyfile(ncssm_checkpoints / "NanoMamba-Tiny/final.pt", clone / "checkpoints_full/NanoMamba-Tiny/best.pt")
    assert main(["checkpoints", "import", str(clone)]) == EXIT_CHECKPOINT
    assert not (home / "NanoMamba-Tiny/best.pt").exists()
    assert (home / "NanoMamba-Tiny/final.pt").is_file()
    assert not list(home.rglob("*.part"))


def test_fetch_end_to_end_from_local_server(tmp_path, home, ncssm_checkpoints):
    served = tmp_path / "served"
    _raw_tree(served, ncssm_checkpoints)
    server, base = _serve(served)
    try:
        assert main(["checkpoints", "fetch", "--url-base", base]) == 0
        for e in _manifest().entries:
            assert ck.sha256_file(home / e.id) == e.sha256
        # Already present and verified: nothing is downloaded again.
        assert ck.fetch(url_base=base) == []
        # A corrupted download is never left looking like a good file.
        target = "NanoMamba-NC-20K/best.pt"
        (home / target).unlink()
        e = _manifest().entry(target)
        served_file = served / _manifest().repository / e.commit / e.source_path
        served_file.write_bytes(served_file.read_bytes()[:-10] + b"0123456789")
        with pytest.raises(DownloadError, match="sha256"):
            ck.fetch([target], url_base=base)
        assert not (home / target).exists() and not list(home.rglob("*.part"))
        served_file.unlink()
        assert main(["checkpoints", "fetch", f"nc-ssm:{target}", "--url-base", base]) == EXIT_DOWNLOAD  # 404
        assert not (home / target).exists() and not list(home.rglob("*.part"))
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def imported(home, ncssm_checkpoints):
    ck.import_dir(ncssm_checkpoints)
    return home


def test_every_public_checkpoint_loads_strictly(imported):
    for e in _manifest().entries:
        loaded = ck.load_model(e.model)
        assert loaded.sha256 == e.sha256
        assert not loaded.module.training


def test_nc20k_reference_logits(imported, ncssm_fixtures):
    audio = np.fromfile(ncssm_fixtures / "clips" / "down.f32", dtype="<f4")
    model = ck.load_model("nc-ssm-20k").module
    with torch.no_grad():
        logits = model(torch.from_numpy(audio)[None])[0].numpy()
    # 1e-4 parity, plus half a unit of the 4th decimal the reference prints.
    np.testing.assert_allclose(logits, NC20K_DOWN, atol=1.5e-4, rtol=0)


def test_corrupted_public_file_refused(imported):
    path = imported / "BC-ResNet-1/best.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError, match="BC-ResNet-1/best.pt.*sha256"):
        ck.load_model("bc-resnet-1-ncssm")


# nc-ssm.md §12.3: the "yes" logit on the "yes" clip, per checkpoint. Distinct values pin each manifest
# entry to the right file (e.g. the historic Tiny best.pt vs final.pt, NC-SSM vs NC-Matched).
YES_ON_YES = {
    "DS-CNN-S/best.pt": 1.8446, "BC-ResNet-1/best.pt": 1.9311, "NC-SSM/best.pt": 4.7688,
    "NanoMamba-NC-Matched/best.pt": 4.6717, "NanoMamba-NC-Large/best.pt": 5.3561,
    "NanoMamba-NC-12K/best.pt": 5.0104, "NanoMamba-NC-15K/best.pt": 4.4232, "NanoMamba-NC-20K/best.pt": 4.8457,
    "NanoMamba-Small/best.pt": 4.8310, "NanoMamba-Tiny/best.pt": 5.8162, "NanoMamba-Tiny/final.pt": 5.8914,
}


def test_manifest_entries_map_to_the_right_weights(imported, ncssm_fixtures):
    audio = torch.from_numpy(np.fromfile(ncssm_fixtures / "clips" / "yes.f32", dtype="<f4"))[None]
    got = {}
    for e in _manifest().entries:
        with torch.no_grad():
            got[e.id] = float(ck.load_model(e.model, checkpoint=f"nc-ssm:{e.id}").module(audio)[0, 0])
    assert got == pytest.approx(YES_ON_YES, abs=1.5e-4)
