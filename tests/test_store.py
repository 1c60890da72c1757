"""Results store: schema, transactional cells, resume keys, and clear errors that lose nothing."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from kwsbench.cli import main
from kwsbench.errors import StoreError
from kwsbench.results.store import SCHEMA_VERSION, CellKey, CellResult, Store


def _key(**kw) -> CellKey:
    base = dict(model="m", checkpoint_sha256="a" * 64, fingerprint="f" * 64, noise="white", noise_version="v1",
                snr_db=0.0, snr_def="rms", rate_hz=16000, rate_mode="native", decimation="", seed=0)
    base.update(kw)
    return CellKey(**base)


def _cell(key, preds) -> CellResult:
    return CellResult(key=key, protocol="p", label_names=("a", "b"), status="ok", accuracy=0.5, n=len(preds),
                      correct=1, ci_low=0.1, ci_high=0.9, per_class=[0.5, None], macro_f1=0.4,
                      predictions=np.array(preds))


def test_every_key_field_changes_the_key():
    base = _key()
    variants = [_key(model="x"), _key(checkpoint_sha256="b" * 64), _key(fingerprint="g" * 64), _key(noise="pink"),
                _key(noise_version="v2"), _key(snr_db=5.0), _key(snr_def="active"), _key(rate_hz=8000),
                _key(rate_mode="bandlimit"), _key(decimation="drop"), _key(seed=1)]
    digests = {v.digest() for v in variants}
    assert base.digest() not in digests and len(digests) == len(variants)


def test_roundtrip_and_replace(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        run = st.begin_run({"seed": 0, "plan": {"a": 1}})
        st.save_clips("f" * 64, ["u1", "u2"], ["s", ""], [0, 1])
        st.put_cell(run, _cell(_key(), [0, 0]))
        st.put_cell(run, _cell(_key(), [1, 1]))  # same key: replaced, predictions not duplicated
        assert st.has_ok(_key()) and not st.has_ok(_key(seed=3))
        [c] = st.cells()
        assert c.per_class == (0.5, None) and c.label_names == ("a", "b")
        assert c.key == _key() and c.digest() == c.cell_key == _key().digest()
        assert st.predictions(c.cell_key).tolist() == [1, 1]
        assert st.clips("f" * 64)[0] == ["u1", "u2"]
        st.finish_run(run, "ok")
        assert st.runs()[0]["status"] == "ok"


def test_failed_write_leaves_no_partial_cell(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        run = st.begin_run({})
        bad = _cell(_key(), [0, 1])
        bad.predictions = np.array([0, "x"], dtype=object)  # the int16 encoding fails
        with pytest.raises(ValueError):
            st.put_cell(run, bad)
        assert st.cells(status=None) == []
        assert st.conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0


def test_corrupt_store_is_store_error_and_untouched(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a readable kwsbench store"):
        Store(path)
    assert path.read_bytes() == before
    assert main(["leaderboard", "--store", str(path)]) == 6
    assert path.read_bytes() == before


def test_other_schema_version_is_store_error_and_data_kept(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.put_cell(st.begin_run({}), _cell(_key(), [0, 1]))
    with sqlite3.connect(path) as con:
        con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    copy = tmp_path / "copy.sqlite"
    shutil.copy(path, copy)
    with pytest.raises(StoreError, match="schema version"):
        Store(path)
    assert main(["run", "--store", str(path), "--models", "ds-cnn-s"]) == 6
    assert path.read_bytes() == copy.read_bytes()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 1


def test_predictions_blob_roundtrip_and_range(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        run = st.begin_run({})
        st.put_cell(run, _cell(_key(), [0, 11, 32767, -1]))
        got = st.predictions(_key().digest())
        assert got.dtype == np.int64 and got.tolist() == [0, 11, 32767, -1]
        assert st.predictions("0" * 64).dtype == np.int64 and st.predictions("0" * 64).size == 0
        st.put_cell(run, _cell(_key(seed=1), []))
        assert st.predictions(_key(seed=1).digest()).size == 0
        with pytest.raises(ValueError, match="does not fit"):
            st.put_cell(run, _cell(_key(seed=2), [0, 40000]))
        assert not st.has_ok(_key(seed=2))


def test_merge_from_copies_cells_and_prediction_blobs(tmp_path):
    with Store(tmp_path / "shard.sqlite") as shard:
        run = shard.begin_run({})
        shard.put_cell(run, _cell(_key(), [1, 0]))
        shard.put_cell(run, _cell(_key(seed=1), [1, 1]))
    with Store(tmp_path / "main.sqlite") as st:
        st.put_cell(st.begin_run({}), _cell(_key(), [0, 0]))  # replaced by the shard's cell
        assert st.merge_from(tmp_path / "shard.sqlite") == 2
        assert st.predictions(_key().digest()).tolist() == [1, 0]
        assert st.predictions(_key(seed=1).digest()).tolist() == [1, 1]
        assert st.conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 2


def test_schema_1_store_is_refused_with_upgrade_hint(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:  # the layout the previous kwsbench wrote
        con.executescript("""
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (1);
            CREATE TABLE cells (cell_key TEXT PRIMARY KEY);
            CREATE TABLE predictions (cell_key TEXT NOT NULL, idx INTEGER NOT NULL, pred INTEGER NOT NULL,
                                      PRIMARY KEY (cell_key, idx));
            INSERT INTO predictions VALUES ('k', 0, 3);
        """)
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="schema version 1: it was written by an older kwsbench") as err:
        Store(path)
    assert "one row per clip" in str(err.value) and "--store with a new path" in str(err.value)
    assert main(["leaderboard", "--store", str(path)]) == 6
    assert main(["run", "--store", str(path), "--models", "ds-cnn-s"]) == 6
    assert path.read_bytes() == before


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a kwsbench results store"):
        Store(path)
