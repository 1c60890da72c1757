"""Download the official Speech Commands archives: resumable, sha256-verified, safely extracted.

Digests and sizes are pinned here (../shared/reference/data.md Section 3), so a mirror given with
--url-base must serve the very same bytes.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from kwsbench.errors import DownloadError
from kwsbench.fetch import check_sha256, download
from kwsbench.paths import data_home


@dataclass(frozen=True)
class Archive:
    name: str
    filename: str
    sha256: str
    size: int
    subdir: str  # default folder under data_home(); the archives have no top-level folder of their own


ARCHIVES: dict[str, Archive] = {
    "gsc-v2": Archive(
        "gsc-v2", "speech_commands_v0.02.tar.gz",
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58", 2_428_923_189, "speech_commands_v0.02",
    ),
    # digest as listed by a third-party project (data.md Section 3); a mismatch is reported, never ignored
    "gsc-v2-test": Archive(
        "gsc-v2-test", "speech_commands_test_set_v0.02.tar.gz",
        "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df", 112_563_277,
        "speech_commands_test_set_v0.02",
    ),
}
DEFAULT_URL_BASE = "https://storage.googleapis.com/download.tensorflow.org/data/"
COMPLETE_MARKER = ".kwsbench-download-complete"


def get_archive(name: str) -> Archive:
    if name not in ARCHIVES:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {', '.join(ARCHIVES)}")
    return ARCHIVES[name]


def default_dest(name: str) -> Path:
    return data_home() / get_archive(name).subdir


def download_dataset(name: str, dest: str | Path | None = None, url_base: str | None = None,
                     progress: bool = True, keep_archive: bool = False) -> Path:
    """Fetch, verify and extract archive `name` into `dest`; returns `dest`.

    The archive is downloaded beside `dest` as `<file>.part` and resumed with an HTTP Range request
    when a previous attempt was interrupted; an archive already placed there by hand is used as is.
    """
    archive = get_archive(name)
    dest = Path(dest).expanduser() if dest else default_dest(name)
    if (dest / COMPLETE_MARKER).is_file():
        return dest
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} exists and is not empty; choose another --dest or remove it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    final = dest.parent / archive.filename
    if not final.is_file():
        url = (url_base or DEFAULT_URL_BASE).rstrip("/") + "/" + archive.filename
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task(final.name, total=archive.size)
            download(url, final, archive.sha256, resume=True, size=archive.size,
                     progress=lambda done, total: bar.update(task, completed=done, total=total),
                     offline_hint=f"Without network, fetch the file elsewhere and put it at {final}, or pass "
                                  "--url-base pointing at a mirror")
    else:
        check_sha256(final, archive.sha256, source=str(final))
    safe_extract(final, dest)
    (dest / COMPLETE_MARKER).write_text(f"{archive.filename} sha256={archive.sha256}\n")
    if not keep_archive:
        final.unlink()
    return dest


def check_member(member: tarfile.TarInfo) -> None:
    """Reject members that could write outside the target: absolute or `..` paths, escaping links, devices."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or ".." in name.parts:
        raise DownloadError(f"unsafe archive member {member.name!r} (absolute or '..' path); refusing to extract")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        base = name.parent if member.issym() else PurePosixPath()
        if target.is_absolute() or ".." in _normalise(base / target).parts:
            raise DownloadError(f"unsafe archive member {member.name!r}: link to {member.linkname!r} leaves the folder")
    if member.isdev() or member.isfifo():
        raise DownloadError(f"unsafe archive member {member.name!r}: device or pipe; refusing to extract")


def _normalise(p: PurePosixPath) -> PurePosixPath:
    """Collapse `.` and `x/..` lexically; a leading `..` that remains means the path escapes."""
    out: list[str] = []
    for part in p.parts:
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            else:
                out.append("..")
        elif part != ".":
            out.append(part)
    return PurePosixPath(*out) if out else PurePosixPath(".")


def safe_extract(archive: Path, dest: Path) -> None:
    """Check every member, extract into a temporary folder beside `dest`, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.extract-"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                check_member(m)
            tar.extractall(tmp, members=members, filter="data")
        if dest.exists():
            dest.rmdir()  # empty (checked by the caller)
        os.replace(tmp, dest)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DownloadError(
            f"{archive} is truncated or not a valid tar archive ({err}); delete it and download again"
        ) from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
