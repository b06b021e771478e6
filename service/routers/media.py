"""Thumbnails and source videos, with HTTP Range support so the browser can seek."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from service.deps import LayoutDep, MediaAccess
from service.errors import NotFound
from service.ranges import file_response
from videoseek.layout import check_collection_name, check_video_id

router = APIRouter(tags=["media"])

_MEDIA_RESPONSES: dict[int | str, dict[str, object]] = {
    206: {"description": "Partial content (Range request)."},
    416: {"description": "The requested range cannot be served."},
}


@router.get(
    "/collections/{name}/videos/{video_id}/file", response_class=StreamingResponse, responses=_MEDIA_RESPONSES
)
async def video_file(
    name: str, video_id: str, request: Request, access: MediaAccess, layout: LayoutDep
) -> StreamingResponse:
    """The uploaded video itself; honours Range so players can seek (append #t=<s> to start there)."""
    check_collection_name(name)
    check_video_id(video_id)
    if access is not None:
        access.require_collection(name)
    path = layout.video_file(name, video_id)
    if path is None:
        raise NotFound(f"video {video_id} is not stored in collection {name!r}")
    return file_response(request, path)


@router.get(
    "/collections/{name}/videos/{video_id}/thumbnails/{clip_index}.jpg",
    response_class=StreamingResponse,
    responses=_MEDIA_RESPONSES,
)
async def thumbnail(
    name: str, video_id: str, clip_index: int, request: Request, access: MediaAccess, layout: LayoutDep
) -> StreamingResponse:
    """The JPEG thumbnail of one clip."""
    check_collection_name(name)
    check_video_id(video_id)
    if access is not None:
        access.require_collection(name)
    if clip_index < 0:
        raise NotFound("clip indexes start at 0")
    return file_response(request, layout.thumbnail(name, video_id, clip_index), media_type="image/jpeg")
