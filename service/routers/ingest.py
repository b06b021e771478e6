"""``POST /ingest``: the design card's ingest endpoint. An upload (multipart, naming its collection), an http(s)
URL the server downloads, or a file under the server's root; each queues the same job as
``POST /collections/{name}/videos``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from service import responses
from service.deps import IngestPrincipal, Services
from service.errors import BadRequest, InvalidRequest, PayloadTooLarge, UnsupportedMedia
from service.ingest import ingest_path, ingest_url, receive_ingest_form, submit_received
from service.routers.videos import (
    CAPTIONS_FIELD_SCHEMA,
    METADATA_FIELD_DOC,
    SUBTITLES_FIELD_SCHEMA,
    accepted,
)
from service.schemas import IngestRequest, UploadAccepted
from service.state import AppServices
from service.uploads import parse_upload_metadata
from videoseek.ingest.submit import SubmitResult

router = APIRouter(tags=["videos"])

MAX_JSON_BODY_BYTES = 128 * 1024  # a URL or path, a collection name and metadata (64 KB at most)

_INGEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["collection", "file"],
                    "properties": {
                        "collection": {
                            "type": "string",
                            "description": "The collection to add the video to.",
                            "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$",
                        },
                        "file": {"type": "string", "format": "binary", "description": "The video file."},
                        "metadata": {"type": "string", "description": METADATA_FIELD_DOC},
                        "captions": CAPTIONS_FIELD_SCHEMA,
                        "subtitles": SUBTITLES_FIELD_SCHEMA,
                    },
                },
                "encoding": {"file": {"contentType": "video/*, application/octet-stream"}},
            },
            "application/json": {
                "schema": IngestRequest.model_json_schema(),
                "examples": {
                    "url": {
                        "summary": "Download from a URL",
                        "value": {"collection": "pets", "url": "https://example.com/videos/dog.mp4"},
                    },
                    "path": {
                        "summary": "A file under VIDEOSEEK_INGEST__SERVER_ROOT",
                        "value": {
                            "collection": "pets",
                            "path": "garden/2025-06-01.mkv",
                            "metadata": {"camera": "garden"},
                        },
                    },
                },
            },
        },
    }
}


async def _json_body(request: Request) -> IngestRequest:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BODY_BYTES:
            raise PayloadTooLarge(f"the JSON body is larger than {MAX_JSON_BODY_BYTES} bytes")
    try:
        document = json.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    try:
        body = IngestRequest.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {str(first['msg']).removeprefix('Value error, ')}") from exc
    body.metadata = parse_upload_metadata(
        json.dumps(body.metadata).encode()
    )  # the upload form's rules, 422 alike
    return body


async def _from_json(request: Request, principal: IngestPrincipal, services: AppServices) -> SubmitResult:
    body = await _json_body(request)
    principal.require_collection(body.collection)
    if body.url is not None:
        return await ingest_url(services, body.collection, body.url, body.metadata)
    assert body.path is not None
    return await ingest_path(services, body.collection, body.path, body.metadata)


@router.post(
    "/ingest",
    status_code=202,
    response_model=UploadAccepted,
    openapi_extra=_INGEST_BODY,
    responses=responses.INGEST,
)
async def ingest(request: Request, principal: IngestPrincipal, services: Services) -> UploadAccepted:
    """Add a video to a collection: an upload (multipart: collection, file, metadata), an http(s) URL or a file
    on the server (JSON: collection and url or path, metadata). Poll job_url for progress."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "application/json":
        result = await _from_json(request, principal, services)
    elif content_type == "multipart/form-data":
        collection, upload = await receive_ingest_form(services, request, principal)
        result = await submit_received(services, collection, upload)
    else:
        raise UnsupportedMedia(
            "send multipart/form-data (collection, file, metadata) or JSON {collection, url | path, metadata}"
        )
    return accepted(request, result.job_id, result.video_id, result.duplicate)
