"""Videos of a collection: upload (ingested in the background), describe, list, delete."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from service import responses
from service.deps import IngestPrincipal, LinksDep, SearchPrincipal, Services
from service.errors import NotFound
from service.ingest import ingest_upload
from service.routers.jobs import job_out
from service.schemas import (
    CollectionNamePath,
    Deleted,
    UploadAccepted,
    VideoIdPath,
    VideoList,
    VideoOut,
)
from service.videos import delete_video_everywhere, describe_video

router = APIRouter(tags=["videos"])

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
                        "metadata": {
                            "type": "string",
                            "description": (
                                "A JSON object, filterable by equality on its top-level keys; refused (422 "
                                "invalid_metadata, with rule and path) when deeper than 16 levels, over 64 KB or "
                                "2048 values, or holding NaN, Infinity or integers beyond 64 bits."
                            ),
                        },
                        "captions": {
                            "type": "string",
                            "description": (
                                "Captions for this video, stored as its training pairs when the upload is "
                                'accepted: a JSON list of {"text", "start_s"?, "end_s"?} (seconds; without '
                                "them, the whole video), at most 1000. Once the video is decoded, a caption "
                                "that starts after its end is removed and one that runs past it is cut (the "
                                "job's problems say so)."
                            ),
                            "examples": [
                                '[{"text": "a dog catches a frisbee", "start_s": 12, "end_s": 19.5}]'
                            ],
                        },
                        "subtitles": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "maxItems": 4,
                            "description": (
                                "Sidecar subtitle files (.srt or .vtt, 2 MiB each, one part each): their cues "
                                "become weak, timed training pairs of this video (kind subtitle)."
                            ),
                        },
                    },
                }
            }
        },
    }
}


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
    return UploadAccepted(
        job_id=result.job_id,
        video_id=result.video_id,
        duplicate=result.duplicate,
        job_url=f"{request.scope.get('root_path', '')}/jobs/{result.job_id}",
    )


@router.get("/collections/{name}/videos", response_model=VideoList, responses=responses.ON_COLLECTION)
async def list_videos(name: CollectionNamePath, principal: SearchPrincipal, services: Services) -> VideoList:
    """Ids of the videos indexed in a collection."""
    principal.require_collection(name)
    ids = await asyncio.to_thread(services.require_store().list_videos, name)
    return VideoList(collection=name, video_ids=sorted(ids))


@router.get("/collections/{name}/videos/{video_id}", response_model=VideoOut, responses=responses.ON_VIDEO)
async def get_video(
    name: CollectionNamePath,
    video_id: VideoIdPath,
    principal: SearchPrincipal,
    services: Services,
    links: LinksDep,
) -> VideoOut:
    """A video: its clip count, source name, metadata and latest ingest job."""
    principal.require_collection(name)
    found = await services.redis_lane.run(describe_video, services, name, video_id)  # owner job: Redis
    if found is None:
        raise NotFound(f"no video {video_id} in collection {name!r}")
    clips, job, has_file = found
    return VideoOut(
        collection=name,
        video_id=video_id,
        clips=clips,
        source_name=job.source if job else None,
        metadata=job.metadata if job else {},
        job=job_out(job) if job else None,
        file_url=links.video_file(name, video_id) if has_file else None,
    )


@router.delete("/collections/{name}/videos/{video_id}", response_model=Deleted, responses=responses.ON_VIDEO)
async def delete_video(
    name: CollectionNamePath, video_id: VideoIdPath, principal: IngestPrincipal, services: Services
) -> Deleted:
    """Remove a video: its clips (vectors and frames), thumbnails and the stored file."""
    principal.require_collection(name)
    removed = await services.redis_lane.run(delete_video_everywhere, services, name, video_id)
    if removed is None:
        raise NotFound(f"no video {video_id} in collection {name!r}")
    return Deleted(deleted=video_id, clips_removed=removed)
