"""`kwsbench data download` end to end against a local HTTP server on 127.0.0.1 (no network)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
from helpers import Server, canonical_tarball

from kwsbench.cli import main
from kwsbench.data import download as dl
from kwsbench.data.speech_commands import load_clipset
from kwsbench.errors import DownloadError

NAME = "gsc-v2-test"
FILENAME = dl.ARCHIVES[NAME].filename


def pin(monkeypatch, data: bytes) -> None:
    """Pin the test archive's digest in place of the official one (the code under test is unchanged)."""
    a = dl.ARCHIVES[NAME]
    monkeypatch.setitem(dl.ARCHIVES, NAME, dl.Archive(a.name, a.filename, hashlib.sha256(data).hexdigest(),
                                                      len(data), a.subdir))


def test_good_archive_downloads_extracts_and_loads(tmp_path, monkeypatch, capsys):
    data = canonical_tarball()
    pin(monkeypatch, data)
    dest = tmp_path / "gsc_test"
    with Server() as srv:
        srv.files[FILENAME] = data
        assert main(["data", "download", NAME, "--dest", str(dest), "--url-base", srv.url]) == 0
    cs = load_clipset(dest)
    assert len(cs) == 12 and cs.protocol == "v2-12-official"
    assert not (tmp_path / FILENAME).exists() and not (tmp_path / f"{FILENAME}.part").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    # a second run finds the completed folder and does nothing (the server is gone)
    assert main(["data", "download", NAME, "--dest", str(dest), "--url-base", "http://127.0.0.1:9/"]) == 0


def test_checksum_mismatch_fails_and_deletes(tmp_path, capsys):
    data = canonical_tarball()  # the pinned official digest cannot match this archive
    with Server() as srv:
        srv.files[FILENAME] = data
        rc = main(["data", "download", NAME, "--dest", str(tmp_path / "d"), "--url-base", srv.url])
    assert rc == 7
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not list(tmp_path.glob(f"{FILENAME}*"))


def test_interrupted_download_resumes_with_range(tmp_path, monkeypatch):
    data = canonical_tarball()
    pin(monkeypatch, data)
    dest = tmp_path / "d"
    with Server() as srv:
        srv.files[FILENAME] = data
        srv.cut_first.add(FILENAME)
        with pytest.raises(DownloadError, match="resume"):
            dl.download_dataset(NAME, dest, url_base=srv.url, progress=False)
        part = tmp_path / f"{FILENAME}.part"
        assert 0 < part.stat().st_size < len(data)
        have = part.stat().st_size
        dl.download_dataset(NAME, dest, url_base=srv.url, progress=False)
    assert srv.ranges == [None, f"bytes={have}-"]
    assert len(load_clipset(dest)) == 12


def test_truncated_archive_fails_cleanly(tmp_path, monkeypatch, capsys):
    data = canonical_tarball()[:-300]  # digest pinned to the truncated bytes: extraction must catch it
    pin(monkeypatch, data)
    with Server() as srv:
        srv.files[FILENAME] = data
        rc = main(["data", "download", NAME, "--dest", str(tmp_path / "d"), "--url-base", srv.url])
    assert rc == 7
    assert "truncated or not a valid tar archive" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, (4 if kind == tarfile.REGTYPE else 0)
    return info


@pytest.mark.parametrize("member", [
    _member("../evil.txt"),
    _member("./yes/../../evil.txt"),
    _member("/tmp/kwsbench-evil.txt"),
    _member("./yes/link", tarfile.SYMTYPE, "../../outside"),
    _member("./yes/abs", tarfile.SYMTYPE, "/etc/passwd"),
    _member("./yes/hard", tarfile.LNKTYPE, "../outside"),
])
def test_unsafe_members_are_rejected(tmp_path, monkeypatch, capsys, member):
    data = canonical_tarball([member])
    pin(monkeypatch, data)
    with Server() as srv:
        srv.files[FILENAME] = data
        rc = main(["data", "download", NAME, "--dest", str(tmp_path / "d"), "--url-base", srv.url])
    assert rc == 7
    assert "unsafe archive member" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/kwsbench-evil.txt").exists()


def test_http_404_and_nonempty_dest(tmp_path, capsys):
    with Server() as srv:
        assert main(["data", "download", NAME, "--dest", str(tmp_path / "d"), "--url-base", srv.url]) == 7
        assert "HTTP 404" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["data", "download", NAME, "--dest", str(tmp_path / "full")]) == 7
