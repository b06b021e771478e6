"""Training pairs a collection owns: a text tied to a span of one of its videos, kept for retraining.

Four kinds, from four sources:

- ``caption``: a text someone wrote for a span (``POST /collections/{name}/captions``, an upload's ``captions``
  field, ``videoseek ingest --captions``);
- ``feedback_positive`` / ``feedback_negative``: a search query and the clip a user marked right (a positive
  pair) or "not this" (a hard negative) (``POST /collections/{name}/feedback``);
- ``subtitle``: a timed cue of a subtitle track inside the file or of a sidecar ``.srt``/``.vtt`` given with the
  upload; ``weak``, since subtitles say what is heard, not always what is seen.

The pairs live with the collection, not with the vectors: they survive re-indexing and restarts, and are
deleted with their video or their collection. Two implementations of one interface, chosen by the runtime
like the job store: SQLite in the data directory (embedded mode, ``pairs_sqlite.py``) and Redis (distributed
mode, ``worker/redis_pairs.py``); the contract tests run both.

Ids are derived from what a pair says, so writing the same pair twice stores it once: a retried request, a
redelivered ingest or three identical subtitle tracks leave one pair each. A feedback pair's id leaves out
the verdict, so the latest click on a (query, clip) replaces the earlier one.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

PairKind = Literal["caption", "feedback_positive", "feedback_negative", "subtitle"]
PAIR_KINDS: tuple[PairKind, ...] = get_args(PairKind)
TEXT_KINDS: tuple[PairKind, ...] = ("caption", "subtitle")  # texts written for (or heard in) a span
FEEDBACK_KINDS: tuple[PairKind, ...] = ("feedback_positive", "feedback_negative")

# The longest text kept: a search query's limit (POST /search), so any query a user ran can be a feedback pair.
MAX_TEXT_CHARS = 1000
# Pairs one request (or one upload) may add: larger sets go in several requests.
MAX_PAIRS_PER_REQUEST = 1000
MAX_PAGE = 1000  # pairs one listing call returns at most

# Fixed: ids must stay the same across processes and releases, or a retried write would duplicate.
_PAIR_NAMESPACE = uuid.UUID("0b8f4f7e-3c55-5e8e-9a63-2f1d7c9e4a10")
_SPACES = re.compile(r"\s+")


class InvalidPair(ValueError):
    """A pair that cannot be stored as given (empty or overlong text, a window that is not one)."""


@dataclass(frozen=True)
class TrainingPair:
    """One text and the span of one video it belongs to.

    ``start_s``/``end_s`` bound the span in seconds from the video's start; None on either side means the
    video's start or end (a caption for the whole video has both None). ``clip_id`` is the search result a
    feedback pair was given on. ``source`` says where the pair came from, in words ("api", "upload", "cli",
    "subtitle track 2 (eng)", "sidecar movie.srt"). ``created_at`` is when it was last written; ``seq`` its
    place in the collection's listing (given by the store: 0 before it is stored).
    """

    id: str
    collection: str
    video_id: str
    kind: PairKind
    text: str
    start_s: float | None = None
    end_s: float | None = None
    weak: bool = False
    clip_id: str | None = None
    source: str | None = None
    created_at: float = field(default_factory=time.time)
    seq: int = 0

    @property
    def negative(self) -> bool:
        """A hard negative: the text does not describe this span."""
        return self.kind == "feedback_negative"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API's pair resource, the Redis record)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingPair:
        return cls(
            id=str(values["id"]),
            collection=str(values["collection"]),
            video_id=str(values["video_id"]),
            kind=check_kind(str(values["kind"])),
            text=str(values["text"]),
            start_s=_float_or_none(values.get("start_s")),
            end_s=_float_or_none(values.get("end_s")),
            weak=bool(values.get("weak", False)),
            clip_id=values.get("clip_id") or None,
            source=values.get("source") or None,
            created_at=float(values.get("created_at") or 0.0),
            seq=int(values.get("seq") or 0),
        )


@dataclass(frozen=True)
class PairPage:
    """One page of a listing, in the order pairs were first stored; ``next_after`` continues it (None: done)."""

    pairs: list[TrainingPair]
    next_after: int | None


class PairStore(ABC):
    """Where a deployment's training pairs live. Implementations are safe to share between threads."""

    @abstractmethod
    def add(self, pairs: Sequence[TrainingPair]) -> int:
        """Store ``pairs``, each collection's at once or not at all; one whose id is stored already replaces
        it, keeping its place in the listing. Returns how many were new."""

    @abstractmethod
    def get(self, collection: str, pair_id: str) -> TrainingPair | None: ...

    @abstractmethod
    def list(
        self,
        collection: str,
        *,
        kinds: Collection[PairKind] | None = None,
        video_id: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> PairPage:
        """The collection's pairs after position ``after`` (a ``next_after``), oldest first, at most ``limit``;
        only those of ``kinds`` and of ``video_id`` when given."""

    @abstractmethod
    def delete(self, collection: str, pair_id: str) -> TrainingPair | None:
        """Remove one pair; returns it, or None when there was none."""

    @abstractmethod
    def delete_video(self, collection: str, video_id: str) -> int:
        """Remove every pair of one video (it left the collection); returns how many."""

    @abstractmethod
    def delete_collection(self, collection: str) -> int:
        """Remove every pair of a collection; returns how many."""

    @abstractmethod
    def counts(self, collection: str) -> dict[PairKind, int]:
        """How many pairs of each kind the collection has (every kind, 0 included)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the backing store cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def iter_pairs(
    store: PairStore,
    collection: str,
    *,
    kinds: Collection[PairKind] | None = None,
    video_id: str | None = None,
    page_size: int = 500,
) -> Iterator[TrainingPair]:
    """Every pair of the collection (of ``kinds``, of ``video_id``), oldest first, a page at a time."""
    after = 0
    while True:
        page = store.list(collection, kinds=kinds, video_id=video_id, after=after, limit=page_size)
        yield from page.pairs
        if page.next_after is None:
            return
        after = page.next_after


def check_kind(kind: str) -> PairKind:
    if kind not in PAIR_KINDS:
        raise InvalidPair(f"unknown pair kind {kind!r}: one of {', '.join(PAIR_KINDS)}")
    return kind


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1..{MAX_PAGE}, got {limit}")
    return limit


# ------------------------------------------------------------------------------------------ building


def clean_text(text: str, what: str = "text") -> str:
    """``text`` with its runs of white space made one space; ``InvalidPair`` when empty or too long."""
    cleaned = _SPACES.sub(" ", text).strip()
    if not cleaned:
        raise InvalidPair(f"{what} is empty: give the words that describe the span")
    if len(cleaned) > MAX_TEXT_CHARS:
        raise InvalidPair(f"{what} is {len(cleaned)} characters long, over the {MAX_TEXT_CHARS} limit")
    return cleaned


def check_window(
    start_s: float | None, end_s: float | None, duration_s: float | None = None
) -> tuple[float | None, float | None]:
    """A span as stored: ``0 <= start_s < end_s``, and ``start_s`` before the end of a video whose duration is
    known (an ``end_s`` past its end is cut to it); ``InvalidPair`` saying which rule broke."""
    for name, value in (("start_s", start_s), ("end_s", end_s)):
        if value is not None and not math.isfinite(value):
            raise InvalidPair(f"{name} must be a finite number of seconds, got {value}")
    if start_s is not None and start_s < 0:
        raise InvalidPair(f"start_s must be >= 0, got {start_s}")
    if end_s is not None and end_s <= (start_s or 0.0):
        raise InvalidPair(f"end_s ({end_s}) must be after start_s ({start_s or 0.0})")
    if duration_s is not None and duration_s > 0:
        if start_s is not None and start_s >= duration_s:
            raise InvalidPair(f"start_s ({start_s}) is not before the end of the video ({duration_s:.3f} s)")
        if end_s is not None and end_s > duration_s:
            end_s = float(duration_s)
    return (
        None if start_s is None else float(start_s),
        None if end_s is None else float(end_s),
    )


def _pair_id(*parts: object) -> str:
    return str(uuid.uuid5(_PAIR_NAMESPACE, "\x1f".join("" if p is None else str(p) for p in parts)))


def text_pair(
    collection: str,
    video_id: str,
    kind: Literal["caption", "subtitle"],
    text: str,
    start_s: float | None = None,
    end_s: float | None = None,
    *,
    source: str | None = None,
    duration_s: float | None = None,
) -> TrainingPair:
    """A caption (or a weak subtitle cue) for a span, checked; its id is derived from what it says."""
    text = clean_text(text, f"{kind} text")
    start_s, end_s = check_window(start_s, end_s, duration_s)
    return TrainingPair(
        id=_pair_id(kind, collection, video_id, _seconds(start_s), _seconds(end_s), text),
        collection=collection,
        video_id=video_id,
        kind=kind,
        text=text,
        start_s=start_s,
        end_s=end_s,
        weak=kind == "subtitle",
        source=source,
    )


def feedback_pair(
    collection: str,
    query: str,
    clip_id: str,
    video_id: str,
    start_s: float,
    end_s: float,
    *,
    relevant: bool,
    source: str | None = None,
) -> TrainingPair:
    """A search query and the clip it was judged on: relevant (a positive pair) or not (a hard negative).

    The id leaves the verdict out: judging the same clip for the same query again replaces the first verdict.
    """
    query = clean_text(query, "query")
    return TrainingPair(
        id=_pair_id("feedback", collection, clip_id, query),
        collection=collection,
        video_id=video_id,
        kind="feedback_positive" if relevant else "feedback_negative",
        text=query,
        start_s=float(start_s),
        end_s=float(end_s),
        clip_id=clip_id,
        source=source,
    )


@dataclass(frozen=True)
class PairDraft:
    """A caption or subtitle cue for a video whose id is not known yet (an upload, a file to ingest): checked
    where it arrives, tied to the video once the file is stored (:meth:`for_video`)."""

    kind: Literal["caption", "subtitle"]
    text: str
    start_s: float | None = None
    end_s: float | None = None
    source: str | None = None

    @classmethod
    def checked(
        cls,
        kind: Literal["caption", "subtitle"],
        text: str,
        start_s: float | None = None,
        end_s: float | None = None,
        source: str | None = None,
    ) -> PairDraft:
        """A draft that :meth:`for_video` will accept (whatever the video's length): ``InvalidPair`` if not."""
        return cls(kind, clean_text(text, f"{kind} text"), *check_window(start_s, end_s), source)

    def for_video(self, collection: str, video_id: str, duration_s: float | None = None) -> TrainingPair:
        return text_pair(
            collection,
            video_id,
            self.kind,
            self.text,
            self.start_s,
            self.end_s,
            source=self.source,
            duration_s=duration_s,
        )


def _seconds(value: float | None) -> str:
    """A time as it enters an id: rounded to the millisecond, so 1.5 and 1.5000000001 are one pair."""
    return "" if value is None else f"{value:.3f}"


def _float_or_none(value: object) -> float | None:
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]
