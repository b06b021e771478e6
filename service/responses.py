"""The error responses each kind of route declares in the OpenAPI document (``responses=`` of the routers).

Every one has the :class:`~service.schemas.ErrorOut` body. A route declares what it can answer:
a client generated from the schema then knows every status it must handle, and a status a route gives that
is not declared here is a bug (the schema test fuzzes for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.schemas import ErrorOut

Responses = dict[int | str, dict[str, Any]]

# What each status means when a route has nothing more specific to say.
_MEANING = {
    400: "The body is not JSON, or a cursor is not one this server issued.",
    401: "An API key is required and none, or an unknown one, was sent.",
    403: "The API key lacks the scope or the collection; or no key is configured and the caller is not on this "
    "machine.",
    404: "No such collection.",
    409: "In conflict with the collection's state (the reason says which).",
    413: "Over a size limit.",
    415: "Not the media type this route takes.",
    416: "The requested byte range cannot be served.",
    422: "A parameter or body field breaks its rule, or names something unusable (the reason says which).",
    429: "Too many requests queued: retry after Retry-After seconds.",
    502: "The server of the URL to ingest from could not be reached, or answered with an error.",
    503: "Starting up, or the vector store, Redis or the model is unavailable: retry after Retry-After seconds.",
    504: "Fetching the URL to ingest from took longer than its time limit.",
}


def errors(*statuses: int, said: Mapping[int, str] | None = None) -> Responses:
    """``statuses`` with their meaning (``said`` overrides it per status), each with the error body."""
    said = said or {}
    return {
        status: {"model": ErrorOut, "description": said.get(status, _MEANING[status])}
        for status in sorted({*statuses, *said})
    }


# Every route behind an API key: refused keys, parameters that break their rule, the service not ready.
KEYED = errors(401, 403, 422, 503)
PUBLIC = errors(said={503: "Starting up: retry after Retry-After seconds."})


def keyed(*statuses: int, said: Mapping[int, str] | None = None) -> Responses:
    """What a route behind an API key can answer: :data:`KEYED` and ``statuses``."""
    return {**KEYED, **errors(*statuses, said=said)}


_NO_TASK = {404: "No such task, or one of a collection the key may not use."}
_BUSY = "Busy with another task, or the collection was made for another base model."

ON_COLLECTION = keyed(404)
ON_VIDEO = keyed(said={404: "No such collection, or no such video in it."})
MEDIA = keyed(416, said={404: "No such collection, video or file (it may have been deleted)."})
ON_JOB = keyed(said={404: "No such job, or one of a collection the key may not use."})
ON_TASK = keyed(said=_NO_TASK)
CANCEL_TASK = keyed(said={**_NO_TASK, 409: "The task has ended: there is nothing to cancel."})
CREATE_COLLECTION = keyed(400, said={409: "A collection of that name exists."})
START_TASK = keyed(400, 404, said={409: _BUSY})
SEARCH = keyed(
    400,
    404,
    said={
        409: "The collection was made for another base model, is being switched to another adapter right now, "
        "or changed adapter since the cursor was issued."
    },
)
INGEST = keyed(
    400,
    404,
    said={
        413: "The file is over the size limit.",
        415: "Neither multipart nor JSON, or the file is clearly not a video.",
        422: "A malformed form or body, metadata that breaks a rule, or a URL or path this server will not read "
        "(code source_refused: not http(s), a private address, outside the server root, path ingest off...).",
        429: "The ingest queue is full: retry after Retry-After seconds.",
        502: "The URL's server could not be reached or answered with an error (the reason has its status).",
        504: "The download took longer than VIDEOSEEK_INGEST__URL_TIMEOUT_S.",
    },
)
LISTING = keyed(400, 404)
UPLOAD = keyed(
    404,
    said={
        413: "The file is over the size limit.",
        415: "Not multipart, or the file is clearly not a video.",
        422: "A malformed form, metadata that breaks a rule (code invalid_metadata, with its rule and path), "
        "captions that break one, or a subtitles file that is not SubRip or WebVTT.",
        429: "The ingest queue is full: retry after Retry-After seconds.",
    },
)
ADD_CAPTIONS = keyed(
    400,
    404,
    said={
        422: "A caption breaks a rule (empty or overlong text, end_s not after start_s, start_s past the video's "
        "end), or names a video the collection does not hold (code unknown_video, the reason names them); "
        "nothing was stored."
    },
)
FEEDBACK = keyed(
    400,
    404,
    said={422: "The query breaks a rule, or clip_id names no clip of the collection (code unknown_clip)."},
)
ON_PAIR = keyed(said={404: "No such collection, or no such pair of that kind in it."})
