"""Videos of a collection: upload (ingested in the background), describe, list, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service import responses
from service.deps import IngestPrincipal, LinksDep, SearchPrincipal, Services
from service.errors import NotFound
from service.ingest import ingest_upload
from service.pagination import ListingCursors
from service.schemas import (
    CollectionNamePath,
    CursorQuery,
    Deleted,
    PageLimit,
    UploadAccepted,
    VideoIdPath,
    VideoOut,
    VideoPage,
)
from service.state import AppServices, MediaLinks
from service.videos import delete_video_everywhere, describe_video, video_out, video_page

router = APIRouter(tags=["videos"])

METADATA_FIELD_DOC = (
    "A JSON object, filterable by equality on its top-level keys; refused (422 invalid_metadata, with rule and "
    "path) when deeper than 16 levels, over 64 KB or 2048 values, or holding NaN, Infinity or integers beyond "
    "64 bits."
)
CAPTIONS_FIELD_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": (
        "Captions for this video, stored as its training pairs when the upload is "
        'accepted: a JSON list of {"text", "start_s"?, "end_s"?} (seconds; without '
        "them, the whole video), at most 1000. Once the video is decoded, a caption "
        "that starts after its end is removed and one that runs past it is cut (the "
        "job's problems say so)."
    ),
    "examples": ['[{"text": "a dog catches a frisbee", "start_s": 12, "end_s": 19.5}]'],
}
SUBTITLES_FIELD_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "format": "binary"},
    "maxItems": 4,
    "description": (
        "Sidecar subtitle files (.srt or .vtt, 2 MiB each, one part each): their cues "
        "become weak, timed training pairs of this video (kind subtitle)."
    ),
}
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The video file."},
                        "metadata": {"type": "string", "description": METADATA_FIELD_DOC},
                        "captions": CAPTIONS_FIELD_SCHEMA,
                        "subtitles": SUBTITLES_FIELD_SCHEMA,
                    },
                }
            }
        },
    }
}


def accepted(request: Request, job_id: str, video_id: str, duplicate: bool) -> UploadAccepted:
    return UploadAccepted(
        job_id=job_id,
        video_id=video_id,
        duplicate=duplicate,
        job_url=f"{request.scope.get('root_path', '')}/jobs/{job_id}",
    )


@router.post(
    "/collections/{name}/videos",
    status_code=202,
    response_model=UploadAccepted,
    openapi_extra=_UPLOAD_BODY,
    responses=responses.UPLOAD,
)
async def upload_video(
    name: CollectionNamePath, request: Request, principal: IngestPrincipal, services: Services
) -> UploadAccepted:
    """Upload a video (multipart 'file'; optional 'metadata', 'captions', 'subtitles'); poll job_url."""
    principal.require_collection(name)
    result = await ingest_upload(services, name, request)
    return accepted(request, result.job_id, result.video_id, result.duplicate)


def _page(services: AppServices, links: MediaLinks, name: str, limit: int, cursor: str | None) -> VideoPage:
    cursors = ListingCursors(services.cursors)
    after = cursors.decode(f"videos:{name}", cursor) if cursor else None
    facts, more = video_page(services, name, limit, after)
    return VideoPage(
        collection=name,
        videos=[video_out(services, links, name, f) for f in facts],
        next_cursor=cursors.encode(f"videos:{name}", more) if more else None,
    )


@router.get("/collections/{name}/videos", response_model=VideoPage, responses=responses.LISTING)
async def list_videos(
    name: CollectionNamePath,
    principal: SearchPrincipal,
    services: Services,
    links: LinksDep,
    limit: PageLimit = 50,
    cursor: CursorQuery = None,
) -> VideoPage:
    """A collection's videos, newest first: indexed, queued or processing, and failed ones with the reason."""
    principal.require_collection(name)
    return await services.redis_lane.run(_page, services, links, name, limit, cursor)  # jobs: Redis


def _one(services: AppServices, links: MediaLinks, name: str, video_id: str) -> VideoOut | None:
    facts = describe_video(services, name, video_id)
    return None if facts is None else video_out(services, links, name, facts)


@router.get("/collections/{name}/videos/{video_id}", response_model=VideoOut, responses=responses.ON_VIDEO)
async def get_video(
    name: CollectionNamePath,
    video_id: VideoIdPath,
    principal: SearchPrincipal,
    services: Services,
    links: LinksDep,
) -> VideoOut:
    """A video: its state, clip count, duration, source name, metadata, latest ingest job and media links."""
    principal.require_collection(name)
    found = await services.redis_lane.run(_one, services, links, name, video_id)  # owner job: Redis
    if found is None:
        raise NotFound(f"no video {video_id} in collection {name!r}")
    return found


@router.delete("/collections/{name}/videos/{video_id}", response_model=Deleted, responses=responses.ON_VIDEO)
async def delete_video(
    name: CollectionNamePath, video_id: VideoIdPath, principal: IngestPrincipal, services: Services
) -> Deleted:
    """Remove a video: its clips (vectors and frames), thumbnails, the stored file and its playback copy."""
    principal.require_collection(name)
    removed = await services.redis_lane.run(delete_video_everywhere, services, name, video_id)
    if removed is None:
        raise NotFound(f"no video {video_id} in collection {name!r}")
    return Deleted(deleted=video_id, clips_removed=removed)
