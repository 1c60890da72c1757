"""The SQLite results store: runs with provenance, cells (DESIGN.md contract 4 key + rate mode), clip
lists and per-utterance predictions (one little-endian int16 blob per cell).

Writes are one transaction per cell (cell row + its predictions), so an interrupted run leaves only
complete cells behind and `--resume` picks up where it stopped. A store that is not SQLite or has
another schema version is never modified: it raises StoreError (exit 6).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kwsbench.errors import StoreError, StoreMissingError
from kwsbench.paths import default_store

SCHEMA_VERSION = 2
DEFAULT_STORE = Path("runs") / "kwsbench.sqlite"

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
    per_class TEXT, macro_f1 REAL, error TEXT, seconds REAL, created TEXT NOT NULL
);
CREATE TABLE predictions (cell_key TEXT PRIMARY KEY, preds BLOB NOT NULL);
"""
# one blob per cell instead of one row per clip: a cell's ~2,500 row inserts dominated put_cell
_PRED_DTYPE = np.dtype("<i2")


@dataclass(frozen=True)
class CellKey:
    """DESIGN.md contract 4 plus how the rate was reached (rate mode and decimation filter)."""

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

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


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
class StoredCell:
    """One row of the cells table, typed: the key's fields, the results and the run that stored it."""

    cell_key: str
    run_id: int
    model: str
    checkpoint_sha256: str
    fingerprint: str
    protocol: str
    label_names: tuple[str, ...]
    noise: str
    noise_version: str
    snr_db: float | None
    snr_def: str
    rate_hz: int
    rate_mode: str
    decimation: str
    seed: int
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
        return CellKey(self.model, self.checkpoint_sha256, self.fingerprint, self.noise, self.noise_version,
                       self.snr_db, self.snr_def, self.rate_hz, self.rate_mode, self.decimation, self.seed)

    def condition_label(self) -> str:
        return condition_label(self.noise, self.snr_db)


def condition_label(noise: str, snr_db: float | None) -> str:
    """'clean' or 'white +5 dB': the one way a condition is written in tables, figures and messages."""
    return "clean" if noise == "clean" or snr_db is None else f"{noise} {snr_db:+g} dB"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Store:
    """Open (or create) a store. Use as a context manager or call close()."""

    def __init__(self, path: str | Path, read_only: bool = False):
        """`read_only`: for commands that only read (leaderboard, compare, report): the file is opened read-only
        and a missing store is an error, never created."""
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"results store {self.path} is a folder; pass --store with a file path, e.g. "
                             f"{self.path / 'kwsbench.sqlite'}")
        if read_only and not self.path.is_file():
            raise StoreMissingError(f"no results store at {self.path.resolve()}: run `kwsbench run` first, or pass "
                                    "--store PATH (or set KWSBENCH_STORE) to read another one")
        existed = self.path.exists() and self.path.stat().st_size > 0
        if not existed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if read_only:
                self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
            else:
                self.conn = sqlite3.connect(self.path, timeout=30.0)
            self.conn.execute("PRAGMA foreign_keys = ON")
            if existed:
                self._check_schema()
            else:
                with self.conn:
                    self.conn.executescript(_SCHEMA)
                    self.conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"results store {self.path} is not a readable kwsbench store ({err}). It was left untouched; "
                "move it aside or pass --store with another path."
            ) from err

    def _check_schema(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "schema_version" not in tables:
            raise StoreError(
                f"{self.path} is an SQLite file but not a kwsbench results store (no schema_version table); "
                "it was left untouched. Pass --store with another path."
            )
        row = self.conn.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else None
        if version == 1:
            raise StoreError(
                f"results store {self.path} has schema version 1: it was written by an older kwsbench that "
                f"stored predictions one row per clip; this kwsbench reads version {SCHEMA_VERSION} (one blob "
                "per cell). It was left untouched; pass --store with a new path (or read it with the older "
                "kwsbench)."
            )
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"results store {self.path} has schema version {version}, this kwsbench reads version "
                f"{SCHEMA_VERSION}. It was left untouched; use the kwsbench version that wrote it, or pass "
                "--store with a new path."
            )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------
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

    def finish_run(self, run_id: int, status: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", (_now(), status, run_id))

    def runs(self) -> list[dict]:
        cur = self.conn.execute("SELECT * FROM runs ORDER BY run_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # -- clips --------------------------------------------------------------------------------
    def save_clips(self, fingerprint: str, utterance_ids, speaker_ids, labels) -> None:
        """The clip list of a fingerprint, once; predictions refer to clips by index."""
        have = self.conn.execute("SELECT COUNT(*) FROM clips WHERE fingerprint = ?", (fingerprint,)).fetchone()[0]
        if have:
            return
        rows = [(fingerprint, i, u, s, int(lab)) for i, (u, s, lab) in enumerate(zip(utterance_ids, speaker_ids, labels,
                                                                                       strict=True))]
        with self.conn:
            self.conn.executemany("INSERT INTO clips VALUES (?, ?, ?, ?, ?)", rows)

    def clips(self, fingerprint: str) -> tuple[list[str], list[str], np.ndarray]:
        rows = self.conn.execute(
            "SELECT utterance_id, speaker_id, label FROM clips WHERE fingerprint = ? ORDER BY idx", (fingerprint,)
        ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows], np.array([r[2] for r in rows], dtype=np.int64)

    # -- cells --------------------------------------------------------------------------------
    def has_ok(self, key: CellKey) -> bool:
        row = self.conn.execute("SELECT status FROM cells WHERE cell_key = ?", (key.digest(),)).fetchone()
        return bool(row) and row[0] == "ok"

    def put_cell(self, run_id: int, cell: CellResult) -> None:
        """Cell row and its predictions in one transaction (replacing an earlier cell of the same key)."""
        k = cell.key
        digest = k.digest()
        # encoded before the transaction opens, so a bad prediction array writes nothing
        blob = None if cell.predictions is None else _encode_predictions(cell.predictions, k)
        row = (
            digest, run_id, k.model, k.checkpoint_sha256, k.fingerprint, cell.protocol,
            json.dumps(list(cell.label_names)), k.noise, k.noise_version, k.snr_db, k.snr_def, k.rate_hz,
            k.rate_mode, k.decimation, k.seed, cell.status,
            cell.accuracy, cell.n, cell.correct, cell.ci_low, cell.ci_high, cell.boot_low, cell.boot_high,
            json.dumps(cell.per_class), cell.macro_f1, cell.error, cell.seconds, _now(),
        )
        with self.conn:
            self.conn.execute("DELETE FROM predictions WHERE cell_key = ?", (digest,))
            self.conn.execute(f"INSERT OR REPLACE INTO cells VALUES ({', '.join('?' * len(row))})", row)
            if blob is not None:
                self.conn.execute("INSERT INTO predictions VALUES (?, ?)", (digest, blob))

    def cells(self, status: str | None = "ok", **where) -> list[StoredCell]:
        """Cell rows as typed records (per_class and label_names decoded), filtered by column equality."""
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        for col, val in where.items():
            clauses.append(f"{col} IS ?" if val is None else f"{col} = ?")
            params.append(val)
        sql = "SELECT * FROM cells" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        cur = self.conn.execute(sql + " ORDER BY model, noise, snr_db, rate_hz", params)
        names = [d[0] for d in cur.description]
        out = []
        for r in cur.fetchall():
            d = dict(zip(names, r, strict=True))
            d["per_class"] = tuple(json.loads(d["per_class"] or "[]"))
            d["label_names"] = tuple(json.loads(d["label_names"]))
            out.append(StoredCell(**d))
        return out

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

    def predictions(self, cell_key: str) -> np.ndarray:
        """Predicted class index per clip (clip order of the cell's fingerprint); empty when none stored."""
        row = self.conn.execute("SELECT preds FROM predictions WHERE cell_key = ?", (cell_key,)).fetchone()
        if row is None:
            return np.zeros(0, dtype=np.int64)
        return np.frombuffer(row[0], dtype=_PRED_DTYPE).astype(np.int64)


def _encode_predictions(preds, key: CellKey) -> bytes:
    """Class indices as little-endian int16 bytes; refuses values int16 would silently wrap."""
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
