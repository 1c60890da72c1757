"""Decode-once cache of clip sets: one .npy of samples plus a JSON sidecar, keyed by the load inputs.

The key covers everything that can change the decoded set without changing its file names: every
file's relative path, size and mtime, the protocol, split and reader version. A stale entry is
therefore never read; it is simply never matched again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

from kwsbench.data.clipset import ClipSet
from kwsbench.paths import cache_dir

# Bump when decoding changes in a way the key inputs cannot see (padding, resampling, silence crops).
READER_VERSION = 1


def clipset_cache_dir() -> Path:
    return cache_dir() / "clipsets"


def cache_key(root: Path, files: list[tuple[str, int, int]], protocol: str, split: str, extra: str = "") -> str:
    """sha256 over the reader version, resolved root, protocol, split and (relpath, size, mtime_ns) list."""
    h = hashlib.sha256()
    h.update(f"v{READER_VERSION}\n{root.resolve()}\n{protocol}\n{split}\n{extra}\n".encode())
    for rel, size, mtime in sorted(files):
        h.update(f"{rel}\t{size}\t{mtime}\n".encode())
    return h.hexdigest()


def load_cached(key: str) -> ClipSet | None:
    """The cached ClipSet for `key`, or None if absent. An entry that is unreadable or fails its checksum (the
    samples' CRC-32 and the metadata's sha256, recorded when it was written) is reported and rebuilt, never used."""
    base = clipset_cache_dir()
    meta_path, npy_path = base / f"{key}.json", base / f"{key}.npy"
    if not meta_path.is_file() or not npy_path.is_file():
        return None
    raw = None
    try:
        doc = json.loads(meta_path.read_text())
        meta, problem = doc["meta"], _problem(doc)
    except (OSError, ValueError, KeyError, TypeError) as err:
        problem = f"is unreadable ({err})"
    if not problem:
        try:
            raw = read_checked_npy(npy_path, int(doc["bytes"]), str(doc["crc32"]))
        except (OSError, KeyError, TypeError) as err:
            problem = f"is unreadable ({err})"
        except ValueError as err:  # truncated, damaged, not an array of samples
            problem = str(err)
    if problem:
        warnings.warn(f"clip-set cache entry {npy_path} {problem}; the clips are decoded again", stacklevel=3)
        return None
    # int16 storage is exact for 16-bit sources; float32 / 32768 reproduces the decoded values bit for bit.
    audio = raw.astype(np.float32) / np.float32(32768.0) if raw.dtype == np.int16 else raw.astype(np.float32)
    try:
        return ClipSet(
            audio=audio,
            labels=np.asarray(meta["labels"], dtype=np.int64),
            label_names=tuple(meta["label_names"]),
            utterance_ids=tuple(meta["utterance_ids"]),
            speaker_ids=tuple(meta["speaker_ids"]),
            protocol=meta["protocol"],
            fingerprint=meta["fingerprint"],
            skipped=int(meta["skipped"]),
            sample_rate=int(meta["sample_rate"]),
            meta=dict(meta.get("meta", {})),
        )
    except (KeyError, ValueError):
        return None


def store_cached(key: str, cs: ClipSet) -> None:
    """Write the entry atomically (temp file + rename), so a crash never leaves a half entry."""
    base = clipset_cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    scaled = cs.audio * np.float32(32768.0)
    in_range = float(scaled.max(initial=0)) <= 32767 and float(scaled.min(initial=0)) >= -32768
    exact_int16 = in_range and bool(np.all(scaled == np.round(scaled)))
    data = np.clip(scaled, -32768, 32767).astype(np.int16) if exact_int16 else cs.audio.astype(np.float32)
    meta = {
        "labels": cs.labels.tolist(),
        "label_names": list(cs.label_names),
        "utterance_ids": list(cs.utterance_ids),
        "speaker_ids": list(cs.speaker_ids),
        "protocol": cs.protocol,
        "fingerprint": cs.fingerprint,
        "skipped": cs.skipped,
        "sample_rate": cs.sample_rate,
        "meta": cs.meta,
    }
    _atomic_write(base / f"{key}.npy", lambda f: np.save(f, data, allow_pickle=False))
    npy = base / f"{key}.npy"
    doc = {"meta": meta, "meta_sha256": _meta_sha256(meta), "bytes": npy.stat().st_size, "crc32": file_crc32(npy)}
    _atomic_write(base / f"{key}.json", lambda f: f.write(json.dumps(doc).encode()))


def file_crc32(path: Path) -> str:
    """CRC-32 of a file's bytes, read in 16 MiB pieces. A checksum against truncation and flipped bits, not an
    attacker (whoever can write the cache can write the code): sha256 would add about a second per
    GSC-size noise bank or clip set load."""
    crc = 0
    with open(path, "rb") as fh:
        while piece := fh.read(16 << 20):
            crc = zlib.crc32(piece, crc)
    return f"{crc:08x}"


def read_checked_npy(path: Path, size: int, crc32: str) -> np.ndarray:
    """The array of a .npy file whose size and CRC-32 were recorded when it was written, read in one pass: the
    bytes are read once, checked, and the array is a view of them (np.load after file_crc32 read the file twice,
    about a third of loading a GSC-size noise bank). Raises ValueError saying what is wrong."""
    with open(path, "rb") as fh:
        actual = os.fstat(fh.fileno()).st_size
        if actual != size:
            raise ValueError(f"is {actual} bytes, its sidecar says {size} (truncated?)")
        raw = np.empty(size, dtype=np.uint8)
        if fh.readinto(memoryview(raw)) != size:
            raise ValueError("changed while it was read")
    if f"{zlib.crc32(raw):08x}" != crc32:
        raise ValueError("fails its checksum (damaged)")
    head = io.BytesIO(raw[:min(size, 1 << 16)].tobytes())
    version = np.lib.format.read_magic(head)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(head)
    if dtype.hasobject:
        raise ValueError("holds Python objects, not samples")
    count = int(np.prod(shape, dtype=np.int64))
    if head.tell() + count * dtype.itemsize != size:
        raise ValueError(f"has {size - head.tell()} bytes of data for a {dtype} array of shape {shape}")
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=head.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def _meta_sha256(meta: dict) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def _problem(doc: dict) -> str:
    """'' when the entry's metadata matches the checksum its JSON records, else what is wrong (the samples are
    checked as they are read: read_checked_npy)."""
    if "meta_sha256" not in doc or "crc32" not in doc:
        return "has no checksum (written by an older kwsbench)"
    if _meta_sha256(doc["meta"]) != doc["meta_sha256"]:
        return "has metadata that fails its checksum (damaged)"
    return ""


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
