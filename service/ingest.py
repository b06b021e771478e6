"""From an HTTP upload, a URL or a file on the server to a queued ingest job.

Every way in ends in :func:`_submit`: refuse what is clearly not a video (415), then the runtime's
``submit_ingest`` (the same call ``videoseek ingest`` makes), so a job behaves the same however its file came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import Request

from service.auth import Principal
from service.errors import InvalidRequest, SourceRefused, TooManyRequests, UnsupportedMedia
from service.media_sniff import not_a_video
from service.ranges import is_within
from service.state import AppServices
from service.uploads import ReceivedUpload, receive_upload
from service.url_fetch import fetch_url
from videoseek.ingest.submit import IngestQueueFull, SubmitResult
from videoseek.layout import InvalidName, check_collection_name
from videoseek.pairs import PairDraft
from videoseek.settings import IngestSettings

COLLECTION_FIELD = "collection"


async def _require_collection(services: AppServices, collection: str) -> None:
    store = services.require_store()
    await asyncio.to_thread(store.get_collection, collection)  # CollectionNotFound: 404


async def ingest_upload(services: AppServices, collection: str, request: Request) -> SubmitResult:
    """Stream the upload to disk, refuse what is clearly not a video, then hand it to the worker."""
    await _require_collection(services, collection)  # 404 before a byte of the body is read
    upload = await receive_upload(
        request, services.layout.uploads_dir, services.settings.ingest.max_file_bytes
    )
    services.metrics.upload_bytes.inc(upload.size)
    return await _submit(
        services, collection, upload.path, upload.filename, upload.metadata, move=True, pairs=upload.pairs
    )


async def receive_ingest_form(
    services: AppServices, request: Request, principal: Principal
) -> tuple[str, ReceivedUpload]:
    """``POST /ingest`` as multipart: the ``collection`` field (one the key may use), and the upload on disk
    (not yet submitted). The collection is only known once the body is read: the file is removed if refused."""
    upload = await receive_upload(
        request,
        services.layout.uploads_dir,
        services.settings.ingest.max_file_bytes,
        text_fields=frozenset({COLLECTION_FIELD}),
    )
    try:
        collection = _collection_field(upload.fields.get(COLLECTION_FIELD))
        principal.require_collection(collection)
    except BaseException:
        upload.path.unlink(missing_ok=True)
        raise
    services.metrics.upload_bytes.inc(upload.size)
    return collection, upload


def _collection_field(value: str | None) -> str:
    if not value:
        raise InvalidRequest(f"multipart field '{COLLECTION_FIELD}' is required: the collection to add to")
    try:
        return check_collection_name(value.strip())
    except InvalidName as exc:
        raise InvalidRequest(str(exc)) from exc


async def submit_received(services: AppServices, collection: str, upload: ReceivedUpload) -> SubmitResult:
    """Submit a file this request wrote under the uploads directory (moved into the collection, or removed),
    with the captions and sidecar cues that came with it."""
    try:
        await _require_collection(services, collection)
    except BaseException:
        upload.path.unlink(missing_ok=True)
        raise
    return await _submit(
        services, collection, upload.path, upload.filename, upload.metadata, move=True, pairs=upload.pairs
    )


async def ingest_url(
    services: AppServices, collection: str, url: str, metadata: dict[str, Any]
) -> SubmitResult:
    """Download ``url`` (checked at every hop: ``url_fetch.py``) and submit it."""
    await _require_collection(services, collection)
    fetched = await asyncio.to_thread(fetch_url, url, services.layout.uploads_dir, services.settings.ingest)
    services.metrics.upload_bytes.inc(fetched.size)
    return await _submit(services, collection, fetched.path, fetched.filename, metadata, move=True)


async def ingest_path(
    services: AppServices, collection: str, given: str, metadata: dict[str, Any]
) -> SubmitResult:
    """Submit a copy of a file under ``ingest.server_root`` (the original stays where it is)."""
    await _require_collection(services, collection)
    path = await asyncio.to_thread(server_file, services.settings.ingest, given)
    return await _submit(services, collection, path, path.name, metadata, move=False)


def server_file(settings: IngestSettings, given: str) -> Path:
    """The regular file ``given`` names under the server root, symlinks resolved; ``SourceRefused`` for
    anything else. A path outside the root is refused before its existence is looked at, so a caller
    learns nothing about the rest of the server's files."""
    root = settings.server_root
    if root is None:
        raise SourceRefused(
            "ingesting files on the server is off: set VIDEOSEEK_INGEST__SERVER_ROOT to the directory "
            "files may be ingested from, or upload the file"
        )
    if "\x00" in given:
        raise SourceRefused("a path cannot contain NUL bytes")
    candidate = Path(given)
    candidate = candidate if candidate.is_absolute() else root / candidate
    try:
        resolved = candidate.resolve()  # every symlink on the way, as far as the path exists
        inside = is_within(resolved, root)
        regular = inside and resolved.is_file()
    except (OSError, RuntimeError) as exc:  # a loop of symlinks, a name the file system refuses
        raise SourceRefused(f"{given[:200]!r} cannot be read: {exc}") from exc
    if not inside:
        raise SourceRefused(f"{given[:200]!r} is not under the server root (VIDEOSEEK_INGEST__SERVER_ROOT)")
    if not regular:
        raise SourceRefused(f"{given[:200]!r} is not a file under the server root")
    return resolved


async def _submit(
    services: AppServices,
    collection: str,
    path: Path,
    filename: str,
    metadata: dict[str, Any],
    *,
    move: bool,
    pairs: Sequence[PairDraft] = (),
) -> SubmitResult:
    """Refuse what is clearly not a video, then queue the job (``pairs``: its captions and sidecar cues); a
    moved file is gone afterwards either way."""
    try:
        what = await asyncio.to_thread(not_a_video, path)
        if what is not None:
            services.metrics.uploads.labels("unsupported").inc()
            raise UnsupportedMedia(f"{filename!r} is {what}, not a video")
        result = await services.redis_lane.run(  # queue depth, job and claim: Redis in distributed mode
            services.runtime.submit_ingest, collection, path, filename, metadata, move=move, pairs=pairs
        )
    except IngestQueueFull as exc:
        services.metrics.uploads.labels("queue_full").inc()
        raise TooManyRequests(f"the ingest queue is full: {exc}", exc.retry_after_s) from exc
    finally:
        if move:
            path.unlink(missing_ok=True)  # moved into the collection on success; garbage otherwise
    services.metrics.uploads.labels("duplicate" if result.duplicate else "accepted").inc()
    return result
