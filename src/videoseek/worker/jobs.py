"""Ingest job state: one record per submitted file, shared by the API, the CLI and every worker.

Two implementations of one narrow interface: SQLite under the data directory (embedded mode) and Redis hashes
(distributed mode). Both survive process restarts. A job only names things (collection, video id, the stored
file): the video itself lives on disk under :class:`~videoseek.core.layout.DataLayout`.

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
from typing import TYPE_CHECKING, Any

from videoseek.core.layout import DataLayout
from videoseek.core.redis_client import redis_client

if TYPE_CHECKING:
    import redis

    from videoseek.core.settings import Settings


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
    {"stage", "progress", "reason", "clips", "attempts", "duplicate_of", "video_file", "problems"}
)


def _check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - _MUTABLE
    if unknown:
        raise ValueError(f"job fields {sorted(unknown)} cannot be updated (mutable: {sorted(_MUTABLE)})")
    out = dict(changes)
    if "stage" in out:
        out["stage"] = JobStage(out["stage"])
    if "problems" in out:
        out["problems"] = [str(p) for p in out["problems"]]
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
    def list(self, collection: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first, optionally of one collection."""

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
    problems TEXT NOT NULL DEFAULT '[]'
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
)
# Columns added after the first release, with their definition: a database made before them gains them
# (with the default) when it is opened, so upgrading never needs a manual migration.
_ADDED_COLUMNS = {"problems": "TEXT NOT NULL DEFAULT '[]'"}


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
    """Jobs in one SQLite file (WAL, so the API and the CLI can share it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        # One connection guarded by a lock: writes are tiny and rare next to decoding and embedding.
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        with self._tx() as db:  # two processes opening an old database at once: one adds, one sees it
            _add_missing_columns(db)

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
        values = _check_changes(changes)
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in values)
        params = [_sql_value(v) for v in values.values()]
        with self._tx() as db:
            cur = db.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", [*params, job_id])
            if cur.rowcount == 0:
                raise JobNotFound(job_id)
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job_from_row(row)

    def list(self, collection: str | None = None, limit: int = 100) -> list[Job]:
        where, params = ("WHERE collection = ?", [collection]) if collection else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs {where} ORDER BY created_at DESC LIMIT ?", [*params, limit]
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

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()


# Redis: one hash per job, a sorted set per collection (and one global) for listing, a hash of claims per
# collection. Values are strings; ``metadata`` is JSON.
# Update only a job that still exists: a job deleted meanwhile (its collection was) must not come back as a
# hash holding just the updated fields.
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], unpack(ARGV))
    return 1
end
return 0
"""
_RELEASE_IF_OWNER = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def _encode(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if value is None:
        return ""
    return str(value)


def _job_from_hash(data: Mapping[str, str]) -> Job:
    return Job(
        job_id=data["job_id"],
        collection=data["collection"],
        video_id=data["video_id"],
        source=data["source"],
        video_file=data.get("video_file", ""),
        metadata=json.loads(data.get("metadata") or "{}"),
        stage=JobStage(data["stage"]),
        progress=float(data.get("progress") or 0.0),
        reason=data.get("reason") or None,
        duplicate_of=data.get("duplicate_of") or None,
        clips=int(data.get("clips") or 0),
        attempts=int(data.get("attempts") or 0),
        problems=json.loads(data.get("problems") or "[]"),  # absent from jobs written before the field
        created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]),
    )


class RedisJobStore(JobStore):
    """Jobs as Redis hashes under ``prefix`` (distributed mode: API and workers share them)."""

    def __init__(
        self,
        url: str,
        prefix: str = "videoseek:",
        client: redis.Redis | None = None,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.prefix = prefix
        # decode_responses=True: every value is a str (redis-py's stubs cannot express that).
        self._redis: Any = client or redis_client(url, timeout_s, decode_responses=True)
        self._release = self._redis.register_script(_RELEASE_IF_OWNER)
        self._update = self._redis.register_script(_UPDATE_IF_EXISTS)

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _index_key(self, collection: str | None) -> str:
        return f"{self.prefix}jobs" if collection is None else f"{self.prefix}jobs:{collection}"

    def _claims_key(self, collection: str) -> str:
        return f"{self.prefix}claims:{collection}"

    def create(self, job: Job) -> Job:
        mapping = {k: _encode(v) for k, v in asdict(job).items()}
        mapping["stage"] = str(job.stage)
        if not self._redis.hsetnx(self._job_key(job.job_id), "job_id", job.job_id):
            raise ValueError(f"job {job.job_id} already exists")
        pipe = self._redis.pipeline()
        pipe.hset(self._job_key(job.job_id), mapping=mapping)
        pipe.zadd(self._index_key(None), {job.job_id: job.created_at})
        pipe.zadd(self._index_key(job.collection), {job.job_id: job.created_at})
        pipe.execute()
        return job

    def get(self, job_id: str) -> Job | None:
        data = self._redis.hgetall(self._job_key(job_id))
        return _job_from_hash(data) if data and "stage" in data else None

    def update(self, job_id: str, **changes: Any) -> Job:
        values = _check_changes(changes)
        values["updated_at"] = time.time()
        flat = [item for k, v in values.items() for item in (k, _encode(v))]
        if not self._update(keys=[self._job_key(job_id)], args=flat):
            raise JobNotFound(job_id)
        return self.require(job_id)

    def list(self, collection: str | None = None, limit: int = 100) -> list[Job]:
        ids = self._redis.zrevrange(self._index_key(collection), 0, max(limit, 1) - 1)
        pipe = self._redis.pipeline()
        for job_id in ids:
            pipe.hgetall(self._job_key(job_id))
        return [_job_from_hash(d) for d in pipe.execute() if d and "stage" in d]

    def claim_video(self, collection: str, video_id: str, job_id: str) -> str | None:
        key = self._claims_key(collection)
        if self._redis.hsetnx(key, video_id, job_id):
            return None
        owner = self._redis.hget(key, video_id)
        # The owner can release between our HSETNX and HGET: then the video is free, try once more.
        if owner is None:
            return self.claim_video(collection, video_id, job_id)
        return str(owner)

    def video_owner(self, collection: str, video_id: str) -> str | None:
        owner = self._redis.hget(self._claims_key(collection), video_id)
        return None if owner is None else str(owner)

    def release_video(self, collection: str, video_id: str, job_id: str) -> None:
        self._release(keys=[self._claims_key(collection)], args=[video_id, job_id])

    def delete_collection(self, collection: str) -> int:
        ids = self._redis.zrange(self._index_key(collection), 0, -1)
        pipe = self._redis.pipeline()
        for job_id in ids:
            pipe.delete(self._job_key(job_id))
        if ids:
            pipe.zrem(self._index_key(None), *ids)
        pipe.delete(self._index_key(collection), self._claims_key(collection))
        pipe.execute()
        return len(ids)

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()


def open_job_store(settings: Settings) -> JobStore:
    """The job store the settings call for: Redis when a Redis URL is set, else SQLite in the data dir."""
    if settings.redis_url is not None:
        worker = settings.worker
        return RedisJobStore(settings.redis_url, worker.redis_prefix, timeout_s=worker.redis_timeout_s)
    return SqliteJobStore(DataLayout(settings.data_dir).jobs_db)


_shared: dict[tuple[str, str, str], JobStore] = {}
_shared_lock = threading.Lock()


def get_job_store(settings: Settings) -> JobStore:
    """One job store per process and backing location (cached; safe to call per request)."""
    key = (
        (settings.redis_url, settings.worker.redis_prefix, str(settings.worker.redis_timeout_s))
        if settings.redis_url is not None
        else ("sqlite", str(DataLayout(settings.data_dir).jobs_db.resolve()), "")
    )
    with _shared_lock:
        store = _shared.get(key)
        if store is None:
            store = _shared[key] = open_job_store(settings)
        return store


def close_job_stores() -> None:
    """Close every cached store (tests, and before a fork)."""
    with _shared_lock:
        for store in _shared.values():
            store.close()
        _shared.clear()
