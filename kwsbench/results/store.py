"""The SQLite results store: runs with provenance, cells (DESIGN.md contract 4 key + rate mode + arithmetic
precision), clip lists and per-utterance predictions (one little-endian int16 blob per cell).

Writes are one transaction per cell (cell row + its predictions), so an interrupted run leaves only
complete cells behind and `--resume` picks up where it stopped. A store that is not SQLite or has
another schema version is never modified: it raises StoreError (exit 6).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from kwsbench.errors import StoreError, StoreMissingError
from kwsbench.paths import default_store

if TYPE_CHECKING:
    import numpy as np  # imported where predictions are read or written: reading cells (leaderboard) needs none

# 3: checksums (cells.checksum, predictions.sha256); 4: cells.precision. Older ones are migrated in place by a writer
SCHEMA_VERSION = 4
BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another process's transaction before giving up

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL, finished TEXT, git_commit TEXT, versions TEXT, torch TEXT, cuda TEXT,
    device TEXT, plan TEXT, seed INTEGER, fingerprint TEXT, protocol TEXT, status TEXT
);
CREATE TABLE clips (
    fingerprint TEXT NOT NULL, idx INTEGER NOT NULL, utterance_id TEXT NOT NULL, speaker_id TEXT NOT NULL,
    label INTEGER NOT NULL, PRIMARY KEY (fingerprint, idx)
);
CREATE TABLE cells (
    cell_key TEXT PRIMARY KEY, run_id INTEGER NOT NULL, model TEXT NOT NULL, checkpoint_sha256 TEXT NOT NULL,
    fingerprint TEXT NOT NULL, protocol TEXT NOT NULL, label_names TEXT NOT NULL, noise TEXT NOT NULL,
    noise_version TEXT NOT NULL, snr_db REAL, snr_def TEXT NOT NULL, rate_hz INTEGER NOT NULL,
    rate_mode TEXT NOT NULL, decimation TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL,
    accuracy REAL, n INTEGER, correct INTEGER, ci_low REAL, ci_high REAL, boot_low REAL, boot_high REAL,
    per_class TEXT, macro_f1 REAL, error TEXT, seconds REAL, created TEXT NOT NULL, checksum TEXT,
    precision TEXT NOT NULL DEFAULT 'fp32'
);
CREATE TABLE predictions (cell_key TEXT PRIMARY KEY, preds BLOB NOT NULL, sha256 TEXT);
"""
# schema 2 -> 3: the checksum columns, appended (so SELECT * keeps the order of a store created at version 3)
_MIGRATE_2_TO_3 = ("ALTER TABLE cells ADD COLUMN checksum TEXT", "ALTER TABLE predictions ADD COLUMN sha256 TEXT")
# schema 3 -> 4: every cell stored before had fp32 arithmetic; appended like the checksum (same column order as a
# store created at version 4, which `merge_from`'s SELECT * relies on). Keys and checksums of fp32 cells leave the
# precision out (CellKey.digest, _row_checksum), so no stored value changes.
_MIGRATE_3_TO_4 = ("ALTER TABLE cells ADD COLUMN precision TEXT NOT NULL DEFAULT 'fp32'",)
FP32 = "fp32"  # the default precision (kwsbench.run.precision), the one every cell had before the field existed
# one blob per cell instead of one row per clip: a cell's ~2,500 row inserts dominated put_cell
_PRED_DTYPE = "<i2"  # little-endian int16


@dataclass(frozen=True)
class CellKey:
    """DESIGN.md contract 4 plus how the rate was reached (rate mode and decimation filter) and the arithmetic the
    model ran in (`precision`: fp32, tf32 or bf16, kwsbench.run.precision)."""

    model: str
    checkpoint_sha256: str
    fingerprint: str
    noise: str  # "clean" for the clean condition
    noise_version: str
    snr_db: float | None
    snr_def: str
    rate_hz: int
    rate_mode: str
    decimation: str
    seed: int
    # keyword-only with a default, so records that extend the key (StoredCell) keep their positional fields
    precision: str = field(default=FP32, kw_only=True)

    def digest(self) -> str:
        """sha256 of the key's fields. An fp32 key hashes without its precision: the digests of every cell stored
        before the field existed stay what they were (resume reuses them)."""
        fields_ = asdict(self)
        if self.precision == FP32:
            del fields_["precision"]
        return hashlib.sha256(json.dumps(fields_, sort_keys=True).encode()).hexdigest()


@dataclass
class CellResult:
    key: CellKey
    protocol: str
    label_names: tuple[str, ...]
    status: str  # "ok" | "failed"
    accuracy: float | None = None
    n: int = 0
    correct: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    boot_low: float | None = None
    boot_high: float | None = None
    per_class: list[float | None] = field(default_factory=list)
    macro_f1: float | None = None
    error: str = ""
    seconds: float = 0.0
    predictions: np.ndarray | None = None


@dataclass(frozen=True)
class StoredCell(CellKey):
    """One row of the cells table, typed: its key's fields (inherited, so the key is declared once), the results
    and the run that stored it."""

    cell_key: str  # the key's digest: the table's primary key
    run_id: int
    protocol: str
    label_names: tuple[str, ...]
    status: str
    accuracy: float | None
    n: int | None
    correct: int | None
    ci_low: float | None
    ci_high: float | None
    boot_low: float | None
    boot_high: float | None
    per_class: tuple[float | None, ...]
    macro_f1: float | None
    error: str | None
    seconds: float | None
    created: str

    @property
    def key(self) -> CellKey:
        return CellKey(**{f.name: getattr(self, f.name) for f in fields(CellKey)})

    def digest(self) -> str:
        """The key's digest (the inherited one would hash the results as well)."""
        return self.key.digest()

    def condition_label(self) -> str:
        return condition_label(self.noise, self.snr_db)


def condition_label(noise: str, snr_db: float | None) -> str:
    """'clean' or 'white +5 dB': the one way a condition is written in tables, figures and messages."""
    return "clean" if noise == "clean" or snr_db is None else f"{noise} {snr_db:+g} dB"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _guarded(method):
    """Run a Store method with SQLite errors translated (see Store._translated)."""
    @functools.wraps(method)
    def wrapper(self: Store, *args, **kwargs):
        with self._translated():
            return method(self, *args, **kwargs)
    return wrapper


class Store:
    """Open (or create) a store. Use as a context manager or call close().

    Writers use WAL (readers never block a writer, nor a writer the readers) and wait up to BUSY_TIMEOUT_S
    for another writer; the schema is created inside an immediate transaction, so two runs starting at
    once on a new file both succeed. Every cell row and prediction blob carries a checksum verified on read.
    `read_only` (leaderboard, compare, report): the file is opened read-only, and a missing store is an
    error, never created.
    """

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.damaged: list[str] = []  # cells found damaged (checksum mismatch) by has_ok: recomputed, never reused
        if self.path.is_dir():
            raise StoreError(f"results store {self.path} is a folder; pass --store with a file path, e.g. "
                             f"{self.path / 'kwsbench.sqlite'}")
        if read_only and not self.path.is_file():
            raise StoreMissingError(f"no results store at {self.path.resolve()}: run `kwsbench run` first, or pass "
                                    "--store PATH (or set KWSBENCH_STORE) to read another one")
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create the folder of results store {self.path} ({err.strerror}); pass "
                                 "--store with a path you can write") from err
        with self._translated():
            self.conn = self._connect()
            try:
                self._open_schema()
            except BaseException:
                self.conn.close()
                raise

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)

    def _enter_wal(self) -> None:
        """Switch the file to WAL. SQLite answers a journal-mode change that meets another connection's lock
        with SQLITE_BUSY at once, without its busy handler (measured: 8 threads opening one new store together
        failed 1 time in 20 within 2 ms), so this waits here, up to the same BUSY_TIMEOUT_S."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                # A commit appends to the WAL without waiting for the disk (fsync at checkpoints only; a cell's commit
                # took ~1.4 ms waiting for it on a development machine). Every committed cell survives the process
                # ending any way (error, Ctrl-C, kill); only the last cells can roll back, to a consistent store,
                # after a power loss or an OS crash, and a resumed run computes those again.
                self.conn.execute("PRAGMA synchronous = NORMAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _open_schema(self) -> None:
        version = self._version()
        if version in (None, *_MIGRATIONS, SCHEMA_VERSION) and not self.read_only:
            # WAL: readers and one writer at a time without blocking each other. Set only on a file known to be
            # (or to become) a store of a version this kwsbench writes: any other file stays byte for byte as it was
            self._enter_wal()
        if version is None and not self.read_only:
            # created under an immediate (write) lock: a second process starting at the same moment waits,
            # then finds the schema made and only checks it
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if self._version() is None:
                    for statement in _SCHEMA.strip().split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                    self.conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
            version = self._version()
        while version in _MIGRATIONS and not self.read_only:
            self._migrate(version)
            version = self._version()
        self._check_version(version)
        self._schema = int(version)
        if not self.read_only:
            problem = self.conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":  # a damaged file is never written to
                raise sqlite3.DatabaseError(f"database disk image is malformed ({problem})")

    def _version(self) -> int | None:
        """The schema version; None for an empty file (a new store)."""
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return None
        if "schema_version" not in tables:
            raise StoreError(
                f"{self.path} is an SQLite file but not a kwsbench results store (no schema_version table); "
                "it was left untouched. Pass --store with another path."
            )
        row = self.conn.execute("SELECT version FROM schema_version").fetchone()
        return -1 if row is None else int(row[0])

    def _migrate(self, version: int) -> None:
        """Bring the schema from `version` to the next, in one transaction (a crash leaves it as it was); a
        second writer that migrated first leaves nothing to do."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if self._version() == version:
                _MIGRATIONS[version](self.conn)
                self.conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    def _check_version(self, version: int | None) -> None:
        if version == 1:
            raise StoreError(
                f"results store {self.path} has schema version 1: it was written by an older kwsbench that "
                f"stored predictions one row per clip; this kwsbench reads version {SCHEMA_VERSION} (one blob "
                "per cell). It was left untouched; pass --store with a new path (or read it with the older "
                "kwsbench)."
            )
        if version in _MIGRATIONS and self.read_only:
            return  # read as it is (2: no checksums yet; 2 and 3: every cell fp32); the next `kwsbench run` migrates it
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"results store {self.path} has schema version {version}, this kwsbench reads version "
                f"{SCHEMA_VERSION}. It was left untouched; use the kwsbench version that wrote it, or pass "
                "--store with a new path."
            )

    @contextlib.contextmanager
    def _translated(self):
        """SQLite errors as StoreError saying which of corrupt / locked / read-only / full it is."""
        try:
            yield
        except sqlite3.Error as err:
            raise StoreError(_explain(err, self.path)) from err

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------
    @_guarded
    def begin_run(self, provenance: dict) -> int:
        cols = ("git_commit", "versions", "torch", "cuda", "device", "plan", "seed", "fingerprint", "protocol")
        values = [provenance.get(c) for c in cols]
        values = [json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for v in values]
        with self.conn:
            marks = ", ".join("?" * len(cols))
            cur = self.conn.execute(
                f"INSERT INTO runs (created, status, {', '.join(cols)}) VALUES (?, 'running', {marks})",
                (_now(), *values),
            )
        return int(cur.lastrowid)

    @_guarded
    def finish_run(self, run_id: int, status: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", (_now(), status, run_id))

    @_guarded
    def runs(self) -> list[dict]:
        cur = self.conn.execute("SELECT * FROM runs ORDER BY run_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # -- clips --------------------------------------------------------------------------------
    @_guarded
    def save_clips(self, fingerprint: str, utterance_ids, speaker_ids, labels) -> None:
        """The clip list of a fingerprint, once; predictions refer to clips by index. Checked and written under an
        immediate (write) lock, as the schema is made: two runs of the same clips starting at once on one store
        would otherwise both find no list and both write it, and the second would fail on its primary key."""
        rows = [(fingerprint, i, u, s, int(lab)) for i, (u, s, lab) in enumerate(zip(utterance_ids, speaker_ids, labels,
                                                                                       strict=True))]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if not self.conn.execute("SELECT COUNT(*) FROM clips WHERE fingerprint = ?", (fingerprint,)).fetchone()[0]:
                self.conn.executemany("INSERT INTO clips VALUES (?, ?, ?, ?, ?)", rows)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    @_guarded
    def clips(self, fingerprint: str) -> tuple[list[str], list[str], np.ndarray]:
        import numpy as np

        rows = self.conn.execute(
            "SELECT utterance_id, speaker_id, label FROM clips WHERE fingerprint = ? ORDER BY idx", (fingerprint,)
        ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows], np.array([r[2] for r in rows], dtype=np.int64)

    # -- cells --------------------------------------------------------------------------------
    @_guarded
    def has_ok(self, key: CellKey) -> bool:
        """True when an ok cell of this key is stored and intact. A damaged one (checksum mismatch) is noted in
        `damaged` and reported as absent, so the run recomputes it and put_cell replaces it."""
        extra = ", p.preds AS _preds, p.sha256 AS _preds_sha" if self._checksums else ""
        cur = self.conn.execute(f"SELECT cells.*{extra} FROM cells LEFT JOIN predictions p USING (cell_key) "
                                "WHERE cell_key = ?", (key.digest(),))
        row = cur.fetchone()
        if row is None:
            return False
        d = dict(zip([c[0] for c in cur.description], row, strict=True))
        if d["status"] != "ok":
            return False
        problem = self._damage(d, d.pop("_preds", None), d.pop("_preds_sha", None))
        if problem:
            self.damaged.append(f"{d['model']} | {condition_label(d['noise'], d['snr_db'])} @ {d['rate_hz']} Hz "
                                f"({problem})")
        return not problem

    def _damage(self, row: dict, blob: bytes | None, blob_sha: str | None) -> str:
        """'' when the cell row (and its blob, when given) match their checksums, else what failed."""
        if not self._checksums:
            return ""  # a schema-2 store opened read-only: nothing to check against
        if blob is not None and _sha256(blob) != blob_sha:
            return "its predictions fail their checksum"
        if _row_checksum(row, blob_sha) != row.get("checksum"):
            return "its row fails its checksum"
        return ""

    @_guarded
    def put_cell(self, run_id: int, cell: CellResult) -> None:
        """Cell row and its predictions in one transaction (replacing an earlier cell of the same key)."""
        k = cell.key
        digest = k.digest()
        # encoded before the transaction opens, so a bad prediction array writes nothing
        blob = None if cell.predictions is None else _encode_predictions(cell.predictions, k)
        blob_sha = None if blob is None else _sha256(blob)
        row = (
            digest, run_id, k.model, k.checkpoint_sha256, k.fingerprint, cell.protocol,
            json.dumps(list(cell.label_names)), k.noise, k.noise_version, k.snr_db, k.snr_def, k.rate_hz,
            k.rate_mode, k.decimation, k.seed, cell.status,
            cell.accuracy, cell.n, cell.correct, cell.ci_low, cell.ci_high, cell.boot_low, cell.boot_high,
            json.dumps(cell.per_class), cell.macro_f1, cell.error, cell.seconds, _now(), None, k.precision,
        )
        with self.conn:
            self.conn.execute("DELETE FROM predictions WHERE cell_key = ?", (digest,))
            self.conn.execute(f"INSERT OR REPLACE INTO cells VALUES ({', '.join('?' * len(row))})", row)
            if blob is not None:
                self.conn.execute("INSERT INTO predictions VALUES (?, ?, ?)", (digest, blob, blob_sha))
            # the checksum of the row as SQLite holds it (its column affinities applied), i.e. as it reads back
            cur = self.conn.execute("SELECT * FROM cells WHERE cell_key = ?", (digest,))
            stored = dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
            self.conn.execute("UPDATE cells SET checksum = ? WHERE cell_key = ?",
                              (_row_checksum(stored, blob_sha), digest))

    @_guarded
    def cells(self, status: str | None = "ok", **where) -> list[StoredCell]:
        """Cell rows as typed records (per_class and label_names decoded), filtered by column equality. A row
        that fails its checksum is an error (StoreError naming the cells): its numbers are never shown."""
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        for col, val in where.items():
            clauses.append(f"{col} IS ?" if val is None else f"{col} = ?")
            params.append(val)
        extra = ", p.sha256 AS _preds_sha" if self._checksums else ""
        sql = f"SELECT cells.*{extra} FROM cells LEFT JOIN predictions p USING (cell_key)"
        sql += " WHERE " + " AND ".join(clauses) if clauses else ""
        cur = self.conn.execute(sql + " ORDER BY model, noise, snr_db, rate_hz", params)
        names = [d[0] for d in cur.description]
        out, damaged = [], []
        for r in cur.fetchall():
            d = dict(zip(names, r, strict=True))
            if self._damage(d, None, d.pop("_preds_sha", None)):
                damaged.append(f"{d['model']} | {condition_label(d['noise'], d['snr_db'])} @ {d['rate_hz']} Hz")
                continue
            d.pop("checksum", None)
            d["per_class"] = tuple(json.loads(d["per_class"] or "[]"))
            d["label_names"] = tuple(json.loads(d["label_names"]))
            out.append(StoredCell(**d))
        if damaged:
            raise StoreError(
                f"{len(damaged)} cell(s) of results store {self.path} fail their checksum (damaged on disk): "
                f"{'; '.join(damaged[:3])}. Their numbers are not shown. Run `kwsbench run` again with the plan "
                "that made them (damaged cells are recomputed, never reused), or move the store aside.")
        return out

    @_guarded
    def merge_from(self, other: str | Path) -> int:
        """Copy every cell (and its predictions) of another store of this schema into this one, replacing
        cells of the same key; returns the number of cells merged. Used for the shard stores of a sharded
        run: each rank writes its own file, rank 0 merges them after the ranks are done."""
        src = Store(other)  # validates the schema before anything is attached
        src.close()
        self.conn.execute("ATTACH DATABASE ? AS shard", (str(other),))
        try:
            with self.conn:
                self.conn.execute("DELETE FROM predictions WHERE cell_key IN (SELECT cell_key FROM shard.cells)")
                cur = self.conn.execute("INSERT OR REPLACE INTO cells SELECT * FROM shard.cells")
                merged = cur.rowcount
                self.conn.execute("INSERT INTO predictions SELECT * FROM shard.predictions")
        finally:
            self.conn.execute("DETACH DATABASE shard")
        return int(merged)

    @_guarded
    def predictions(self, cell_key: str) -> np.ndarray:
        """Predicted class index per clip (clip order of the cell's fingerprint); empty when none stored.
        StoreError when the blob fails its checksum."""
        import numpy as np

        cols = "preds, sha256" if self._checksums else "preds, NULL"
        row = self.conn.execute(f"SELECT {cols} FROM predictions WHERE cell_key = ?", (cell_key,)).fetchone()
        if row is None:
            return np.zeros(0, dtype=np.int64)
        if self._checksums and _sha256(row[0]) != row[1]:
            raise StoreError(
                f"the predictions of cell {cell_key[:12]} in results store {self.path} fail their checksum (damaged "
                "on disk). Run `kwsbench run` again with the plan that made it: the cell is recomputed.")
        return np.frombuffer(row[0], dtype=_PRED_DTYPE).astype(np.int64)

    @property
    def _checksums(self) -> bool:
        return self._schema >= 3


# the cells columns a row checksum covers (every column but the checksum itself), in table order
CELL_COLUMNS = ("cell_key", "run_id", "model", "checkpoint_sha256", "fingerprint", "protocol", "label_names", "noise",
                "noise_version", "snr_db", "snr_def", "rate_hz", "rate_mode", "decimation", "seed", "status",
                "accuracy", "n", "correct", "ci_low", "ci_high", "boot_low", "boot_high", "per_class", "macro_f1",
                "error", "seconds", "created")


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _row_checksum(row: dict, preds_sha256: str | None) -> str:
    """sha256 over the row's values (as read back from SQLite) and its prediction blob's sha256; the precision
    is covered where it is not fp32, so the checksums stored before the column existed still hold."""
    values = [row[c] for c in CELL_COLUMNS] + [preds_sha256]
    precision = row.get("precision", FP32)
    return _sha256(json.dumps(values if precision == FP32 else [*values, precision]).encode())


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Add the checksum columns and fill them. The checksums vouch for the cells as they are at migration: damage
    from before cannot be seen."""
    for statement in _MIGRATE_2_TO_3:
        conn.execute(statement)
    blobs = conn.execute("SELECT cell_key, preds FROM predictions").fetchall()
    conn.executemany("UPDATE predictions SET sha256 = ? WHERE cell_key = ?", [(_sha256(b), k) for k, b in blobs])
    shas = dict((k, _sha256(b)) for k, b in blobs)
    cur = conn.execute("SELECT * FROM cells")
    names = [d[0] for d in cur.description]
    updates = []
    for row in cur.fetchall():
        d = dict(zip(names, row, strict=True))
        updates.append((_row_checksum(d, shas.get(d["cell_key"])), d["cell_key"]))
    conn.executemany("UPDATE cells SET checksum = ? WHERE cell_key = ?", updates)


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    for statement in _MIGRATE_3_TO_4:
        conn.execute(statement)


# the schema versions a writer migrates in place: version -> the step to the next one
_MIGRATIONS = {2: _migrate_2_to_3, 3: _migrate_3_to_4}


def _explain(err: sqlite3.Error, path: Path) -> str:
    """What an SQLite error means for the user, and what to do; a healthy store that is locked, read-only or on
    a full disk is never called corrupt."""
    text = str(err).lower()
    if "locked" in text or "busy" in text:
        return (f"results store {path} is locked by another process (another `kwsbench run` writing to it?) and "
                f"stayed locked for {BUSY_TIMEOUT_S:g} s; wait for it to finish and run again, or pass --store "
                "with another path")
    if "readonly" in text or "read-only" in text:
        return (f"results store {path} is read-only (the file or its folder cannot be written); pass --store with "
                "a path you can write, or fix its permissions. `kwsbench leaderboard`, `compare` and `report` read "
                "it as it is.")
    if "disk is full" in text or "disk i/o" in text or "too large" in text:
        return (f"results store {path} could not be written: disk full or an I/O error ({err}); free disk space "
                "and run again (the cells already stored are kept and reused)")
    if "unable to open" in text:
        return (f"cannot open results store {path} ({err}): its folder is missing or cannot be written; pass "
                "--store with a path you can write")
    if "not a database" in text or "malformed" in text or "encrypted" in text or "corrupt" in text:
        return (f"results store {path} is not a readable kwsbench store or is damaged ({err}). It was left "
                "untouched; move it aside (or try `sqlite3 FILE .recover`) and pass --store with another path.")
    return f"results store {path}: {err}; pass --store with another path"


def _encode_predictions(preds, key: CellKey) -> bytes:
    """Class indices as little-endian int16 bytes; refuses values int16 would silently wrap."""
    import numpy as np

    values = np.asarray(preds).astype(np.int64)
    info = np.iinfo(_PRED_DTYPE)
    bad = values[(values < info.min) | (values > info.max)]
    if bad.size:
        raise ValueError(
            f"cell {key.model} / {key.noise} / snr {key.snr_db}: prediction {int(bad[0])} does not fit the "
            f"store's int16 class indices ({info.min}..{info.max}); predictions must be class indices."
        )
    return values.astype(_PRED_DTYPE).tobytes()


def open_existing(path: str | Path | None = None) -> Store:
    """A store to read from (leaderboard, compare, report, the API), read-only: a missing file is
    StoreMissingError (exit 8), naming the path looked at; nothing is created there."""
    return Store(Path(path).expanduser() if path else default_store(), read_only=True)
