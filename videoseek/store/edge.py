"""Clip store on Qdrant Edge: Qdrant's own engine in-process, Edge shards on disk for each physical version.

A version made since issue 17's split has two shards: the one every query walks (pooled vectors, payloads) and
one holding its frame vectors, read by id to re-rank (:func:`edge_config`, :func:`frames_config`); versions made
before keep one shard with both, and keep serving.

The embedded default. Edge has no collections or aliases, so :class:`EdgeCatalog` keeps them in JSON files
beside the shards. Edge shard objects are safe to query and update from several threads (the bindings release
the GIL and the engine locks internally); this store adds a readers-writer lock so opening, dropping and
closing shards never races a running query, and a per-version write lock (over both of its shards) so updates
never race ``optimize``.
A shard that cannot be opened (damaged files) makes only its own collection unreadable
(:class:`CollectionUnreadable`); the store and every other collection keep serving.
Edge never optimizes on its own: the store does after every ``optimize_every`` written clips and before a
new version goes live.

One process at a time opens a store directory. Edge locks each shard it opens, but the catalog (which
collection lives in which shard) is read once at open and rewritten by whoever changes it: a second process
would create a collection the first never sees, and overwrite the first one's. So the store holds an ``flock``
on ``<root>/.lock`` from open to :meth:`EdgeClipStore.close` and a second open is refused at once with
``StoreUnavailable`` (the kernel frees the lock when its holder dies).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import shutil
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from videoseek.store.base import (
    BASE_PAYLOAD_INDEXES,
    MAX_METADATA_INDEXES,
    METADATA_KEY,
    POOLED_RESCORE_OVERSAMPLING,
    SPAN_PAYLOAD_KEYS,
    VECTOR_FRAMES,
    VECTOR_POOLED,
    AnyCondition,
    ClipPoint,
    ClipSpan,
    CollectionExists,
    CollectionInfo,
    CollectionNotFound,
    CollectionUnreadable,
    Condition,
    RangeCondition,
    ScoredClip,
    SearchFilter,
    StoreError,
    StoreUnavailable,
    VersionInfo,
    VersionMeta,
    check_points,
    check_query_vector,
    check_store_name,
    check_version_of,
    clip_span,
    exclusion_conditions,
    filter_conditions,
    frames_of,
    new_meta,
    next_meta,
    parse_physical,
    scored_clip,
    served_order,
    valid_point_ids,
    versions_to_drop,
)
from videoseek.store.edge_catalog import EdgeCatalog
from videoseek.store.edge_layout import edge_config, frames_config, layout_frames_maxsim, shard_layout
from videoseek.store.locks import ReadWriteLock

STORE_LOCK_FILE = ".lock"

_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
}


def _in_use(what: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"Qdrant Edge {what}: the store is open in another process; stop it, or run a Qdrant "
        "server (VIDEOSEEK_QDRANT__URL) so several processes can share the vectors"
    )


def _lock_store(root: Path) -> int:
    """The descriptor holding ``root``'s store lock; ``StoreUnavailable`` when another holder has it."""
    fd = os.open(root / STORE_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _in_use(f"store {root}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def _edge_errors(what: str) -> Iterator[None]:
    """The bindings raise bare ``Exception``; turn it into a StoreError that says what failed."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        if "WouldBlock" in str(exc):
            raise _in_use(what) from exc
        raise StoreError(f"Qdrant Edge {what} failed: {exc}") from exc


def release_free_heap() -> None:
    """Hand memory the engine freed back to the OS (glibc only; elsewhere nothing happens).

    Optimizing and loading a shard allocate and free far more than the shard then keeps: measured at 20k clips,
    3.8 KB of heap per clip stayed resident after an optimize and 6.5 KB after a load, of which 1.1 KB and
    0.75 KB were still in use (what this call leaves). glibc keeps such freed memory in its per-thread arenas
    and rarely trims them on its own.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once per process; None where there is no glibc."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_RESCORED = qe.SearchParams(
    quantization=qe.QuantizationSearchParams(rescore=True, oversampling=POOLED_RESCORE_OVERSAMPLING)
)


def _edge_condition(cond: Condition) -> qe.FieldCondition:
    if isinstance(cond, AnyCondition):
        return qe.FieldCondition(cond.key, match=qe.MatchAny(list(cond.values)))
    if isinstance(cond, RangeCondition):
        return qe.FieldCondition(cond.key, range=qe.RangeFloat(gte=cond.gte, lte=cond.lte))
    value: object = cond.value
    if isinstance(value, bool):
        # qdrant-edge-py 0.9.0 turns a Python bool into the integer 1/0 (bool is an int subclass) and then
        # matches nothing; numpy's bool is not an int, so it reaches the engine as a boolean.
        value = np.bool_(value)
    return qe.FieldCondition(cond.key, match=qe.MatchValue(value))  # type: ignore[arg-type]


def _edge_filter(flt: SearchFilter | None, exclude_ids: Collection[str] = ()) -> qe.Filter | None:
    must = [_edge_condition(c) for c in filter_conditions(flt)]
    excluded = valid_point_ids(exclude_ids)
    must_not: list[Any] = [qe.HasIdCondition(set(excluded))] if excluded else []
    must_not += [_edge_condition(c) for c in exclusion_conditions(flt)]
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)  # type: ignore[arg-type]


WithVector = bool | list[str]


def _maxsim_request(
    query: np.ndarray, limit: int, prefetch: int, flt: qe.Filter | None, with_vector: WithVector
) -> qe.QueryRequest:
    """The pooled top ``prefetch`` (filtered there: the outer query only re-scores what the prefetch found),
    re-scored by MaxSim of the query, as a one-vector multivector, against each candidate's frames."""
    pooled = qe.Prefetch(
        limit=prefetch,
        query=qe.Query.Nearest(query, using=VECTOR_POOLED),  # type: ignore[arg-type]
        filter=flt,
        params=_RESCORED,
    )
    return qe.QueryRequest(
        limit=limit,
        query=qe.Query.Nearest([query.tolist()], using=VECTOR_FRAMES),
        prefetches=[pooled],
        with_payload=True,
        with_vector=with_vector,
    )


def _pooled_request(
    query: np.ndarray,
    limit: int,
    flt: qe.Filter | None,
    *,
    with_payload: bool,
    with_vector: WithVector = False,
) -> qe.QueryRequest:
    """The int8 HNSW walk over pooled, its top ``limit`` rescored with the float originals."""
    return qe.QueryRequest(
        limit=limit,
        query=qe.Query.Nearest(query, using=VECTOR_POOLED),  # type: ignore[arg-type]
        filter=flt,
        params=_RESCORED,
        with_payload=with_payload,
        with_vector=with_vector,
    )


def _edge_point(point: ClipPoint, *, with_frames: bool) -> qe.Point:
    vectors: dict[str, Any] = {VECTOR_POOLED: point.pooled}  # numpy is accepted
    if with_frames:
        vectors[VECTOR_FRAMES] = point.frames
    return qe.Point(point.id, vectors, point.stored_payload())


def _frames_point(point: ClipPoint) -> qe.Point:
    vectors: dict[str, Any] = {VECTOR_FRAMES: point.frames}
    return qe.Point(point.id, vectors, {"video_id": point.video_id})


def _video_filter(video_id: str) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition("video_id", match=qe.MatchValue(video_id))])


def _index_path(reported: str) -> str:
    """A payload index path as this store writes it: Edge reports ``metadata."k"`` back as ``metadata.k``."""
    prefix = METADATA_KEY + "."
    if reported.startswith(prefix) and not reported.startswith(prefix + '"'):
        return f'{prefix}"{reported[len(prefix) :]}"'
    return reported


@dataclass
class _Shard:
    """One open physical version: its main shard and, in the layout for scale, its frames shard."""

    physical: str
    meta: VersionMeta
    shard: qe.EdgeShard
    # None: the frames are in ``shard`` (versions made before the split, or with a config that carries them)
    frames: qe.EdgeShard | None = None
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    indexed: set[str] = field(default_factory=set)
    unoptimized: int = 0
    frames_maxsim: bool = True  # read from the shard's stored layout: see layout_frames_maxsim

    @property
    def frames_shard(self) -> qe.EdgeShard:
        """Where this version's frame vectors are."""
        return self.shard if self.frames is None else self.frames

    def edge_shards(self) -> list[qe.EdgeShard]:
        return [self.shard] if self.frames is None else [self.shard, self.frames]

    def close_edges(self, *, flush: bool) -> list[StoreError]:
        """Close every shard of the version (each even when another fails); what failed, in order."""
        failures: list[StoreError] = []
        for edge in self.edge_shards():
            try:
                with _edge_errors(f"closing {self.physical}"):
                    if flush:
                        edge.flush()
                    edge.close()
            except StoreError as exc:
                failures.append(exc)
        return failures


class EdgeClipStore:
    """:class:`~videoseek.store.base.ClipStore` on Qdrant Edge shards under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        optimize_every: int = 20_000,
        batch_size: int = 256,
        shard_config: Callable[[int], qe.EdgeConfig] | None = None,
    ) -> None:
        """``shard_config``: the layout of the main shard of every version this store creates, by dimension
        (default :func:`edge_config`; one that carries ``frames`` makes one-shard versions, as benchmarks of the
        layouts before do)."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._lock_fd: int | None = _lock_store(root)  # held until close(): see the module docstring
        try:
            self._catalog = EdgeCatalog(root)
        except BaseException:
            self._release_lock()
            raise
        self._optimize_every = optimize_every
        self._batch_size = batch_size
        self._shard_config = shard_config
        # shared: data operations and adding shards; exclusive: dropping or switching shards, close
        self._lock = ReadWriteLock()
        self._open_mutex = threading.Lock()  # lazily opening shards under the shared lock
        self._catalog_mutex = threading.Lock()  # adding collections/versions under the shared lock
        self._shards: dict[str, _Shard] = {}
        # physical -> why its shard failed to open; kept until the version is dropped or the store reopened,
        # so a damaged shard is not re-read on every request
        self._unreadable: dict[str, str] = {}
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------------

    def create_collection(
        self, name: str, dim: int, model: str, adapter_version: str | None = None
    ) -> CollectionInfo:
        check_store_name(name)
        meta = new_meta(name, dim, model, adapter_version)
        # adding a shard disturbs no open one: readers may go on, other catalog changes wait
        with self._lock.shared(), self._catalog_mutex:
            self._check_open()
            if self._catalog.alias(name) is not None:
                raise CollectionExists(f"collection {name!r} already exists; delete it first or pick a name")
            physical = self._catalog.next_physical(name)
            shard = self._create_shard(physical, meta)
            self._catalog.set_alias(name, physical)
            return meta.info(physical, points=0, videos=0, frames_maxsim=shard.frames_maxsim)

    def get_collection(self, name: str) -> CollectionInfo:
        with self._lock.shared():
            return self._info(self._active(name))

    def list_collections(self) -> list[CollectionInfo]:
        """The collections that can be read; :meth:`unreadable_collections` names the others."""
        with self._lock.shared():
            self._check_open()
            infos = []
            for name in sorted(self._catalog.aliases()):
                try:
                    infos.append(self._info(self._active(name)))
                except CollectionUnreadable:
                    continue
            return infos

    def unreadable_collections(self) -> dict[str, str]:
        with self._lock.shared():
            self._check_open()
            problems = {}
            for name in sorted(self._catalog.aliases()):
                try:
                    self._active(name)
                except CollectionUnreadable as exc:
                    problems[name] = str(exc)
            return problems

    def delete_collection(self, name: str) -> None:
        with self._lock.exclusive():
            self._check_open()
            if self._catalog.alias(name) is None:
                raise CollectionNotFound(f"collection {name!r} does not exist")
            self._catalog.set_alias(name, None)  # first: a crash below leaves only unreachable files
            for physical in self._catalog.versions(name):
                self._drop(physical)

    def new_version(
        self, name: str, adapter_version: str | None, *, model: str | None = None, dim: int | None = None
    ) -> str:
        with self._lock.shared(), self._catalog_mutex:
            current = self._active(name).meta
            physical = self._catalog.next_physical(name)
            self._create_shard(physical, next_meta(current, adapter_version, model, dim))
            return physical

    def activate_version(self, name: str, physical: str, *, keep: int = 0) -> None:
        with self._lock.shared():
            target = self._version(name, physical)
            if self._catalog.alias(name) == physical:
                return
            self._optimize(target)  # before the switch, without blocking searches
        with self._lock.exclusive():
            target = self._version(name, physical)  # still there?
            old = self._catalog.alias(name)
            target.meta = target.meta.activated()
            self._catalog.write_meta(physical, target.meta)  # before the alias: a crash leaves it unused
            if old is not None:
                self._record_served(old)
            self._catalog.set_alias(name, physical)
            metas = {p: m for p in self._catalog.versions(name) if (m := self._meta_of(p)) is not None}
            for stale in versions_to_drop(metas, old, physical, keep):
                self._drop(stale)

    def list_versions(self, name: str) -> list[VersionInfo]:
        with self._lock.shared():
            live = self._active(name)
            listed = [(live.physical, live.meta)]
            for physical in self._catalog.versions(name):
                meta = self._meta_of(physical)
                if physical != live.physical and meta is not None and meta.activated_at is not None:
                    listed.append((physical, meta))
            return served_order([self._version_info(p, m, live=p == live.physical) for p, m in listed])

    def _record_served(self, physical: str) -> None:
        """Give a live version written before ``activated_at`` existed its date, so it is kept as served."""
        shard = self._open(physical)
        if shard.meta.activated_at is None:
            shard.meta = shard.meta.activated(shard.meta.version_created_at)
            self._catalog.write_meta(physical, shard.meta)

    def _meta_of(self, physical: str) -> VersionMeta | None:
        """A version's metadata (the open shard's, else its file); None when it cannot be read."""
        shard = self._shards.get(physical)
        if shard is not None:
            return shard.meta
        try:
            return self._catalog.read_meta(physical)
        except StoreError:
            return None

    def _version_info(self, physical: str, meta: VersionMeta, *, live: bool) -> VersionInfo:
        try:
            points = self._count(self._open(physical), None)
        except CollectionUnreadable:
            points = 0
        return VersionInfo(
            physical=physical,
            adapter_version=meta.adapter_version,
            model=meta.model,
            live=live,
            created_at=meta.version_created_at,
            activated_at=meta.served_at,
            points=points,
        )

    def drop_version(self, name: str, physical: str) -> None:
        with self._lock.exclusive():
            self._check_open()
            check_version_of(name, physical)
            if self._catalog.alias(name) == physical:
                raise StoreError(
                    f"{physical!r} is the live version of {name!r}; delete the collection instead"
                )
            if physical in self._catalog.versions(name):
                self._drop(physical)

    def close(self) -> None:
        with self._lock.exclusive():
            if self._closed:
                return
            self._closed = True
            failures: list[StoreError] = []
            for physical in list(self._shards):
                failures += self._shards.pop(physical).close_edges(flush=True)  # close the others anyway
            self._release_lock()  # after the shards: the next opener finds them closed
            if failures:
                raise failures[0]

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def optimize(self, name: str) -> None:
        """Merge segments and build the pooled HNSW graph now (also runs on its own, see module doc)."""
        with self._lock.shared():
            self._optimize(self._active(name))

    # -- data ---------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[ClipPoint], physical: str | None = None) -> None:
        with self._lock.shared():
            shard = self._active(name) if physical is None else self._version(name, physical)
            check_points(points, shard.meta.dim, f"collection {name!r}")
            if not points:
                return
            with shard.write_lock:
                self._ensure_metadata_indexes(shard, points)
                for start in range(0, len(points), self._batch_size):
                    self._upsert_batch(shard, points[start : start + self._batch_size])
                shard.unoptimized += len(points)
                if shard.unoptimized >= self._optimize_every:
                    self._optimize_locked(shard)

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
        with self._lock.shared():
            shard = self._active(name)
            query = check_query_vector(vector, shard.meta.dim)
            if limit <= 0 or (flt is not None and flt.matches_nothing):
                return []
            flt_edge = _edge_filter(flt, exclude_ids)
            if shard.frames is not None:
                return self._search_apart(shard, query, limit, flt_edge, with_frames, prefetch)
            frames: WithVector = [VECTOR_FRAMES] if with_frames else False
            if prefetch is not None and shard.frames_maxsim:
                request = _maxsim_request(query, limit, max(prefetch, limit), flt_edge, frames)
            else:
                request = _pooled_request(query, limit, flt_edge, with_payload=True, with_vector=frames)
            with _edge_errors(f"search in {shard.physical}"):
                hits = shard.shard.query(request)
        return [
            scored_clip(h.id, h.score, h.payload, frames_of(h.vector) if with_frames else None) for h in hits
        ]

    def get_frames(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock.shared():
            shard = self._active(name)
            return self._read_frames(shard, ids)

    def clip_spans(self, name: str, ids: Sequence[str]) -> dict[str, ClipSpan]:
        with self._lock.shared():
            shard = self._active(name)
            wanted = valid_point_ids(ids)
            if not wanted:
                return {}
            with _edge_errors(f"retrieve from {shard.physical}"):
                records = shard.shard.retrieve(wanted, SPAN_PAYLOAD_KEYS, False)  # type: ignore[arg-type]
        return {str(r.id): clip_span(r.id, r.payload) for r in records}

    def delete_video(self, name: str, video_id: str) -> int:
        with self._lock.shared():
            shard = self._active(name)
            with shard.write_lock, _edge_errors(f"delete video from {shard.physical}"):
                removed = shard.shard.count(qe.CountRequest(exact=True, filter=_video_filter(video_id)))
                # the main shard first: a delete cut short leaves frames no search reaches, never a clip
                # without its frames
                for edge in shard.edge_shards():
                    if removed or edge is shard.frames:  # the frames of a write cut short go too
                        edge.update(qe.UpdateOperation.delete_points_by_filter(_video_filter(video_id)))
            return removed

    def has_video(self, name: str, video_id: str) -> bool:
        return self.count(name, video_id) > 0

    def count(self, name: str, video_id: str | None = None) -> int:
        with self._lock.shared():
            shard = self._active(name)
            return self._count(shard, video_id)

    def list_videos(self, name: str, physical: str | None = None) -> list[str]:
        with self._lock.shared():
            return self._videos(self._active(name) if physical is None else self._version(name, physical))

    # -- internals (callers hold the lock) ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the clip store is closed; open a new one")

    def _active(self, name: str) -> _Shard:
        self._check_open()
        physical = self._catalog.alias(name)
        if physical is None:
            raise CollectionNotFound(f"collection {name!r} does not exist; create it first")
        return self._open(physical)

    def _version(self, name: str, physical: str) -> _Shard:
        """A physical version of ``name`` (active or pending)."""
        self._check_open()
        check_version_of(name, physical)
        return self._open(physical)  # raises CollectionNotFound once the version is gone

    def _open(self, physical: str) -> _Shard:
        with self._open_mutex:
            shard = self._shards.get(physical)
            if shard is None:
                problem = self._unreadable.get(physical)
                if problem is not None:
                    raise CollectionUnreadable(problem)
                try:
                    shard = self._load(physical)
                except CollectionUnreadable as exc:
                    self._unreadable[physical] = str(exc)
                    raise
                self._shards[physical] = shard
            return shard

    def _load(self, physical: str) -> _Shard:
        try:
            meta = self._catalog.read_meta(physical)
            if meta is None:
                raise CollectionNotFound(f"{physical!r} does not exist in {self.root}")
            edge, info = self._load_edge(physical, self._catalog.shard_dir(physical))
            try:
                apart = self._frames_apart(physical)
                frames = self._load_edge(physical, self._catalog.frames_dir(physical))[0] if apart else None
            except BaseException:
                edge.close()
                raise
        except (CollectionNotFound, StoreUnavailable):  # gone, or locked by another process: not damage
            raise
        except StoreError as exc:
            raise self._unreadable_error(physical, exc) from exc
        # indexed_vectors_count covers every named vector of the main shard; what is left was written since
        # the last optimize (possibly by an earlier process) and counts towards the next one
        unoptimized = max(0, info.points_count - info.indexed_vectors_count // (1 if apart else 2))
        release_free_heap()
        return _Shard(
            physical,
            meta,
            edge,
            frames,
            indexed={_index_path(reported) for reported in info.payload_schema},
            unoptimized=unoptimized,
            frames_maxsim=self._layout_maxsim(self._frames_dir_of(physical, apart)),
        )

    @staticmethod
    def _load_edge(physical: str, path: Path) -> tuple[qe.EdgeShard, Any]:
        """One Edge shard of a version, opened, with its ``info()``."""
        with _edge_errors(f"opening {physical}"):
            if not path.is_dir():
                raise StoreError(f"{path} is missing")
            edge = qe.EdgeShard.load(str(path))
            try:
                return edge, edge.info()
            except BaseException:
                edge.close()
                raise

    def _frames_apart(self, physical: str) -> bool:
        """Whether a version keeps its frames in a shard of their own, as its main shard's stored layout says."""
        try:
            vectors = shard_layout(self._catalog.shard_dir(physical)).get("vectors", {})
        except (OSError, ValueError, AttributeError) as exc:
            raise StoreError(f"cannot read the layout of {physical}: {exc}") from exc
        return VECTOR_FRAMES not in vectors

    def _frames_dir_of(self, physical: str, apart: bool) -> Path:
        return self._catalog.frames_dir(physical) if apart else self._catalog.shard_dir(physical)

    def _layout_maxsim(self, shard_dir: Path) -> bool:
        """MaxSim on a version's frames as the stored layout of the shard holding them says; a layout file that
        cannot be read here says no (searches then rank by pooled alone, as before MaxSim re-scoring) rather
        than failing the version (Edge itself rewrites it when it loads the shard)."""
        try:
            return layout_frames_maxsim(shard_layout(shard_dir))
        except (OSError, ValueError, AttributeError):
            return False

    def _unreadable_error(self, physical: str, exc: StoreError) -> CollectionUnreadable:
        parsed = parse_physical(physical)
        name = parsed[0] if parsed else physical
        live = self._catalog.alias(name) == physical
        what = f"collection {name!r}" if live else f"version {physical!r} of collection {name!r}"
        return CollectionUnreadable(
            f"{what} cannot be opened: {exc}. The other collections are not affected; restore "
            f"{self._catalog.shard_dir(physical)} and {self._catalog.frames_dir(physical)} (its frames, "
            f"where it has them) from one backup and restart, or delete the collection "
            f"(DELETE /collections/{name}) and ingest its videos again"
        )

    def _create_shard(self, physical: str, meta: VersionMeta) -> _Shard:
        config = (self._shard_config or edge_config)(meta.dim)
        apart = VECTOR_FRAMES not in config.vectors  # a config that carries frames makes a one-shard version
        paths = [self._catalog.shard_dir(physical), self._catalog.frames_dir(physical)]
        shutil.rmtree(paths[1], ignore_errors=True)  # left by a create cut short: no version owns it
        created: list[qe.EdgeShard] = []
        try:
            with _edge_errors(f"creating {physical}"):
                created.append(qe.EdgeShard.create(str(paths[0]), config))
                for key, kind in BASE_PAYLOAD_INDEXES.items():
                    created[0].update(qe.UpdateOperation.create_field_index(key, _SCHEMA[kind]))
                if apart:
                    paths[1].parent.mkdir(exist_ok=True)
                    created.append(qe.EdgeShard.create(str(paths[1]), frames_config(meta.dim)))
                    created[1].update(qe.UpdateOperation.create_field_index("video_id", _SCHEMA["keyword"]))
            self._catalog.write_meta(physical, meta)
        except BaseException:
            for edge in created:
                with suppress(Exception):
                    edge.close()
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)
            raise
        shard = _Shard(
            physical,
            meta,
            created[0],
            created[1] if apart else None,
            indexed=set(BASE_PAYLOAD_INDEXES),
            frames_maxsim=self._layout_maxsim(self._frames_dir_of(physical, apart)),
        )
        with self._open_mutex:
            self._shards[physical] = shard
        return shard

    def _drop(self, physical: str) -> None:
        self._unreadable.pop(physical, None)
        shard = self._shards.pop(physical, None)
        if shard is not None and (failures := shard.close_edges(flush=False)):
            raise failures[0]
        shutil.rmtree(self._catalog.shard_dir(physical), ignore_errors=True)
        shutil.rmtree(self._catalog.frames_dir(physical), ignore_errors=True)
        self._catalog.remove_version_files(physical)

    def _ensure_metadata_indexes(self, shard: _Shard, points: Sequence[ClipPoint]) -> None:
        wanted: dict[str, str] = {}
        for point in points:
            for path, kind in point.metadata_indexes().items():
                wanted.setdefault(path, kind)
        budget = MAX_METADATA_INDEXES - (len(shard.indexed) - len(BASE_PAYLOAD_INDEXES))
        for path, kind in wanted.items():
            if path in shard.indexed or budget <= 0:
                continue
            with _edge_errors(f"indexing {path} in {shard.physical}"):
                shard.shard.update(qe.UpdateOperation.create_field_index(path, _SCHEMA[kind]))
            shard.indexed.add(path)
            budget -= 1

    def _upsert_batch(self, shard: _Shard, batch: Sequence[ClipPoint]) -> None:
        """One batch into both shards, frames first: a clip a search can find always has its frames.

        A main write that fails after the frames went in takes back the frames of the batch's new clips (what
        is left, if that fails too, :meth:`_read_frames` never returns). A clip the batch overwrote keeps its
        new frames beside its old pooled vector until the job's retry writes it again; retries write the same
        vectors, and a re-index writes into a new version, so the two rarely differ.
        """
        points = [_edge_point(p, with_frames=shard.frames is None) for p in batch]
        with _edge_errors(f"upsert into {shard.physical}"):
            if shard.frames is None:
                shard.shard.update(qe.UpdateOperation.upsert_points(points))
                return
            shard.frames.update(qe.UpdateOperation.upsert_points([_frames_point(p) for p in batch]))
            try:
                shard.shard.update(qe.UpdateOperation.upsert_points(points))
            except Exception:
                with suppress(Exception):
                    self._drop_frames_without_clip(shard, [p.id for p in batch])
                raise

    @staticmethod
    def _clips_present(shard: _Shard, ids: list[str]) -> set[str]:
        """Which of ``ids`` the version's main shard holds."""
        return {str(r.id) for r in shard.shard.retrieve(ids, False, False)}  # type: ignore[arg-type]

    def _drop_frames_without_clip(self, shard: _Shard, ids: list[str]) -> None:
        orphans = set(ids) - self._clips_present(shard, ids)
        if orphans:
            shard.frames_shard.update(qe.UpdateOperation.delete_points(list(orphans)))

    def _search_apart(
        self,
        shard: _Shard,
        query: np.ndarray,
        limit: int,
        flt: qe.Filter | None,
        with_frames: bool,
        prefetch: int | None,
    ) -> list[ScoredClip]:
        """Search a version whose frames have their own shard; the same results as the one-shard request."""
        if prefetch is None or not shard.frames_maxsim:
            request = _pooled_request(query, limit, flt, with_payload=True)
            with _edge_errors(f"search in {shard.physical}"):
                hits = [scored_clip(h.id, h.score, h.payload) for h in shard.shard.query(request)]
            if not with_frames:
                return hits
            frames = self._read_frames(shard, [h.id for h in hits], known=True)
            return [replace(h, frames=frames.get(h.id)) for h in hits]
        # The pooled top ``prefetch`` (filtered there, ids only), re-scored by MaxSim in the frames shard, which
        # scores just those ids (no graph: a filtered plain scan); payloads only for the ``limit`` kept.
        request = _pooled_request(query, max(prefetch, limit), flt, with_payload=False)
        with _edge_errors(f"search in {shard.physical}"):
            candidates = {h.id for h in shard.shard.query(request)}
            if not candidates:
                return []
            ranked = shard.frames_shard.query(
                qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest([query.tolist()], using=VECTOR_FRAMES),
                    filter=qe.Filter(must=[qe.HasIdCondition(candidates)]),
                    with_payload=False,
                    with_vector=[VECTOR_FRAMES] if with_frames else False,
                )
            )
            records = shard.shard.retrieve([h.id for h in ranked], True, False)
        payloads = {str(r.id): r.payload for r in records}
        return [
            scored_clip(h.id, h.score, payloads[str(h.id)], frames_of(h.vector) if with_frames else None)
            for h in ranked
            if str(h.id) in payloads  # frames a delete cut short left behind have no clip
        ]

    def _read_frames(
        self, shard: _Shard, ids: Sequence[str], *, known: bool = False
    ) -> dict[str, np.ndarray]:
        """The frames of those of ``ids`` that are clips of the version (``known``: the main shard just returned
        them): a frames shard can hold frames whose clip a failed write or a delete in progress left out."""
        wanted = valid_point_ids(ids)
        with _edge_errors(f"retrieve from {shard.physical}"):
            if shard.frames is not None and not known and wanted:
                present = self._clips_present(shard, wanted)
                wanted = [pid for pid in wanted if pid in present]
            if not wanted:
                return {}
            records = shard.frames_shard.retrieve(wanted, False, [VECTOR_FRAMES])  # type: ignore[arg-type]
        found = {str(r.id): frames_of(r.vector) for r in records}
        return {pid: frames for pid, frames in found.items() if frames is not None}

    def _optimize(self, shard: _Shard) -> None:
        with shard.write_lock:
            self._optimize_locked(shard)

    def _optimize_locked(self, shard: _Shard) -> None:
        with _edge_errors(f"optimizing {shard.physical}"):
            for edge in shard.edge_shards():
                edge.optimize()
                edge.flush()
        shard.unoptimized = 0
        release_free_heap()

    def _count(self, shard: _Shard, video_id: str | None) -> int:
        flt = None if video_id is None else _video_filter(video_id)
        with _edge_errors(f"count in {shard.physical}"):
            return shard.shard.count(qe.CountRequest(exact=True, filter=flt))

    def _videos(self, shard: _Shard) -> list[str]:
        points = self._count(shard, None)
        if points == 0:
            return []
        with _edge_errors(f"listing videos of {shard.physical}"):
            hits = shard.shard.facet(qe.FacetRequest("video_id", limit=points, exact=True)).hits
        # exact facets still list values whose points were all deleted, with a count of 0
        return sorted(str(h.value) for h in hits if h.count > 0)

    def _info(self, shard: _Shard) -> CollectionInfo:
        return shard.meta.info(
            shard.physical,
            points=self._count(shard, None),
            videos=len(self._videos(shard)),
            frames_maxsim=shard.frames_maxsim,
        )
