"""What the API knows about one video, and removing it everywhere (blocking: call from a thread)."""

from __future__ import annotations

from service.state import AppServices
from videoseek.jobs import Job


def describe_video(
    services: AppServices, collection: str, video_id: str
) -> tuple[int, Job | None, bool] | None:
    """(clips indexed, the job that owns the video, whether the file is stored), or None if unknown."""
    store = services.require_store()
    store.get_collection(collection)  # unknown collection: CollectionNotFound -> 404
    clips = store.count(collection, video_id)
    owner = services.jobs.video_owner(collection, video_id)
    job = services.jobs.get(owner) if owner else None
    has_file = services.layout.video_file(collection, video_id) is not None
    if clips == 0 and job is None and not has_file:
        return None
    return clips, job, has_file


def delete_video_everywhere(services: AppServices, collection: str, video_id: str) -> int | None:
    """Delete a video's points (vectors and frames), thumbnails, frame cache, file and dedup claim.

    None when the collection has no such video.
    """
    from videoseek.collections import delete_video

    if describe_video(services, collection, video_id) is None:
        return None
    return delete_video(services.context, collection, video_id)
