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

Claims are owned Redis keys (``owned_keys.py``) with a TTL; a claim is refreshed and released only by its owner
(the Celery task id, the same for a redelivered message, so a redelivered task takes its claims back).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from videoseek.adapter import AdapterConfigError, AdapterFileError, AdapterNotFound
from videoseek.context import PipelineContext
from videoseek.ingest.pipeline import (
    DecodedVideo,
    TransientError,
    embed_and_index,
    load_decoded,
)
from videoseek.jobs import JobNotFound, JobStage
from videoseek.store import StoreError
from worker.owned_keys import OwnedKeys, kept_alive

log = logging.getLogger(__name__)

CLAIM_TTL_S = 60  # a dead task's claims run out this long after its last refresh
CLAIM_RECHECK_S = 15  # a task whose job is claimed elsewhere looks again this much later
# A batch takes other jobs up to this many forward passes' worth of frames (worker.embed_batch_size each).
BATCH_FORWARD_PASSES = 4
SCAN_LIMIT = 64  # waiting jobs an embed task looks at for ones that fit its batch
# What one video can break a whole batch with (its adapter, its collection): the others must not fail for it.
MEMBER_ERRORS = (AdapterFileError, AdapterConfigError, AdapterNotFound, StoreError)


class EmbedBacklog:
    """The backlog (a sorted set of job ids, oldest first, with their frame counts) and the claims, under the
    worker's key prefix."""

    def __init__(self, client: Any, prefix: str, claim_ttl_s: int = CLAIM_TTL_S) -> None:
        self._redis = client  # decode_responses=True
        self._key = f"{prefix}embed-backlog"
        self._frames_key = f"{prefix}embed-backlog-frames"
        self._claims = OwnedKeys(client, f"{prefix}embed-claim:", claim_ttl_s)

    @classmethod
    def from_url(
        cls, url: str, prefix: str, claim_ttl_s: int = CLAIM_TTL_S, *, timeout_s: float = 30.0
    ) -> EmbedBacklog:
        from worker.redis_client import redis_client

        return cls(redis_client(url, timeout_s, decode_responses=True), prefix, claim_ttl_s)

    def add(self, job_id: str, frames: int) -> None:
        """A decoded job of ``frames`` sampled frames now waits for embedding."""
        pipe = self._redis.pipeline()
        pipe.hset(self._frames_key, job_id, frames)
        pipe.zadd(self._key, {job_id: time.time()}, nx=True)
        pipe.execute()

    def drop(self, job_id: str) -> None:
        """Take ``job_id`` off the backlog (claimed, finished, or gone)."""
        pipe = self._redis.pipeline()
        pipe.zrem(self._key, job_id)
        pipe.hdel(self._frames_key, job_id)
        pipe.execute()

    def waiting(self) -> list[str]:
        """Job ids waiting, oldest first."""
        return list(self._redis.zrange(self._key, 0, -1))

    def holder(self, job_id: str) -> str | None:
        """Who holds the claim on ``job_id`` now, if anyone."""
        return self._claims.holder(job_id)

    def claim(self, job_id: str, owner: str) -> str:
        """Claim ``job_id`` for ``owner`` (kept if ``owner`` holds it already); returns who holds it now.

        When that is ``owner``, the job also leaves the backlog.
        """
        holder = self._claims.take(job_id, owner)
        if holder == owner:
            self.drop(job_id)
        return holder

    def claim_fitting(self, owner: str, room: int) -> str | None:
        """The oldest waiting job of at most ``room`` frames that nobody holds, claimed for ``owner``.

        Jobs too long for the room are left waiting, unread (a long video must neither be decoded for nothing
        nor keep shorter ones out of batches); so are jobs of unknown length and jobs held by their own tasks.
        """
        waiting = self._redis.zrange(self._key, 0, SCAN_LIMIT - 1)
        sizes = self._redis.hmget(self._frames_key, waiting) if waiting else []
        for job_id, size in zip(waiting, sizes, strict=True):
            if size is None or int(size) > room:
                continue
            if self.claim(job_id, owner) == owner:
                return str(job_id)
        return None

    def kept(self, job_ids: list[str], owner: str) -> Any:
        """Keep ``owner``'s claims on ``job_ids`` (a list that may grow) alive while the block runs."""
        return kept_alive(self._claims, job_ids, owner)

    def refresh(self, job_ids: Sequence[str], owner: str) -> int:
        """Extend ``owner``'s claims on ``job_ids``; returns how many it still held."""
        return self._claims.refresh(job_ids, owner)

    def release(self, job_ids: Sequence[str], owner: str) -> int:
        """Drop ``owner``'s claims on ``job_ids`` (never another owner's); returns how many it held."""
        return self._claims.release(job_ids, owner)

    def close(self) -> None:
        self._redis.close()


@dataclass
class BatchOutcome:
    """What one embed task did: the jobs it embedded, or, when it could not take its job, who holds it."""

    embedded: list[str] = field(default_factory=list)
    claimed_by: str | None = None

    @property
    def taken(self) -> bool:
        return self.claimed_by is None


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

    Other jobs join while they fit in ``max_videos`` videos and ``max_frames`` frames (the job's own video
    always runs, however long). Raises what :func:`~videoseek.ingest.pipeline.embed_and_index` raises for the
    task's own job (a ``TransientError`` to retry). Claims are kept alive while it works and released at the
    end whatever happened: a job left unfinished is then embedded by its own task.
    """
    job = ctx.jobs.get(job_id)
    if job is None or job.stage.terminal:  # embedded in another task's batch, failed, or deleted
        backlog.drop(job_id)
        return BatchOutcome()
    holder = backlog.claim(job_id, owner)
    if holder != owner:
        return BatchOutcome(claimed_by=holder)
    claimed = [job_id]
    try:
        with backlog.kept(claimed, owner):
            batch = _gather_batch(ctx, job_id, backlog, owner, claimed, max_videos, max_frames)
            _embed(ctx, batch, job_id)
        return BatchOutcome(embedded=[v.job.job_id for v in batch if _done(ctx, v.job.job_id)])
    finally:
        backlog.release(claimed, owner)


def _gather_batch(
    ctx: PipelineContext,
    job_id: str,
    backlog: EmbedBacklog,
    owner: str,
    claimed: list[str],
    max_videos: int,
    max_frames: int,
) -> list[DecodedVideo]:
    """The job's own decoded video plus waiting ones that fit; every job claimed is appended to ``claimed``."""
    own = load_decoded(ctx, job_id)
    batch = [own] if own is not None else []
    frames = len(own.frames) if own is not None else 0
    while len(batch) < max_videos and frames < max_frames:
        other = backlog.claim_fitting(owner, room=max_frames - frames)
        if other is None:
            break
        claimed.append(other)
        decoded = _load_other(ctx, other)
        if decoded is not None:
            batch.append(decoded)
            frames += len(decoded.frames)
    if len(batch) > 1:
        log.info("embedding %d videos together (%d frames)", len(batch), frames)
    return batch


def _embed(ctx: PipelineContext, batch: list[DecodedVideo], job_id: str) -> None:
    """Embed and index the batch. If one member breaks it (its adapter, its collection), embed the task's own
    job alone, so that it fails only for its own reasons; the others are left to their own tasks."""
    try:
        embed_and_index(ctx, batch)
    except TransientError:
        raise
    except MEMBER_ERRORS as exc:
        if len(batch) < 2:
            raise
        log.warning("a batch of %d videos failed (%s): job %s goes on alone", len(batch), exc, job_id)
        embed_and_index(ctx, [v for v in batch if v.job.job_id == job_id])


def _done(ctx: PipelineContext, job_id: str) -> bool:
    job = ctx.jobs.get(job_id)
    return job is not None and job.stage is JobStage.DONE


def _load_other(ctx: PipelineContext, job_id: str) -> DecodedVideo | None:
    try:
        return load_decoded(ctx, job_id)
    except JobNotFound:  # its collection was deleted meanwhile
        return None
