"""Checksummed .npy files read in one pass (kwsbench.data.cache.read_checked_npy): the array np.load gives, and a
clear ValueError for a file that is truncated, damaged or not an array of samples."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from kwsbench.data.cache import read_checked_npy


def _saved(path: Path, array: np.ndarray, version: tuple[int, int] | None = None) -> tuple[int, str]:
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, array, version=version, allow_pickle=True)
    data = path.read_bytes()
    return len(data), f"{zlib.crc32(data):08x}"


@pytest.mark.parametrize("array", [
    np.arange(6 * 16000, dtype=np.float32).reshape(6, 16000) / 7,
    np.arange(-500, 500, dtype=np.int16).reshape(10, 100),
    np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
    np.zeros((0, 16000), dtype=np.float32),
], ids=["float32-rows", "int16", "fortran-order", "empty"])
@pytest.mark.parametrize("version", [None, (2, 0)])
def test_it_reads_what_np_load_reads(tmp_path, array, version):
    path = tmp_path / "a.npy"
    size, crc = _saved(path, array, version)
    got = read_checked_npy(path, size, crc)
    want = np.load(path)
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert got.flags.writeable  # callers may reorder rows in place


def test_a_truncated_file_says_so(tmp_path):
    path = tmp_path / "a.npy"
    size, crc = _saved(path, np.ones((4, 100), dtype=np.float32))
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(ValueError, match=rf"is {size // 2} bytes, its sidecar says {size} \(truncated\?\)"):
        read_checked_npy(path, size, crc)


def test_a_flipped_bit_fails_the_checksum(tmp_path):
    path = tmp_path / "a.npy"
    size, crc = _saved(path, np.ones((4, 100), dtype=np.float32))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="fails its checksum"):
        read_checked_npy(path, size, crc)


def test_an_array_of_objects_is_refused(tmp_path):
    path = tmp_path / "a.npy"
    size, crc = _saved(path, np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        read_checked_npy(path, size, crc)


def test_a_header_that_promises_more_data_than_the_file_holds(tmp_path):
    path = tmp_path / "a.npy"
    _saved(path, np.ones((4, 100), dtype=np.float32))
    data = path.read_bytes()
    cut = data[:-400]  # a whole row short, with a checksum recorded for the short file
    path.write_bytes(cut)
    with pytest.raises(ValueError, match="bytes of data for a float32 array of shape"):
        read_checked_npy(path, len(cut), f"{zlib.crc32(cut):08x}")


def test_a_clip_set_entry_written_without_checksums_is_named_as_such_and_decoded_again(tmp_path, monkeypatch):
    """An entry of an older kwsbench (no size, no CRC-32 in its JSON) is reported for what it is, not as unreadable."""
    import json
    import warnings

    from kwsbench.data import cache

    monkeypatch.setenv("KWSBENCH_CACHE", str(tmp_path))
    base = cache.clipset_cache_dir()
    base.mkdir(parents=True)
    np.save(base / "old.npy", np.zeros((2, 16000), dtype=np.int16))
    (base / "old.json").write_text(json.dumps({"meta": {"labels": [0, 1]}}))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert cache.load_cached("old") is None
    assert [str(w.message) for w in seen] == [
        f"clip-set cache entry {base / 'old.npy'} has no checksum (written by an older kwsbench); the clips are "
        "decoded again"]
