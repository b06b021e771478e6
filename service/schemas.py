"""Request and response bodies of the HTTP API (they are the OpenAPI schema)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from videoseek.layout import COLLECTION_NAME_RE, VIDEO_ID_RE, check_collection_name, check_video_id
from videoseek.pairs import MAX_PAIRS_PER_REQUEST, MAX_TEXT_CHARS

# Names and ids carry their pattern in the schema (so a generated request that matches it is one the API takes)
# and are checked by layout.py's own functions, whose errors say the rule in words.
_NAME_SCHEMA = {"pattern": COLLECTION_NAME_RE.pattern, "minLength": 1, "maxLength": 63}
_VIDEO_ID_SCHEMA = {"pattern": VIDEO_ID_RE.pattern, "minLength": 16, "maxLength": 64}
# Task ids: "<collection>.<32 hex>" (runtime/base.new_task_id); job ids: 32 hex (videoseek/jobs.new_job_id).
TASK_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\.[0-9a-f]{32}$")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# An adapter named by a client: an installed version (sha256 hex) or an absolute directory on the server.
ADAPTER_RE = re.compile(r"^([0-9a-f]{64}|/[\s\S]*)$")
# What MediaSigner.sign writes: a client never builds these, it copies a URL a search returned.
_SIGNED_URL = "Part of a signed media URL that a search returned; not needed with an API key."


def _matches(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if pattern.fullmatch(value) is None:
            raise ValueError(f"{value[:200]!r} is not {rule}")
        return value

    return AfterValidator(check)


CollectionName = Annotated[str, Field(json_schema_extra=_NAME_SCHEMA), AfterValidator(check_collection_name)]
VideoId = Annotated[str, Field(json_schema_extra=_VIDEO_ID_SCHEMA), AfterValidator(check_video_id)]
AdapterRef = Annotated[
    str,
    Field(min_length=1, max_length=4096, json_schema_extra={"pattern": ADAPTER_RE.pattern}),
    _matches(
        ADAPTER_RE,
        "an adapter: give an installed adapter's version (64 hex digits) or the absolute path of an adapter "
        "directory on the server",
    ),
]

CollectionNamePath = Annotated[
    str,
    Path(description="A collection's name.", json_schema_extra=_NAME_SCHEMA),
    AfterValidator(check_collection_name),
]
VideoIdPath = Annotated[
    str,
    Path(description="A video's id (the hex digest of its file).", json_schema_extra=_VIDEO_ID_SCHEMA),
    AfterValidator(check_video_id),
]
TaskIdPath = Annotated[
    str,
    Path(
        description="From POST /collections/{name}/reindex or /retrain.",
        json_schema_extra={"pattern": TASK_ID_RE.pattern, "maxLength": 96},
    ),
    _matches(TASK_ID_RE, "a task id (task ids come from POST /collections/{name}/reindex or /retrain)"),
]
JobIdPath = Annotated[
    str,
    Path(
        description="From POST /collections/{name}/videos.",
        json_schema_extra={"pattern": JOB_ID_RE.pattern, "minLength": 32, "maxLength": 32},
    ),
    _matches(JOB_ID_RE, "a job id (job ids come from POST /collections/{name}/videos)"),
]
ClipIndexPath = Annotated[int, Path(ge=0, description="The clip's index in its video, from 0.")]
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=4096,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="next_cursor of the previous page, unchanged.",
    ),
]
PageLimit = Annotated[int, Query(ge=1, le=200, description="At most this many, newest first.")]
SignedExpiry = Annotated[str | None, Query(description=_SIGNED_URL)]
SignedSignature = Annotated[str | None, Query(description=_SIGNED_URL)]

MetadataScalar = Annotated[str, StringConstraints(max_length=1024)] | int | float | bool


def iso_utc(value: datetime) -> str:
    """One time format in every response: ISO 8601 in UTC, to the millisecond, ``Z`` for UTC."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_epoch(seconds: float) -> datetime:
    """A time kept as seconds since the epoch (the job stores keep floats), as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)


UtcTime = Annotated[
    datetime,
    PlainSerializer(iso_utc, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2025-01-31T09:30:00.000Z"]}),
]
# Every time into a video, in seconds, to the millisecond (a float's last digits are noise to a reader).
Seconds = Annotated[float, AfterValidator(lambda value: round(value, 3))]


class ErrorOut(BaseModel):
    """Every refusal and failure: a stable machine code and a reason that says how to fix it."""

    code: str = Field(description="Stable, for programs: e.g. invalid_request, collection_not_found.")
    reason: str = Field(description="For people: what was wrong and what to do about it.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="A request the schema refused: every problem found (loc, msg, type)."
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TimeRange(_Strict):
    """Clips overlapping [start_s, end_s] (seconds into the video); either end may be open."""

    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start_s is not None and self.end_s is not None and self.start_s > self.end_s:
            raise ValueError("time_range.start_s must not be after time_range.end_s")
        return self


class SearchFilters(_Strict):
    """Every given filter must hold."""

    video_ids: list[VideoId] | None = Field(default=None, max_length=1000)
    metadata: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], MetadataScalar] | None = (
        Field(default=None, max_length=32, description="Equality on upload metadata keys.")
    )
    time_range: TimeRange | None = None


class SearchRequest(_Strict):
    """A text query against one collection."""

    collection: CollectionName
    query: Annotated[
        str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True, pattern=r"\S")
    ] = Field(description="What to look for, in words (not only spaces).")
    limit: int = Field(default=10, ge=1, le=100)
    filters: SearchFilters | None = None
    group_by: Literal["clip", "video"] = "clip"
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0, description="Cosine score cut-off.")
    min_relevance: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Leave out results whose relevance is below this (0.5: clearly above what nonsense "
        "queries find in this collection; 0.25 keeps weak matches).",
    )
    cursor: str | None = Field(
        default=None,
        max_length=65536,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="next_cursor of the previous page, unchanged.",
    )


class SearchResult(BaseModel):
    """One matching clip (with group_by=video: the best clip of one video)."""

    video_id: str
    clip_id: str = Field(description="The clip's id: what POST /collections/{name}/feedback takes.")
    clip_index: int
    start_s: Seconds
    end_s: Seconds
    best_frame_s: Seconds = Field(description="Time of the frame that matched the query best.")
    score: float = Field(
        description="Cosine similarity of the query and the clip's frames pooled as the response's `pooling` "
        "says, in [-1, 1]."
    )
    relevance: float | None = Field(
        default=None,
        description="The score calibrated for this collection and adapter version, in [0, 1]: the best hit of "
        "a nonsense query reads about 0.1, a clear match above 0.75. Comparable across collections.",
    )
    source_name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    thumbnail_url: str
    playback_url: str = Field(
        description="Plays from start_s (media fragment #t=) in a browser: the browser-playable copy when the "
        "upload needed one (AVI, MPEG-TS, HEVC, 10-bit...), else the upload itself."
    )
    file_url: str = Field(description="The uploaded file itself, to download.")


class SearchResponse(BaseModel):
    collection: str
    query: str
    adapter_version: str | None = Field(description="Adapter the query and the indexed vectors used.")
    pooling: str = Field(
        description="How each clip's frames were pooled against the query: text_conditioned or mean (the "
        "version's retrain chose it, or settings.search.pooling)."
    )
    results: list[SearchResult]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
    timings_ms: dict[str, float] = Field(default_factory=dict)


class CreateCollectionRequest(_Strict):
    name: CollectionName
    adapter: AdapterRef | None = Field(
        default=None,
        description="An installed adapter's version (sha256), or the absolute path of an adapter directory on "
        "the server (verified and installed); none for plain CLIP.",
    )


class ReindexRequest(_Strict):
    adapter: AdapterRef | None = Field(
        description="Adapter to switch to: an installed version (sha256) or the absolute path of an adapter "
        "directory on the server; null for plain CLIP. Required, so that switching to plain CLIP is never an "
        "accident."
    )
    allow_missing: bool = Field(
        default=False, description="Leave out videos without cached frames instead of failing."
    )


class RetrainRequest(_Strict):
    """Everything is optional: ``{}`` trains on the collection's own pairs with the recipe for their number."""

    data: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="Omitted: the collection's own training pairs (captions, positive feedback, subtitles). "
        "Or training data on the server: a captions.jsonl manifest ({video, caption, start_s?, end_s?} per "
        "line) or MSR-VTT's MSRVTT_data.json; its videos need not be in the collection.",
    )
    method: Literal["cma", "cma-noshare", "vision", "text"] = Field(
        default="cma", description="Adapter method (cma: the Cross-Modal Adapter with shared weights)."
    )
    epochs: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="At most this many (early stopping may end sooner). "
        "Default: the recipe's for the number of pairs.",
    )
    lr: float | None = Field(default=None, gt=0, lt=1, description="Default: the recipe's for the backbone.")
    batch_size: int | None = Field(
        default=None, ge=2, le=4096, description="Default: the recipe's for the number of pairs."
    )
    allow_missing: bool = Field(
        default=False, description="Re-index without videos that have no cached frames instead of failing."
    )
    from_current: bool = Field(
        default=False,
        description="Continue training the collection's current adapter (its method, rank and shared width; "
        "`method` is then ignored) instead of starting from scratch: a few epochs on new captions refine it.",
    )
    force: bool = Field(
        default=False,
        description="Install the new adapter even when the guard finds it no better than what serves on the "
        "held-out videos (the result says so; the old version is kept for rollback either way).",
    )

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [{}, {"force": True}, {"data": "/srv/captions.jsonl"}]},
    )


TaskKindOut = Literal["reindex", "retrain", "rollback"]


class TaskAccepted(BaseModel):
    task_id: str
    collection: str
    kind: TaskKindOut
    adapter_version: str | None = Field(
        default=None, description="Re-index: the version the collection switches to when done."
    )
    status_url: str


class TaskStatusOut(BaseModel):
    task_id: str
    collection: str
    kind: TaskKindOut | None = Field(
        description="null while a distributed task waits for a worker (Celery keeps no arguments)."
    )
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: dict[str, Any] | None = Field(
        default=None,
        description="The latest report: stage (training, embedding, catching-up, activating), videos_done, "
        "videos_total, clips; training reports carry a message, and step, total_steps, epoch and loss.",
    )
    result: dict[str, Any] | None = Field(default=None, description="The task's summary, once done.")
    reason: str | None = Field(
        default=None, description="Why it failed or was cancelled; the old version keeps serving."
    )
    cancel_requested: bool = Field(
        default=False,
        description="An admin asked it to stop (POST /tasks/{task_id}/cancel): it ends at its next safe point.",
    )


class TaskList(BaseModel):
    tasks: list[TaskStatusOut] = Field(
        description="Newest first. Embedded: what this server ran since it started. Distributed: what the API "
        "and `videoseek reindex` sent in the last day (as long as Celery keeps results)."
    )


class CollectionOut(BaseModel):
    name: str
    model: str
    adapter_version: str | None
    clips: int
    videos: int | None
    created_at: UtcTime


class CollectionList(BaseModel):
    collections: list[CollectionOut]
    unavailable: dict[str, str] = Field(
        default_factory=dict,
        description="Collections that exist but cannot be opened (damaged files): name -> why and how to fix.",
    )


class UploadAccepted(BaseModel):
    job_id: str
    video_id: str
    duplicate: bool = Field(description="True when this exact file is already in the collection.")
    job_url: str


PlaybackState = Literal["", "original", "pending", "ready", "failed", "disabled"]
_PLAYBACK = (
    "How browsers play it: original (as uploaded), pending (a browser-playable copy is being written), ready "
    "(the copy exists), failed (problems says why), disabled (it needs a copy but copies are off); empty until "
    "decoded."
)


class JobOut(BaseModel):
    job_id: str
    collection: str
    video_id: str
    source: str
    stage: str
    progress: float = Field(ge=0.0, le=1.0)
    reason: str | None = Field(description="Why the job failed, when it did.")
    duplicate: bool
    duplicate_of: str | None = Field(
        default=None, description="When a duplicate: the job that ingested (or is ingesting) this video."
    )
    clips: int
    problems: list[str] = Field(
        default_factory=list,
        description="What did not decode in a file that was still indexed, and why a playback copy failed.",
    )
    playback: PlaybackState = Field(default="", description=_PLAYBACK)
    created_at: UtcTime
    updated_at: UtcTime


class JobPage(BaseModel):
    collection: str
    jobs: list[JobOut] = Field(description="Newest first: every upload, URL or path ingest, duplicates too.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


VideoState = Literal["queued", "processing", "indexed", "failed"]


class VideoOut(BaseModel):
    """One video of a collection: where its ingest is, what it holds, where to play or download it."""

    collection: str
    video_id: str
    state: VideoState = Field(
        description="queued, processing (probing to indexing), indexed (searchable) or failed (see reason)."
    )
    reason: str | None = Field(default=None, description="Why its ingest failed.")
    clips: int
    duration_s: Seconds | None = Field(default=None, description="What decoded, once decoded.")
    source_name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    job: JobOut | None = Field(
        default=None, description="Its latest ingest job (null for videos put in by hand)."
    )
    thumbnail_url: str | None = Field(default=None, description="A clip's thumbnail, once decoded.")
    file_url: str | None = Field(default=None, description="The uploaded file, while it is stored.")
    playback_url: str | None = Field(
        default=None,
        description="What a browser plays: the browser-playable copy if there is one, else the upload.",
    )
    playback: PlaybackState = Field(default="", description=_PLAYBACK)
    problems: list[str] = Field(default_factory=list, description="What did not decode, and copy failures.")
    created_at: UtcTime | None = Field(default=None, description="When it was submitted.")
    updated_at: UtcTime | None = Field(default=None, description="Its job's last change.")


class VideoPage(BaseModel):
    collection: str
    videos: list[VideoOut] = Field(
        description="Newest first: indexed videos, those still in the works and failed ones with their reason."
    )
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class IngestRequest(_Strict):
    """Ingest from a URL (downloaded by the server) or a file on the server: exactly one of the two."""

    collection: CollectionName
    url: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="An http(s) URL. Every hop is checked: loopback, private and link-local addresses are "
        "refused (unless VIDEOSEEK_INGEST__ALLOW_PRIVATE_URLS), redirects too; the size and time are limited.",
    )
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="A file under the server's VIDEOSEEK_INGEST__SERVER_ROOT (absolute, or relative to it); "
        "refused when that is unset. The file is copied; the original stays.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="As for uploads: filterable by equality on its top-level keys."
    )

    @model_validator(mode="after")
    def _one_source(self) -> IngestRequest:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of 'url' (an http(s) URL) and 'path' (a file on the server)")
        return self


class ExampleQueries(BaseModel):
    collection: str
    examples: list[str] = Field(description="Queries that find something in this collection, for the page.")


class ExampleQueriesIn(_Strict):
    examples: list[Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]] = Field(
        max_length=24, description="Shown on the page under the search box, in this order."
    )


class Deleted(BaseModel):
    deleted: str
    clips_removed: int = 0


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="degraded: serving, but a check names a problem (a collection that cannot be opened)."
    )
    checks: dict[str, str] = Field(default_factory=dict)
    mode: Literal["embedded", "distributed"] | None = None


# ----------------------------------------------------------------------------------------- training pairs

# What a search result's clip_id looks like (videoseek/store/base.point_id: a UUID, lowercase).
CLIP_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PAIR_ID_RE = CLIP_ID_RE  # pair ids are UUIDs too (videoseek/pairs.py)
PairText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S")]
SpanSeconds = Annotated[float, Field(ge=0, le=1e7)]  # a time into a video, as a client sends it
PairKindName = Literal["caption", "feedback_positive", "feedback_negative", "subtitle"]

PairIdPath = Annotated[
    str,
    Path(
        description="A training pair's id (from the listing, or the answer that stored it).",
        json_schema_extra={"pattern": PAIR_ID_RE.pattern, "minLength": 36, "maxLength": 36},
    ),
    _matches(PAIR_ID_RE, "a pair id (a lowercase UUID, as GET /collections/{name}/captions lists them)"),
]
PairCursorQuery = Annotated[
    str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page, unchanged.")
]
PairVideoQuery = Annotated[
    str | None,
    Query(
        pattern=VIDEO_ID_RE.pattern, min_length=16, max_length=64, description="Only the pairs of this video."
    ),
]


class _Timed(_Strict):
    start_s: SpanSeconds | None = Field(
        default=None, description="Where the span starts, in seconds from the video's start (default: 0)."
    )
    end_s: SpanSeconds | None = Field(
        default=None,
        description="Where it ends (default: the video's end); past the video's end it is cut to it.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> _Timed:
        if self.end_s is not None and self.end_s <= (self.start_s or 0.0):
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s or 0.0})")
        return self


class CaptionIn(_Timed):
    """A caption for a span of an indexed video of the collection (the whole video without start_s/end_s)."""

    video_id: VideoId
    text: PairText = Field(description="What the span shows, in words.")


class UploadCaption(_Timed):
    """A caption for the video of the upload it comes with (the whole video without start_s/end_s)."""

    text: PairText = Field(description="What the span shows, in words.")


class AddCaptionsRequest(_Strict):
    captions: list[CaptionIn] = Field(min_length=1, max_length=MAX_PAIRS_PER_REQUEST)

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "captions": [
                        {
                            "video_id": "9f2c" * 16,
                            "text": "a dog catches a frisbee",
                            "start_s": 12.0,
                            "end_s": 19.5,
                        },
                        {"video_id": "9f2c" * 16, "text": "a sunny park with people walking"},
                    ]
                }
            ]
        },
    )


class FeedbackRequest(_Strict):
    query: PairText = Field(description="The query the user searched for.")
    clip_id: Annotated[
        str,
        Field(
            description="The clip_id of the search result the verdict is on.",
            json_schema_extra={"pattern": CLIP_ID_RE.pattern, "minLength": 36, "maxLength": 36},
        ),
        _matches(CLIP_ID_RE, "a clip id (copy the clip_id of a POST /search result)"),
    ]
    relevant: bool = Field(
        description="true: the right clip (a positive pair); false: not this (a hard negative)."
    )

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "query": "a dog catches a frisbee",
                    "clip_id": "1b4e28ba-2fa1-51d2-883f-0016d3cca427",
                    "relevant": True,
                }
            ]
        },
    )


class PairOut(BaseModel):
    """One training pair of a collection: a text and the span of one video it belongs to."""

    id: str
    collection: str
    video_id: str
    kind: PairKindName = Field(
        description="caption (written for the span), feedback_positive / feedback_negative (a search user's "
        "verdict on a result), subtitle (a cue of a subtitle track or sidecar file)."
    )
    text: str
    start_s: float | None = Field(description="null: the video's start.")
    end_s: float | None = Field(description="null: the video's end.")
    weak: bool = Field(description="True for subtitles: they say what is heard, not always what is seen.")
    clip_id: str | None = Field(default=None, description="Feedback: the search result it was given on.")
    source: str | None = Field(
        default=None, description="Where it came from: api, upload, cli, a subtitle track, a sidecar file."
    )
    created_at: UtcTime = Field(description="When it was last written (ISO 8601 UTC).")


class PairsAdded(BaseModel):
    added: int = Field(description="Captions stored now.")
    already_stored: int = Field(description="Captions stored before (the same video, text and span).")
    ids: list[str] = Field(description="The id of every caption sent, in order.")


class FeedbackStored(PairOut):
    replaced: bool = Field(
        description="True when it replaced an earlier verdict on this clip for this query."
    )


class PairList(BaseModel):
    pairs: list[PairOut] = Field(description="Oldest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
    counts: dict[str, int] = Field(
        description="How many pairs of each kind the collection has (all of them, whatever the filters)."
    )


class VersionOut(BaseModel):
    """One version of a collection: the live one, or an earlier one kept for rollback."""

    physical: str = Field(description="The version's name; pass it to POST /collections/{name}/rollback.")
    adapter_version: str | None = Field(
        description="The adapter its vectors were made with; null: plain CLIP."
    )
    live: bool = Field(description="True for the version searches use now.")
    created_at: str = Field(description="When the version was built (ISO 8601 UTC).")
    activated_at: str = Field(description="When it last went live (ISO 8601 UTC).")
    points: int = Field(description="Clips it holds.")
    pooling: str = Field(
        description="How its searches pool a clip's frames: what its retrain chose (metrics.serving), else "
        "settings.search.pooling."
    )
    metrics: dict[str, Any] | None = Field(
        default=None,
        description="What the retrain that made its adapter measured: `validation` (the guard's R@1, R@5, "
        "R@10 of the candidate and of what served before, on held-out pairs), `outcome`, `training_pairs`; "
        "null for plain CLIP or an adapter made elsewhere.",
    )


class VersionList(BaseModel):
    collection: str
    versions: list[VersionOut] = Field(description="The live version first, then kept ones, latest first.")
    kept_at_most: int = Field(description="Earlier versions kept after a switch (older ones are deleted).")

    model_config = {
        "json_schema_extra": {
            "example": {
                "collection": "holidays",
                "versions": [
                    {
                        "physical": "vs__holidays__3",
                        "adapter_version": "9f2c…",
                        "live": True,
                        "created_at": "2026-12-02T09:14:03.120Z",
                        "activated_at": "2026-12-02T09:14:05.002Z",
                        "points": 480,
                        "pooling": "mean",
                        "metrics": {"outcome": "installed", "serving": {"pooling": "mean"}},
                    },
                    {
                        "physical": "vs__holidays__1",
                        "adapter_version": None,
                        "live": False,
                        "created_at": "2026-12-01T17:40:00.000Z",
                        "activated_at": "2026-12-01T17:40:00.000Z",
                        "points": 480,
                        "pooling": "text_conditioned",
                        "metrics": None,
                    },
                ],
                "kept_at_most": 2,
            }
        }
    }


class RollbackRequest(_Strict):
    version: Annotated[str, StringConstraints(min_length=1, max_length=300)] | None = Field(
        default=None,
        description="The kept version to put back (its `physical` name); omitted: the one that served last.",
    )
