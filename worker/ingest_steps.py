"""The two ingest steps of distributed mode as plain functions; the Celery tasks in ``tasks.py`` call them.

``decode`` probes and decodes a job's video into the frame cache, then hands it to the embed queue (and to
the embed backlog, so an embed task already running can take it into its batch). ``embed`` embeds the job's
cached frames together with other decoded jobs waiting (``embed_backlog.py``) and indexes them, then queues
the job's playback copy when browsers cannot play its file (``playback`` task, on the ingest queue).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import redis

from videoseek.ingest.pipeline import decode_video
from videoseek.ingest.playback import needs_playback_copy
from worker.embed_backlog import BATCH_FORWARD_PASSES, embed_with_backlog
from worker.process import WorkerProcess

log = logging.getLogger(__name__)

SendEmbed = Callable[[str], None]  # queues the embed task of a job id
SendPlayback = Callable[[str], None]  # queues the playback-copy task of a job id


def decode(process: WorkerProcess, job_id: str, send_embed: SendEmbed) -> str:
    """Decode the job's video; returns the job's stage, or "decoded" once its embedding is queued."""
    context = process.context
    decoded = decode_video(context, job_id)
    if decoded is None:
        return str(context.jobs.require(job_id).stage)
    _queue_embedding(process, job_id, len(decoded.frames), send_embed)
    return "decoded"


def _queue_embedding(process: WorkerProcess, job_id: str, frames: int, send_embed: SendEmbed) -> None:
    """Send the job's embed task. The backlog entry only lets an embed task already running take the job into
    its batch: without it (Redis refused, or a video longer than any batch takes), the job's own task still
    embeds it."""
    worker = process.settings.worker
    try:
        if frames <= BATCH_FORWARD_PASSES * worker.embed_batch_size:
            process.backlog.add(job_id, frames)
    except redis.RedisError as exc:
        log.warning("job %s not in the embed backlog (%s): its own embed task will take it", job_id, exc)
    send_embed(job_id)


def embed(
    process: WorkerProcess, job_id: str, claimant: str, send_playback: SendPlayback
) -> str | Literal["claimed"]:
    """Embed the job (and others waiting) as ``claimant``; "claimed" when another task has it in its batch.

    Once the job is indexed, its playback copy is queued when it needs one (every job taken into the batch
    meets this line in its own embed task, which finds it done)."""
    context = process.context
    worker = process.settings.worker
    outcome = embed_with_backlog(
        context,
        job_id,
        process.backlog,
        claimant,
        max_videos=worker.embed_batch_videos,
        max_frames=BATCH_FORWARD_PASSES * worker.embed_batch_size,
    )
    if not outcome.taken:
        return "claimed"
    job = context.jobs.require(job_id)
    if needs_playback_copy(job):
        send_playback(job_id)
    return str(job.stage)
