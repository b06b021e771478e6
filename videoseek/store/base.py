"""The clip store interface: what the pipeline writes and the search service reads.

Two implementations sit behind :class:`ClipStore`: Qdrant Edge in-process (the embedded default, ``edge.py``)
and a Qdrant server through qdrant-client (``server.py``). Everything both share lives here: the data
classes, the errors, deterministic point ids, the payload layout and the filter semantics, so the two
cannot drift apart.

Each collection is an *alias* over a physical, versioned collection ``vs__<name>__<n>``: re-indexing with a
retrained adapter fills a new physical collection and switches the alias in one step.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from videoseek.layout import InvalidName, check_collection_name
from videoseek.metadata import INT64_MAX, INT64_MIN, InvalidMetadata, check_metadata, key_problem

# Named vectors of every physical collection.
VECTOR_POOLED = "pooled"  # one vector per clip, cosine, HNSW: the ANN stage
VECTOR_FRAMES = "frames"  # per-frame multivector, MAX_SIM, no graph: re-scores a pooled prefetch, read back
MAXSIM_COMPARATOR = "max_sim"  # how both backends spell the multivector comparator in a stored layout
# The pooled vectors also get an int8 copy kept in RAM, which the HNSW search walks; the top hits are rescored
# with the float vectors. 512-d, 100k clips: 1.1 ms instead of 4.8 ms per query, same recall against exact
# search (docs/benchmarks.md). The extremes beyond this quantile are clipped when building the int8 scale.
POOLED_INT8_QUANTILE = 0.99
# The int8 walk fetches this many times the asked-for hits, rescored with the floats: without it, recall@10
# against exact search was 0.95 on clustered 512-d clips; with 2x it is 1.0, for 0.02 ms more per query.
POOLED_RESCORE_OVERSAMPLING = 2.0

# User metadata lives under this payload key; SearchFilter.metadata filters on its entries.
METADATA_KEY = "metadata"
# The store writes these payload keys from ClipPoint fields; a caller's payload must not carry them.
RESERVED_PAYLOAD_KEYS = frozenset({"video_id", "clip_index", "start_s", "end_s", "frame_times"})
# Payload indexes every physical collection gets at creation (field -> kind).
BASE_PAYLOAD_INDEXES: dict[str, str] = {
    "video_id": "keyword",
    "start_s": "float",
    "end_s": "float",
}
# Metadata keys beyond this many per collection are still filterable, just not indexed.
MAX_METADATA_INDEXES = 64

PHYSICAL_PREFIX = "vs__"
_PHYSICAL_RE = re.compile(r"^vs__(?P<name>.+)__(?P<n>[0-9]+)$")

# Fixed namespace: ids must stay the same across processes and releases, or redelivered writes duplicate.
_POINT_NAMESPACE = uuid.UUID("6f1c3c1e-2b7d-5d3a-9a51-0c7e5b1d9e42")

MetadataValue = str | int | float | bool


# ---------------------------------------------------------------------------------------------- errors


class StoreError(RuntimeError):
    """Base class of every clip store error."""


class CollectionNotFound(StoreError, LookupError):
    """The named collection (or physical version) does not exist."""


class CollectionExists(StoreError):
    """A collection with this name already exists."""


class StoreUnavailable(StoreError):
    """The vector store cannot be reached right now (connection refused, timeout, lock held elsewhere)."""


class InvalidPoint(StoreError, ValueError):
    """A clip or query vector that does not fit the collection (wrong shape, dimension, values or payload)."""


class CollectionUnreadable(StoreError):
    """The collection exists but its stored data cannot be opened (damaged files); the others still serve.

    Not :class:`StoreUnavailable`: retrying does not help until someone restores or deletes the collection.
    """


# -------------------------------------------------------------------------------------------- names/ids


def point_id(video_id: str, clip_index: int) -> str:
    """Deterministic UUID of one clip, so a redelivered write overwrites instead of duplicating."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{video_id}:{int(clip_index)}"))


def valid_point_ids(ids: Collection[str]) -> list[str]:
    """The ids that can name a stored point (canonical UUID strings); others cannot match anything."""
    valid: list[str] = []
    for raw in ids:
        try:
            valid.append(str(uuid.UUID(str(raw))))
        except ValueError:
            continue
    return valid


def check_store_name(name: str) -> str:
    """A collection name the store accepts: a valid layout name that cannot be mistaken for a physical one."""
    check_collection_name(name)
    if name.startswith(PHYSICAL_PREFIX):
        raise InvalidName(f"invalid collection name {name!r}: the prefix {PHYSICAL_PREFIX!r} is reserved")
    return name


def physical_name(name: str, version: int) -> str:
    return f"{PHYSICAL_PREFIX}{name}__{version}"


def parse_physical(physical: str) -> tuple[str, int] | None:
    """``vs__<name>__<n>`` -> (name, n); None for anything else (names may contain ``__``: split right)."""
    match = _PHYSICAL_RE.fullmatch(physical)
    if match is None:
        return None
    return match["name"], int(match["n"])


def check_version_of(name: str, physical: str) -> None:
    """Raise ``CollectionNotFound`` unless ``physical`` names a version of collection ``name``."""
    parsed = parse_physical(physical)
    if parsed is None or parsed[0] != name:
        raise CollectionNotFound(f"{physical!r} is not a version of collection {name!r}")


def metadata_path(key: str) -> str:
    """JSON path of one user metadata entry; quoted so keys with dots, brackets or spaces stay one segment."""
    problem = key_problem(key)
    if problem is not None:
        raise ValueError(f"invalid metadata key {key[:140]!r}: {problem}")
    return f'{METADATA_KEY}."{key}"'


def metadata_index_kind(value: object) -> str | None:
    """Payload index kind for a metadata value, or None when the value is not a filterable scalar."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "keyword"
    return None


# -------------------------------------------------------------------------------------------- records


@dataclass
class ClipPoint:
    """One clip to store: its pooled vector (ANN), its per-frame vectors (re-ranking) and payload."""

    video_id: str
    clip_index: int
    start_s: float
    end_s: float
    pooled: np.ndarray  # [D] float32
    frames: np.ndarray  # [F, D] float32
    frame_times: list[float]
    payload: dict[str, Any] = field(default_factory=dict)  # source name, metadata dict, adapter version, ...

    def __post_init__(self) -> None:
        self.pooled = np.asarray(self.pooled, dtype=np.float32)
        self.frames = np.asarray(self.frames, dtype=np.float32)
        self.frame_times = [float(t) for t in self.frame_times]
        where = f"clip {self.video_id!r}#{self.clip_index}"
        if not isinstance(self.video_id, str) or not self.video_id:
            raise InvalidPoint(f"{where}: video_id must be a non-empty string")
        if self.clip_index < 0:
            raise InvalidPoint(f"{where}: clip_index must be >= 0")
        if not (0.0 <= self.start_s <= self.end_s) or not math.isfinite(self.end_s):
            raise InvalidPoint(f"{where}: need 0 <= start_s <= end_s, got {self.start_s}..{self.end_s}")
        if self.pooled.ndim != 1 or self.pooled.shape[0] == 0:
            raise InvalidPoint(f"{where}: pooled must be a 1-D vector, got shape {self.pooled.shape}")
        if self.frames.ndim != 2 or self.frames.shape[0] == 0 or self.frames.shape[1] != self.pooled.shape[0]:
            raise InvalidPoint(
                f"{where}: frames must be [F>=1, {self.pooled.shape[0]}] like pooled, got {self.frames.shape}"
            )
        if len(self.frame_times) != self.frames.shape[0]:
            raise InvalidPoint(
                f"{where}: {len(self.frame_times)} frame_times for {self.frames.shape[0]} frame vectors"
            )
        if not (np.isfinite(self.pooled).all() and np.isfinite(self.frames).all()):
            raise InvalidPoint(f"{where}: vectors contain NaN or infinity")
        if not np.any(self.pooled):
            raise InvalidPoint(f"{where}: pooled is all zeros (cosine similarity is undefined)")
        clash = RESERVED_PAYLOAD_KEYS.intersection(self.payload)
        if clash:
            raise InvalidPoint(f"{where}: payload must not set {sorted(clash)}; they come from the fields")
        if not isinstance(self.payload.get(METADATA_KEY, {}), dict):
            raise InvalidPoint(f"{where}: payload[{METADATA_KEY!r}] must be a dict of user metadata")

    @property
    def id(self) -> str:
        return point_id(self.video_id, self.clip_index)

    @property
    def dim(self) -> int:
        return int(self.pooled.shape[0])

    def stored_payload(self) -> dict[str, Any]:
        """The payload as stored: the caller's payload plus the structural fields filters use."""
        return {
            **self.payload,
            "video_id": self.video_id,
            "clip_index": int(self.clip_index),
            "start_s": float(self.start_s),
            "end_s": float(self.end_s),
            "frame_times": self.frame_times,
        }

    def metadata_indexes(self) -> dict[str, str]:
        """Metadata JSON paths this clip would want indexed, with their index kind."""
        wanted: dict[str, str] = {}
        for key, value in self.payload.get(METADATA_KEY, {}).items():
            kind = metadata_index_kind(value)
            if kind is not None and key_problem(key) is None:
                wanted[metadata_path(key)] = kind
        return wanted


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection is: its active physical version and what was used to fill it."""

    name: str
    physical: str
    dim: int
    adapter_version: str | None
    model: str  # base model fingerprint
    created_at: datetime  # when the collection (not this version) was created
    points: int
    videos: int | None = None
    # Whether the live version's frames vector is a MaxSim multivector, so ``ClipStore.search(prefetch=...)``
    # can re-score by it (every layout so far is; see :func:`frames_maxsim`).
    frames_maxsim: bool = True


@dataclass(frozen=True)
class VersionMeta:
    """What is persisted about one physical collection (Edge: a JSON file; server: collection metadata).

    ``activated_at``: when the version last went live (None: it never did, i.e. a re-index still filling it or
    one a crash left behind). A version that served once is kept after the next switch, for rollback.
    """

    collection: str
    dim: int
    model: str
    adapter_version: str | None
    created_at: datetime  # of the collection; carried over to each new version
    version_created_at: datetime
    activated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "collection": self.collection,
            "dim": self.dim,
            "model": self.model,
            "adapter_version": self.adapter_version,
            "created_at": self.created_at.isoformat(),
            "version_created_at": self.version_created_at.isoformat(),
        }
        if self.activated_at is not None:  # left out otherwise: a release without it reads the file as before
            data["activated_at"] = self.activated_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionMeta:
        try:
            activated = data.get("activated_at")
            return cls(
                collection=str(data["collection"]),
                dim=int(data["dim"]),
                model=str(data["model"]),
                adapter_version=None if data.get("adapter_version") is None else str(data["adapter_version"]),
                created_at=datetime.fromisoformat(data["created_at"]),
                version_created_at=datetime.fromisoformat(data["version_created_at"]),
                activated_at=None if activated is None else datetime.fromisoformat(activated),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"corrupt collection metadata {data!r}: {exc}") from exc

    def info(
        self, physical: str, points: int, videos: int | None, frames_maxsim: bool = True
    ) -> CollectionInfo:
        return CollectionInfo(
            name=self.collection,
            physical=physical,
            dim=self.dim,
            adapter_version=self.adapter_version,
            model=self.model,
            created_at=self.created_at,
            points=points,
            videos=videos,
            frames_maxsim=frames_maxsim,
        )

    def activated(self, when: datetime | None = None) -> VersionMeta:
        """This metadata as of going live (now, unless ``when``)."""
        return replace(self, activated_at=when or datetime.now(UTC))

    @property
    def served_at(self) -> datetime:
        """When the version last went live; a live version written before ``activated_at`` existed: its creation."""
        return self.activated_at or self.version_created_at


@dataclass(frozen=True)
class VersionInfo:
    """One version of a collection as listed: the live one, or an earlier one kept for rollback."""

    physical: str
    adapter_version: str | None
    model: str
    live: bool
    created_at: datetime  # of this version
    activated_at: datetime  # when it last went live
    points: int


def served_order(versions: Sequence[VersionInfo]) -> list[VersionInfo]:
    """The live version first, then the kept ones, most recently served first (both stores list this way)."""
    return sorted(versions, key=lambda v: (v.live, v.activated_at), reverse=True)


def versions_to_drop(
    metas: dict[str, VersionMeta], old_live: str | None, new_live: str, keep: int
) -> list[str]:
    """The versions a switch from ``old_live`` to ``new_live`` leaves behind to delete.

    Kept: the ``keep`` versions that served most recently besides the new live one (the old live one first),
    and any version newer than the new live one that never served (it may be a re-index still filling it).
    Dropped: older versions beyond ``keep``, and never-served versions older than the new one (crash leftovers).
    """
    number = parse_physical(new_live)[1]  # type: ignore[index]
    served = [p for p, m in metas.items() if p != new_live and (m.activated_at is not None or p == old_live)]
    served.sort(key=lambda p: (p == old_live, metas[p].served_at), reverse=True)
    unserved_old = [
        p
        for p, m in metas.items()
        if p not in served and p != new_live and parse_physical(p)[1] < number  # type: ignore[index]
    ]
    return [*served[keep:], *unserved_old]


def new_meta(name: str, dim: int, model: str, adapter_version: str | None) -> VersionMeta:
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    if not model:
        raise ValueError("model fingerprint must be a non-empty string")
    now = datetime.now(UTC)
    # a new collection's first version is live from the start
    return VersionMeta(
        name, int(dim), model, adapter_version, created_at=now, version_created_at=now, activated_at=now
    )


def next_meta(
    current: VersionMeta, adapter_version: str | None, model: str | None, dim: int | None
) -> VersionMeta:
    """Metadata of the next version of a collection: same collection, new adapter (and maybe base model)."""
    new_dim = current.dim if dim is None else int(dim)
    if new_dim <= 0:
        raise ValueError(f"dim must be positive, got {new_dim}")
    return VersionMeta(
        collection=current.collection,
        dim=new_dim,
        model=current.model if model is None else model,
        adapter_version=adapter_version,
        created_at=current.created_at,
        version_created_at=datetime.now(UTC),
    )


@dataclass(frozen=True)
class SearchFilter:
    """Restricts a search. Every set field must hold (AND); None means no restriction."""

    video_ids: list[str] | None = None
    metadata: dict[str, MetadataValue] | None = None  # equality on user metadata keys; numbers by value
    time_range: tuple[float | None, float | None] | None = None  # clips overlapping [from, to] seconds
    # Clips of these videos never match (paging by video: videos already shown must not use up candidates).
    exclude_video_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key, value in (self.metadata or {}).items():
            metadata_path(key)
            if metadata_index_kind(value) is None:
                raise ValueError(
                    f"metadata filter {key!r}: expected a string, number or boolean, got {type(value).__name__}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"metadata filter {key!r}: number must be finite")
            if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
                # no stored value can match it (the metadata rules keep integers to 64 bits)
                raise ValueError(f"metadata filter {key!r}: integer must fit in signed 64 bits")
        if self.time_range is not None:
            if len(self.time_range) != 2:
                raise ValueError("time_range must be a (from_s, to_s) pair; use None for an open end")
            lo, hi = self.time_range
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"time_range: from ({lo}) is after to ({hi})")

    @property
    def matches_nothing(self) -> bool:
        return self.video_ids is not None and len(self.video_ids) == 0


@dataclass
class ScoredClip:
    """One search hit."""

    id: str
    score: float
    video_id: str
    clip_index: int
    start_s: float
    end_s: float
    frame_times: list[float]
    payload: dict[str, Any]  # the caller's payload, as upserted
    frames: np.ndarray | None = None  # [F, D] float32, only when asked


def scored_clip(
    id_: object, score: float, payload: dict[str, Any] | None, frames: object | None = None
) -> ScoredClip:
    """Build a hit from a stored payload (splitting the structural fields back out)."""
    rest = dict(payload or {})
    structural = {key: rest.pop(key, None) for key in RESERVED_PAYLOAD_KEYS}
    return ScoredClip(
        id=str(id_),
        score=float(score),
        video_id=str(structural["video_id"]),
        clip_index=int(structural["clip_index"] or 0),
        start_s=float(structural["start_s"] or 0.0),
        end_s=float(structural["end_s"] or 0.0),
        frame_times=[float(t) for t in structural["frame_times"] or []],
        payload=rest,
        frames=None if frames is None else np.asarray(frames, dtype=np.float32),
    )


@dataclass(frozen=True)
class ClipSpan:
    """Where one stored clip is: its video and time span (what a search result's ``clip_id`` names)."""

    id: str
    video_id: str
    clip_index: int
    start_s: float
    end_s: float


# The payload fields a ClipSpan is read from (both stores fetch only these).
SPAN_PAYLOAD_KEYS = ["video_id", "clip_index", "start_s", "end_s"]


def clip_span(id_: object, payload: dict[str, Any] | None) -> ClipSpan:
    """A span from a stored payload (its structural fields)."""
    values = payload or {}
    return ClipSpan(
        id=str(id_),
        video_id=str(values.get("video_id")),
        clip_index=int(values.get("clip_index") or 0),
        start_s=float(values.get("start_s") or 0.0),
        end_s=float(values.get("end_s") or 0.0),
    )


def frames_maxsim(multivector_comparator: object, distance: object) -> bool:
    """Whether a frames vector stored with this comparator and distance can re-score a prefetch by MaxSim.

    MaxSim of a one-vector query is ``max_j <q, f_j>`` only under the Dot distance the layouts use; a vector
    without the comparator is no multivector and cannot be scored against a clip's frames at all. Both backends
    report enums or strings (``max_sim``, ``Dot``/``dot``), hence the lower-cased text comparison.
    """
    text = str(getattr(multivector_comparator, "value", multivector_comparator)).lower()
    dist = str(getattr(distance, "value", distance)).lower()
    return text == MAXSIM_COMPARATOR and dist == "dot"


def frames_of(vector: object) -> np.ndarray | None:
    """The 'frames' multivector out of a named-vector dict returned by either backend."""
    if isinstance(vector, dict) and VECTOR_FRAMES in vector:
        return np.asarray(vector[VECTOR_FRAMES], dtype=np.float32)
    return None


# -------------------------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class MatchCondition:
    """payload[key] == value (strings, integers, booleans)."""

    key: str
    value: str | int | bool


@dataclass(frozen=True)
class AnyCondition:
    """payload[key] is one of values."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class RangeCondition:
    """gte <= payload[key] <= lte (numbers)."""

    key: str
    gte: float | None = None
    lte: float | None = None


Condition = MatchCondition | AnyCondition | RangeCondition


def exclusion_conditions(flt: SearchFilter | None) -> list[Condition]:
    """The conditions none of which may hold (``must_not``); each backend translates them 1:1."""
    if flt is None or not flt.exclude_video_ids:
        return []
    return [AnyCondition("video_id", tuple(flt.exclude_video_ids))]


def filter_conditions(flt: SearchFilter | None) -> list[Condition]:
    """The conditions (all must hold) that express a SearchFilter; each backend translates them 1:1."""
    if flt is None:
        return []
    conditions: list[Condition] = []
    if flt.video_ids is not None:
        conditions.append(AnyCondition("video_id", tuple(flt.video_ids)))
    for key, value in (flt.metadata or {}).items():
        path = metadata_path(key)
        if isinstance(value, bool | str):
            conditions.append(MatchCondition(path, value))
        else:  # a range of one point matches 3 and 3.0 alike, whatever type the clip stored
            conditions.append(RangeCondition(path, gte=float(value), lte=float(value)))
    if flt.time_range is not None:
        lo, hi = flt.time_range
        if lo is not None:  # overlap: the clip ends at or after `from` ...
            conditions.append(RangeCondition("end_s", gte=float(lo)))
        if hi is not None:  # ... and starts at or before `to`
            conditions.append(RangeCondition("start_s", lte=float(hi)))
    return conditions


def check_query_vector(vector: np.ndarray, dim: int) -> np.ndarray:
    query = np.asarray(vector, dtype=np.float32)
    if query.shape != (dim,):
        raise InvalidPoint(f"query vector must have shape ({dim},), got {query.shape}")
    if not np.isfinite(query).all() or not np.any(query):
        raise InvalidPoint("query vector must be finite and non-zero")
    return query


def check_points(points: Sequence[ClipPoint], dim: int, target: str) -> None:
    """Refuse, before anything is written, a clip of the wrong size or one whose payload cannot be read back.

    Both stores call this last thing before writing: Qdrant Edge accepts payloads it then cannot read (a point
    nested ~124 levels deep makes its shard unopenable), so nothing the metadata rules refuse may get in.
    """
    checked: set[int] = set()  # the clips of one video share one metadata dict: check it once
    for point in points:
        if point.dim != dim:
            raise InvalidPoint(
                f"clip {point.video_id!r}#{point.clip_index} has dimension {point.dim} but {target} "
                f"stores {dim}: embed with the collection's base model"
            )
        _check_payload(point, checked)


def _check_payload(point: ClipPoint, checked: set[int]) -> None:
    try:
        metadata = point.payload.get(METADATA_KEY, {})
        if id(metadata) not in checked:
            check_metadata(metadata, where=f"payload.{METADATA_KEY}")
            checked.add(id(metadata))
        # the store's own entries (source name, adapter version, thumbnail) obey the same rules
        check_metadata({k: v for k, v in point.payload.items() if k != METADATA_KEY}, where="payload")
    except InvalidMetadata as exc:
        raise InvalidPoint(f"clip {point.video_id!r}#{point.clip_index}: {exc}") from exc


# -------------------------------------------------------------------------------------------- protocol


@runtime_checkable
class ClipStore(Protocol):
    """The one narrow interface the pipeline and the service use. Implementations are thread-safe."""

    def create_collection(
        self, name: str, dim: int, model: str, adapter_version: str | None = None
    ) -> CollectionInfo: ...

    def get_collection(self, name: str) -> CollectionInfo: ...

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection that can be read (an unreadable one is left out, never fails the list)."""
        ...

    def unreadable_collections(self) -> dict[str, str]:
        """Collections that exist but cannot be opened (damaged files): name -> why, and how to fix it."""
        ...

    def delete_collection(self, name: str) -> None: ...

    def new_version(
        self, name: str, adapter_version: str | None, *, model: str | None = None, dim: int | None = None
    ) -> str: ...

    def activate_version(self, name: str, physical: str, *, keep: int = 0) -> None:
        """Switch ``name`` to ``physical`` atomically; keep ``keep`` earlier versions (see :func:`versions_to_drop`)."""
        ...

    def list_versions(self, name: str) -> list[VersionInfo]:
        """The live version and the earlier ones kept for rollback, most recently served first."""
        ...

    def drop_version(self, name: str, physical: str) -> None:
        """Remove a version that never went live (a failed re-index); the live version is refused."""
        ...

    def upsert(self, name: str, points: Sequence[ClipPoint], physical: str | None = None) -> None: ...

    def search(
        self,
        name: str,
        vector: np.ndarray,
        limit: int,
        flt: SearchFilter | None = None,
        with_frames: bool = False,
        exclude_ids: Collection[str] = (),
        prefetch: int | None = None,
    ) -> list[ScoredClip]:
        """The ``limit`` clips nearest to ``vector``, best first; ``flt`` and ``exclude_ids`` always apply.

        ``prefetch`` None: by the ``pooled`` cosine. ``prefetch`` N: the pooled top ``max(N, limit)``, re-scored
        by MaxSim over their ``frames`` (``max_j <vector, f_j>``, the query as a one-vector multivector); the
        hits' ``score`` is then that MaxSim. A collection whose ``frames`` cannot do it
        (``CollectionInfo.frames_maxsim`` False) ignores ``prefetch`` and ranks by ``pooled`` as without it.
        """
        ...

    def get_frames(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]: ...

    def clip_spans(self, name: str, ids: Sequence[str]) -> dict[str, ClipSpan]:
        """The video and time span of each stored clip among ``ids`` (ids that name none are left out)."""
        ...

    def delete_video(self, name: str, video_id: str) -> int: ...

    def has_video(self, name: str, video_id: str) -> bool: ...

    def count(self, name: str, video_id: str | None = None) -> int: ...

    def list_videos(self, name: str, physical: str | None = None) -> list[str]:
        """The videos of the live version (or of the version ``physical`` of ``name``)."""
        ...

    def close(self) -> None: ...
