"""The playback step: after a video is indexed, a browser-playable copy of it when browsers cannot play the
upload (``videoseek/video/browser_playback.py`` decides, at decoding, from the probe).

A step of its own after indexing rather than part of decoding: transcoding a whole video costs several times
what sampling it at 1 fps does, and searches should find a video as soon as its clips are in. Until the copy
is written (``Job.playback`` "pending"), results play the upload, which the page answers with a message and a
download link. A copy that fails leaves the video indexed and says why in the job's ``problems``.
Like every step it is idempotent: running it again for a job whose copy is written does nothing.
"""

from __future__ import annotations

import logging

from videoseek.context import PipelineContext
from videoseek.jobs import Job, JobStage
from videoseek.settings import IngestSettings
from videoseek.video import MediaRejected, VideoInfo
from videoseek.video.browser_playback import playback_copy_reason
from videoseek.video.transcode import write_playback_copy_sandboxed

log = logging.getLogger(__name__)


def playback_decision(info: VideoInfo, limits: IngestSettings) -> str:
    """The job's ``playback`` once decoded: "original", "pending" (a copy is to be written) or "disabled"."""
    reason = playback_copy_reason(info)
    if reason is None:
        return "original"
    return "pending" if limits.playback_copies else "disabled"


def needs_playback_copy(job: Job | None) -> bool:
    return job is not None and job.stage is JobStage.DONE and job.playback == "pending"


def write_playback(ctx: PipelineContext, job_id: str) -> Job | None:
    """Write the job's playback copy if it still needs one; the job as it is then (None: it is gone)."""
    job = ctx.jobs.get(job_id)
    if job is None or not needs_playback_copy(job):
        return job
    source = ctx.layout.videos_dir(job.collection) / job.video_file
    target = ctx.layout.playback_file(job.collection, job.video_id)
    if not job.video_file or not source.is_file():  # deleted since it was indexed
        return ctx.jobs.update(job_id, playback="failed")
    try:
        copy = write_playback_copy_sandboxed(source, target, ctx.settings.ingest)
    except MediaRejected as exc:
        log.warning("job %s (%s): no playback copy: %s", job_id, job.source, exc.reason)
        problems = [*job.problems, f"no browser-playable copy could be written: {exc.reason}"]
        return ctx.jobs.update(job_id, playback="failed", problems=problems)
    if ctx.jobs.video_owner(job.collection, job.video_id) != job_id or not source.is_file():
        target.unlink(missing_ok=True)  # the video was deleted while its copy was written
        return ctx.jobs.get(job_id)
    return ctx.jobs.update(job_id, playback="ready", problems=[*job.problems, *copy.problems])
