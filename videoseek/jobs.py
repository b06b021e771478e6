"""Ingest job state: one record per submitted file, shared by the API, the CLI and every worker.

Two implementations of one narrow interface: SQLite under the data directory (embedded mode, here) and Redis
hashes (distributed mode, ``worker/redis_jobs.py``). Both survive process restarts. A job only names things (collection, video id, the stored
file): the video itself lives on disk under :class:`~videoseek.layout.DataLayout`.

Besides jobs, the store holds one *claim* per (collection, video id): the job that owns ingesting that video.
Claims make dedup atomic across processes (two uploads of the same file race for one claim) and are released
when the owning job fails, so the file can be submitted again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class JobStage(StrEnum):
    """Where a job is. ``done`` and ``failed`` are terminal."""

    QUEUED = "queued"
    PROBING = "probing"
    DECODING = "decoding"
    EMBEDDING = "embedding"
    INDEXING = "indexing"
    DONE = "done"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobStage.DONE, JobStage.FAILED)


class JobNotFound(KeyError):
    """No job with this id (it never existed, or its collection was deleted)."""


# Where a job sits in a listing (newest first): its creation time and id (ties broken by id).
JobPosition = tuple[float, str]


def position_of(job: Job) -> JobPosition:
    return (job.created_at, job.job_id)


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Job:
    """One submitted file. ``duplicate_of`` is set when the file was already in the collection."""

    job_id: str
    collection: str
    video_id: str
    source: str
    video_file: str = ""  # file name under DataLayout.videos_dir(collection); "" if never stored
    metadata: dict[str, Any] = field(default_factory=dict)
    stage: JobStage = JobStage.QUEUED
    progress: float = 0.0
    reason: str | None = None
    duplicate_of: str | None = None
    clips: int = 0
    attempts: int = 0  # starts of the current step (decoding, then embedding) that never returned
    # What did not decode in a file that still indexed (truncated tail, corrupt packets, gaps), in words.
    problems: list[str] = field(default_factory=list)
    # Browser playback of the stored file (see PLAYBACK_STATES): decided when it is decoded.
    playback: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API's job resource)."""
        out = asdict(self)
        out["stage"] = str(self.stage)
        out["duplicate"] = self.duplicate
        return out


# Fields a worker may change after creation; everything else is fixed when the job is created.
_MUTABLE = frozenset(
    {"stage", "progress", "reason", "clips", "attempts", "duplicate_of", "video_file", "problems", "playback"}
)

# Job.playback: how a browser plays the video. "" until decoded (or a job from before the field); "original":
# browsers play the upload as it is; "pending": a browser-playable copy is still to be written (after indexing);
# "ready": the copy exists; "failed": writing it failed (``problems`` says why); "disabled": the upload needs a
# copy but VIDEOSEEK_INGEST__PLAYBACK_COPIES is off.
PLAYBACK_STATES = ("", "original", "pending", "ready", "failed", "disabled")


def check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changes of an update, checked (only mutable fields) and normalised (stage, problems)."""
    unknown = set(changes) - _MUTABLE
    if unknown:
        raise ValueError(f"job fields {sorted(unknown)} cannot be updated (mutable: {sorted(_MUTABLE)})")
    out = dict(changes)
    if "stage" in out:
        out["stage"] = JobStage(out["stage"])
    if "problems" in out:
        out["problems"] = [str(p) for p in out["problems"]]
    if "playback" in out and out["playback"] not in PLAYBACK_STATES:
        raise ValueError(f"job playback {out['playback']!r} is not one of {PLAYBACK_STATES}")
    return out


class JobStore(ABC):
    """Where jobs and video claims live. Implementations are safe to share between threads."""

    @abstractmethod
    def create(self, job: Job) -> Job:
        """Store a new job (its id must be unused)."""

    @abstractmethod
    def get(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def update(self, job_id: str, **changes: Any) -> Job:
        """Change mutable fields (stage, progress, reason, clips, attempts, problems...); returns the new record."""

    @abstractmethod
    def list(
        self, collection: str | None = None, limit: int = 100, *, after: JobPosition | None = None
    ) -> list[Job]:
        """Newest first (by ``created_at``, then job id, both descending), optionally of one collection;
        ``after``: only jobs that come after this position in that order (the next page of a listing)."""

    @abstractmethod
    def claim_video(self, collection: str, video_id: str, job_id: str) -> str | None:
        """Atomically make ``job_id`` the owner of this video; returns the existing owner's job id if any."""

    @abstractmethod
    def video_owner(self, collection: str, video_id: str) -> str | None: ...

    @abstractmethod
    def release_video(self, collection: str, video_id: str, job_id: str) -> None:
        """Drop the claim if ``job_id`` still holds it (a failed ingest frees the file for a retry)."""

    @abstractmethod
    def delete_collection(self, collection: str) -> int:
        """Forget every job and claim of a collection; returns how many jobs were removed."""

    @abstractmethod
    def forget_ended_jobs(self, collection: str, video_id: str) -> int:
        """Forget the jobs of one video that have ended (done or failed; a running one stays): how a failed
        upload leaves the listing once its owner has read why. Returns how many were removed."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the backing store cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def require(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    video_id TEXT NOT NULL,
    source TEXT NOT NULL,
    video_file TEXT NOT NULL,
    metadata TEXT NOT NULL,
    stage TEXT NOT NULL,
    progress REAL NOT NULL,
    reason TEXT,
    duplicate_of TEXT,
    clips INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    problems TEXT NOT NULL DEFAULT '[]',
    playback TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_by_collection ON jobs (collection, created_at);
CREATE TABLE IF NOT EXISTS video_claims (
    collection TEXT NOT NULL,
    video_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (collection, video_id)
);
"""

_COLUMNS = (
    "job_id",
    "collection",
    "video_id",
    "source",
    "video_file",
    "metadata",
    "stage",
    "progress",
    "reason",
    "duplicate_of",
    "clips",
    "attempts",
    "created_at",
    "updated_at",
    "problems",
    "playback",
)
# Columns added after the first release, with their definition: a database made before them gains them
# (with the default) when it is opened, so upgrading never needs a manual migration.
_ADDED_COLUMNS = {"problems": "TEXT NOT NULL DEFAULT '[]'", "playback": "TEXT NOT NULL DEFAULT ''"}


def _job_from_row(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["metadata"] = json.loads(data["metadata"])
    data["problems"] = json.loads(data.get("problems") or "[]")
    data["stage"] = JobStage(data["stage"])
    return Job(**data)


def _sql_value(value: Any) -> Any:
    """A job field as SQLite stores it: stages as text, dicts and lists as JSON."""
    if isinstance(value, JobStage):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a jobs table made by an older version up to date (``CREATE TABLE IF NOT EXISTS`` kept it)."""
    present = {str(row[1]) for row in db.execute("PRAGMA table_info(jobs)")}
    for name, definition in _ADDED_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")


class SqliteJobStore(JobStore):
    """Jobs in one SQLite file (WAL, so the API and the CLI can share it), opened at first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        # One connection guarded by a lock: writes are tiny and rare next to decoding and embedding.
        with self._lock:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                # Two processes opening an old database at once: one adds the columns, one sees them.
                db.execute("BEGIN IMMEDIATE")
                try:
                    _add_missing_columns(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                self._conn = db
            return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create(self, job: Job) -> Job:
        values = asdict(job)
        with self._tx() as db:
            db.execute(
                f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                [_sql_value(values[c]) for c in _COLUMNS],
            )
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    def update(self, job_id: str, **changes: Any) -> Job:
        values = check_changes(changes)
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in values)
        params = [_sql_value(v) for v in values.values()]
        with self._tx() as db:
            cur = db.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", [*params, job_id])
            if cur.rowcount == 0:
                raise JobNotFound(job_id)
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job_from_row(row)

    def list(
        self, collection: str | None = None, limit: int = 100, *, after: JobPosition | None = None
    ) -> list[Job]:
        conditions: list[str] = []
        params: list[Any] = []
        if collection:
            conditions.append("collection = ?")
            params.append(collection)
        if after is not None:
            conditions.append("(created_at < ? OR (created_at = ? AND job_id < ?))")
            params += [after[0], after[0], after[1]]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs {where} ORDER BY created_at DESC, job_id DESC LIMIT ?", [*params, limit]
            ).fetchall()
        return [_job_from_row(r) for r in rows]

    def claim_video(self, collection: str, video_id: str, job_id: str) -> str | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT job_id FROM video_claims WHERE collection = ? AND video_id = ?",
                (collection, video_id),
            ).fetchone()
            if row is not None:
                return str(row["job_id"])
            db.execute("INSERT INTO video_claims VALUES (?, ?, ?)", (collection, video_id, job_id))
        return None

    def video_owner(self, collection: str, video_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT job_id FROM video_claims WHERE collection = ? AND video_id = ?",
                (collection, video_id),
            ).fetchone()
        return None if row is None else str(row["job_id"])

    def release_video(self, collection: str, video_id: str, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM video_claims WHERE collection = ? AND video_id = ? AND job_id = ?",
                (collection, video_id, job_id),
            )

    def delete_collection(self, collection: str) -> int:
        with self._tx() as db:
            db.execute("DELETE FROM video_claims WHERE collection = ?", (collection,))
            return db.execute("DELETE FROM jobs WHERE collection = ?", (collection,)).rowcount

    def forget_ended_jobs(self, collection: str, video_id: str) -> int:
        ended = [str(stage) for stage in JobStage if stage.terminal]
        marks = ", ".join("?" * len(ended))
        with self._tx() as db:
            return db.execute(
                f"DELETE FROM jobs WHERE collection = ? AND video_id = ? AND stage IN ({marks})",
                (collection, video_id, *ended),
            ).rowcount

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
