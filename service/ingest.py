"""From an HTTP upload to a queued ingest job."""

from __future__ import annotations

import asyncio

from fastapi import Request

from service.errors import TooManyRequests, UnsupportedMedia
from service.media_sniff import not_a_video
from service.state import AppServices
from service.uploads import receive_upload
from videoseek.ingest.submit import IngestQueueFull, SubmitResult


async def ingest_upload(services: AppServices, collection: str, request: Request) -> SubmitResult:
    """Stream the upload to disk, refuse what is clearly not a video, then hand it to the worker."""
    store = services.require_store()
    await asyncio.to_thread(store.get_collection, collection)  # 404 before a byte of the body is read
    settings = services.settings
    upload = await receive_upload(request, services.layout.uploads_dir, settings.ingest.max_file_bytes)
    services.metrics.upload_bytes.inc(upload.size)
    try:
        what = await asyncio.to_thread(not_a_video, upload.path)
        if what is not None:
            services.metrics.uploads.labels("unsupported").inc()
            raise UnsupportedMedia(f"{upload.filename!r} is {what}, not a video")
        result = await services.redis_lane.run(  # queue depth, job and claim: Redis in distributed mode
            services.runtime.submit_ingest,
            collection,
            upload.path,
            upload.filename,
            upload.metadata,
            move=True,
            pairs=upload.pairs,
        )
    except IngestQueueFull as exc:
        services.metrics.uploads.labels("queue_full").inc()
        raise TooManyRequests(f"the ingest queue is full: {exc}", exc.retry_after_s) from exc
    finally:
        upload.path.unlink(missing_ok=True)  # moved into the collection on success; garbage otherwise
    services.metrics.uploads.labels("duplicate" if result.duplicate else "accepted").inc()
    return result
