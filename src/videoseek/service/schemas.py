"""Request and response bodies of the HTTP API (they are the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from videoseek.core.layout import COLLECTION_NAME_RE, VIDEO_ID_RE

CollectionName = Annotated[
    str, StringConstraints(pattern=COLLECTION_NAME_RE.pattern, min_length=1, max_length=63)
]
VideoId = Annotated[str, StringConstraints(pattern=VIDEO_ID_RE.pattern, min_length=16, max_length=64)]
MetadataScalar = Annotated[str, StringConstraints(max_length=1024)] | int | float | bool


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
    query: Annotated[str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True)]
    limit: int = Field(default=10, ge=1, le=100)
    filters: SearchFilters | None = None
    group_by: Literal["clip", "video"] = "clip"
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0, description="Cosine score cut-off.")
    cursor: str | None = Field(
        default=None, max_length=65536, description="next_cursor of the previous page."
    )


class SearchResult(BaseModel):
    """One matching clip (with group_by=video: the best clip of one video)."""

    video_id: str
    clip_id: str
    clip_index: int
    start_s: float
    end_s: float
    best_frame_s: float = Field(description="Time of the frame that matched the query best.")
    score: float = Field(description="Cosine similarity after text-conditioned pooling, in [-1, 1].")
    source_name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    thumbnail_url: str
    playback_url: str = Field(description="Plays the source video from start_s (media fragment #t=).")


class SearchResponse(BaseModel):
    collection: str
    query: str
    adapter_version: str | None = Field(description="Adapter the query and the indexed vectors used.")
    results: list[SearchResult]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
    timings_ms: dict[str, float] = Field(default_factory=dict)


class CreateCollectionRequest(_Strict):
    name: CollectionName
    adapter: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        default=None, description="Adapter version (sha256) already registered, or none for plain CLIP."
    )


class ReindexRequest(_Strict):
    adapter: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        description="Adapter to switch to: a registered version (sha256) or an adapter directory on the server; "
        "null for plain CLIP. Required, so that switching to plain CLIP is never an accident."
    )
    allow_missing: bool = Field(
        default=False, description="Leave out videos without cached frames instead of failing."
    )


class RetrainRequest(_Strict):
    data: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        description="Training data on the server: a captions.jsonl manifest ({video, caption, start_s?, end_s?} "
        "per line) or MSR-VTT's MSRVTT_data.json. Its videos need not be in the collection."
    )
    method: Literal["cma", "cma-noshare", "vision", "text"] = Field(
        default="cma", description="Adapter method (cma: the Cross-Modal Adapter with shared weights)."
    )
    epochs: int = Field(default=5, ge=1, le=1000)
    lr: float | None = Field(default=None, gt=0, lt=1, description="Default: the training package's.")
    batch_size: int | None = Field(
        default=None, ge=2, le=4096, description="Default: the training package's."
    )
    allow_missing: bool = Field(
        default=False, description="Re-index without videos that have no cached frames instead of failing."
    )
    from_current: bool = Field(
        default=False,
        description="Continue training the collection's current adapter (its method, rank and shared width; "
        "`method` is then ignored) instead of starting from scratch: a few epochs on new captions refine it.",
    )


class TaskAccepted(BaseModel):
    task_id: str
    collection: str
    kind: Literal["reindex", "retrain"]
    adapter_version: str | None = Field(
        default=None, description="Re-index: the version the collection switches to when done."
    )
    status_url: str


class TaskStatusOut(BaseModel):
    task_id: str
    collection: str
    kind: Literal["reindex", "retrain"] | None = Field(
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
    created_at: datetime


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
        default_factory=list, description="What did not decode in a file that was still indexed."
    )
    created_at: float
    updated_at: float


class VideoOut(BaseModel):
    collection: str
    video_id: str
    clips: int
    source_name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    job: JobOut | None = None
    file_url: str | None = None


class VideoList(BaseModel):
    collection: str
    video_ids: list[str]


class Deleted(BaseModel):
    deleted: str
    clips_removed: int = 0


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="degraded: serving, but a check names a problem (a collection that cannot be opened)."
    )
    checks: dict[str, str] = Field(default_factory=dict)
    mode: Literal["embedded", "distributed"] | None = None
