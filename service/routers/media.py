"""Thumbnails and source videos, with HTTP Range support so the browser can seek."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service import responses
from service.deps import LayoutDep, MediaAccess
from service.errors import NotFound
from service.ranges import file_response
from service.schemas import ClipIndexPath, CollectionNamePath, VideoIdPath

router = APIRouter(tags=["media"])


def _served(media_type: str) -> responses.Responses:
    """The whole file (200) or one byte range of it (206), as ``media_type``; and the errors.

    A stored video keeps the type its upload's extension says (video/mp4, video/webm, image/gif...): */*.
    """
    body = {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}
    return {
        200: {"description": "The whole file.", **body},
        206: {"description": "The byte range asked for with Range.", **body},
        **responses.MEDIA,
    }


@router.get(
    "/collections/{name}/videos/{video_id}/file", response_class=StreamingResponse, responses=_served("*/*")
)
async def video_file(
    name: CollectionNamePath, video_id: VideoIdPath, request: Request, access: MediaAccess, layout: LayoutDep
) -> StreamingResponse:
    """The uploaded video itself, to download or play; honours Range so players can seek (#t=<s> starts there)."""
    if access is not None:
        access.require_collection(name)
    path = layout.video_file(name, video_id)
    if path is None:
        raise NotFound(f"video {video_id} is not stored in collection {name!r}")
    return file_response(request, path)


@router.get(
    "/collections/{name}/videos/{video_id}/playback.mp4",
    response_class=StreamingResponse,
    responses=_served("video/mp4"),
)
async def playback_copy(
    name: CollectionNamePath, video_id: VideoIdPath, request: Request, access: MediaAccess, layout: LayoutDep
) -> StreamingResponse:
    """The browser-playable copy (H.264 in MP4) of a video whose upload browsers cannot play; honours Range.

    404 while it is being written, and for videos that need none (search results and listings only link to
    copies that exist)."""
    if access is not None:
        access.require_collection(name)
    return file_response(request, layout.playback_file(name, video_id), media_type="video/mp4")


@router.get(
    "/collections/{name}/videos/{video_id}/thumbnails/{clip_index}.jpg",
    response_class=StreamingResponse,
    responses=_served("image/jpeg"),
)
async def thumbnail(
    name: CollectionNamePath,
    video_id: VideoIdPath,
    clip_index: ClipIndexPath,
    request: Request,
    access: MediaAccess,
    layout: LayoutDep,
) -> StreamingResponse:
    """The JPEG thumbnail of one clip."""
    if access is not None:
        access.require_collection(name)
    return file_response(request, layout.thumbnail(name, video_id, clip_index), media_type="image/jpeg")
