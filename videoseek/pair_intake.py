"""Training pairs as they arrive from users, checked against the collection before anything is stored.

What ``POST /collections/{name}/captions`` and ``/feedback`` run (blocking: the clip store, and Redis in
distributed mode), and what a library caller would. A request is all or nothing: one caption naming a video
the collection does not hold, or breaking a rule, and none of them is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from videoseek.context import PipelineContext
from videoseek.pairs import (
    MAX_PAIRS_PER_REQUEST,
    InvalidPair,
    TrainingPair,
    feedback_pair,
    text_pair,
)

# Up to this many distinct videos are looked up one by one; more, and the collection's list is read once.
_LOOKUPS_ONE_BY_ONE = 16


class UnknownVideos(LookupError):
    """Captions name videos the collection does not hold (``video_ids``); nothing was stored."""

    def __init__(self, collection: str, video_ids: Sequence[str]) -> None:
        shown = ", ".join(video_ids[:20]) + (
            f" and {len(video_ids) - 20} more" if len(video_ids) > 20 else ""
        )
        super().__init__(
            f"collection {collection!r} holds no video {shown}: captions are for indexed videos (GET "
            f"/collections/{collection}/videos lists them; an upload's 'captions' field takes captions for "
            "the video it sends); nothing was stored"
        )
        self.video_ids = list(video_ids)


class UnknownClip(LookupError):
    """Feedback names a clip id that no clip of the collection has."""


@dataclass(frozen=True)
class CaptionIn:
    """A caption as a request gives it: for a video of the collection, its whole length or a span."""

    video_id: str
    text: str
    start_s: float | None = None
    end_s: float | None = None


@dataclass(frozen=True)
class Added:
    """What a request stored: ``added`` new pairs; the others were stored already (the same text and span)."""

    added: int
    pairs: list[TrainingPair]


def _missing_videos(ctx: PipelineContext, collection: str, video_ids: Sequence[str]) -> list[str]:
    if len(video_ids) <= _LOOKUPS_ONE_BY_ONE:
        return [v for v in video_ids if not ctx.store.has_video(collection, v)]
    present = set(ctx.store.list_videos(collection))
    return [v for v in video_ids if v not in present]


def add_captions(
    ctx: PipelineContext, collection: str, captions: Sequence[CaptionIn], *, source: str = "api"
) -> Added:
    """Store captions for videos of the collection, all or none.

    Raises ``CollectionNotFound``; :class:`UnknownVideos` naming every video id the collection does not hold;
    ``InvalidPair`` naming the first caption that breaks a rule (``captions[i]``: empty or overlong text,
    ``end_s`` not after ``start_s``, ``start_s`` past the video's end). An ``end_s`` past the video's end is
    cut to it.
    """
    from videoseek.collections import require_collection
    from videoseek.ingest.pipeline import video_duration

    require_collection(ctx.store, collection)
    if not 1 <= len(captions) <= MAX_PAIRS_PER_REQUEST:
        raise InvalidPair(f"send 1 to {MAX_PAIRS_PER_REQUEST} captions per request, not {len(captions)}")
    videos = sorted({c.video_id for c in captions})
    missing = _missing_videos(ctx, collection, videos)
    if missing:
        raise UnknownVideos(collection, missing)
    durations = {v: video_duration(ctx.layout, collection, v) for v in videos}
    pairs = []
    for index, caption in enumerate(captions):
        try:
            pairs.append(
                text_pair(
                    collection,
                    caption.video_id,
                    "caption",
                    caption.text,
                    caption.start_s,
                    caption.end_s,
                    source=source,
                    duration_s=durations[caption.video_id],
                )
            )
        except InvalidPair as exc:
            raise InvalidPair(f"captions[{index}]: {exc}") from None
    return Added(ctx.pairs.add(pairs), pairs)


def add_feedback(
    ctx: PipelineContext, collection: str, query: str, clip_id: str, *, relevant: bool, source: str = "api"
) -> tuple[TrainingPair, bool]:
    """Store a search user's verdict on one result: the pair, and whether it is new (False: it replaced the
    verdict given before on this clip for this query).

    Raises ``CollectionNotFound``, :class:`UnknownClip` (a clip id the collection has no clip for: it comes
    from a search result's ``clip_id``), ``InvalidPair`` (an empty or overlong query).
    """
    from videoseek.collections import require_collection

    require_collection(ctx.store, collection)
    span = next(iter(ctx.store.clip_spans(collection, [clip_id]).values()), None)  # ids in any case
    if span is None:
        raise UnknownClip(
            f"collection {collection!r} has no clip {clip_id[:64]!r}: send the clip_id of a result of "
            "POST /search on this collection"
        )
    pair = feedback_pair(
        collection,
        query,
        span.id,
        span.video_id,
        span.start_s,
        span.end_s,
        relevant=relevant,
        source=source,
    )
    created = ctx.pairs.add([pair]) == 1
    return ctx.pairs.get(collection, pair.id) or pair, created
