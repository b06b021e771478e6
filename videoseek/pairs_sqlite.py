"""The pair store of embedded mode: training pairs in their own SQLite file under the data directory.

Its own file (``DATA_DIR/pairs.sqlite3``), not the jobs': SQLite locks a whole database for each write, and
ingest updates job progress many times a second while an upload or a request may write a thousand captions
at once; apart, neither waits for the other. The two also differ in worth: jobs are the state of work in
flight, pairs are what users wrote, to be backed up with the adapters they train.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from videoseek.pairs import (
    PAIR_KINDS,
    PairKind,
    PairPage,
    PairStore,
    TrainingPair,
    check_kind,
    check_limit,
)

# seq: the listing's order and its cursor; AUTOINCREMENT so a deleted pair's number is never given again.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    collection TEXT NOT NULL,
    video_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    start_s REAL,
    end_s REAL,
    weak INTEGER NOT NULL,
    clip_id TEXT,
    source TEXT,
    created_at REAL NOT NULL,
    UNIQUE (collection, id)
);
CREATE INDEX IF NOT EXISTS pairs_by_collection ON pairs (collection, seq);
CREATE INDEX IF NOT EXISTS pairs_by_video ON pairs (collection, video_id, seq);
CREATE INDEX IF NOT EXISTS pairs_by_kind ON pairs (collection, kind, seq);
"""
_FIELDS = (
    "id",
    "collection",
    "video_id",
    "kind",
    "text",
    "start_s",
    "end_s",
    "weak",
    "clip_id",
    "source",
    "created_at",
)
_INSERT = f"""
INSERT INTO pairs ({", ".join(_FIELDS)}) VALUES ({", ".join("?" * len(_FIELDS))})
ON CONFLICT (collection, id) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in _FIELDS if name not in ("id", "collection"))}
"""
_IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's bound on parameters


def _pair_from_row(row: sqlite3.Row) -> TrainingPair:
    return TrainingPair(
        id=row["id"],
        collection=row["collection"],
        video_id=row["video_id"],
        kind=check_kind(row["kind"]),
        text=row["text"],
        start_s=row["start_s"],
        end_s=row["end_s"],
        weak=bool(row["weak"]),
        clip_id=row["clip_id"],
        source=row["source"],
        created_at=row["created_at"],
        seq=row["seq"],
    )


def _values(pair: TrainingPair) -> list[Any]:
    record = pair.to_dict()
    record["weak"] = int(pair.weak)
    return [record[name] for name in _FIELDS]


class SqlitePairStore(PairStore):
    """Pairs in one SQLite file (WAL: the API and a CLI command may read it at once), opened at first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                self._conn = db
            return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add(self, pairs: Sequence[TrainingPair]) -> int:
        if not pairs:
            return 0
        with self._tx() as db:
            stored = self._stored_ids(db, pairs)
            db.executemany(_INSERT, [_values(p) for p in pairs])
        return len({(p.collection, p.id) for p in pairs} - stored)

    @staticmethod
    def _stored_ids(db: sqlite3.Connection, pairs: Sequence[TrainingPair]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        by_collection: dict[str, list[str]] = {}
        for pair in pairs:
            by_collection.setdefault(pair.collection, []).append(pair.id)
        for collection, ids in by_collection.items():
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                rows = db.execute(
                    f"SELECT id FROM pairs WHERE collection = ? AND id IN ({', '.join('?' * len(chunk))})",
                    [collection, *chunk],
                )
                found.update((collection, str(row["id"])) for row in rows)
        return found

    def get(self, collection: str, pair_id: str) -> TrainingPair | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM pairs WHERE collection = ? AND id = ?", (collection, pair_id)
            ).fetchone()
        return None if row is None else _pair_from_row(row)

    def list(
        self,
        collection: str,
        *,
        kinds: Collection[PairKind] | None = None,
        video_id: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> PairPage:
        check_limit(limit)
        where, params = ["collection = ?", "seq > ?"], [collection, after]
        if kinds is not None:
            wanted = sorted({check_kind(k) for k in kinds})
            if not wanted:
                return PairPage([], None)
            where.append(f"kind IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if video_id is not None:
            where.append("video_id = ?")
            params.append(video_id)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM pairs WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", [*params, limit + 1]
            ).fetchall()
        pairs = [_pair_from_row(r) for r in rows[:limit]]
        return PairPage(pairs, pairs[-1].seq if len(rows) > limit else None)

    def delete(self, collection: str, pair_id: str) -> TrainingPair | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM pairs WHERE collection = ? AND id = ?", (collection, pair_id)
            ).fetchone()
            if row is not None:
                db.execute("DELETE FROM pairs WHERE seq = ?", (row["seq"],))
        return None if row is None else _pair_from_row(row)

    def delete_video(self, collection: str, video_id: str) -> int:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM pairs WHERE collection = ? AND video_id = ?", (collection, video_id)
            )
            return cur.rowcount

    def delete_collection(self, collection: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM pairs WHERE collection = ?", (collection,)).rowcount

    def counts(self, collection: str) -> dict[PairKind, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, COUNT(*) AS n FROM pairs WHERE collection = ? GROUP BY kind", (collection,)
            ).fetchall()
        found = {str(row["kind"]): int(row["n"]) for row in rows}
        return {kind: found.get(kind, 0) for kind in PAIR_KINDS}

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
