"""The job store of distributed mode: jobs and video claims as Redis hashes, shared by the API and every worker.

The same interface as the embedded SQLite store (:class:`videoseek.jobs.JobStore`); the contract tests run
both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from videoseek.jobs import Job, JobNotFound, JobPosition, JobStage, JobStore, check_changes
from worker.redis_client import redis_client

if TYPE_CHECKING:
    import redis

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
        playback=data.get("playback", ""),
        created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]),
    )


def _members_after(client: Any, key: str, after: JobPosition, limit: int) -> list[str]:
    """Members after ``after`` in (score, member) descending order: a sorted set orders equal scores by
    member, so those of the same score that sort at or above the position's id are skipped."""
    score, job_id = after
    ids: list[str] = []
    offset = 0
    while len(ids) < limit:
        batch = client.zrevrangebyscore(key, score, "-inf", start=offset, num=limit + 16, withscores=True)
        ids += [member for member, s in batch if s < score or member < job_id][: limit - len(ids)]
        offset += len(batch)
        if len(batch) < limit + 16:
            break
    return ids


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
        values = check_changes(changes)
        values["updated_at"] = time.time()
        flat = [item for k, v in values.items() for item in (k, _encode(v))]
        if not self._update(keys=[self._job_key(job_id)], args=flat):
            raise JobNotFound(job_id)
        return self.require(job_id)

    def list(
        self, collection: str | None = None, limit: int = 100, *, after: JobPosition | None = None
    ) -> list[Job]:
        limit = max(limit, 1)
        if after is None:
            ids = self._redis.zrevrange(self._index_key(collection), 0, limit - 1)
        else:
            ids = _members_after(self._redis, self._index_key(collection), after, limit)
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

    def forget_ended_jobs(self, collection: str, video_id: str) -> int:
        # Every job of the collection is read: a per-video index would cost every upload a write for an
        # action a person takes now and then.
        ids = self._redis.zrange(self._index_key(collection), 0, -1)
        pipe = self._redis.pipeline()
        for job_id in ids:
            pipe.hmget(self._job_key(job_id), "video_id", "stage")
        ended = [
            job_id
            for job_id, (vid, stage) in zip(ids, pipe.execute(), strict=True)
            if vid == video_id and stage is not None and JobStage(stage).terminal
        ]
        if ended:
            pipe = self._redis.pipeline()
            pipe.delete(*(self._job_key(job_id) for job_id in ended))
            pipe.zrem(self._index_key(None), *ended)
            pipe.zrem(self._index_key(collection), *ended)
            pipe.execute()
        return len(ended)

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()
