"""One HTTP download, sha256-verified before the file gets its name, with two policies for a failed attempt:

- `resume=True` (dataset archives, gigabytes): the bytes go to `<file>.part` beside the target, which a failed
  attempt keeps; the next call continues it with an HTTP Range request.
- `resume=False` (checkpoints, megabytes): the bytes go to a temporary file that any failure deletes, so
  nothing half-written or unverified is ever left behind.

Either way a complete download whose sha256 differs is deleted (resuming it could never succeed).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kwsbench.errors import DownloadError

_CHUNK = 1 << 20
ProgressFn = Callable[[int, "int | None"], None]  # (bytes so far, total bytes where known)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: Path, expected: str, source: str) -> None:
    """Delete and report a file whose digest differs from `expected`."""
    got = sha256_file(path)
    if got != expected:
        path.unlink()
        raise DownloadError(
            f"sha256 mismatch for {source}: expected {expected}, got {got}. The file was deleted; retry, or check "
            "that --url-base serves the published file (or whether the source changed)")


def download(url: str, dst: Path, sha256: str, *, resume: bool, size: int | None = None,
             progress: ProgressFn | None = None, offline_hint: str = "", timeout: float = 60.0) -> None:
    """Download `url` to `dst` (see the module docstring for `resume`). `size`: the expected byte count when
    the server does not say; `offline_hint`: what the user can do without network, added to errors."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if resume:
        part = dst.with_name(dst.name + ".part")
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
        os.close(fd)
        part = Path(tmp)
    try:
        _transfer(url, part, resume, size, progress, offline_hint, timeout)
        check_sha256(part, sha256, source=url)
        os.replace(part, dst)
    finally:
        if not resume and part.exists():
            part.unlink()


def _transfer(url: str, part: Path, resume: bool, size: int | None, progress: ProgressFn | None,
              offline_hint: str, timeout: float) -> None:
    have = part.stat().st_size if resume and part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the partial file is already whole
            return
        raise DownloadError(f"download of {url} failed: HTTP {err.code} {err.reason}. {offline_hint}".strip()) from err
    except OSError as err:  # URLError, timeouts, refused connections
        raise DownloadError(f"cannot reach {url}: {err}. {offline_hint}".strip()) from err
    again = "run the same command again to resume" if resume else f"nothing was saved. {offline_hint}".strip()
    with resp:
        resumed = resp.status == 206
        length = resp.headers.get("Content-Length")
        total = (have if resumed else 0) + int(length) if length else size
        done = have if resumed else 0
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(f"download of {url} interrupted after {done} bytes ({err}); {again}") from err
    if total is not None and done < total:
        raise DownloadError(f"download of {url} stopped after {done} of {total} bytes; {again}")
