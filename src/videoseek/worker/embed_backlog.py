"""Cross-video batching for Celery's embed tasks: decoded jobs wait in a Redis backlog, and short-lived claims
make sure one task at a time embeds each of them.

A Celery message names one job, so on its own an embed task would run a forward pass per video: small videos
would leave a GPU mostly idle. Instead, a task embeds its own job *plus* decoded jobs still waiting in the
backlog (any collection: the adapter bank mixes adapters within a batch), up to a number of videos and
frames. Each of those jobs keeps its own embed message in the queue, which is what keeps them safe:

* when it arrives after the batch finished, the job is done and the task has nothing to do;
* when it arrives while the batch is running, the job is claimed: the task sends itself again for later
  instead of embedding the same frames twice (:data:`CLAIM_RECHECK_S`);
* when the batching task died, its claims expire (:data:`CLAIM_TTL_S`, refreshed while it works) and the
  job's own task embeds it.

Claims are Redis keys set with NX and a TTL; a claim is refreshed and released only by its owner (the Celery
task id, the same for a redelivered message, so a redelivered task takes its claims back).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from videoseek.worker.jobs import JobNotFound
from videoseek.worker.pipeline import DecodedVideo, PipelineContext, embed_and_index, load_decoded

log = logging.getLogger(__name__)

CLAIM_TTL_S = 60  # a dead task's claims run out this long after its last heartbeat
CLAIM_RECHECK_S = 15  # a task whose job is claimed elsewhere looks again this much later

_REFRESH_IF_OWNER = """
local refreshed = 0
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('EXPIRE', key, ARGV[2])
        refreshed = refreshed + 1
    end
end
return refreshed
"""

_RELEASE_IF_OWNER = """
local released = 0
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('DEL', key)
        released = released + 1
    end
end
return released
"""


class EmbedBacklog:
    """The backlog (a sorted set of job ids, oldest first) and the claims, under the worker's key prefix."""

    def __init__(self, client: Any, prefix: str, claim_ttl_s: int = CLAIM_TTL_S) -> None:
        self._redis = client  # decode_responses=True
        self._key = f"{prefix}embed-backlog"
        self._claim_prefix = f"{prefix}embed-claim:"
        self.claim_ttl_s = claim_ttl_s
        self._refresh = client.register_script(_REFRESH_IF_OWNER)
        self._release = client.register_script(_RELEASE_IF_OWNER)

    @classmethod
    def from_url(cls, url: str, prefix: str, claim_ttl_s: int = CLAIM_TTL_S) -> EmbedBacklog:
        import redis

        client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5.0, socket_timeout=30.0
        )
        return cls(client, prefix, claim_ttl_s)

    def _claim_key(self, job_id: str) -> str:
        return self._claim_prefix + job_id

    def add(self, job_id: str) -> None:
        """A decoded job now waits for embedding."""
        self._redis.zadd(self._key, {job_id: time.time()}, nx=True)

    def drop(self, job_id: str) -> None:
        self._redis.zrem(self._key, job_id)

    def waiting(self) -> list[str]:
        return list(self._redis.zrange(self._key, 0, -1))

    def holder(self, job_id: str) -> str | None:
        return self._redis.get(self._claim_key(job_id))  # type: ignore[no-any-return]

    def claim(self, job_id: str, owner: str) -> bool:
        """Take ``job_id`` for ``owner`` (True also when ``owner`` holds it already) and drop it from the backlog."""
        taken = self._redis.set(self._claim_key(job_id), owner, nx=True, ex=self.claim_ttl_s)
        if not taken and self.holder(job_id) != owner:
            return False
        self.drop(job_id)
        return True

    def claim_next(self, owner: str) -> str | None:
        """The oldest waiting job nobody holds, claimed for ``owner``; None when the backlog is empty."""
        while True:
            popped = self._redis.zpopmin(self._key, 1)
            if not popped:
                return None
            job_id = popped[0][0]
            if self.claim(job_id, owner):
                return str(job_id)
            # Held by the task of its own message: that task embeds it.

    def refresh(self, job_ids: Sequence[str], owner: str) -> int:
        if not job_ids:
            return 0
        return int(self._refresh(keys=[self._claim_key(j) for j in job_ids], args=[owner, self.claim_ttl_s]))

    def release(self, job_ids: Sequence[str], owner: str) -> int:
        if not job_ids:
            return 0
        return int(self._release(keys=[self._claim_key(j) for j in job_ids], args=[owner]))

    def close(self) -> None:
        self._redis.close()


@dataclass
class BatchOutcome:
    """What one embed task did: the jobs it embedded, or who holds its job when it could not take it."""

    embedded: list[str] = field(default_factory=list)
    claimed_by: str | None = None


def embed_with_backlog(
    ctx: PipelineContext,
    job_id: str,
    backlog: EmbedBacklog,
    owner: str,
    *,
    max_videos: int,
    max_frames: int,
) -> BatchOutcome:
    """Embed ``job_id`` together with decoded jobs waiting in the backlog, then index each of them.

    Takes waiting jobs until ``max_videos`` videos or ``max_frames`` frames; raises what
    :func:`~videoseek.worker.pipeline.embed_and_index` raises (a ``TransientError`` to retry). Claims are
    released at the end whatever happened: an unfinished job is then embedded by its own task.
    """
    job = ctx.jobs.get(job_id)
    if job is None or job.stage.terminal:  # embedded in another task's batch, failed, or deleted
        backlog.drop(job_id)
        return BatchOutcome()
    if not backlog.claim(job_id, owner):
        return BatchOutcome(claimed_by=backlog.holder(job_id))
    claimed = [job_id]
    try:
        own = load_decoded(ctx, job_id)
        batch = [own] if own is not None else []
        frames = len(own.frames) if own is not None else 0
        while len(batch) < max_videos and frames < max_frames:
            other = backlog.claim_next(owner)
            if other is None:
                break
            claimed.append(other)
            decoded = _load_other(ctx, other)
            if decoded is not None:
                batch.append(decoded)
                frames += len(decoded.frames)
        if len(batch) > 1:
            log.info("embedding %d videos together (%d frames)", len(batch), frames)
        embed_and_index(ctx, batch, heartbeat=_heartbeat(backlog, claimed, owner))
        return BatchOutcome(embedded=[v.job.job_id for v in batch])
    finally:
        backlog.release(claimed, owner)


def _load_other(ctx: PipelineContext, job_id: str) -> DecodedVideo | None:
    try:
        return load_decoded(ctx, job_id)
    except JobNotFound:  # its collection was deleted meanwhile
        return None


def _heartbeat(backlog: EmbedBacklog, claimed: list[str], owner: str) -> Callable[[], None]:
    """Refresh the claims at most every third of their lifetime, from the embedding's progress reports."""
    last = time.monotonic()

    def beat() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= backlog.claim_ttl_s / 3:
            backlog.refresh(claimed, owner)
            last = now

    return beat
