"""What the API knows about the videos of a collection, and removing one everywhere (blocking: call from a thread).

A video's state comes from two places: the clip store (what is searchable) and the job store (every
submission, failed ones included). The job store keeps every job, so a listing shows what failed and why next
to what is indexed; a video whose latest job finished but which is gone from the store was deleted and is left
out. Videos put in the store without a job (by a library caller) are listed as indexed, without dates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from service.schemas import JobOut, VideoOut, VideoState, from_epoch
from service.state import AppServices, MediaLinks
from videoseek.jobs import Job, JobPosition, JobStage
from videoseek.layout import DataLayout

# Every job of a collection is read to build its listing (newest first); past this many the oldest are left
# out. A listing of 100k videos costs a second or so: the listing is for people, not for bulk export.
MAX_JOBS_READ = 100_000


@dataclass(frozen=True)
class VideoFacts:
    """One video: its latest ingest job (None: put in by hand) and whether the store holds its clips."""

    video_id: str
    job: Job | None
    indexed: bool

    @property
    def position(self) -> JobPosition:
        """Where it sits in a listing, newest first (job-less videos last, by id)."""
        return (self.job.created_at if self.job else 0.0, self.video_id)


def video_state(job: Job | None, indexed: bool) -> VideoState:
    if job is None:
        return "indexed" if indexed else "failed"  # failed: only a stored file is left of it
    if job.stage is JobStage.DONE:
        return "indexed"
    if job.stage is JobStage.FAILED:
        return "failed"
    return "queued" if job.stage is JobStage.QUEUED else "processing"


def job_out(job: Job) -> JobOut:
    """A job at the API's edge: times as ISO 8601 UTC (the job stores keep epoch seconds)."""
    record = job.to_dict()
    record["created_at"] = from_epoch(job.created_at)
    record["updated_at"] = from_epoch(job.updated_at)
    return JobOut.model_validate(record)


def collection_videos(services: AppServices, collection: str) -> list[VideoFacts]:
    """Every video of the collection worth listing, newest first (404 for an unknown collection)."""
    store = services.require_store()
    store.get_collection(collection)
    indexed = set(store.list_videos(collection))
    latest: dict[str, Job] = {}
    for job in services.jobs.list(collection, limit=MAX_JOBS_READ):  # newest first
        if not job.duplicate and job.video_id not in latest:
            latest[job.video_id] = job
    facts = [
        VideoFacts(video_id, job, video_id in indexed)
        for video_id, job in latest.items()
        if job.stage is not JobStage.DONE or video_id in indexed  # done and gone from the store: deleted
    ]
    facts += [VideoFacts(video_id, None, True) for video_id in indexed - latest.keys()]
    return sorted(facts, key=lambda f: f.position, reverse=True)


def video_page(
    services: AppServices, collection: str, limit: int, after: JobPosition | None
) -> tuple[list[VideoFacts], JobPosition | None]:
    """One page of :func:`collection_videos` after ``after``, and the position to continue from (None: last)."""
    every = collection_videos(services, collection)
    rest = [f for f in every if after is None or f.position < after]
    page = rest[:limit]
    return page, (page[-1].position if len(rest) > limit else None)


def _duration_s(layout: DataLayout, collection: str, video_id: str) -> tuple[float | None, int]:
    """What decoded (from the clip plan written at decoding) and how many clips it was cut into."""
    try:
        document = json.loads(layout.clip_plan(collection, video_id).read_text(encoding="utf-8"))
        return float(document["duration_s"]), len(document["clips"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, 0


def video_out(services: AppServices, links: MediaLinks, collection: str, facts: VideoFacts) -> VideoOut:
    """The API's view of one video (reads a few small files: call from a thread)."""
    layout, job, video_id = services.layout, facts.job, facts.video_id
    state = video_state(job, facts.indexed)
    duration_s, planned = _duration_s(layout, collection, video_id)
    clips = job.clips if job is not None else services.require_store().count(collection, video_id)
    thumbnail = layout.thumbnail(collection, video_id, planned // 2)
    stored = layout.video_file(collection, video_id) is not None
    copy = layout.playback_file(collection, video_id).is_file()
    playback_url = None
    if copy:
        playback_url = links.playback_copy(collection, video_id)
    elif stored and state == "indexed":
        playback_url = links.video_file(collection, video_id)
    return VideoOut(
        collection=collection,
        video_id=video_id,
        state=state,
        reason=job.reason if job is not None and state == "failed" else None,
        clips=clips if state != "failed" else 0,
        duration_s=duration_s,
        source_name=job.source if job else None,
        metadata=job.metadata if job else {},
        job=job_out(job) if job else None,
        thumbnail_url=links.thumbnail(collection, video_id, planned // 2) if thumbnail.is_file() else None,
        file_url=links.video_file(collection, video_id) if stored else None,
        playback_url=playback_url,
        playback=job.playback if job else ("ready" if copy else ""),  # type: ignore[arg-type]
        problems=list(job.problems) if job else [],
        created_at=from_epoch(job.created_at) if job else None,
        updated_at=from_epoch(job.updated_at) if job else None,
    )


def describe_video(services: AppServices, collection: str, video_id: str) -> VideoFacts | None:
    """The video's facts (its owning job, else its latest one), or None if the collection has no such video."""
    store = services.require_store()
    store.get_collection(collection)  # unknown collection: CollectionNotFound -> 404
    indexed = store.count(collection, video_id) > 0
    owner = services.jobs.video_owner(collection, video_id)
    job = services.jobs.get(owner) if owner else None
    if job is None and not indexed:  # failed (its claim was freed), deleted, or never here
        job = next(
            (
                j
                for j in services.jobs.list(collection, limit=MAX_JOBS_READ)
                if j.video_id == video_id and not j.duplicate
            ),
            None,
        )
        if job is not None and job.stage is JobStage.DONE:
            job = None  # finished and gone from the store: deleted
    has_file = services.layout.video_file(collection, video_id) is not None
    if not indexed and job is None and not has_file:
        return None
    return VideoFacts(video_id, job, indexed)


def delete_video_everywhere(services: AppServices, collection: str, video_id: str) -> int | None:
    """Delete a video's points (vectors and frames), thumbnails, frame cache, files and dedup claim; returns
    the points removed, None when the collection knows nothing of it.

    A failed upload is listed until it is deleted (its job is the record of what failed): deleting it
    forgets its ended jobs too, so it leaves the listing.
    """
    from videoseek.collections import delete_video

    facts = describe_video(services, collection, video_id)
    if facts is None:
        return None
    failed = not facts.indexed and video_state(facts.job, False) == "failed"
    stored = services.layout.video_file(collection, video_id) is not None
    removed = delete_video(services.context, collection, video_id) if stored or not failed else 0
    if failed:
        services.jobs.forget_ended_jobs(collection, video_id)
    return removed
